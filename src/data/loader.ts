/**
 * DataLoader: seeded per-epoch shuffling, batching to tensors, exact save/restore of the iteration
 * position, and prefetching on worker threads.
 *
 * Determinism: the order of epoch e is a Fisher–Yates shuffle driven by one Philox stream that runs
 * through the epochs, and every sample is a pure function of (index, epoch). Which thread builds a
 * batch therefore never changes its contents, and a saved state (epoch, batch, stream position at the
 * start of that epoch) resumes the exact sequence.
 */
import { Worker } from 'node:worker_threads';
import { fromTypedArray, type Tensor } from '../engine/index.js';
import { Rng, type RngState } from '../engine/rng.js';
import { collate, type RawBatch } from './collate.js';
import type { Dataset } from './types.js';

export interface DataLoaderOptions {
  batchSize: number;
  /** Reorder every epoch (default true). */
  shuffle?: boolean;
  /** Seed of the shuffling stream (default 0). */
  seed?: number;
  /** Drop the last, smaller batch of each epoch (default false). */
  dropLast?: boolean;
  /** Number of epochs to run before `next()` returns null (default 1; Infinity for step-based training). */
  epochs?: number;
  /** Worker threads building batches (default 0: in-process). Needs a dataset with `spec()`. */
  workers?: number;
  /** Batches requested ahead of the consumer when using workers (default 2 per worker). */
  prefetch?: number;
}

export interface Batch {
  /** [B, C, H, W] f32. */
  images: Tensor;
  /** [B] i32 (-1 where the dataset has no classes). */
  labels: Tensor;
  captions: string[];
  /** Dataset indices of the rows. */
  indices: number[];
  epoch: number;
  /** Batch number within the epoch. */
  batch: number;
  scenes?: unknown[];
}

/** Where iteration stands: the next batch to yield is `batch` of `epoch`. JSON-serialisable. */
export interface LoaderState {
  epoch: number;
  batch: number;
  /** The shuffling stream's position at the start of `epoch`. */
  rng: RngState;
  /** Dataset length when saved, to refuse resuming over a different dataset. */
  length: number;
}

