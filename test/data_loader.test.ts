/** DataLoader: seeded shuffling, batching, exact resume, worker prefetch identical to in-process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataLoader, ShapesDataset, type Batch, type Dataset, type Sample, type SampleContext } from '../src/data/index.js';

/** In-memory dataset without a spec: image = [index, epoch], label = index % 3. */
class Counting implements Dataset {
  constructor(readonly length: number) {}
  get(i: number, ctx?: SampleContext): Sample {
    return { image: Float32Array.from([i, ctx?.epoch ?? 0]), shape: [1, 1, 2], label: i % 3, caption: `#${i}` };
  }
}

async function drain(loader: DataLoader, max = Infinity): Promise<Batch[]> {
  const out: Batch[] = [];
  while (out.length < max) {
    const b = await loader.next();
    if (!b) break;
    out.push(b);
  }
  return out;
}

/** What a batch holds, for comparisons. */
const summary = (b: Batch) => ({
  epoch: b.epoch, batch: b.batch, indices: b.indices, captions: b.captions,
  images: [...b.images.toFloat32Array()], labels: [...(b.labels.data as Int32Array)], shape: b.images.shape,
});

test('loader: each epoch is a seeded permutation, batched to tensors', async () => {
  const ds = new Counting(10);
  const batches = await drain(new DataLoader(ds, { batchSize: 4, seed: 1, epochs: 3 }));
  assert.equal(batches.length, 9);
  assert.deepEqual(batches.map((b) => b.indices.length), [4, 4, 2, 4, 4, 2, 4, 4, 2]);
  const epochs = [0, 1, 2].map((e) => batches.filter((b) => b.epoch === e).flatMap((b) => b.indices));
  for (const order of epochs) assert.deepEqual([...order].sort((a, b) => a - b), [...Array(10).keys()]);
  assert.notDeepEqual(epochs[0], epochs[1], 'a new order every epoch');
  assert.notDeepEqual(epochs[0], [...Array(10).keys()], 'shuffled');

  const b = batches[3];
  assert.deepEqual(b.images.shape, [4, 1, 1, 2]);
  assert.equal(b.labels.dtype, 'i32');
  assert.deepEqual([...(b.labels.data as Int32Array)], b.indices.map((i) => i % 3));
  assert.deepEqual(b.captions, b.indices.map((i) => `#${i}`));
  assert.deepEqual([...b.images.toFloat32Array()], b.indices.flatMap((i) => [i, 1]), 'the epoch reaches the dataset');

  const again = await drain(new DataLoader(ds, { batchSize: 4, seed: 1, epochs: 3 }));
  assert.deepEqual(again.map(summary), batches.map(summary));
  const other = await drain(new DataLoader(ds, { batchSize: 4, seed: 2, epochs: 1 }));
  assert.notDeepEqual(other.flatMap((x) => x.indices), epochs[0]);

  const ordered = await drain(new DataLoader(ds, { batchSize: 3, shuffle: false, dropLast: true }));
  assert.deepEqual(ordered.map((x) => x.indices), [[0, 1, 2], [3, 4, 5], [6, 7, 8]]);
});

test('loader: a saved state resumes the exact sequence, mid-epoch and at an epoch boundary', async () => {
  const ds = new Counting(11);
  const opts = { batchSize: 3, seed: 9, epochs: 4 };
  const full = (await drain(new DataLoader(ds, opts))).map(summary);
  for (const cut of [2, 4, 5, 9]) {
    const first = new DataLoader(ds, opts);
    await drain(first, cut);
    const saved = JSON.parse(JSON.stringify(first.state()));
    const resumed = new DataLoader(ds, opts);
    resumed.setState(saved);
    assert.deepEqual((await drain(resumed)).map(summary), full.slice(cut), `resume after ${cut} batches`);
  }
  const loader = new DataLoader(ds, opts);
  assert.deepEqual(loader.state(), { epoch: 0, batch: 0, rng: { seed: 9, offset: 0 }, length: 11 });
  await drain(loader, 4);
  assert.equal(loader.state().epoch, 1);
  assert.equal(loader.state().batch, 0);
  assert.throws(() => new DataLoader(new Counting(12), opts).setState(loader.state()), /dataset of 11 samples/);
  assert.throws(() => new DataLoader(ds, { ...opts, seed: 1 }).setState(loader.state()), /seed 9/);
});

test('loader: worker-prefetched batches equal in-process ones, for any worker count, and resume', async () => {
  const ds = new ShapesDataset({ seed: 4, size: 32, length: 45 });
  const opts = { batchSize: 8, seed: 3, epochs: 2 };
  const inProcess = (await drain(new DataLoader(ds, opts))).map(summary);
  assert.equal(inProcess.length, 12);
  for (const workers of [1, 3]) {
    const loader = new DataLoader(ds, { ...opts, workers, prefetch: 4 });
    try {
      assert.equal(loader.mode, 'workers');
      const batches = await drain(loader);
      assert.deepEqual(batches.map(summary), inProcess, `${workers} workers`);
      assert.equal(batches[0].scenes?.length, 8, 'scenes travel with the batch');
    } finally {
      await loader.close();
    }
  }
  // Resume in worker mode: prefetched batches of the old position are discarded.
  const loader = new DataLoader(ds, { ...opts, workers: 2 });
  try {
    await drain(loader, 3);
    const saved = loader.state();
    await drain(loader, 2);
    loader.setState(saved);
    assert.deepEqual((await drain(loader)).map(summary), inProcess.slice(3));
  } finally {
    await loader.close();
  }
});

test('loader: falls back in-process without a spec; worker failures surface as errors', async () => {
  const fallback = new DataLoader(new Counting(5), { batchSize: 2, workers: 2 });
  assert.equal(fallback.mode, 'in-process');
  assert.match(fallback.fallbackReason ?? '', /no spec/);
  assert.equal((await drain(fallback)).length, 3);

  const unknown: Dataset = { ...new Counting(4), length: 4, get: () => { throw new Error('unused'); }, spec: () => ({ kind: 'nope', options: {} }) };
  const broken = new DataLoader(unknown, { batchSize: 2, workers: 1 });
  try {
    await assert.rejects(broken.next(), /data worker: no dataset kind 'nope'/);
    await assert.rejects(broken.next(), /no dataset kind 'nope'/, 'the failed batch is not skipped');
  } finally {
    await broken.close();
  }
  assert.throws(() => new DataLoader(new Counting(3), { batchSize: 4, dropLast: true }), /no full batch/);
  assert.throws(() => new DataLoader(new Counting(3), { batchSize: 0 }), /batchSize/);
});
