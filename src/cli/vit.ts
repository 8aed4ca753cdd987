/**
 * The ViT commands:
 *   vss train vit        train a ViT classifier on Fashion-MNIST with the shared loop, export it (f16)
 *   vss classify         top-k classes of image files (the bundled models/vit-fmnist unless --model)
 *   vss explain vit      per-layer, per-head CLS attention maps and attention rollout over an image
 *
 * `train` is a command group that src/cli/train.ts creates; `vit` is added to it here (or the group is
 * created when this runs first), so that file need not know about ViTs.
 */
import { existsSync, statSync } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { Rng, type Tensor, backendName, fromTypedArray, noGrad } from '../engine/index.js';
import { DataLoader, type Batch, type Dataset, FASHION_MNIST_CLASSES } from '../data/index.js';
import { AdamW, CosineSchedule, EMA } from '../optim/index.js';
import { ViTForImageClassification, attentionRollout, stemSide, stemStrides, type ViTConfig } from '../models/vit.js';
import {
  DEFAULT_AUGMENT, type Preprocessing, evaluateVit, exportVit, vitStep, weightDecayGroups, withEmaWeights,
} from '../train/vit.js';
import { type TrainResult, Trainer } from '../train/loop.js';
import { type Pixels, attentionGrid, blit, createRaster, decodePixels, makeGrid, overlayHeatmap, saveImage } from '../image/index.js';
import { openDataset } from './data.js';
import { UserError } from './errors.js';
import { intListOption, intOption, numberOption } from './options.js';
import { addTrainingLoopOptions, givenOnCommandLine, locateRun, mergeWithSaved, refuseExistingRun, runTraining, savedRunConfig } from './run_config.js';

/** The repository (package) root, found from this file in src/ or dist/src/. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

/** The classifier that ships with VSS (trained by `vss train vit`, see models/vit-fmnist). */
export function bundledVitFolder(): string {
  return path.join(packageRoot(), 'models', 'vit-fmnist');
}

// ------------------------------------------------------------------ vss train vit

/** What a ViT run is, stored in its checkpoint so `--resume` needs only `--out`. */
export interface VitRunConfig {
  model: 'vit';
  dataset: 'fashion-mnist';
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  patch: number;
  dim: number;
  depth: number;
  heads: number;
  mlp: number;
  stem: number[];
  /** Strides of the stem layers (2 where the list is shorter); absent in runs saved before it existed. */
  stemStrides?: number[];
  pos: 'learned' | 'sincos';
  pool: 'cls' | 'mean';
  dropPath: number;
  dropout: number;
  labelSmoothing: number;
  emaDecay: number;
  cropPadding: number;
  cropProb: number;
  flip: boolean;
  erasing: number;
  seed: number;
  data?: string;
  export: string;
  evalLimit: number;
  checkpointEvery: number;
  evalEvery: number;
  logEvery: number;
}

interface VitFlags extends Omit<VitRunConfig, 'model' | 'dataset' | 'export' | 'flip'> {
  dataset: string;
  out?: string;
  resume?: boolean | string;
  export?: string;
  flip: boolean;
  workers: number;
  progress?: boolean;
}

/** Settings the saved state depends on: a resumed run must not change them. */
const FIXED_ON_RESUME = ['dataset', 'batch', 'patch', 'dim', 'depth', 'heads', 'mlp', 'stem', 'stemStrides', 'pos', 'pool', 'seed'] as const;