interface EpochPlan { start: RngState; order: Int32Array; end: RngState }
interface PendingBatch { epoch: number; batch: number; indices: number[]; result: Promise<RawBatch> }
interface WorkerSlot { worker: Worker; inFlight: number }
interface JobWaiter { resolve: (raw: RawBatch) => void; reject: (err: Error) => void; slot: WorkerSlot }

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly epochs: number;
  readonly workers: number;
  readonly prefetch: number;
  /** Why workers were requested but not used (undefined when they are, or were not asked for). */
  fallbackReason?: string;

  private readonly seed: number;
  private readonly plans = new Map<number, EpochPlan>();
  /** Next batch handed to the consumer. */
  private cursor = { epoch: 0, batch: 0 };
  /** Next batch to request from a worker (ahead of `cursor`). */
  private planned = { epoch: 0, batch: 0 };
  private queue: PendingBatch[] = [];
  private slots: WorkerSlot[] | null = null;
  private readonly waiters = new Map<number, JobWaiter>();
  private nextJob = 0;
  private broken: Error | null = null;
  private closed = false;

  constructor(readonly dataset: Dataset, opts: DataLoaderOptions) {
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? false;
    this.epochs = opts.epochs ?? 1;
    this.workers = opts.workers ?? 0;
    this.prefetch = opts.prefetch ?? Math.max(2, 2 * this.workers);
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new Error(`DataLoader: batchSize must be a positive integer, got ${this.batchSize}`);
    if (!(this.epochs >= 0)) throw new Error(`DataLoader: epochs must be ≥ 0, got ${this.epochs}`);
    if (!Number.isInteger(this.workers) || this.workers < 0) throw new Error(`DataLoader: workers must be a non-negative integer, got ${this.workers}`);
    if (!Number.isInteger(this.prefetch) || this.prefetch < 1) throw new Error(`DataLoader: prefetch must be a positive integer, got ${this.prefetch}`);
    if (dataset.length < 1) throw new Error('DataLoader: the dataset is empty');
    if (this.batchesPerEpoch === 0) throw new Error(`DataLoader: ${dataset.length} samples make no full batch of ${this.batchSize} with dropLast`);
    if (this.workers > 0 && !dataset.spec) this.fallbackReason = 'the dataset cannot be rebuilt in a worker (it has no spec())';
    const rng = new Rng(this.seed);
    this.plans.set(0, this.makePlan(rng));
  }

  get batchesPerEpoch(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** 'workers' once worker threads build the batches, else 'in-process'. */
  get mode(): 'workers' | 'in-process' {
    return this.workers > 0 && !this.fallbackReason ? 'workers' : 'in-process';
  }

  state(): LoaderState {
    const { epoch, batch } = this.cursor;
    return { epoch, batch, rng: { ...this.plan(epoch).start }, length: this.dataset.length };
  }

  /** Continue from a saved state: the next batch is the one that followed when it was saved. */
  setState(s: LoaderState): void {
    if (s.length !== this.dataset.length) {
      throw new Error(`DataLoader: the saved state is for a dataset of ${s.length} samples, this one has ${this.dataset.length}`);
    }
    if (!(Number.isInteger(s.batch) && s.batch >= 0 && s.batch <= this.batchesPerEpoch)) {
      throw new Error(`DataLoader: saved batch ${s.batch} is outside epoch of ${this.batchesPerEpoch} batches`);
    }
    if (s.rng.seed !== this.seed) throw new Error(`DataLoader: the saved state used seed ${s.rng.seed}, this loader ${this.seed}`);
    // Batches already requested belong to the old position: forget them (their results are ignored).
    this.queue = [];
    this.plans.clear();
    const rng = new Rng(this.seed);
    rng.setState(s.rng);
    this.plans.set(s.epoch, this.makePlan(rng));
    this.cursor = { epoch: s.epoch, batch: s.batch };
    this.normalise(this.cursor);
    this.planned = { ...this.cursor };
  }

  /** The next batch, or null when all epochs are done. */
  async next(): Promise<Batch | null> {
    if (this.closed) throw new Error('DataLoader: next() after close()');
    if (this.broken) throw this.broken;
    if (this.cursor.epoch >= this.epochs) return null;
    let pending: PendingBatch;
    if (this.mode === 'workers') {
      this.fillQueue();
      pending = this.queue.shift()!;
    } else {
      const { epoch, batch } = this.cursor;
      const indices = this.indicesOf(epoch, batch);
      pending = { epoch, batch, indices, result: collate(this.dataset, indices, { epoch }) };
    }
    let raw: RawBatch;
    try {
      raw = await pending.result;
    } catch (err) {
      // Later batches may already be in flight; carrying on would silently skip this one.
      this.broken ??= err as Error;
      throw err;
    }
    this.cursor = { epoch: pending.epoch, batch: pending.batch + 1 };
    this.normalise(this.cursor);
    this.plan(this.cursor.epoch); // state() needs it, and it derives from the epoch before
    for (const e of this.plans.keys()) if (e < this.cursor.epoch) this.plans.delete(e);
    return toBatch(raw, pending);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
    for (let b = await this.next(); b; b = await this.next()) yield b;
  }

  /** Stops the worker threads. The loader cannot be used afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots ?? [];
    this.slots = null;
    for (const waiter of this.waiters.values()) waiter.reject(new Error('DataLoader closed'));
    this.waiters.clear();
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  /** The dataset indices of one batch. */
  indicesOf(epoch: number, batch: number): number[] {
    const order = this.plan(epoch).order;
    const start = batch * this.batchSize;
    const end = Math.min(start + this.batchSize, order.length);
    return Array.from(order.subarray(start, end));
  }

  private makePlan(rng: Rng): EpochPlan {
    const n = this.dataset.length;
    const start = rng.getState();
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    if (this.shuffle && n > 1) {
      // Fisher–Yates: one 32-bit draw per position, scaled to [0, i]; the bias (i / 2^32) is negligible.
      const words = rng.uint32(n - 1);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor((words[n - 1 - i] / 4294967296) * (i + 1));
        const t = order[i]; order[i] = order[j]; order[j] = t;
      }
    }
    return { start, order, end: rng.getState() };
  }

  /** The plan of an epoch, derived forward from the earliest one kept. */
  private plan(epoch: number): EpochPlan {
    let plan = this.plans.get(epoch);
    if (plan) return plan;
    const known = Math.max(...[...this.plans.keys()].filter((e) => e < epoch));
    if (!Number.isFinite(known)) throw new Error(`DataLoader: epoch ${epoch} precedes the current position`);
    for (let e = known + 1; e <= epoch; e++) {
      const rng = new Rng(this.seed);
      rng.setState(this.plans.get(e - 1)!.end);
      plan = this.makePlan(rng);
      this.plans.set(e, plan);
    }
    return plan!;
  }

  private normalise(pos: { epoch: number; batch: number }): void {
    if (pos.batch >= this.batchesPerEpoch) { pos.epoch++; pos.batch = 0; }
  }

  private fillQueue(): void {
    if (!this.slots) this.startWorkers();
    while (this.queue.length < this.prefetch && this.planned.epoch < this.epochs) {
      const { epoch, batch } = this.planned;
      const indices = this.indicesOf(epoch, batch);
      this.queue.push({ epoch, batch, indices, result: this.dispatch(epoch, indices) });
      this.planned = { epoch, batch: batch + 1 };
      this.normalise(this.planned);
    }
  }

  private startWorkers(): void {
    const spec = this.dataset.spec!();
    const url = new URL('./loader_worker.js', import.meta.url);
    this.slots = Array.from({ length: this.workers }, () => {
      const worker = new Worker(url, { workerData: { spec } });
      const slot: WorkerSlot = { worker, inFlight: 0 };
      worker.unref(); // only jobs in flight keep the process alive
      worker.on('message', (msg: { job: number; ok: boolean; raw?: RawBatch; message?: string; stack?: string }) => {
        const waiter = this.waiters.get(msg.job);
        if (!waiter) return;
        this.settle(msg.job, waiter);
        if (msg.ok) waiter.resolve(msg.raw!);
        else waiter.reject(Object.assign(new Error(`data worker: ${msg.message}`), { workerStack: msg.stack }));
      });
      const fail = (err: Error) => {
        this.broken ??= err;
        for (const [job, waiter] of this.waiters) if (waiter.slot === slot) { this.settle(job, waiter); waiter.reject(err); }
      };
      worker.on('error', (err) => fail(new Error(`data worker crashed: ${err.message}`)));
      worker.on('exit', (code) => { if (!this.closed) fail(new Error(`data worker exited with code ${code}`)); });
      return slot;
    });
  }

  private dispatch(epoch: number, indices: number[]): Promise<RawBatch> {
    const slot = this.slots!.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    const job = this.nextJob++;
    const result = new Promise<RawBatch>((resolve, reject) => this.waiters.set(job, { resolve, reject, slot }));
    result.catch(() => { /* a dropped prefetch may fail unobserved; awaited ones still throw */ });
    if (slot.inFlight++ === 0) slot.worker.ref();
    slot.worker.postMessage({ job, epoch, indices });
    return result;
  }

  private settle(job: number, waiter: JobWaiter): void {
    this.waiters.delete(job);
    if (--waiter.slot.inFlight === 0) waiter.slot.worker.unref();
  }
}

function toBatch(raw: RawBatch, p: PendingBatch): Batch {
  const [c, h, w] = raw.sampleShape;
  const batch: Batch = {
    images: fromTypedArray(raw.images, [p.indices.length, c, h, w], 'f32'),
    labels: fromTypedArray(raw.labels, [p.indices.length], 'i32'),
    captions: raw.captions,
    indices: p.indices,
    epoch: p.epoch,
    batch: p.batch,
  };
  if (raw.scenes) batch.scenes = raw.scenes;
  return batch;
}
