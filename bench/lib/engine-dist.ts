/**
 * The policy engine's modules from a compiled build (build-dist.ts), typed as
 * their sources, for the benches that run the engine in their own process
 * (bench/verdict.ts, bench/store.ts): one loader, so both run the same code.
 */
import type { Config } from '../../src/config/schema.js';
import type { PolicyEngine, PolicyState } from '../../src/policy/engine.js';
import type { Policy } from '../../src/policy/spec.js';
import type { StateStore } from '../../src/state/store.js';
import type { Build } from './build-dist.js';

export interface EngineDist {
  readonly loadConfigText: (typeof import('../../src/config/load.js'))['loadConfigText'];
  readonly PolicyEngine: (typeof import('../../src/policy/engine.js'))['PolicyEngine'];
  readonly loadPolicyDir: (typeof import('../../src/policy/load.js'))['loadPolicyDir'];
  readonly loadPolicyDirWithWarnings: (typeof import('../../src/policy/load.js'))['loadPolicyDirWithWarnings'];
  readonly compileCidrList: (typeof import('../../src/policy/lists/cidr-list.js'))['compileCidrList'];
  readonly dnsCacheTotal: (typeof import('../../src/policy/dns/metrics.js'))['dnsCacheTotal'];
  readonly createPolicyState: (typeof import('../../src/policy/state.js'))['createPolicyState'];
  readonly storeSettings: (typeof import('../../src/policy/state.js'))['storeSettings'];
  readonly createStateStore: (typeof import('../../src/state/create-store.js'))['createStateStore'];
  readonly registry: (typeof import('../../src/metrics/registry.js'))['registry'];
}

export async function loadEngineDist(build: Build): Promise<EngineDist> {
  const config = await build.load<typeof import('../../src/config/load.js')>('config/load.js');
  const engine = await build.load<typeof import('../../src/policy/engine.js')>('policy/engine.js');
  const load = await build.load<typeof import('../../src/policy/load.js')>('policy/load.js');
  const lists = await build.load<typeof import('../../src/policy/lists/cidr-list.js')>('policy/lists/cidr-list.js');
  const dns = await build.load<typeof import('../../src/policy/dns/metrics.js')>('policy/dns/metrics.js');
  const state = await build.load<typeof import('../../src/policy/state.js')>('policy/state.js');
  const store = await build.load<typeof import('../../src/state/create-store.js')>('state/create-store.js');
  const metrics = await build.load<typeof import('../../src/metrics/registry.js')>('metrics/registry.js');
  return {
    loadConfigText: config.loadConfigText,
    PolicyEngine: engine.PolicyEngine,
    loadPolicyDir: load.loadPolicyDir,
    loadPolicyDirWithWarnings: load.loadPolicyDirWithWarnings,
    compileCidrList: lists.compileCidrList,
    dnsCacheTotal: dns.dnsCacheTotal,
    createPolicyState: state.createPolicyState,
    storeSettings: state.storeSettings,
    createStateStore: store.createStateStore,
    registry: metrics.registry,
  };
}

/** An engine as the proxy builds one on a policy load: its state (a fresh memory store unless `store` is given) configured by the policy. */
export function freshEngine(
  dist: EngineDist,
  config: Config,
  policy: Policy,
  store?: StateStore,
): { readonly engine: PolicyEngine; readonly state: PolicyState } {
  const state = dist.createPolicyState(config, store);
  state.store.configure(dist.storeSettings(policy));
  return { engine: new dist.PolicyEngine(policy, state, { hostname: 'tarpit.bench', addresses: ['127.0.0.1'] }), state };
}
