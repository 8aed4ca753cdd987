/**
 * A data-loading worker thread: rebuilds the dataset from its spec, then answers batch requests.
 * Messages in:  { job, epoch, indices }.
 * Messages out: { job, ok: true, raw } with raw's buffers transferred, or { job, ok: false, message, stack }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { collate } from './collate.js';
import { datasetFromSpec } from './registry.js';
import type { DatasetSpec } from './types.js';

interface JobMessage { job: number; epoch: number; indices: number[] }

if (!parentPort) throw new Error('loader_worker.js must run as a worker thread');
const port = parentPort;
const ready = datasetFromSpec((workerData as { spec: DatasetSpec }).spec);
ready.catch(() => { /* reported with the first job */ });

port.on('message', async (msg: JobMessage) => {
  try {
    const raw = await collate(await ready, msg.indices, { epoch: msg.epoch });
    port.postMessage({ job: msg.job, ok: true, raw }, [raw.images.buffer as ArrayBuffer, raw.labels.buffer as ArrayBuffer]);
  } catch (err) {
    const e = err as Error;
    port.postMessage({ job: msg.job, ok: false, message: e?.message ?? String(err), stack: e?.stack });
  }
});
