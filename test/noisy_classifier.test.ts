/**
 * The noise-aware classifier and classifier guidance (Dhariwal & Nichol 2021): ∇ log p(y | x_t) against finite
 * differences, save/load, damaged files, the guided sampler, the training command, and the shipped model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { Rng, type Tensor, fromTypedArray, logSoftmax, noGrad, randn } from '../src/engine/index.js';
import { FASHION_MNIST_CLASSES, FASHION_MNIST_SYSTEM_DIR } from '../src/data/index.js';
import { schedulerFromConfig } from '../src/diffusion/schedulers/index.js';
import { UNet2DModel } from '../src/models/unet2d.js';
import { NoisyClassifier, classifierGradientFrom } from '../src/models/noisy_classifier.js';
import { ClassConditionalPipeline } from '../src/pipelines/class_conditional.js';
import { schedulerConfigFor, unetConfigFor } from '../src/cli/ddpm.js';
import { accuracyByTimestep, registerNoisyClassifierTrainCommand } from '../src/cli/noisy_classifier.js';
import { openDataset } from '../src/cli/data.js';
import { repoRoot } from './helpers/fixtures.js';

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-noisy-clf-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

const COSINE = schedulerConfigFor({ schedule: 'cosine', prediction: 'epsilon' });
const haveFashion = fs.existsSync(path.join(FASHION_MNIST_SYSTEM_DIR, 't10k-images-idx3-ubyte.gz'));

function tinyClassifier(seed: number, classes = 10): NoisyClassifier {
  const names = classes === 10 ? [...FASHION_MNIST_CLASSES] : Array.from({ length: classes }, (_, i) => `class ${i}`);
  const m = NoisyClassifier.create({ classNames: names, sampleSize: 8, blockOutChannels: [8, 16] }, { rng: new Rng(seed) });
  m.schedulerConfig = COSINE;
  return m.eval();
}

/** log p(y_i | x_i, t_i) of every row, as plain numbers. */
function logProbs(m: NoisyClassifier, x: Tensor, t: number[], labels: number[]): number[] {
  const logp = noGrad(() => logSoftmax(m.forward(x, t), 1)).toFloat32Array();
  const C = m.numClasses;
  return labels.map((y, i) => logp[i * C + y]);
}

test('gradLogProb: each row\'s ∇_x log p(y | x_t) matches central differences of that row\'s log-probability', () => {
  const m = tinyClassifier(1, 4);
  const x = randn([2, 1, 8, 8], { rng: new Rng(2) });
  const t = [30, 600], labels = [1, 3];
  const grad = noGrad(() => m.gradLogProb(x, t, labels)); // samplers call it under noGrad
  assert.deepEqual(grad.shape, [2, 1, 8, 8]);
  assert.equal(grad.requiresGrad, false);
  assert.ok(m.parameters().every((p) => p.grad === null || p.grad === undefined), 'no gradient left on the weights');
  assert.ok(m.parameters().every((p) => p.requiresGrad), 'the weights are trainable again afterwards');

  const g = grad.toFloat32Array();
  const base = x.toFloat32Array();
  const h = 3e-2; // f32 rounding and the O(h²) error both stay under ~5e-6 here
  let checked = 0;
  for (const idx of [0, 9, 27, 36, 63, 64, 64 + 18, 64 + 45, 127]) {
    const row = Math.floor(idx / 64);
    const at = (delta: number) => {
      const d = base.slice();
      d[idx] += delta;
      return logProbs(m, fromTypedArray(d, [2, 1, 8, 8]), t, labels);
    };
    const plus = at(h), minus = at(-h);
    const fd = (plus[row] - minus[row]) / (2 * h);
    assert.ok(Math.abs(fd - g[idx]) <= 3e-5 + 1e-2 * Math.abs(fd), `x[${idx}]: analytic ${g[idx]}, finite difference ${fd}`);
    // The other row's log-probability does not move: rows are independent (no batch statistics).
    assert.ok(Math.abs(plus[1 - row] - minus[1 - row]) < 1e-6, `row ${1 - row} changed when row ${row} moved`);
    checked += Math.abs(g[idx]) > 5e-4 ? 1 : 0;
  }
  assert.ok(checked >= 5, 'the gradient is not trivially zero');
  assert.throws(() => m.gradLogProb(x, t, [1]), /1 labels for a batch of 2/);
  assert.throws(() => m.gradLogProb(x, t, [1, 4]), /class 4 is outside 0…3/);
});