function resolveVitConfig(flags: VitFlags, cmd: Command): { config: VitRunConfig; out: string; resumeFrom: string | null } {
  const { out, resumeFrom } = locateRun(flags, 'runs/vit-fashion-mnist');
  const { out: _o, resume: _r, workers: _w, progress: _p, ...rest } = flags;
  const given = givenOnCommandLine(cmd);
  let config: VitRunConfig = { ...rest, model: 'vit', dataset: 'fashion-mnist', export: flags.export ?? path.join(out, 'model') };
  // The default strides belong to the default stem: a --stem of one's own has stride 2 everywhere unless told.
  if (given('stem') && !given('stemStrides')) config.stemStrides = [];
  if (resumeFrom) {
    const saved = savedRunConfig<VitRunConfig>(resumeFrom, 'vit', 'a ViT run');
    config = mergeWithSaved(config, saved, { given, fixed: FIXED_ON_RESUME });
    // runs saved before stem strides existed have stride 2 everywhere
    if (saved.stemStrides === undefined && !given('stemStrides')) config.stemStrides = [];
  }
  if (flags.dataset !== 'fashion-mnist') throw new UserError(`vss train vit trains on fashion-mnist, not '${flags.dataset}'`, 'use --dataset fashion-mnist');
  const strides = config.stemStrides ?? [];
  if (strides.length > config.stem.length || strides.some((s) => s !== 1 && s !== 2)) {
    throw new UserError(`--stem-strides [${strides}] must be 1 or 2, at most one per --stem layer (${config.stem.length})`);
  }
  const side = runGridSide(config, 1);
  if (side % config.patch) {
    throw new UserError(`--patch ${config.patch} does not divide the ${side}-pixel ${config.stem.length ? 'output of the conv stem' : 'images'}`,
      config.stem.length ? `a stem of ${config.stem.length} layers leaves ${side}×${side}: use a --patch that divides ${side}` : 'use --patch 4, 7, 14 or 28');
  }
  if (config.dim % config.heads) throw new UserError(`--dim ${config.dim} is not divisible by --heads ${config.heads}`);
  if (config.pos === 'sincos' && config.dim % 4) throw new UserError(`--pos sincos needs --dim divisible by 4, got ${config.dim}`);
  return { config, out, resumeFrom };
}

/** Side of a run's token grid: 28 px through its conv stem, then patches of `patch` (1: the stem's output). */
function runGridSide(c: Pick<VitRunConfig, 'stem' | 'stemStrides'>, patch: number): number {
  return stemSide(28, stemStrides({ convStem: c.stem, convStemStrides: c.stemStrides ?? [] })) / patch;
}

/** Accuracy over the first `count` images of a test set (what training reports and `vss eval vit` measures). */
async function testAccuracy(model: ViTForImageClassification, testSet: Dataset, count: number): Promise<{ accuracy: number; correct: number; total: number }> {
  const loader = new DataLoader({ length: count, get: (i: number) => testSet.get(i) }, { batchSize: 500, shuffle: false });
  try {
    return await evaluateVit(model, () => loader.next());
  } finally {
    await loader.close();
  }
}

/** The model a run config describes. */
export function vitModelConfig(c: Pick<VitRunConfig, 'patch' | 'dim' | 'depth' | 'heads' | 'mlp' | 'stem' | 'stemStrides' | 'pos' | 'pool' | 'dropPath' | 'dropout'>): Partial<ViTConfig> {
  return {
    imageSize: 28, patchSize: c.patch, numChannels: 1, hiddenSize: c.dim, numHiddenLayers: c.depth, numAttentionHeads: c.heads,
    intermediateSize: c.mlp, hiddenAct: 'gelu', hiddenDropoutProb: c.dropout, attentionProbsDropoutProb: 0, layerNormEps: 1e-6,
    labels: [...FASHION_MNIST_CLASSES], positionEmbedding: c.pos, pooling: c.pool ?? 'cls', dropPathRate: c.dropPath, convStem: c.stem,
    convStemStrides: c.stemStrides ?? [],
  };
}

/**
 * The `vss train vit` recipe and model defaults (the command's option defaults; `vss eval vit-patches` trains
 * with them too).
 */
export const VIT_RECIPE = {
  steps: 7000, batch: 128, lr: 2e-3, warmup: 300, weightDecay: 0.05, patch: 1, dim: 128, depth: 6, heads: 4, mlp: 256,
  // 28 → 14 → 7 → 7 → 7 → 7 → 4: three stride-1 convs at 7×7 before the last halving (92.22 %; two, 6000
  // steps: 91.85 %; one: 91.6 %; the 32-64-128 stem: 91.0 %)
  stem: [32, 64, 64, 64, 64, 128], stemStrides: [2, 2, 1, 1, 1, 2], pos: 'learned', pool: 'mean', dropPath: 0, dropout: 0,
  labelSmoothing: 0.05, emaDecay: 0.999, cropPadding: 2, cropProb: 0.15, flip: true, erasing: 0, seed: 0,
  evalLimit: 10_000, evalEvery: 1000, checkpointEvery: 500, logEvery: 20,
} as const satisfies Omit<VitRunConfig, 'model' | 'dataset' | 'export' | 'data' | 'stem' | 'stemStrides'>
  & { stem: readonly number[]; stemStrides: readonly number[] };

