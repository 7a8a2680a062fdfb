/**
 * deploy/docker/Dockerfile, checked statically (no registry to build from
 * here): multi-stage, the final stage runs as a non-root user without dev
 * dependencies, every COPY source exists in the repository and survives the
 * build-context filter, and the ports, entry point and command agree with the
 * package and with our own config loader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DockerfileParser, JSONInstruction, ModifiableInstruction, type Instruction } from 'dockerfile-ast';
import { loadConfigFile } from '../../src/config/load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCKERFILE = join(ROOT, 'deploy/docker/Dockerfile');

interface Stage {
  readonly name: string | undefined;
  readonly image: string;
  readonly instructions: readonly Instruction[];
}

/** The Dockerfile's stages, each from its FROM up to the next. */
function stages(text: string): Stage[] {
  const out: Array<{ name: string | undefined; image: string; instructions: Instruction[] }> = [];
  for (const i of DockerfileParser.parse(text).getInstructions()) {
    if (i.getKeyword() === 'FROM') {
      const [image, as, name] = i.getArguments().map((a) => a.getValue());
      out.push({ image: image ?? '', name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else {
      const current = out.at(-1);
      assert.ok(current, `${i.getKeyword()} before the first FROM`);
      current.instructions.push(i);
    }
  }
  return out;
}

const words = (i: Instruction): string[] => (i instanceof JSONInstruction && i.getJSONStrings().length > 0 ? i.getJSONStrings().map((s) => s.getJSONValue()) : i.getArguments().map((a) => a.getValue()));
const flag = (i: Instruction, name: string): string | undefined => (i instanceof ModifiableInstruction ? (i.getFlags().find((f) => f.getName() === name)?.getValue() ?? undefined) : undefined);
const of = (s: Stage, keyword: string): Instruction[] => s.instructions.filter((i) => i.getKeyword() === keyword);

/** Problems found in a Dockerfile's text; empty when it is fit to ship. */
function problems(text: string): string[] {
  const found: string[] = [];
  const all = stages(text);
  if (all.length < 2) found.push(`single-stage: ${all.length} FROM`);
  const final = all.at(-1);
  if (!final) return [...found, 'no FROM'];

  const user = of(final, 'USER').at(-1);
  const who = user ? words(user)[0]?.split(':')[0] : undefined;
  if (who === undefined || who === 'root' || who === '0') found.push(`final stage runs as ${who ?? 'root (no USER)'}`);

  for (const run of of(final, 'RUN')) {
    const line = words(run).join(' ');
    for (const install of line.split('&&').map((c) => c.trim()).filter((c) => /^npm (ci|install|i)\b/.test(c))) {
      if (!/--omit=dev\b|--production\b/.test(install)) found.push(`final stage installs dev dependencies: ${install}`);
    }
  }

  const names = new Set<string>();
  for (const stage of all) {
    for (const copy of [...of(stage, 'COPY'), ...of(stage, 'ADD')]) {
      const from = flag(copy, 'from');
      const sources = words(copy).slice(0, -1);
      if (from !== undefined) {
        if (!names.has(from)) found.push(`COPY --from=${from}: no earlier stage of that name`);
        continue;
      }
      for (const src of sources) if (!existsSync(join(ROOT, src))) found.push(`COPY ${src}: not in the repository`);
    }
    if (stage.name) names.add(stage.name);
  }
  return found;
}

const TEXT = readFileSync(DOCKERFILE, 'utf8');

test('the Dockerfile is multi-stage, non-root, without dev dependencies, and copies only what exists', () => {
  assert.deepEqual(problems(TEXT), []);
});

test('the checks catch a root final stage, dev dependencies, a missing COPY source and a single stage', () => {
  const noUser = TEXT.replace(/^USER node$/m, 'USER root');
  assert.ok(problems(noUser).some((p) => p.includes('runs as root')), 'USER root not caught');
  const dropUser = TEXT.replace(/^USER node\n/m, '');
  assert.ok(problems(dropUser).some((p) => p.includes('no USER')), 'missing USER not caught');
  const devDeps = TEXT.replace('npm ci --omit=dev', 'npm ci');
  assert.ok(problems(devDeps).some((p) => p.includes('dev dependencies')), 'npm ci without --omit=dev not caught');
  const missing = TEXT.replace('COPY policies ./policies', 'COPY policy ./policies');
  assert.ok(problems(missing).some((p) => p.includes('COPY policy:')), 'missing source not caught');
  const badFrom = TEXT.replace('--from=build', '--from=builder');
  assert.ok(problems(badFrom).some((p) => p.includes('--from=builder')), 'unknown stage not caught');
  const single = TEXT.replace(/^FROM node:20-slim AS runtime$/m, '');
  assert.ok(problems(single).some((p) => p.includes('single-stage')), 'single stage not caught');
});

test('the build stage compiles what the runtime stage copies, and the entry point is the package bin', () => {
  const [build, runtime] = [stages(TEXT).at(-2)!, stages(TEXT).at(-1)!];
  assert.ok(of(build, 'RUN').some((r) => /\bnpm run build\b/.test(words(r).join(' '))), 'build stage must run npm run build');
  const buildDir = words(of(build, 'WORKDIR').at(-1)!)[0];
  const outDir = (JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions: { outDir: string } }).compilerOptions.outDir;
  const fromBuild = of(runtime, 'COPY').filter((c) => flag(c, 'from') === build.name);
  assert.deepEqual(fromBuild.map((c) => words(c)[0]), [`${buildDir}/${outDir}`], 'only the compiled output comes from the build stage (never its node_modules)');

  const appDir = words(of(runtime, 'WORKDIR').at(-1)!)[0];
  const bin = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['smtp-tarpit'];
  assert.deepEqual(words(of(runtime, 'ENTRYPOINT').at(-1)!), ['node', `${appDir}/${bin}`]);
  // Everything the package ships (package.json "files") is in the image.
  const files = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] }).files;
  const copied = of(runtime, 'COPY').map((c) => words(c).at(-1)!.replace(/^\.\//, ''));
  for (const f of files) assert.ok(copied.includes(f), `package file ${f} is not copied into the image`);
});

test('the image command loads with our config loader, listens where EXPOSE and HEALTHCHECK say', () => {
  const runtime = stages(TEXT).at(-1)!;
  const cmd = words(of(runtime, 'CMD').at(-1)!);
  const arg = (name: string): string | undefined => {
    const i = cmd.indexOf(`--${name}`);
    return i < 0 ? undefined : cmd[i + 1];
  };
  assert.equal(cmd[0], 'serve');
  const appDir = words(of(runtime, 'WORKDIR').at(-1)!)[0]!;
  const configInImage = arg('config')!;
  assert.ok(configInImage.startsWith(`${appDir}/`), 'the config comes from the image');
  // The repository's file is the image's file: COPY config ./config.
  const config = loadConfigFile(join(ROOT, configInImage.slice(appDir.length + 1)), { listen: arg('listen'), metrics: arg('metrics') });
  assert.equal(config.policies, join(ROOT, 'policies'), 'the config must find the policies the image copies beside it');
  const exposed = of(runtime, 'EXPOSE').flatMap((e) => words(e)).map(Number);
  assert.ok(exposed.includes(config.listen.port), `SMTP port ${config.listen.port} not exposed (${exposed.join(', ')})`);
  assert.ok(config.listen.port >= 1024, 'a non-root user cannot bind a port below 1024 without a capability');
  assert.ok(config.metrics.listen, 'metrics must be on');
  assert.equal(config.metrics.listen.host, '0.0.0.0', 'metrics on loopback would be unreachable from outside the container');
  assert.ok(exposed.includes(config.metrics.listen.port), 'metrics port not exposed');
  const health = words(of(runtime, 'HEALTHCHECK').at(-1)!).join(' ');
  assert.match(health, new RegExp(`127\\.0\\.0\\.1:${config.metrics.listen.port}/healthz`));
});

test('the build context filter keeps every COPY source and drops the rest', () => {
  const ignore = readFileSync(`${DOCKERFILE}.dockerignore`, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(ignore[0], '**', 'the filter starts by excluding everything (node_modules, dist, .git, secrets)');
  const kept = new Set(ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/\*\*$/, '')));
  for (const stage of stages(TEXT)) {
    for (const copy of of(stage, 'COPY').filter((c) => flag(c, 'from') === undefined)) {
      for (const src of words(copy).slice(0, -1)) assert.ok(kept.has(src), `COPY ${src} is excluded from the build context`);
    }
  }
});
