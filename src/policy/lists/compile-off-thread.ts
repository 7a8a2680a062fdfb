/**
 * Compiles list files in a worker thread (issue 12): a reload of a
 * 1,000,000-line block list stalled the event loop for 7.8 s when compiled on
 * it. The worker gets the files' bytes and hands the compiled typed arrays
 * back, both moved rather than copied, and exits, so its heap (the parse's
 * garbage) goes with it instead of growing the proxy's on every reload.
 * One worker per reload: reloads are rare, and a fresh one holds nothing
 * from the last.
 */
import { Worker } from 'node:worker_threads';
import type { ListJob, ListOutcome } from './cidr-build.js';

/** The worker could not start or died: the caller may compile on its own thread instead. */
export class ListWorkerError extends Error {
  override readonly name = 'ListWorkerError';
  readonly code = 'TARPIT_ERR_LIST_WORKER';
}

/** Outcomes in the order of `jobs`. Each job's bytes are moved to the worker: the caller must not read them after. */
export function compileListsOffThread(jobs: readonly ListJob[], signal?: AbortSignal): Promise<ListOutcome[]> {
  if (jobs.length === 0) return Promise.resolve([]);
  // A Buffer may be a view into a larger pooled ArrayBuffer, which cannot move: give each job one of its own.
  const own = jobs.map((job) => {
    const b = job.bytes;
    return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? job : { ...job, bytes: b.slice() };
  });
  return new Promise<ListOutcome[]>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new ListWorkerError('cancelled'));
      return;
    }
    let worker: Worker;
    try {
      worker = startWorker(own);
    } catch (err) {
      reject(new ListWorkerError(`cannot start the list compiler: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const onAbort = () => void worker.terminate();
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (outcomes: ListOutcome[]) => {
      resolve(outcomes);
      void worker.terminate();
    });
    worker.once('error', (err) => reject(new ListWorkerError(`the list compiler failed: ${err.message}`, { cause: err })));
    // After 'message' this settles nothing; before it, the worker was killed (terminate, out of memory).
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new ListWorkerError(signal?.aborted ? 'cancelled' : `the list compiler exited with code ${code} before it answered`));
    });
  });
}

function startWorker(jobs: readonly ListJob[]): Worker {
  const options = { workerData: jobs, transferList: jobs.map((j) => j.bytes.buffer as ArrayBuffer) };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./compile-worker.js', import.meta.url), options);
  // Run from the TypeScript sources (tests, `node --import tsx`): on Node 20 a
  // worker's entry is loaded before --import hooks apply, so the worker registers tsx itself.
  const entry = new URL('./compile-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { ...options, eval: true });
}