test('save / load: f32 gives identical logits, f16 close ones; config, schedule and provenance survive', () => {
  const m = tinyClassifier(3);
  m.provenance = { accuracy_by_t: { 0: 0.5 } };
  const x = randn([3, 1, 8, 8], { rng: new Rng(4) });
  const t = [0, 400, 999];
  const ref = noGrad(() => m.forward(x, t)).toFloat32Array();

  const dir32 = path.join(tmpDir, 'f32');
  m.savePretrained(dir32, { dtype: 'f32' });
  const back = NoisyClassifier.fromPretrained(dir32);
  assert.deepEqual(Array.from(noGrad(() => back.forward(x, t)).toFloat32Array()), Array.from(ref));
  assert.deepEqual(back.config, m.config);
  assert.deepEqual(back.schedulerConfig, COSINE);
  assert.deepEqual(back.provenance, { accuracy_by_t: { 0: 0.5 } });

  const dir16 = path.join(tmpDir, 'f16');
  m.savePretrained(dir16);
  const sf = fs.readFileSync(path.join(dir16, 'model.safetensors'));
  assert.match(sf.subarray(8, 8 + Number(sf.readBigUInt64LE(0))).toString(), /"F16"/);
  const half = noGrad(() => NoisyClassifier.fromPretrained(dir16).forward(x, t)).toFloat32Array();
  half.forEach((v, i) => assert.ok(Math.abs(v - ref[i]) < 2e-2, `logit ${i}: ${v} vs ${ref[i]}`));
  assert.deepEqual(fs.readdirSync(dir16).sort(), ['config.json', 'model.safetensors', 'scheduler_config.json'], 'no temp files left');
});

test('damaged folders fail with the folder and the problem named', () => {
  const m = tinyClassifier(5);
  const dir = path.join(tmpDir, 'damaged');
  m.savePretrained(dir);
  const file = path.join(dir, 'model.safetensors');
  const good = fs.readFileSync(file);

  fs.writeFileSync(file, good.subarray(0, good.length - 100));
  assert.throws(() => NoisyClassifier.fromPretrained(dir), (e: Error) =>
    /VSSNoisyClassifier\.fromPretrained\(.*damaged\)/.test(e.message) && /truncated/.test(e.message));

  fs.writeFileSync(file, Buffer.from('this is not a safetensors file at all'));
  assert.throws(() => NoisyClassifier.fromPretrained(dir), /damaged.*(header|safetensors)/s);

  // Weights of another shape: every mismatch is listed against the config.
  fs.writeFileSync(file, good);
  const cfgFile = path.join(dir, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, block_out_channels: [8, 24] }));
  assert.throws(() => NoisyClassifier.fromPretrained(dir), /does not match the config.*down_blocks\.1/s);
  fs.writeFileSync(cfgFile, '{ not json');
  assert.throws(() => NoisyClassifier.fromPretrained(dir), /not valid JSON/);
  assert.throws(() => NoisyClassifier.fromPretrained(path.join(tmpDir, 'nowhere')), /not a folder/);
});

/** A tiny untrained class-conditional diffusion model: 8×8, two levels, no attention. */
function tinyPipeline(): ClassConditionalPipeline {
  const unetConfig = unetConfigFor({ channels: [16, 32], layersPerBlock: 1, attentionLevels: [], headDim: 8, dropout: 0, size: 8 }, 10);
  const unet = UNet2DModel.fromDiffusersConfig(unetConfig, { rng: new Rng(6) });
  unet.eval();
  return new ClassConditionalPipeline(unet, COSINE, {
    classNames: [...FASHION_MNIST_CLASSES], imageSize: 8, channels: 1, dataRange: 'signed',
    defaults: { sampler: 'DDIM', steps: 5, guidanceScale: 1 },
  });
}

