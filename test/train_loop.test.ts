/**
 * The shared training loop on a tiny model and synthetic data: the metrics log, periodic checkpoints,
 * bit-exact resume (after stop() and after SIGINT), refusal of unsafe setups, and the progress display.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng, type Tensor, crossEntropy, manualSeed, randn } from '../src/engine/index.js';
import { Dropout, Linear, Module } from '../src/nn/index.js';
import { AdamW, CosineSchedule, EMA } from '../src/optim/index.js';
import { DataLoader, type Batch, type Dataset, type Sample } from '../src/data/index.js';
import { readMetricsLog, readPngSize } from '../src/image/index.js';
import { Progress, formatDuration } from '../src/train/progress.js';
import { type StepContext, type TrainOptions, TrainError, Trainer, readCheckpointInfo, train } from '../src/train/loop.js';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-loop-'));
process.on('exit', () => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let runCounter = 0;
const freshDir = () => path.join(tmpRoot, `run${runCounter++}`);

/** 64 samples of 8 values (as 1×2×4 images); the class says whether the first half outweighs the second. */
class Synthetic implements Dataset {
  readonly length = 64;
  get(index: number): Sample {
    const image = new Rng(1000 + index).normal(8);
    const first = image[0] + image[1] + image[2] + image[3];
    const second = image[4] + image[5] + image[6] + image[7];
    return { image, shape: [1, 2, 4], label: first > second ? 1 : 0, caption: '' };
  }
}

class TinyNet extends Module {
  fc1: Linear;
  drop: Dropout;
  fc2: Linear;
  constructor(initRng: Rng, dropoutRng: Rng) {
    super();
    this.fc1 = new Linear(8, 16, { rng: initRng });
    this.drop = new Dropout(0.2, { rng: dropoutRng });
    this.fc2 = new Linear(16, 2, { rng: initRng });
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.drop.forward(this.fc1.forward(x.flatten(1)).tanh()));
  }
}

/** A string sink standing in for stderr. */
function capture(isTTY = false) {
  const chunks: string[] = [];
  return { stream: { write: (s: string) => chunks.push(s), isTTY, columns: 120 }, text: () => chunks.join('') };
}

/**
 * Everything a run needs, built from scratch. `initSeed` only changes the initial weights, so a resumed
 * run built with another one matches the original only if the checkpoint really restored everything.
 */
function makeRun(outDir: string, opts: { initSeed?: number; totalSteps?: number } & Partial<TrainOptions<Batch>> = {}) {
  const dropoutRng = new Rng(77);
  const model = new TinyNet(new Rng(opts.initSeed ?? 1), dropoutRng);
  const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
  const ema = new EMA(model, { decay: 0.9 });
  const loader = new DataLoader(new Synthetic(), { batchSize: 16, seed: 3, epochs: Infinity });
  const totalSteps = opts.totalSteps ?? 20;
  const losses = new Map<number, number>();
  const out = capture();
  const options: TrainOptions<Batch> = {
    model, optimizer, loader, ema, outDir, totalSteps, seed: 5, rng: { dropout: dropoutRng },
    lrSchedule: new CosineSchedule({ lr: 0.05, warmupSteps: 3, totalSteps }),
    clipGradNorm: 1.0, checkpointEvery: 0, logEvery: 1, output: out.stream, progress: { tty: false },
    step: (batch: Batch, ctx: StepContext) => {
      // Noise from the default generator (no rng given): its state must be checkpointed too.
      const x = batch.images.add(randn([...batch.images.shape]).mul(0.05));
      const logits = model.forward(x);
      const loss = crossEntropy(logits, batch.labels);
      losses.set(ctx.step, loss.item());
      const predicted = logits.argmax(1).toArray() as number[];
      const truth = batch.labels.toArray() as number[];
      return { loss, metrics: { accuracy: predicted.filter((p, i) => p === truth[i]).length / truth.length } };
    },
    ...opts,
  };
  return { model, ema, losses, output: out, options };
}