export interface VitTrainingOptions {
  /** The run folder (checkpoint, metrics.jsonl, loss.png). */
  out: string;
  /** The checkpoint to continue from, or null for a new run (refused where `out` already holds one). */
  resumeFrom: string | null;
  resumeHint: string;
  workers?: number;
  progress?: boolean;
  /**
   * Let the loop measure test accuracy (EMA and raw weights) every `config.evalEvery` steps and at the end
   * (default true). Without it the loop's elapsed time is training alone; call `evaluate` afterwards.
   */
  evaluateInLoop?: boolean;
}

export interface VitTraining {
  model: ViTForImageClassification;
  ema: EMA;
  result: TrainResult;
  /** Test images the accuracy is measured on (the first `evalLimit` of the test set). */
  evalCount: number;
  /** Test accuracy of the EMA weights (`useEma`) or the trained ones, on the first `evalCount` test images. */
  evaluate(useEma: boolean): Promise<{ accuracy: number; correct: number; total: number }>;
}

/**
 * Train (or resume) the ViT `config` describes with the shared loop and the `vss train vit` recipe:
 * augmentation, label smoothing, AdamW with decay groups, warm-up + cosine, gradient clipping, weight EMA.
 */
export async function runVitTraining(config: VitRunConfig, o: VitTrainingOptions): Promise<VitTraining> {
  const { out, resumeFrom } = o;
  const trainSet = await openDataset('fashion-mnist', { split: 'train', data: config.data });
  const testSet = await openDataset('fashion-mnist', { split: 'test', data: config.data });
  const evalCount = Math.min(testSet.length, config.evalLimit);

  const rng = new Rng(config.seed);
  const augRng = new Rng(config.seed + 1);
  const model = new ViTForImageClassification(vitModelConfig(config), { rng });
  const optimizer = new AdamW(weightDecayGroups(model, config.weightDecay), { lr: config.lr });
  const schedule = new CosineSchedule({ lr: config.lr, warmupSteps: Math.min(config.warmup, Math.floor(config.steps / 5)), totalSteps: config.steps, minLr: config.lr / 100 });
  const ema = new EMA(model, { decay: config.emaDecay, warmup: true });
  const loader = new DataLoader(trainSet, { batchSize: config.batch, shuffle: true, seed: config.seed, dropLast: true, epochs: Infinity, workers: o.workers ?? 0 });
  const evaluateWith = (useEma: boolean) => withEmaWeights(model, useEma ? ema : undefined, () => testAccuracy(model, testSet, evalCount));

  refuseExistingRun(out, resumeFrom, o.resumeHint);
  if (!resumeFrom) {
    const strides = stemStrides({ convStem: config.stem, convStemStrides: config.stemStrides ?? [] });
    const tokens = runGridSide(config, config.patch) ** 2 + 1;
    console.error(`training a ${model.numParameters().toLocaleString('en')}-parameter ViT (patch ${config.patch}: ${tokens} tokens, dim ${config.dim}, ` +
      `depth ${config.depth}, heads ${config.heads}, mlp ${config.mlp}${config.stem.length ? `, conv stem [${config.stem}] strides [${strides}]` : ''}) on fashion-mnist ` +
      `(${trainSet.length} train / ${evalCount} test images, batch ${config.batch}, ${config.steps} steps ≈ ${(config.steps * config.batch / trainSet.length).toFixed(1)} epochs, ` +
      `${backendName()} kernels) → ${out}`);
  }
  const augment = { ...DEFAULT_AUGMENT, cropPadding: config.cropPadding, cropProb: config.cropProb, flip: config.flip, erasing: config.erasing };
  const inLoop = o.evaluateInLoop ?? true;
  const trainer = new Trainer<Batch>({
    model, optimizer, loader, totalSteps: config.steps, lrSchedule: schedule, clipGradNorm: 1.0, ema,
    outDir: out, checkpointEvery: config.checkpointEvery, logEvery: config.logEvery, seed: config.seed,
    rng: { model: rng, augment: augRng }, resume: resumeFrom ?? false, config, resumeHint: o.resumeHint,
    step: (batch) => vitStep(model, batch, augRng, { labelSmoothing: config.labelSmoothing, augment }),
    evalEvery: inLoop ? config.evalEvery : 0,
    evaluate: inLoop ? async () => {
      const e = await evaluateWith(true);
      const raw = await evaluateWith(false);
      return { test_accuracy: e.accuracy, test_accuracy_raw: raw.accuracy };
    } : undefined,
    progress: o.progress === false ? false : undefined,
  });
  const result = await runTraining(trainer, loader);
  return { model, ema, result, evalCount, evaluate: evaluateWith };
}