test('pipeline: classifier guidance at scale 0 is no guidance; a positive scale moves samples towards the class', () => {
  const pipe = tinyPipeline();
  const clf = tinyClassifier(7);
  const gradient = classifierGradientFrom(clf, { schedulerConfig: pipe.schedulerConfig });
  const labels = [2, 7, null];
  const noise = randn([3, 1, 8, 8], { rng: new Rng(8) });
  const run = (scale?: number) => pipe.generate({
    labels, noise, steps: 5, sampler: 'DDIM', eta: 0, guidanceScale: 1,
    classifierGuidance: scale === undefined ? undefined : { gradient, scale },
  }).toFloat32Array();
  const plain = run();
  assert.deepEqual(Array.from(run(0)), Array.from(plain));

  const guided = run(20);
  const rowDiff = (r: number) => Math.max(...Array.from(guided.subarray(r * 64, (r + 1) * 64), (v, i) => Math.abs(v - plain[r * 64 + i])));
  assert.ok(rowDiff(0) > 1e-2 && rowDiff(1) > 1e-2, `guided rows should change (max diffs ${rowDiff(0)}, ${rowDiff(1)})`);
  assert.equal(rowDiff(2), 0, 'the unconditional row gets no push');
  // The push is up the classifier's log-probability of the asked-for class.
  const toX = (a: Float32Array) => fromTypedArray(a.slice(0, 128), [2, 1, 8, 8]);
  const before = logProbs(clf, toX(plain), [0, 0], [2, 7]), after = logProbs(clf, toX(guided), [0, 0], [2, 7]);
  assert.ok(after[0] > before[0] && after[1] > before[1], `log p(y | x) before ${before}, after ${after}`);
});

test('classifierGradientFrom refuses a classifier trained on another noise schedule', () => {
  const clf = tinyClassifier(9);
  const linear = schedulerConfigFor({ schedule: 'linear', prediction: 'epsilon' });
  assert.throws(() => classifierGradientFrom(clf, { schedulerConfig: linear }), /another noise schedule.*squaredcos_cap_v2.*linear/s);
  assert.doesNotThrow(() => classifierGradientFrom(clf, { schedulerConfig: { ...COSINE, prediction_type: 'v_prediction' } }));
});

test('vss train noisy-classifier: a few steps export a loadable model with accuracy by noise level', { skip: !haveFashion && 'no Fashion-MNIST' }, async () => {
  const out = path.join(tmpDir, 'run');
  const program = new Command('vss').exitOverride();
  registerNoisyClassifierTrainCommand(program.command('train'));
  await program.parseAsync(['train', 'noisy-classifier', '--steps', '3', '--batch', '8', '--channels', '8,16', '--eval-limit', '16',
    '--eval-every', '0', '--checkpoint-every', '0', '--out', out, '--no-progress'], { from: 'user' });
  const m = NoisyClassifier.fromPretrained(path.join(out, 'model'));
  assert.deepEqual(m.config.blockOutChannels, [8, 16]);
  assert.deepEqual(m.schedulerConfig, COSINE);
  const acc = (m.provenance as { accuracy_by_t: Record<string, number> }).accuracy_by_t;
  assert.deepEqual(Object.keys(acc), ['0', '250', '500', '750']);
  for (const a of Object.values(acc)) assert.ok(a >= 0 && a <= 1);
  const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
  assert.match(metrics, /"test_accuracy_t750":/);
});

const SHIPPED = path.join(repoRoot(), 'models', 'fmnist-noisy-classifier');

test('the shipped classifier: cosine schedule, small, and it classifies clean and noisy test images', { skip: !(haveFashion && fs.existsSync(SHIPPED)) && 'no Fashion-MNIST or no shipped model' }, async () => {
  const m = NoisyClassifier.fromPretrained(SHIPPED);
  assert.ok(m.numParameters() <= 300_000, `${m.numParameters()} parameters`);
  assert.deepEqual(schedulerFromConfig(m.schedulerConfig!).schedule.alphasCumprod, schedulerFromConfig(COSINE).schedule.alphasCumprod);
  const recorded = (m.provenance as { accuracy_by_t: Record<string, number> }).accuracy_by_t;
  assert.ok(recorded['0'] > recorded['750'], 'accuracy falls with noise');
  const testSet = await openDataset('fashion-mnist', { split: 'test' });
  const acc = await accuracyByTimestep(m, schedulerFromConfig(COSINE).schedule, testSet, 200, [0, 500], 0);
  assert.ok(acc[0] >= 0.75, `accuracy on clean images ${acc[0]}`);
  assert.ok(acc[500] >= 0.6, `accuracy at t = 500 ${acc[500]}`);
});
