/**
 * End to end: small models learn with AdamW, and a run interrupted by a checkpoint continues bit-exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng, Tensor, crossEntropy, fromTypedArray, indexSelect, maxPool2d } from '../src/engine/index.js';
import { Conv2d, Dropout, Linear, Module } from '../src/nn/index.js';
import { AdamW, CosineSchedule, EMA, clipGradNorm } from '../src/optim/index.js';
import { loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-train-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

interface Dataset { x: Tensor; labels: Int32Array }

/** Two interleaved spirals (one turn each), n points each, with a little noise. */
function spiral(n: number, rng: Rng): Dataset {
  const noise = rng.normal(4 * n);
  const xs = new Float32Array(4 * n);
  const labels = new Int32Array(2 * n);
  for (let c = 0; c < 2; c++) {
    for (let i = 0; i < n; i++) {
      const r = (i + 1) / n;
      const angle = 2 * Math.PI * r + c * Math.PI;
      const k = c * n + i;
      xs[2 * k] = r * Math.cos(angle) + 0.05 * noise[2 * k];
      xs[2 * k + 1] = r * Math.sin(angle) + 0.05 * noise[2 * k + 1];
      labels[k] = c;
    }
  }
  return { x: fromTypedArray(xs, [2 * n, 2], 'f32'), labels };
}

/** 8×8 images: class 0 has a horizontal bar, class 1 a vertical bar, at random positions, plus noise. */
function bars(n: number, rng: Rng): Dataset {
  const noise = rng.normal(n * 64);
  const pos = rng.integers(n, 1, 7);
  const xs = new Float32Array(n * 64);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    for (let j = 0; j < 64; j++) xs[i * 64 + j] = 0.3 * noise[i * 64 + j];
    for (let t = 0; t < 8; t++) {
      const [h, w] = labels[i] === 0 ? [pos[i], t] : [t, pos[i]];
      xs[i * 64 + h * 8 + w] += 1;
    }
  }
  return { x: fromTypedArray(xs, [n, 1, 8, 8], 'f32'), labels };
}

class SpiralNet extends Module {
  fc1: Linear;
  drop: Dropout;
  fc2: Linear;
  fc3: Linear;
  constructor(rng: Rng, dropoutRng: Rng) {
    super();
    this.fc1 = new Linear(2, 32, { rng });
    this.drop = new Dropout(0.1, { rng: dropoutRng });
    this.fc2 = new Linear(32, 32, { rng });
    this.fc3 = new Linear(32, 2, { rng });
  }
  forward(x: Tensor): Tensor {
    return this.fc3.forward(this.fc2.forward(this.drop.forward(this.fc1.forward(x).tanh())).tanh());
  }
}

class BarNet extends Module {
  conv: Conv2d;
  head: Linear;
  constructor(rng: Rng) {
    super();
    this.conv = new Conv2d(1, 4, 3, { padding: 1, rng });
    this.head = new Linear(4 * 4 * 4, 2, { rng });
  }
  forward(x: Tensor): Tensor {
    const features = maxPool2d(this.conv.forward(x).relu(), 2);
    return this.head.forward(features.flatten(1));
  }
}

/** One full-batch optimiser step; returns the loss. */
function trainStep(model: Module & { forward(x: Tensor): Tensor }, opt: AdamW, data: Dataset): number {
  opt.zeroGrad();
  const loss = crossEntropy(model.forward(data.x), fromTypedArray(data.labels, [data.labels.length], 'i32'));
  loss.backward();
  opt.step();
  return loss.item();
}

test('an MLP learns the two-spiral problem and a conv net learns bars', () => {
  const data = spiral(64, new Rng(100));
  const mlp = new SpiralNet(new Rng(1), new Rng(2));
  const opt = new AdamW(mlp.parameters(), { lr: 0.05, weightDecay: 1e-4 });
  const losses: number[] = [];
  for (let s = 0; s < 30; s++) losses.push(trainStep(mlp, opt, data));
  assert.ok(losses.every(Number.isFinite));
  assert.ok(losses[29] < 0.6 * losses[0], `spiral loss ${losses[0].toFixed(4)} → ${losses[29].toFixed(4)}`);

  const images = bars(64, new Rng(200));
  const conv = new BarNet(new Rng(3));
  const copt = new AdamW(conv.parameters(), { lr: 0.02 });
  const closses: number[] = [];
  for (let s = 0; s < 30; s++) closses.push(trainStep(conv, copt, images));
  assert.ok(closses[29] < 0.5 * closses[0], `bars loss ${closses[0].toFixed(4)} → ${closses[29].toFixed(4)}`);
  conv.eval();
  const predicted = conv.forward(images.x).argmax(1).toFloat32Array();
  const correct = predicted.reduce((n, p, i) => n + (p === images.labels[i] ? 1 : 0), 0);
  assert.ok(correct >= 0.9 * images.labels.length, `accuracy ${correct}/${images.labels.length}`);
});