async function trainVit(flags: VitFlags, cmd: Command): Promise<void> {
  const { config, out, resumeFrom } = resolveVitConfig(flags, cmd);
  const { model, ema, result, evalCount } = await runVitTraining(config, {
    out, resumeFrom, resumeHint: `vss train vit --out ${out} --resume`, workers: flags.workers, progress: flags.progress,
  });
  if (!result.completed) {
    process.exitCode = 130; // stopped by Ctrl-C: ends like an interrupted program, after saving
    return;
  }
  await exportVit(model, ema, config.export, VIT_PREPROCESSING);
  const rate = result.elapsed > 0 ? (result.step * config.batch) / result.elapsed : 0;
  if (result.lastEval) {
    const acc = result.lastEval.test_accuracy;
    console.log(`test accuracy ${(100 * acc).toFixed(2)}% with EMA weights (${Math.round(acc * evalCount)}/${evalCount} test images; ` +
      `${(100 * result.lastEval.test_accuracy_raw).toFixed(2)}% without) after ${result.step} steps in ${(result.elapsed / 60).toFixed(1)} min, ` +
      `${rate.toFixed(0)} images/s`);
  }
  console.log(`exported ${config.export} (config.json, model.safetensors f16, preprocessor_config.json): vss classify --model ${config.export} <images>`);
}

/** How `vss train vit` models read images: Fashion-MNIST in [-1, 1]. */
export const VIT_PREPROCESSING: Preprocessing = { mean: [0.5], std: [0.5], size: 28 };

// ------------------------------------------------------------------ preprocessing for classify / explain

interface LoadedVit {
  model: ViTForImageClassification;
  pre: Preprocessing;
  folder: string;
}

function loadVit(folder: string | undefined): LoadedVit {
  const dir = folder ?? bundledVitFolder();
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UserError(folder ? `no model folder at ${dir}` : `the bundled classifier is missing (${dir})`,
      folder ? 'pass a folder with config.json and model.safetensors' : 'train one with `vss train vit --export models/vit-fmnist`, or pass --model <folder>');
  }
  let model: ViTForImageClassification;
  try {
    model = ViTForImageClassification.fromPretrained(dir);
  } catch (err) {
    throw new UserError(`cannot load the ViT in ${dir}: ${(err as Error).message}`, 'the folder needs a ViT config.json and model.safetensors in the transformers layout');
  }
  const size = model.config.imageSize;
  let pre: Preprocessing = { mean: new Array(model.config.numChannels).fill(0.5), std: new Array(model.config.numChannels).fill(0.5), size };
  const preFile = path.join(dir, 'preprocessor_config.json');
  if (existsSync(preFile)) {
    const raw = JSON.parse(fs.readFileSync(preFile, 'utf8')) as { image_mean?: number[]; image_std?: number[]; size?: { height?: number } | number; do_normalize?: boolean };
    const s = typeof raw.size === 'number' ? raw.size : raw.size?.height ?? size;
    pre = raw.do_normalize === false
      ? { mean: pre.mean.map(() => 0), std: pre.std.map(() => 1), size: s }
      : { mean: raw.image_mean ?? pre.mean, std: raw.image_std ?? pre.std, size: s };
  }
  return { model, pre, folder: dir };
}

export interface VitTestResult { model: string; accuracy: number; correct: number; total: number; seconds: number; imagesPerSecond: number }

/**
 * Test accuracy of a ViT folder (default the bundled one) on the Fashion-MNIST test images, fed exactly as
 * in training: what `vss train vit` reports at its end, measured again on the exported (f16) weights.
 */
