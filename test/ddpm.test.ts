/**
 * The Fashion-MNIST diffusion model's pieces on a tiny random U-Net: the training objective (closed-form
 * weights, one step lowers the loss), sampling (DDIM η = 0 is deterministic, guidance scale 1 is the
 * conditional model, the batched CFG path is the formula), the model folder round trip and its errors, and
 * `vss train ddpm` → `vss generate` through the real command (with the bundled model when it is present).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng, type Tensor, manualSeed, noGrad, randn } from '../src/engine/index.js';
import { UNet2DModel } from '../src/models/unet2d.js';
import { AdamW } from '../src/optim/index.js';
import { denoisingLoss, snrWeight } from '../src/diffusion/training.js';
import { samplerFromName } from '../src/diffusion/schedulers/index.js';
import { ClassConditionalPipeline } from '../src/pipelines/class_conditional.js';
import { schedulerConfigFor, unetConfigFor } from '../src/cli/ddpm.js';
import { FASHION_MNIST_CLASSES } from '../src/data/index.js';
import { readGenerationParameters, readPngSize } from '../src/image/index.js';
import { parsePngChunks } from '../src/image/png.js';
import { repoRoot } from './helpers/fixtures.js';

const root = repoRoot();
const vssBin = path.join(root, 'bin', 'vss.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-ddpm-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const vss = (...args: string[]) => spawnSync(process.execPath, [vssBin, ...args], { encoding: 'utf8', cwd: tmp });

const TINY = { channels: [16, 32], layersPerBlock: 1, attentionLevels: [1], headDim: 16, dropout: 0, size: 8 };

function tinyPipeline(seed = 0, prediction: 'epsilon' | 'v_prediction' | 'sample' = 'epsilon'): ClassConditionalPipeline {
  const unet = UNet2DModel.fromDiffusersConfig(unetConfigFor(TINY, 10), { rng: new Rng(seed) });
  unet.eval();
  return new ClassConditionalPipeline(unet, schedulerConfigFor({ schedule: 'cosine', prediction }), {
    classNames: [...FASHION_MNIST_CLASSES], imageSize: 8, channels: 1, dataRange: 'signed',
    defaults: { sampler: 'DDIM', steps: 10, guidanceScale: 3 },
  });
}

const relErr = (a: Tensor, b: Tensor) => {
  const x = a.toFloat32Array(), y = b.toFloat32Array();
  let num = 0, den = 0;
  for (let i = 0; i < x.length; i++) { num += (x[i] - y[i]) ** 2; den += y[i] ** 2; }
  return Math.sqrt(num / den);
};

test('min-SNR weights follow the closed forms for ε, v and x_0', () => {
  assert.equal(snrWeight(10, 'epsilon', null), 1);
  assert.equal(snrWeight(10, 'epsilon', 5), 0.5);          // min(SNR, γ)/SNR
  assert.equal(snrWeight(2, 'epsilon', 5), 1);
  assert.ok(Math.abs(snrWeight(10, 'v_prediction', 5) - 5 / 11) < 1e-12); // min(SNR, γ)/(SNR + 1)
  assert.equal(snrWeight(10, 'sample', 5), 5);              // min(SNR, γ)
});

test('the denoising loss is the MSE to the right target, and one AdamW step lowers it on a fixed batch', () => {
  const pipe = tinyPipeline(1);
  const unet = pipe.unet;
  unet.train();
  const schedule = pipe.schedule;
  const rng = new Rng(7);
  const x0 = randn([4, 1, 8, 8], { rng }).clamp(-1, 1);
  const noise = randn([4, 1, 8, 8], { rng });
  const timesteps = [10, 200, 500, 900];
  const labels = [0, 3, 7, 9];
  // A "model" that returns the noise exactly has zero ε-loss and a positive v-loss.
  const oracle = () => noise;
  assert.equal(denoisingLoss(oracle, schedule, x0, labels, { prediction: 'epsilon', rng, timesteps, noise }).loss.item(), 0);
  const v = denoisingLoss(oracle, schedule, x0, labels, { prediction: 'v_prediction', rng, timesteps, noise });
  assert.ok(v.loss.item() > 0);

  const opt = new AdamW(unet.parameters(), { lr: 2e-3, weightDecay: 0 });
  const lossAt = () => denoisingLoss((xt, t, y) => unet.forward(xt, t, y), schedule, x0, labels,
    { prediction: 'epsilon', rng, timesteps, noise, minSnrGamma: 5 }).loss;
  const before = lossAt();
  before.backward();
  opt.step();
  opt.zeroGrad();
  const after = noGrad(lossAt).item();
  assert.ok(after < before.item(), `loss ${before.item()} → ${after}`);
});

test('class dropout replaces labels by the null class at the given rate', () => {
  const seen: number[] = [];
  const model = (xt: Tensor, _t: number[], y: number[] | null) => { seen.push(...y!); return xt; };
  const x0 = randn([400, 1, 2, 2], { rng: new Rng(1) });
  denoisingLoss(model, tinyPipeline().schedule, x0, Array(400).fill(3), { prediction: 'epsilon', rng: new Rng(2), classDropout: 0.25, nullClass: 10 });
  const dropped = seen.filter((y) => y === 10).length;
  assert.ok(dropped > 60 && dropped < 140, `${dropped} of 400 dropped`);
  assert.ok(seen.every((y) => y === 3 || y === 10));
});

test('DDIM with η = 0 is deterministic: the same noise gives the same images whatever the generator', () => {
  const pipe = tinyPipeline(2);
  const noise = randn([3, 1, 8, 8], { rng: new Rng(5) });
  const a = pipe.generate({ labels: [1, 4, 8], noise, sampler: 'DDIM', steps: 8, eta: 0, rng: new Rng(1) });
  const b = pipe.generate({ labels: [1, 4, 8], noise, sampler: 'DDIM', steps: 8, eta: 0, rng: new Rng(999) });
  assert.deepEqual(a.toFloat32Array(), b.toFloat32Array());
  const c = pipe.generate({ labels: [1, 4, 8], noise, sampler: 'DDIM', steps: 8, eta: 1, rng: new Rng(999) });
  assert.ok(relErr(c, a) > 1e-3, 'η = 1 adds fresh noise');
});

test('guidance scale 1 is the conditional model; other scales are u + s·(c − u) from one batched forward', () => {
  const pipe = tinyPipeline(3);
  const noise = randn([2, 1, 8, 8], { rng: new Rng(6) });
  const labels = [2, 5];
  // Scale 1 takes the conditional-only path; 1 + 1e-6 goes through the batched CFG path: they must agree.
  const one = pipe.generate({ labels, noise, steps: 6, guidanceScale: 1 });
  const nearOne = pipe.generate({ labels, noise, steps: 6, guidanceScale: 1 + 1e-6 });
  assert.ok(relErr(nearOne, one) < 1e-4, `rel err ${relErr(nearOne, one)}`);

  // A hand-written DDIM loop with the guidance formula reproduces generate() (which re-derives ε̂ from the clipped x̂_0).
  const s = 4;
  const sched = samplerFromName('DDIM', pipe.schedulerConfig);
  sched.setTimesteps(6);
  let x = noise;
  for (const t of sched.timesteps) {
    const c = noGrad(() => pipe.unet.forward(x, t, labels));
    const u = noGrad(() => pipe.unet.forward(x, t, [10, 10]));
    x = sched.step(u.add(c.sub(u).mul(s)), t, x, { useClippedModelOutput: true }).prevSample;
  }
  const guided = pipe.generate({ labels, noise, steps: 6, guidanceScale: s });
  assert.ok(relErr(guided, x.clamp(-1, 1)) < 1e-5, `rel err ${relErr(guided, x.clamp(-1, 1))}`);
  // Scale 0 ignores the label.
  const u1 = pipe.generate({ labels: [2, 2], noise, steps: 6, guidanceScale: 0 });
  const u2 = pipe.generate({ labels: [9, 9], noise, steps: 6, guidanceScale: 0 });
  assert.deepEqual(u1.toFloat32Array(), u2.toFloat32Array());
});

test('class names are found in prompts', () => {
  const pipe = tinyPipeline();
  assert.equal(pipe.classFromText('a photo of an ankle boot'), 9);
  assert.equal(pipe.classFromText('Sneakers!'), 7);
  assert.equal(pipe.classFromText('T-shirt/top'), 0);
  assert.equal(pipe.classFromText('a pair of trousers'), 1);
  assert.equal(pipe.classFromText('a black bag'), 8);
  assert.equal(pipe.classFromText('a cat'), null);
  assert.throws(() => pipe.generate({ labels: [10] }), /class 10 is outside 0…9/);
});

test('a model folder round-trips (f32 exactly, f16 closely) and broken folders fail with clear errors', () => {
  manualSeed(0);
  const pipe = tinyPipeline(4, 'v_prediction');
  const unetConfig = unetConfigFor(TINY, 10);
  const dir32 = path.join(tmp, 'm32'), dir16 = path.join(tmp, 'm16');
  pipe.save(dir32, { unetConfig, dtype: 'f32' });
  pipe.save(dir16, { unetConfig, dtype: 'f16' });
  const noise = randn([2, 1, 8, 8], { rng: new Rng(8) });
  const ref = pipe.generate({ labels: [0, 6], noise, steps: 5 });
  const back32 = ClassConditionalPipeline.fromPretrained(dir32);
  assert.equal(back32.prediction, 'v_prediction');
  assert.deepEqual(back32.generate({ labels: [0, 6], noise, steps: 5 }).toFloat32Array(), ref.toFloat32Array());
  const back16 = ClassConditionalPipeline.fromPretrained(dir16);
  assert.ok(relErr(back16.generate({ labels: [0, 6], noise, steps: 5 }), ref) < 2e-2);
  assert.ok(fs.statSync(path.join(dir16, 'unet', 'diffusion_pytorch_model.safetensors')).size <
    0.6 * fs.statSync(path.join(dir32, 'unet', 'diffusion_pytorch_model.safetensors')).size);

  // Truncated weights.
  const bad = path.join(tmp, 'bad');
  fs.cpSync(dir16, bad, { recursive: true });
  const w = path.join(bad, 'unet', 'diffusion_pytorch_model.safetensors');
  fs.writeFileSync(w, fs.readFileSync(w).subarray(0, 1000));
  assert.throws(() => ClassConditionalPipeline.fromPretrained(bad), /diffusion_pytorch_model\.safetensors/);
  // A config that does not match the weights.
  fs.cpSync(dir16, bad, { recursive: true, force: true });
  const cfgFile = path.join(bad, 'unet', 'config.json');
  fs.writeFileSync(cfgFile, JSON.stringify({ ...unetConfig, block_out_channels: [16, 48] }));
  assert.throws(() => ClassConditionalPipeline.fromPretrained(bad), /shape|mismatch|expected/i);
  // A broken index.
  fs.cpSync(dir16, bad, { recursive: true, force: true });
  fs.writeFileSync(path.join(bad, 'model_index.json'), '{"_class_name": "VSSClassConditionalPipeline", "class_names": []}');
  assert.throws(() => ClassConditionalPipeline.fromPretrained(bad), /class_names must be a non-empty list/);
  fs.writeFileSync(path.join(bad, 'model_index.json'), '{ not json');
  assert.throws(() => ClassConditionalPipeline.fromPretrained(bad), /model_index\.json is not valid JSON/);
  // The U-Net's class count must match the names.
  assert.throws(() => new ClassConditionalPipeline(pipe.unet, pipe.schedulerConfig, { ...pipe.info, classNames: ['a', 'b'] }), /11 class embeddings, expected 3/);
});

const HAS_FMNIST = fs.existsSync('/usr/share/datasets/fashion-mnist');

test('vss train ddpm → vss generate: a run exports a model folder that generates, resume continues it', { skip: !HAS_FMNIST && 'no Fashion-MNIST' }, () => {
  const out = path.join(tmp, 'run');
  const tiny = ['--channels', '8,16', '--attention', 'none', '--batch', '4', '--sample-every', '0', '--checkpoint-every', '2', '--no-progress'];
  const r = vss('train', 'ddpm', '--steps', '2', '--out', out, ...tiny);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /model \(EMA weights, f16\) →/);
  const resumed = vss('train', 'ddpm', '--steps', '3', '--out', out, '--resume', '--no-progress');
  assert.equal(resumed.status, 0, resumed.stderr);
  const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(metrics.at(-1).step, 3);
  const again = vss('train', 'ddpm', '--steps', '3', '--out', out, ...tiny);
  assert.match(again.stderr, /already holds a training run\nhint: add --resume/);

  const g = vss('generate', '--model', out, 'a sneaker', '--steps', '4', '--seed', '5', '--strip', '-o', 'sneaker.png', '--no-progress');
  assert.equal(g.status, 0, g.stderr);
  assert.match(g.stdout, /Sneaker, 28×28 shown ×4, 4 DDIM steps, CFG 3, seed 5/);
  const png = fs.readFileSync(path.join(tmp, 'sneaker.png'));
  assert.deepEqual(readPngSize(png), { width: 112, height: 112 });
  const params = readGenerationParameters(path.join(tmp, 'sneaker.png'))!.parsed;
  assert.equal(params.extra.Class, 'Sneaker');
  assert.equal(params.seed, 5);
  assert.ok(fs.existsSync(path.join(tmp, 'sneaker-strip.png')));
  // Same seed, same picture.
  vss('generate', '--model', out, '--class', '7', '--steps', '4', '--seed', '5', '-o', 'again.png', '--no-progress');
  // (the pixel data, not the whole file: the parameters chunk records the prompt, which differs)
  const pixelData = (b: Uint8Array) => Buffer.concat(parsePngChunks(b).filter((c) => c.type === 'IDAT').map((c) => c.data));
  assert.deepEqual(pixelData(fs.readFileSync(path.join(tmp, 'again.png'))), pixelData(png));
  assert.match(vss('generate', '--model', out, '--class', 'hat').stderr, /unknown class 'hat'\nhint: this model knows: T-shirt\/top/);
  assert.match(vss('generate', '--model', out, 'x', '--init-image', 'a.png').stderr, /--init-image works with Stable Diffusion models/);
});

const BUNDLED = path.join(root, 'models', 'fmnist-ddpm');

test('the bundled model: `vss generate "a sneaker"` works with no --model', { skip: !fs.existsSync(BUNDLED) && 'models/fmnist-ddpm not present' }, () => {
  const g = vss('generate', 'a pair of sneakers', '--steps', '10', '--seed', '1', '-o', 'bundled.png', '--no-progress');
  assert.equal(g.status, 0, g.stderr);
  assert.match(g.stdout, /Sneaker, 28×28/);
  const params = readGenerationParameters(path.join(tmp, 'bundled.png'))!.parsed;
  assert.equal(params.model, 'fmnist-ddpm');
  const size = fs.readdirSync(path.join(BUNDLED, 'unet')).reduce((n, f) => n + fs.statSync(path.join(BUNDLED, 'unet', f)).size, 0);
  assert.ok(size < 8e6, `bundled model is ${size} bytes`);
});
