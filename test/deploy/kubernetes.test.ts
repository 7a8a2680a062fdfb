/**
 * deploy/kubernetes: every manifest parses and has the fields we rely on
 * (small ajv schemas per kind), the objects agree with one another (selectors,
 * ports, probes, mounts), the probes' paths are what the real metrics listener
 * serves, and the ConfigMaps' embedded configuration and policy pass our own
 * loaders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parseAllDocuments, parse } from 'yaml';
import { loadConfigText } from '../../src/config/load.js';
import { MetricsServer } from '../../src/metrics/http.js';
import { loadPolicyDirWithWarnings } from '../../src/policy/load.js';

const DIR = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));

interface Manifest {
  readonly file: string;
  readonly doc: Record<string, unknown>;
}

function manifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()) {
    for (const d of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))) {
      assert.deepEqual(d.errors, [], `${file}: YAML errors`);
      const doc = d.toJS() as unknown;
      if (doc === null) continue;
      assert.ok(doc && typeof doc === 'object', `${file}: a document is not a mapping`);
      out.push({ file, doc: doc as Record<string, unknown> });
    }
  }
  return out;
}

// ---- the fields we rely on, per kind ----
const NAME = { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' } as const;
const LABELS = { type: 'object', additionalProperties: { type: 'string' }, minProperties: 1 } as const;
const PORT = { anyOf: [{ type: 'integer', minimum: 1, maximum: 65535 }, NAME] } as const;
const PROBE = {
  type: 'object',
  required: ['httpGet'],
  properties: { httpGet: { type: 'object', required: ['path', 'port'], properties: { path: { type: 'string', pattern: '^/' }, port: PORT } } },
} as const;
const META = { type: 'object', required: ['name'], properties: { name: NAME, labels: LABELS } } as const;
const SELECTOR = { type: 'object', required: ['matchLabels'], properties: { matchLabels: LABELS } } as const;

const SCHEMAS: Record<string, { apiVersion: string; spec: object }> = {
  Deployment: {
    apiVersion: 'apps/v1',
    spec: {
      type: 'object',
      required: ['selector', 'template'],
      properties: {
        replicas: { type: 'integer', minimum: 2 },
        selector: SELECTOR,
        template: {
          type: 'object',
          required: ['metadata', 'spec'],
          properties: {
            metadata: { type: 'object', required: ['labels'], properties: { labels: LABELS, annotations: { type: 'object', additionalProperties: { type: 'string' } } } },
            spec: {
              type: 'object',
              required: ['containers', 'securityContext', 'terminationGracePeriodSeconds'],
              properties: {
                terminationGracePeriodSeconds: { type: 'integer', minimum: 1 },
                securityContext: { type: 'object', required: ['runAsNonRoot'], properties: { runAsNonRoot: { const: true } } },
                containers: {
                  type: 'array',
                  minItems: 1,
                  items: {
                    type: 'object',
                    required: ['name', 'image', 'ports', 'readinessProbe', 'livenessProbe', 'securityContext'],
                    properties: {
                      name: NAME,
                      image: { type: 'string', minLength: 1 },
                      args: { type: 'array', items: { type: 'string' } },
                      ports: { type: 'array', minItems: 1, items: { type: 'object', required: ['name', 'containerPort'], properties: { name: NAME, containerPort: { type: 'integer', minimum: 1, maximum: 65535 } } } },
                      readinessProbe: PROBE,
                      livenessProbe: PROBE,
                      securityContext: {
                        type: 'object',
                        required: ['readOnlyRootFilesystem', 'allowPrivilegeEscalation', 'capabilities'],
                        properties: {
                          readOnlyRootFilesystem: { const: true },
                          allowPrivilegeEscalation: { const: false },
                          capabilities: { type: 'object', required: ['drop'], properties: { drop: { type: 'array', contains: { const: 'ALL' } } } },
                        },
                      },
                      volumeMounts: { type: 'array', items: { type: 'object', required: ['name', 'mountPath'] } },
                    },
                  },
                },
                volumes: { type: 'array', items: { type: 'object', required: ['name'] } },
              },
            },
          },
        },
      },
    },
  },
  Service: {
    apiVersion: 'v1',
    spec: {
      type: 'object',
      required: ['selector', 'ports'],
      properties: {
        type: { enum: ['ClusterIP', 'LoadBalancer', 'NodePort'] },
        selector: LABELS,
        ports: { type: 'array', minItems: 1, items: { type: 'object', required: ['name', 'port', 'targetPort'], properties: { name: NAME, port: PORT, targetPort: PORT } } },
      },
    },
  },
  ConfigMap: { apiVersion: 'v1', spec: { type: 'object' } },
  PodDisruptionBudget: {
    apiVersion: 'policy/v1',
    spec: { type: 'object', required: ['selector'], oneOf: [{ required: ['minAvailable'] }, { required: ['maxUnavailable'] }], properties: { selector: SELECTOR } },
  },
  ServiceMonitor: {
    apiVersion: 'monitoring.coreos.com/v1',
    spec: {
      type: 'object',
      required: ['selector', 'endpoints'],
      properties: { selector: SELECTOR, endpoints: { type: 'array', minItems: 1, items: { type: 'object', required: ['port', 'path'], properties: { port: NAME, path: { type: 'string' } } } } },
    },
  },
};

const ajv = new Ajv({ allErrors: true, strict: false });
const validators = Object.fromEntries(
  Object.entries(SCHEMAS).map(([kind, s]) => [
    kind,
    ajv.compile({
      type: 'object',
      required: kind === 'ConfigMap' ? ['apiVersion', 'kind', 'metadata', 'data'] : ['apiVersion', 'kind', 'metadata', 'spec'],
      properties: { apiVersion: { const: s.apiVersion }, kind: { const: kind }, metadata: META, spec: s.spec, data: { type: 'object', additionalProperties: { type: 'string' } } },
    }),
  ]),
);

/** Schema problems of one manifest, as `file kind/name: path message`. */
function schemaProblems(m: Manifest): string[] {
  const kind = String(m.doc.kind);
  const validate = validators[kind];
  const where = `${m.file} ${kind}/${String((m.doc.metadata as { name?: unknown } | undefined)?.name)}`;
  if (!validate) return [`${where}: unexpected kind`];
  return validate(m.doc) ? [] : (validate.errors ?? []).map((e) => `${where}: ${e.instancePath} ${e.message ?? ''}`);
}