export async function evalVitTest(opts: { model?: string; data?: string; limit?: number }): Promise<VitTestResult> {
  const { model, pre, folder } = loadVit(opts.model);
  const c = model.config;
  // The dataset yields 1×28×28 images scaled to [-1, 1]: a model must expect just that.
  if (c.numChannels !== 1 || c.imageSize !== 28 || c.labels.length !== FASHION_MNIST_CLASSES.length) {
    throw new UserError(`${folder} is not a Fashion-MNIST classifier (${c.numChannels} channel(s), ${c.imageSize} px, ${c.labels.length} labels)`,
      'evaluate a model trained by `vss train vit` (1 channel, 28 px, 10 labels)');
  }
  if (pre.mean.some((m) => m !== 0.5) || pre.std.some((d) => d !== 0.5)) {
    throw new UserError(`${folder} normalises with mean [${pre.mean}] / std [${pre.std}], not the 0.5 / 0.5 (pixels in [-1, 1]) of the dataset`);
  }
  const testSet = await openDataset('fashion-mnist', { split: 'test', data: opts.data });
  const t0 = performance.now();
  const r = await testAccuracy(model, testSet, Math.min(testSet.length, opts.limit ?? testSet.length));
  const seconds = (performance.now() - t0) / 1000;
  return { model: folder, ...r, seconds, imagesPerSecond: r.total / seconds };
}

/** `vss eval vit`: registered under `vss eval` (src/cli/eval.ts). */
export function registerEvalVitCommand(evalCmd: Command): void {
  evalCmd
    .command('vit')
    .description('test accuracy of a ViT classifier (default the bundled one) on the 10 000 Fashion-MNIST test images')
    .option('--model <folder>', 'a model folder exported by vss train vit; default the bundled models/vit-fmnist')
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--limit <n>', 'only the first n test images', intOption('--limit', 1))
    .option('--json', 'one JSON object instead of the sentence')
    .action(async (flags: { model?: string; data?: string; limit?: number; json?: boolean }) => {
      const r = await evalVitTest(flags);
      if (flags.json) console.log(JSON.stringify(r));
      else {
        console.log(`${r.model}: test accuracy ${(100 * r.accuracy).toFixed(2)}% (${r.correct}/${r.total} Fashion-MNIST test images), ` +
          `${r.imagesPerSecond.toFixed(0)} images/s`);
      }
    });
}

/** Area-average resampling of interleaved 8-bit pixels (good for shrinking; exact at equal size). */
function resizeArea(src: Uint8Array, w: number, h: number, c: number, W: number, H: number): Float32Array {
  const out = new Float32Array(W * H * c);
  for (let y = 0; y < H; y++) {
    const y0 = (y * h) / H, y1 = ((y + 1) * h) / H;
    for (let x = 0; x < W; x++) {
      const x0 = (x * w) / W, x1 = ((x + 1) * w) / W;
      for (let ch = 0; ch < c; ch++) {
        let sum = 0, area = 0;
        for (let sy = Math.floor(y0); sy < Math.ceil(y1); sy++) {
          const fy = Math.min(y1, sy + 1) - Math.max(y0, sy);
          for (let sx = Math.floor(x0); sx < Math.ceil(x1); sx++) {
            const f = fy * (Math.min(x1, sx + 1) - Math.max(x0, sx));
            sum += f * src[(sy * w + sx) * c + ch];
            area += f;
          }
        }
        out[(y * W + x) * c + ch] = sum / area;
      }
    }
  }
  return out;
}

/**
 * An image file as the model sees it: greyscale (or RGB) → optional inversion (dark objects on a light
 * background become Fashion-MNIST-like) → letterboxed to a square with black → resized to size×size →
 * (x/255 − mean)/std. Also the resized picture, for drawing on.
 */
