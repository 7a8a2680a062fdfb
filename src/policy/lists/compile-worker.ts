/** The worker thread's side of compile-off-thread.ts: compile the jobs it was started with, hand the arrays back, exit. */
import { parentPort, workerData } from 'node:worker_threads';
import { listBuffers, runListJobs, type ListJob } from './cidr-build.js';

const outcomes = runListJobs(workerData as ListJob[]);
parentPort?.postMessage(outcomes, outcomes.flatMap(listBuffers));