/** The full training state of a run: model, optimiser, schedule, EMA and the two generators. */
function makeRun(seed: number) {
  const rngs = { data: new Rng(seed + 10), dropout: new Rng(seed + 20) };
  const model = new SpiralNet(new Rng(seed), rngs.dropout);
  const opt = new AdamW(model.parameters(), { lr: 0.03, weightDecay: 1e-3 });
  const ema = new EMA(model, { decay: 0.9, warmup: true });
  return { model, opt, ema, rngs, schedule: new CosineSchedule({ lr: 0.03, warmupSteps: 3, totalSteps: 20 }) };
}

function steps(run: ReturnType<typeof makeRun>, data: Dataset, from: number, to: number): number[] {
  const losses: number[] = [];
  for (let s = from; s < to; s++) {
    run.schedule.apply(run.opt, s);
    const idx = run.rngs.data.integers(32, 0, data.labels.length);
    const x = indexSelect(data.x, 0, fromTypedArray(idx, [32], 'i32'));
    run.opt.zeroGrad();
    const loss = crossEntropy(run.model.forward(x), fromTypedArray(idx.map((i) => data.labels[i]), [32], 'i32'));
    loss.backward();
    clipGradNorm(run.model.parameters(), 1.0);
    run.opt.step();
    run.ema.update();
    losses.push(loss.item());
  }
  return losses;
}

test('a run resumed from a checkpoint continues bit-exactly', () => {
  const data = spiral(64, new Rng(7));

  const a = makeRun(1);
  const lossesA = steps(a, data, 0, 20);

  const b = makeRun(1);
  const firstHalf = steps(b, data, 0, 10);
  const ckpt = path.join(tmpDir, 'run.safetensors');
  saveCheckpoint(ckpt, { model: b.model, optimizer: b.opt, ema: b.ema, rng: b.rngs, step: 10, extra: { note: 'half way' } });
  assert.deepEqual(fs.readdirSync(tmpDir), ['run.safetensors'], 'no temp file left behind');

  const file = SafetensorsFile.open(ckpt);
  const keys = file.keys();
  file.close();
  assert.ok(keys.includes('model.fc1.weight') && keys.includes('optim.0.exp_avg') && keys.includes('ema.fc3.bias'));

  // Everything fresh and differently seeded: only the checkpoint can make it match.
  const c = makeRun(999);
  const loaded = loadCheckpoint(ckpt, { model: c.model, optimizer: c.opt, ema: c.ema, rng: c.rngs });
  assert.equal(loaded.step, 10);
  assert.deepEqual(loaded.extra, { note: 'half way' });
  const secondHalf = steps(c, data, loaded.step, 20);

  assert.deepEqual([...firstHalf, ...secondHalf], lossesA);
  const weights = (r: ReturnType<typeof makeRun>) => r.model.parameters().map((p) => Array.from(p.toFloat32Array()));
  assert.deepEqual(weights(c), weights(a));
  const emaA = a.ema.shadowParameters(), emaC = c.ema.shadowParameters();
  for (const [name, t] of emaA) assert.deepEqual(Array.from(emaC.get(name)!.toFloat32Array()), Array.from(t.toFloat32Array()), name);
  assert.ok(lossesA[19] < lossesA[0], 'and it was learning');
});

test('checkpoint parts: a single generator, missing parts, foreign files', () => {
  const model = new Linear(3, 2, { rng: new Rng(1) });
  const rng = new Rng(5);
  rng.uniform(10);
  const ckpt = path.join(tmpDir, 'small.safetensors');
  saveCheckpoint(ckpt, { model, rng, step: 3 });

  const fresh = new Linear(3, 2, { rng: new Rng(2) });
  const freshRng = new Rng(0);
  assert.equal(loadCheckpoint(ckpt, { model: fresh, rng: freshRng }).step, 3);
  assert.deepEqual(freshRng.getState(), rng.getState());
  assert.deepEqual(Array.from(freshRng.uniform(4)), Array.from(rng.uniform(4)));
  assert.deepEqual(fresh.weight.toArray(), model.weight.toArray());

  const opt = new AdamW(fresh.parameters());
  assert.throws(() => loadCheckpoint(ckpt, { model: fresh, optimizer: opt }), /checkpoint has no optimizer state/);
  assert.throws(() => loadCheckpoint(ckpt, { model: new Linear(3, 3) }), /loadStateDict: .*shape mismatches: weight expected \[3, 3\] found \[2, 3\]/);
  const foreign = path.join(tmpDir, 'weights.safetensors');
  writeSafetensors(foreign, model.stateDict());
  assert.throws(() => loadCheckpoint(foreign, { model: fresh }), /not a VSS checkpoint/);
});