export async function preprocessImage(file: string, channels: number, pre: Preprocessing, invert = false): Promise<{ input: Tensor; picture: Pixels }> {
  if (!existsSync(file)) throw new UserError(`no image at ${file}`, 'check the path');
  const c = channels === 1 ? 1 : 3;
  let px: Pixels;
  try {
    px = await decodePixels(file, { channels: c });
  } catch (err) {
    throw new UserError((err as Error).message, 'give a PNG, JPEG or WebP image');
  }
  const data = Uint8Array.from(px.data);
  if (invert) for (let i = 0; i < data.length; i++) data[i] = 255 - data[i];
  // Letterbox: centre on a black square so the aspect ratio survives the resize.
  const side = Math.max(px.width, px.height);
  const square = new Uint8Array(side * side * c);
  const ox = (side - px.width) >> 1, oy = (side - px.height) >> 1;
  for (let y = 0; y < px.height; y++) square.set(data.subarray(y * px.width * c, (y + 1) * px.width * c), ((y + oy) * side + ox) * c);
  const S = pre.size;
  const resized = resizeArea(square, side, side, c, S, S);
  const input = new Float32Array(c * S * S);
  const picture = new Uint8Array(S * S * c);
  for (let i = 0; i < S * S; i++) {
    for (let ch = 0; ch < c; ch++) {
      const v = resized[i * c + ch];
      picture[i * c + ch] = Math.round(v);
      input[ch * S * S + i] = (v / 255 - (pre.mean[ch] ?? pre.mean[0])) / (pre.std[ch] ?? pre.std[0]);
    }
  }
  return { input: fromTypedArray(input, [1, c, S, S]), picture: { width: S, height: S, channels: c as 1 | 3, data: picture } };
}

// ------------------------------------------------------------------ vss classify

export interface Prediction {
  file: string;
  top: { label: string; p: number }[];
}

export async function classifyFiles(files: string[], opts: { model?: string; top: number; invert?: boolean }): Promise<Prediction[]> {
  const { model, pre } = loadVit(opts.model);
  const out: Prediction[] = [];
  for (const file of files) {
    const { input } = await preprocessImage(file, model.config.numChannels, pre, opts.invert);
    const probs = noGrad(() => model.forward(input).logits.softmax(-1)).toFloat32Array();
    const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]).slice(0, opts.top);
    out.push({ file, top: order.map((i) => ({ label: model.labels[i], p: Number(probs[i].toFixed(6)) })) });
  }
  return out;
}

// ------------------------------------------------------------------ vss explain vit

export interface ExplainResult {
  width: number;
  height: number;
  layers: number;
  heads: number;
  grid: [number, number];
  prediction: { label: string; p: number };
}

/**
 * One picture: a grid of CLS → patch attention maps (rows: heads and their mean; columns: layers) over the
 * image, and below it the attention rollout over all layers next to the image. With a mean-pooling head the
 * query shown is the mean of the patch tokens instead of CLS.
 */
export async function explainVit(file: string, outFile: string, opts: { model?: string; invert?: boolean }): Promise<ExplainResult> {
  const { model, pre } = loadVit(opts.model);
  const { input, picture } = await preprocessImage(file, model.config.numChannels, pre, opts.invert);
  const o = noGrad(() => model.forward(input, { outputAttentions: true }));
  const attentions = o.attentions!;
  const L = attentions.length, H = model.config.numAttentionHeads;
  const [gh, gw] = o.grid;
  const N = gh * gw, T = N + 1;
  // The query whose attention is shown is what the classifier reads: the CLS row, or (mean pooling) the
  // mean of the patch rows. Maps [heads, layers, gh, gw] over the patches only.
  const meanPool = model.config.pooling === 'mean';
  const queryRow = (p: Float32Array, base: number): Float32Array => {
    if (!meanPool) return p.subarray(base + 1, base + T);
    const row = new Float32Array(N);
    for (let i = 1; i < T; i++) for (let j = 0; j < N; j++) row[j] += p[base + i * T + 1 + j] / N;
    return row;
  };
  const maps = new Float32Array(H * L * N);
  attentions.forEach((a, l) => {
    const p = a.contiguous().toFloat32Array(); // [1, H, T, T]
    for (let h = 0; h < H; h++) maps.set(queryRow(p, h * T * T), (h * L + l) * N);
  });
  const probs = o.logits.softmax(-1).toFloat32Array();
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
  const prediction = { label: model.labels[best], p: Number(probs[best].toFixed(4)) };

  // Patch maps drawn blocky (smooth: false): each cell of the map is one patch the CLS token attends to.
  const layerGrid = attentionGrid(picture, { data: maps, heads: H, tokens: L, height: gh, width: gw }, {
    tokenLabels: Array.from({ length: L }, (_, l) => `layer ${l + 1}`), smooth: false, alpha: 0.6,
    title: `${meanPool ? 'mean patch' : 'CLS'} attention to patches (per layer, per head)`,
  });
  const rollout = queryRow(attentionRollout(attentions).toFloat32Array(), 0); // [T, T] → the query row over patches
  const rolloutGrid = makeGrid([picture, overlayHeatmap(picture, rollout, gw, gh, { alpha: 0.6, smooth: false })], {
    columns: 2, captions: ['input', 'attention rollout (all layers)'],
    title: `prediction: ${prediction.label} (${(100 * prediction.p).toFixed(1)}%)`, minCellSize: 160,
  });
  // The two panels one above the other, left-aligned.
  const gap = 12;
  const page = createRaster(Math.max(layerGrid.width, rolloutGrid.width), layerGrid.height + gap + rolloutGrid.height);
  blit(page, layerGrid, 0, 0);
  blit(page, rolloutGrid, 0, layerGrid.height + gap);
  try {
    await saveImage(outFile, page);
  } catch (err) {
    throw new UserError((err as Error).message, 'check the --out path (.png, .jpg or .webp)');
  }
  return { width: page.width, height: page.height, layers: L, heads: H, grid: [gh, gw], prediction };
}

