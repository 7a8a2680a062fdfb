/**
 * Metrics with workers (`serve --workers N`): each worker keeps its own
 * registry (src/metrics/registry.ts); the primary asks every worker for it over
 * the cluster IPC channel on each scrape and merges them with prom-client's
 * AggregatorRegistry.aggregate (counters and histograms summed, gauges summed
 * unless the metric names another `aggregator`), plus the primary's own
 * metrics: workers by state and worker restarts.
 *
 * Why not prom-client's AggregatorRegistry.clusterMetrics(): it asks every
 * connected worker, and a worker still loading (a replacement, for a second or
 * two) has no listener yet, so the scrape waits 5 s and fails; one hung worker
 * fails the whole scrape too. Here the primary asks only workers that said they
 * are serving, and a worker that does not answer in time is left out of that
 * one scrape instead of failing it.
 */
import type { Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { MetricsSource } from './http.js';
import { registry } from './registry.js';

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

const REQUEST = 'smtp-tarpit:metrics-request';
const RESPONSE = 'smtp-tarpit:metrics-response';

interface MetricsRequest {
  readonly type: typeof REQUEST;
  readonly id: number;
}

interface MetricsResponse {
  readonly type: typeof RESPONSE;
  readonly id: number;
  readonly metrics?: MetricsJson;
  readonly error?: string;
}

/** The primary's own metrics; workers never register them, so they are not summed with zeros. */
const primaryRegistry = new Registry();

export type WorkerState = 'starting' | 'online' | 'stopping';
const WORKER_STATES: readonly WorkerState[] = ['starting', 'online', 'stopping'];

const workersGauge = new Gauge({
  name: 'smtp_tarpit_workers',
  help: 'Worker processes by state: starting (forked, not yet serving), online (listening and serving SMTP), stopping (draining after SIGTERM).',
  labelNames: ['state'] as const,
  registers: [primaryRegistry],
});

export const workerRestartsTotal = new Counter({
  name: 'smtp_tarpit_worker_restarts_total',
  help: 'Workers that died unexpectedly and were replaced by a new one.',
  registers: [primaryRegistry],
});

/** Sets smtp_tarpit_workers from the state of every live worker (every state present, 0 when none). */
export function setWorkerStates(states: Iterable<WorkerState>): void {
  const counts = new Map<WorkerState, number>(WORKER_STATES.map((s) => [s, 0]));
  for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
  for (const [state, n] of counts) workersGauge.set({ state }, n);
}

/** Worker side: answers the primary's metrics requests with this process's registry. Returns the remover. */
export function answerMetricsRequests(): () => void {
  const onMessage = (message: unknown): void => {
    if (!isMessage<MetricsRequest>(message, REQUEST)) return;
    const reply = (body: Omit<MetricsResponse, 'type' | 'id'>): void => {
      // The channel may be closing (the worker is stopping): nothing to answer then.
      if (process.connected) process.send?.({ type: RESPONSE, id: message.id, ...body } satisfies MetricsResponse);
    };
    registry.getMetricsAsJSON().then(
      (metrics) => reply({ metrics }),
      (err: unknown) => reply({ error: String(err) }),
    );
  };
  process.on('message', onMessage);
  return () => process.off('message', onMessage);
}

/** Primary side: /metrics text for the whole cluster. */
export class ClusterMetrics implements MetricsSource {
  readonly contentType = registry.contentType;
  private nextId = 0;

  /** `serving` lists the workers to ask: those that reported they listen. */
  constructor(
    private readonly serving: () => Iterable<Worker>,
    private readonly timeoutMs = 3000,
  ) {}

  async metrics(): Promise<string> {
    const id = ++this.nextId;
    const replies = await Promise.all([...this.serving()].map((w) => this.ask(w, id)));
    const all = replies.filter((r): r is MetricsJson => r !== undefined);
    all.push(await primaryRegistry.getMetricsAsJSON());
    return AggregatorRegistry.aggregate(all).metrics();
  }

  private ask(worker: Worker, id: number): Promise<MetricsJson | undefined> {
    return new Promise((resolve) => {
      const done = (metrics: MetricsJson | undefined): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(metrics);
      };
      const onMessage = (message: unknown): void => {
        if (isMessage<MetricsResponse>(message, RESPONSE) && message.id === id) done(message.metrics);
      };
      const onExit = (): void => done(undefined);
      const timer = setTimeout(() => done(undefined), this.timeoutMs);
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      worker.send({ type: REQUEST, id } satisfies MetricsRequest, (err: Error | null) => {
        if (err) done(undefined);
      });
    });
  }
}

/** An IPC message of `type` (the primary's and the workers' messages share the process channel with cluster's own). */
export function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}