const lossList = (m: Map<number, number>) => [...m.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
const weights = (model: Module) => model.parameters().map((p) => Array.from(p.toFloat32Array()));

test('metrics log, checkpoints every N, evaluation records, summary and loss plot', async () => {
  const dir = freshDir();
  const checkpointSeen: (number | null)[] = [];
  const run = makeRun(dir, {
    totalSteps: 12, logEvery: 3, checkpointEvery: 4, progress: { tty: false, every: 4 },
    evalEvery: 6, evaluate: () => ({ score: 0.5 }),
  });
  const userStep = run.options.step;
  run.options.step = (batch, ctx) => {
    const file = path.join(dir, 'checkpoint.safetensors');
    checkpointSeen[ctx.step] = fs.existsSync(file) ? readCheckpointInfo(file).step : null;
    return userStep(batch, ctx);
  };
  const result = await train(run.options);

  assert.equal(result.completed, true);
  assert.equal(result.step, 12);
  // Saved after steps 4 and 8 (and at the end), never before.
  assert.deepEqual(checkpointSeen, [null, null, null, null, 4, 4, 4, 4, 8, 8, 8, 8]);
  assert.equal(readCheckpointInfo(path.join(dir, 'checkpoint.safetensors')).step, 12);

  const records = readMetricsLog(path.join(dir, 'metrics.jsonl'));
  const training = records.filter((r) => 'loss' in r);
  assert.deepEqual(training.map((r) => r.step), [3, 6, 9, 12]);
  for (const r of training) {
    assert.deepEqual(Object.keys(r).sort(), ['accuracy', 'elapsed', 'grad_norm', 'images_per_s', 'loss', 'lr', 'step']);
    assert.ok(Number.isFinite(r.loss) && (r.images_per_s as number) > 0 && (r.grad_norm as number) > 0);
  }
  // The logged loss is the mean over its window of steps.
  const perStep = lossList(run.losses);
  assert.ok(Math.abs((training[0].loss as number) - (perStep[0] + perStep[1] + perStep[2]) / 3) < 1e-12);
  assert.deepEqual(records.filter((r) => 'score' in r).map((r) => r.step), [6, 12]);
  assert.deepEqual(result.lastEval, { score: 0.5 });

  const text = run.output.text();
  assert.match(text, /^train {2}4\/12 {2}33% \| .*steps\/s .*img\/s \| ETA .* \| loss [\d.]+ lr /m);
  assert.match(text, /^train 12\/12 100% \| .* \| took /m);
  assert.equal(text.split('\n').filter((l) => l.startsWith('train ')).length, 3, 'a line every 4 steps');
  assert.match(text, /^done: 12 steps in /m);
  assert.match(text, /^loss: final [\d.]+, best [\d.]+ \(step \d+\)$/m);
  assert.match(text, /^files: .*checkpoint\.safetensors, .*metrics\.jsonl, .*loss\.png$/m);
  assert.deepEqual(readPngSize(fs.readFileSync(path.join(dir, 'loss.png'))), { width: 800, height: 480 });
});

test('stop() then resume gives bit-identical losses, weights and EMA vs an uninterrupted run', async () => {
  const whole = makeRun(freshDir(), { logEvery: 3 });
  await train(whole.options);

  const dir = freshDir();
  const first = makeRun(dir, { logEvery: 3 });
  const userStep = first.options.step;
  first.options.step = (batch, ctx) => {
    if (ctx.step === 6) ctx.stop('test stop'); // after 7 steps: mid logging window, mid epoch
    return userStep(batch, ctx);
  };
  const partial = await train(first.options);
  assert.equal(partial.completed, false);
  assert.equal(partial.step, 7);
  assert.equal(partial.stopReason, 'test stop');
  assert.match(first.output.text(), /test stop at step 7\/20/);

  manualSeed(12345); // as in a fresh process: only the checkpoint can put the default generator back
  const second = makeRun(dir, { logEvery: 3, initSeed: 999, resume: true });
  const rest = await train(second.options);
  assert.equal(rest.completed, true);
  assert.equal(rest.resumedFrom, 7);
  assert.match(second.output.text(), /resumed from .* at step 7\/20/);

  assert.deepEqual([...lossList(first.losses), ...lossList(second.losses)], lossList(whole.losses));
  assert.deepEqual(weights(second.model), weights(whole.model));
  const emaWhole = whole.ema.shadowParameters(), emaResumed = second.ema.shadowParameters();
  for (const [name, t] of emaWhole) assert.deepEqual(Array.from(emaResumed.get(name)!.toFloat32Array()), Array.from(t.toFloat32Array()), name);
  // The metrics log reads as if the run had never stopped (the record at step 9 spans the interruption).
  const strip = (rs: Record<string, unknown>[]) => rs.map(({ step, loss, lr, accuracy }) => ({ step, loss, lr, accuracy }));
  assert.deepEqual(strip(readMetricsLog(path.join(dir, 'metrics.jsonl'))), strip(readMetricsLog(path.join(whole.options.outDir, 'metrics.jsonl'))));
  assert.ok(lossList(whole.losses)[19] < lossList(whole.losses)[0], 'and it was learning');
});

test('SIGINT finishes the step, saves a checkpoint, says how to resume, and resuming completes the run', async () => {
  const dir = freshDir();
  const listenersBefore = process.listenerCount('SIGINT');
  const run = makeRun(dir, { totalSteps: 10, resumeHint: 'vss train tiny --resume' });
  const userStep = run.options.step;
  run.options.step = (batch, ctx) => {
    if (ctx.step === 4) process.emit('SIGINT', 'SIGINT');
    return userStep(batch, ctx);
  };
  const result = await train(run.options);
  assert.equal(result.completed, false);
  assert.equal(result.step, 5, 'the step running when the signal came is finished');
  assert.match(result.stopReason ?? '', /interrupted/);
  assert.equal(readCheckpointInfo(path.join(dir, 'checkpoint.safetensors')).step, 5);
  const text = run.output.text();
  assert.match(text, /SIGINT: finishing this step and saving a checkpoint/);
  assert.match(text, /interrupted \(Ctrl-C\) at step 5\/10/);
  assert.match(text, /to continue: vss train tiny --resume/);
  assert.equal(process.listenerCount('SIGINT'), listenersBefore, 'the handler is removed after the run');

  const resumed = makeRun(dir, { totalSteps: 10, resume: true });
  const done = await train(resumed.options);
  assert.equal(done.completed, true);
  assert.deepEqual([...resumed.losses.keys()].sort((a, b) => a - b), [5, 6, 7, 8, 9]);
});

test('a stop handle from outside, and an abort signal', async () => {
  const run = makeRun(freshDir(), { totalSteps: 50 });
  const trainer = new Trainer(run.options);
  const userStep = run.options.step;
  run.options.step = (batch, ctx) => {
    if (ctx.step === 2) trainer.stop('stop handle');
    return userStep(batch, ctx);
  };
  const r = await trainer.run();
  assert.deepEqual([r.completed, r.step, r.stopReason], [false, 3, 'stop handle']);

  const controller = new AbortController();
  controller.abort();
  const aborted = await train(makeRun(freshDir(), { signal: controller.signal }).options);
  assert.deepEqual([aborted.completed, aborted.step, aborted.stopReason], [false, 0, 'aborted']);
});

test('refuses to overwrite a run, to resume nothing, or to resume with another seed', async () => {
  const dir = freshDir();
  await train(makeRun(dir, { totalSteps: 2 }).options);
  await assert.rejects(train(makeRun(dir, { totalSteps: 2 }).options),
    (err: TrainError) => err instanceof TrainError && /already holds a run \(checkpoint at step 2\)/.test(err.message) && /--resume/.test(err.hint!));
  await assert.rejects(train(makeRun(freshDir(), { resume: true }).options),
    (err: TrainError) => /nothing to resume/.test(err.message) && err.hint !== undefined);
  await assert.rejects(train(makeRun(dir, { resume: true, seed: 6 }).options),
    (err: TrainError) => /trained with seed 5, this run asks for seed 6/.test(err.message) && /--seed 5/.test(err.hint!));
});

test('progress: plain lines with rate, items rate and ETA; a redrawn line on a terminal', () => {
  let clock = 0;
  const plain = capture(false);
  const p = new Progress({ total: 8, label: 'sampling', stream: plain.stream, every: 4, itemsUnit: 'img', now: () => clock });
  for (let s = 1; s <= 8; s++) {
    clock += 250; // 4 steps/s
    p.update(s, { items: 2, values: { loss: 0.123456 } });
  }
  p.done();
  assert.deepEqual(plain.text().trimEnd().split('\n'), [
    'sampling 4/8  50% | 4.0 steps/s 8.0 img/s | ETA 1.0s | loss 0.1235',
    'sampling 8/8 100% | 4.0 steps/s 8.0 img/s | took 2.0s | loss 0.1235',
  ]);

  const tty = capture(true);
  const t = new Progress({ total: 3, stream: tty.stream, now: () => clock, redrawMs: 0 });
  clock += 1000; t.update(1);
  t.log('a message');
  clock += 1000; t.update(2);
  t.done();
  const out = tty.text();
  assert.ok(out.includes('\r\x1b[K1/3  33% [#'), out);
  assert.ok(out.includes('\r\x1b[Ka message\n'), 'messages clear the line first');
  assert.ok(out.endsWith('\n') && !out.slice(0, -1).includes('\n2/3'), 'the last line stays, then a newline');
  assert.equal(formatDuration(3725), '1h02m');
  assert.equal(formatDuration(185), '3m05s');
});