// ------------------------------------------------------------------ registration

function subgroup(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

export function registerVitCommands(program: Command): void {
  const trainVitCmd = subgroup(program, 'train', 'train a model with the shared training loop (progress, metrics, checkpoints, --resume)')
    .command('vit')
    .description('a Vision Transformer classifier on Fashion-MNIST (augmentation, label smoothing, AdamW + cosine, EMA), exported as f16')
    .addOption(new Option('--dataset <name>', 'what to train on').choices(['fashion-mnist']).default('fashion-mnist'))
    .option('--steps <n>', 'optimiser steps', intOption('--steps', 1), VIT_RECIPE.steps)
    .option('--batch <n>', 'images per step', intOption('--batch', 1), VIT_RECIPE.batch)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine decay to lr/100)', numberOption('--lr', 1e-7, 1), VIT_RECIPE.lr)
    .option('--warmup <n>', 'warm-up steps (at most a fifth of the run)', intOption('--warmup', 0), VIT_RECIPE.warmup)
    .option('--weight-decay <x>', 'AdamW weight decay (not on biases, norms, CLS, positions)', numberOption('--weight-decay', 0, 1), VIT_RECIPE.weightDecay)
    .option('--patch <n>', 'patch size over the stem\'s output (plain ViT: divides 28, 4 → 49 patches, 7 → 16)', intOption('--patch', 1), VIT_RECIPE.patch)
    .option('--dim <n>', 'hidden size', intOption('--dim', 4), VIT_RECIPE.dim)
    .option('--depth <n>', 'transformer blocks', intOption('--depth', 1), VIT_RECIPE.depth)
    .option('--heads <n>', 'attention heads', intOption('--heads', 1), VIT_RECIPE.heads)
    .option('--mlp <n>', 'MLP hidden size', intOption('--mlp', 1), VIT_RECIPE.mlp)
    .option('--stem <channels>', "hybrid conv stem: channels of its 3×3 convs (stride 2 unless --stem-strides), comma-separated ('none': plain ViT)", intListOption('--stem', 1, { allowNone: true }), [...VIT_RECIPE.stem])
    .option('--stem-strides <list>', 'strides (1 or 2) of the stem convs, comma-separated; 2 where the list is shorter', intListOption('--stem-strides', 1), [...VIT_RECIPE.stemStrides])
    .addOption(new Option('--pos <kind>', 'position embeddings').choices(['learned', 'sincos']).default(VIT_RECIPE.pos))
    .addOption(new Option('--pool <kind>', 'what the classifier reads: the CLS token or the mean of the patch tokens').choices(['cls', 'mean']).default(VIT_RECIPE.pool))
    .option('--drop-path <p>', 'stochastic depth rate of the last block', numberOption('--drop-path', 0, 1, '[)'), VIT_RECIPE.dropPath)
    .option('--dropout <p>', 'dropout after embeddings, attention and MLP', numberOption('--dropout', 0, 1, '[)'), VIT_RECIPE.dropout)
    .option('--label-smoothing <x>', 'label smoothing of the cross-entropy', numberOption('--label-smoothing', 0, 1, '[)'), VIT_RECIPE.labelSmoothing)
    .option('--ema-decay <x>', 'decay of the weight EMA used for evaluation and export', numberOption('--ema-decay', 0, 1, '[)'), VIT_RECIPE.emaDecay)
    .option('--crop-padding <n>', 'random crop after padding this many pixels (0: off)', intOption('--crop-padding', 0), VIT_RECIPE.cropPadding)
    .option('--crop-prob <p>', 'fraction of images that get the random crop', numberOption('--crop-prob', 0, 1), VIT_RECIPE.cropProb)
    .option('--no-flip', 'no random horizontal flips')
    .option('--erasing <p>', 'probability of random erasing', numberOption('--erasing', 0, 1), VIT_RECIPE.erasing)
    .option('--seed <n>', 'seed of the weights, the data order and the augmentation', intOption('--seed', 0), VIT_RECIPE.seed)
    .option('-o, --out <dir>', 'run folder: checkpoint, metrics.jsonl, loss.png (default runs/vit-fashion-mnist)')
    .option('--export <dir>', 'where the final model goes (config.json + f16 model.safetensors; default <out>/model)')
    .option('--resume [checkpoint]', 'continue the run in --out (or from the given checkpoint) exactly where it stopped')
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--eval-every <n>', 'test accuracy (EMA and raw weights) every n steps (0: only at the end)', intOption('--eval-every', 0), VIT_RECIPE.evalEvery)
    .option('--eval-limit <n>', 'test images used for the accuracy', intOption('--eval-limit', 1), VIT_RECIPE.evalLimit);
  addTrainingLoopOptions(trainVitCmd, { checkpointEvery: VIT_RECIPE.checkpointEvery, logEvery: VIT_RECIPE.logEvery })
    .addHelpText('after', '\nExamples:\n  vss train vit --out runs/vit                        # the bundled recipe\n' +
      '  vss train vit --out runs/vit --resume               # after Ctrl-C\n' +
      '  vss train vit --patch 4 --stem none --steps 300     # a plain ViT (49 patches of 4×4), quick look')
    .action((flags: VitFlags, cmd: Command) => trainVit(flags, cmd));

  program
    .command('classify')
    .description('classify images with a ViT: top-k classes and their probabilities')
    .argument('<images...>', 'image files (PNG, JPEG, WebP); greyscale, letterboxed and resized to the model\'s size')
    .option('--model <folder>', 'a ViT folder (config.json + model.safetensors, transformers layout); default the bundled Fashion-MNIST classifier')
    .option('--top <k>', 'classes to show per image', intOption('--top', 1), 3)
    .option('--invert', 'invert the image first (dark clothes on a light background → Fashion-MNIST style)')
    .option('--json', 'one JSON line per image: {"file", "top": [{"label", "p"}]}')
    .action(async (images: string[], opts: { model?: string; top: number; invert?: boolean; json?: boolean }) => {
      const results = await classifyFiles(images, opts);
      for (const r of results) {
        if (opts.json) console.log(JSON.stringify(r));
        else console.log(`${r.file}: ${r.top.map((t) => `${t.label} ${(100 * t.p).toFixed(1)}%`).join(', ')}`);
      }
    });

  subgroup(program, 'explain', 'pictures of what a model looks at')
    .command('vit')
    .description('CLS attention maps of every layer and head, and attention rollout, overlaid on the image')
    .argument('<image>', 'the image to explain')
    .option('--model <folder>', 'a ViT folder; default the bundled Fashion-MNIST classifier')
    .option('-o, --out <png>', 'where to write the picture', 'explain-vit.png')
    .option('--invert', 'invert the image first (as for classify)')
    .action(async (image: string, opts: { model?: string; out: string; invert?: boolean }) => {
      const r = await explainVit(image, opts.out, opts);
      console.log(`wrote ${opts.out} (${r.width}x${r.height}: ${r.layers} layers × ${r.heads} heads over a ${r.grid[0]}x${r.grid[1]} patch grid, ` +
        `and the rollout); prediction ${r.prediction.label} ${(100 * r.prediction.p).toFixed(1)}%`);
    });
}