// ---- typed views of what the schemas checked ----
interface ContainerPort { name: string; containerPort: number }
interface Probe { httpGet: { path: string; port: string | number } }
interface Container {
  name: string;
  image: string;
  args?: string[];
  ports: ContainerPort[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  securityContext: { capabilities: { drop: string[]; add?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface Deployment {
  metadata: { name: string };
  spec: {
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
      spec: { terminationGracePeriodSeconds: number; containers: Container[]; volumes?: Array<{ name: string; configMap?: { name: string } }> };
    };
  };
}
interface Service {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { type?: string; externalTrafficPolicy?: string; selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: string | number }> };
}
interface ConfigMap { metadata: { name: string }; data: Record<string, string> }
interface Pdb { spec: { selector: { matchLabels: Record<string, string> } } }
interface ServiceMonitor { spec: { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path: string }> } }

function all<T>(kind: string): T[] {
  return manifests()
    .filter((m) => m.doc.kind === kind)
    .map((m) => m.doc as unknown as T);
}
function one<T>(kind: string, name?: string): T {
  const found = all<T & { metadata: { name: string } }>(kind).filter((d) => name === undefined || d.metadata.name === name);
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` named ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

function deployment(): { d: Deployment; c: Container; labels: Record<string, string> } {
  const d = one<Deployment>('Deployment', 'smtp-tarpit');
  const c = d.spec.template.spec.containers[0]!;
  return { d, c, labels: d.spec.template.metadata.labels };
}
function portNumber(c: Container, ref: string | number): number | undefined {
  return typeof ref === 'number' ? c.ports.find((p) => p.containerPort === ref)?.containerPort : c.ports.find((p) => p.name === ref)?.containerPort;
}

test('every manifest parses and has apiVersion, kind, metadata.name and the fields we rely on', () => {
  const ms = manifests();
  assert.deepEqual(
    [...new Set(ms.map((m) => String(m.doc.kind)))].sort(),
    ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service', 'ServiceMonitor'],
  );
  assert.deepEqual(ms.flatMap(schemaProblems), []);
});

test('the schemas can fail: a Deployment without probes, a root pod, a Service without targetPort', () => {
  const d = manifests().find((m) => m.doc.kind === 'Deployment')!;
  const broken = structuredClone(d.doc) as unknown as Deployment;
  const c = broken.spec.template.spec.containers[0]! as Partial<Container>;
  delete c.readinessProbe;
  (broken.spec.template.spec as { securityContext?: unknown }).securityContext = { runAsNonRoot: false };
  const problems = schemaProblems({ file: d.file, doc: broken as unknown as Record<string, unknown> });
  assert.ok(problems.some((p) => p.includes('readinessProbe')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('runAsNonRoot')), problems.join('\n'));
  const s = manifests().find((m) => m.doc.kind === 'Service')!;
  const svc = structuredClone(s.doc) as unknown as Service;
  delete (svc.spec.ports[0] as Partial<Service['spec']['ports'][0]>).targetPort;
  assert.ok(schemaProblems({ file: s.file, doc: svc as unknown as Record<string, unknown> }).some((p) => p.includes('targetPort')));
});

test('kustomization.yaml lists every manifest', () => {
  const k = parse(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as { kind: string; resources: string[] };
  assert.equal(k.kind, 'Kustomization');
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  assert.deepEqual([...k.resources].sort(), files.sort());
});

test('selectors match the pod labels, and Service target ports are container ports', () => {
  const { d, c, labels } = deployment();
  assert.ok(selects(d.spec.selector.matchLabels, labels), 'Deployment selector does not match its template');
  assert.ok(selects(one<Pdb>('PodDisruptionBudget').spec.selector.matchLabels, labels), 'PodDisruptionBudget selects no pod');
  for (const svc of all<Service>('Service')) {
    assert.ok(selects(svc.spec.selector, labels), `Service ${svc.metadata.name} selects no pod`);
    for (const p of svc.spec.ports) assert.ok(portNumber(c, p.targetPort) !== undefined, `Service ${svc.metadata.name} targetPort ${p.targetPort} is no container port`);
  }
});

test('port 25 is public with client addresses kept; metrics are not on the load balancer', () => {
  const { c } = deployment();
  const lb = all<Service>('Service').filter((s) => s.spec.type === 'LoadBalancer');
  assert.equal(lb.length, 1);
  const smtp = lb[0]!;
  assert.equal(smtp.spec.externalTrafficPolicy, 'Local', 'Cluster would SNAT clients to node addresses');
  assert.deepEqual(smtp.spec.ports.map((p) => p.port), [25]);
  const metricsPort = portNumber(c, 'metrics');
  assert.ok(!smtp.spec.ports.some((p) => portNumber(c, p.targetPort) === metricsPort), 'metrics exposed on the load balancer');
});

test('the pod runs non-root with every capability dropped, on ports that need none', () => {
  const { c } = deployment();
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.equal(c.securityContext.capabilities.add, undefined, 'a non-root container gets no added capability in Kubernetes anyway');
  for (const p of c.ports) assert.ok(p.containerPort >= 1024, `${p.name}: port ${p.containerPort} needs NET_BIND_SERVICE`);
});

test('probes and scrape targets point at the metrics port and paths the metrics listener serves', async () => {
  const { d, c } = deployment();
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  const metricsPort = portNumber(c, 'metrics');
  for (const probe of [c.readinessProbe, c.livenessProbe]) assert.equal(portNumber(c, probe.httpGet.port), metricsPort);
  const ann = d.spec.template.metadata.annotations ?? {};
  assert.equal(ann['prometheus.io/scrape'], 'true');
  assert.equal(Number(ann['prometheus.io/port']), metricsPort);
  const sm = one<ServiceMonitor>('ServiceMonitor');
  const metricsSvc = all<Service>('Service').filter((s) => selects(sm.spec.selector.matchLabels, s.metadata.labels ?? {}));
  assert.equal(metricsSvc.length, 1, 'the ServiceMonitor must select exactly the metrics Service');
  for (const e of sm.spec.endpoints) {
    const port = metricsSvc[0]!.spec.ports.find((p) => p.name === e.port);
    assert.ok(port, `ServiceMonitor port ${e.port} is not a port of ${metricsSvc[0]!.metadata.name}`);
    assert.equal(portNumber(c, port.targetPort), metricsPort);
  }

  // The real listener: the paths answer, and /readyz says 503 when not ready (so the probe can fail).
  let ready = true;
  const server = new MetricsServer(() => ({ ready }));
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  try {
    const get = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).status;
    for (const path of [c.readinessProbe.httpGet.path, c.livenessProbe.httpGet.path, ann['prometheus.io/path'] ?? '/metrics', ...sm.spec.endpoints.map((e) => e.path)]) {
      assert.equal(await get(path), 200, `${path} on the metrics listener`);
    }
    ready = false;
    assert.equal(await get(c.readinessProbe.httpGet.path), 503);
    assert.equal(await get(c.livenessProbe.httpGet.path), 200, 'liveness must not follow readiness');
  } finally {
    await server.close();
  }
});

test('the ConfigMaps: the config passes our loader, listens where the pod says, and the policy passes the policy loader', () => {
  const { d, c } = deployment();
  const cfgMap = one<ConfigMap>('ConfigMap', 'smtp-tarpit-config');
  const polMap = one<ConfigMap>('ConfigMap', 'smtp-tarpit-policies');
  const mounts = c.volumeMounts ?? [];
  const volumes = d.spec.template.spec.volumes ?? [];
  const mountOf = (cm: string) => {
    const vol = volumes.find((v) => v.configMap?.name === cm);
    assert.ok(vol, `no volume from ConfigMap ${cm}`);
    const m = mounts.find((x) => x.name === vol.name);
    assert.ok(m, `volume ${vol.name} is not mounted`);
    return m.mountPath;
  };
  const configDir = mountOf(cfgMap.metadata.name);
  const policiesDir = mountOf(polMap.metadata.name);

  // The container's --config names a key of the config ConfigMap.
  const args = c.args ?? [];
  const configPath = args[args.indexOf('--config') + 1] ?? '';
  assert.equal(args[0], 'serve');
  assert.equal(configPath.slice(0, configDir.length + 1), `${configDir}/`, `--config ${configPath} is not in the config mount ${configDir}`);
  const key = basename(configPath);
  const text = cfgMap.data[key];
  assert.ok(text, `ConfigMap ${cfgMap.metadata.name} has no key ${key}`);
  // The config's own policies path is the policies mount.
  assert.equal((parse(text) as { policies?: string }).policies, policiesDir);

  const tmp = mkdtempSync(join(tmpdir(), 'tarpit-k8s-policies-'));
  try {
    for (const [name, body] of Object.entries(polMap.data)) writeFileSync(join(tmp, name), body);
    const config = loadConfigText(text, configPath, { policies: tmp });
    assert.equal(config.listen.port, portNumber(c, 'smtp'), 'config listen port is not the smtp container port');
    assert.equal(config.metrics.listen?.host, '0.0.0.0', 'probes reach the pod address, not its loopback');
    assert.equal(config.metrics.listen.port, portNumber(c, 'metrics'));
    assert.ok(d.spec.template.spec.terminationGracePeriodSeconds > config.shutdown.grace, 'the kubelet would SIGKILL during the shutdown grace');

    const loaded = loadPolicyDirWithWarnings(tmp);
    assert.deepEqual(loaded.warnings.map(String), []);
    // Every file the policy reads is a key of the ConfigMap (and so a file in the mount).
    for (const f of loaded.files) assert.ok(basename(f) in polMap.data, `the policy reads ${basename(f)}, which the ConfigMap lacks`);
    assert.ok(loaded.files.length >= 3, 'policy.yaml and both list files');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
