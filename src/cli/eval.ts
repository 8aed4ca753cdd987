/**
 * `vss eval …`: measuring Fashion-MNIST generators with an independent classifier (src/eval/fmnist_classifier.ts).
 *
 *   vss eval train-classifier   train the feature classifier with the shared loop, export it with the test
 *                               set's feature statistics and the FID floors
 *   vss eval ddpm               one sampler setting: FID-FMNIST beside its floor, class accuracy, per class, s/sample
 *   vss eval sweep              the tables of DDIM steps × η vs DDPM-1000, and of CFG scale (Markdown, JSON, plots)
 *   vss eval vit-patches        ViT patch sizes compared in accuracy, speed and attention range (src/cli/vit_patches.ts)
 *   vss eval vit                test accuracy of a ViT classifier (src/cli/vit.ts)
 *
 * The classifier's training lives under `eval` rather than `vss train`: it exists only for this harness, and
 * its export writes evaluation data (reference statistics, floors) that the other two commands read.
 *
 * The floor of every FID is the FID of as many real training images (balanced over classes, as the samples
 * are) against the test set: FID is biased upwards at small N, so a number means something only beside the
 * floor at the same N.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { Rng, type Tensor, backendName, fromTypedArray, randn } from '../engine/index.js';
import { getNumThreads } from '../engine/backend/native.js';
import { DataLoader, type Batch, type Dataset, FASHION_MNIST_CLASSES } from '../data/index.js';
import { AdamW, CosineSchedule } from '../optim/index.js';
import { makeGrid, saveImage, saveLinePlot, tensorToPixels, writeFileAtomic } from '../image/index.js';
import { ClassConditionalPipeline, type ClassifierGradient } from '../pipelines/class_conditional.js';
import { Trainer } from '../train/loop.js';
import { Progress, formatDuration } from '../train/progress.js';
import { FeatureAccumulator, frechetDistance } from '../eval/frechet.js';
import {
  CLASSIFIER_AUGMENT, DEFAULT_CLASSIFIER_CONFIG, type FidFloor, type FidReference, FmnistEvalClassifier, type ImageReadout,
  type LabelledStats, WEIGHTS_FILE, classifierTrainStep, labelledStats, loadReference, readImages, saveReference,
} from '../eval/fmnist_classifier.js';
import { openDataset } from './data.js';
import { loadNoisyClassifier } from './generate.js';
import { UserError } from './errors.js';
import { intListOption, intOption, numberListOption, numberOption } from './options.js';
import { addTrainingLoopOptions, locateRun, refuseExistingRun, runTraining, savedRunConfig } from './run_config.js';
import { registerVitPatchesCommand } from './vit_patches.js';
import { registerEvalVitCommand } from './vit.js';

/** The classifier shipped with the repository (resolved from this file, so any working directory works). */
export const DEFAULT_CLASSIFIER_DIR = fileURLToPath(new URL('../../../models/fmnist-eval-classifier', import.meta.url));
/** Seed of the training subsets that give the floors: fixed, so a floor is a property of the classifier. */
const FLOOR_SEED = 0;

// ====================================================================================== data helpers

/** [N, 1, S, S] images and their labels for the given dataset indices. */
async function loadImages(ds: Dataset, indices: readonly number[]): Promise<{ images: Tensor; labels: Int32Array }> {
  const first = await ds.get(indices[0] ?? 0);
  const [c, h, w] = first.shape;
  const plane = c * h * w;
  const data = new Float32Array(indices.length * plane);
  const labels = new Int32Array(indices.length);
  for (const [i, idx] of indices.entries()) {
    const s = await ds.get(idx);
    data.set(s.image, i * plane);
    labels[i] = s.label ?? -1;
  }
  return { images: fromTypedArray(data, [indices.length, c, h, w]), labels };
}

/** Class of every item, read cheaply where the dataset offers `label(i)` (Fashion-MNIST does). */
async function allLabels(ds: Dataset): Promise<Int32Array> {
  const out = new Int32Array(ds.length);
  const fast = (ds as { label?: (i: number) => number }).label;
  for (let i = 0; i < ds.length; i++) out[i] = fast ? fast.call(ds, i) : (await ds.get(i)).label ?? -1;
  return out;
}

/** Requested class of sample i of n: round-robin, so every class gets n/K (the first n mod K one more). */
export function balancedLabels(n: number, numClasses: number): number[] {
  return Array.from({ length: n }, (_, i) => i % numClasses);
}

/**
 * Training indices for a balanced subset of n images, ordered class by class. Each class's images are
 * shuffled once by `seed`, and a subset takes the first ones: subsets for a smaller n are prefixes of
 * those for a larger one, so one pass over the largest serves every n.
 */
function balancedSubset(labels: Int32Array, numClasses: number, seed: number): (n: number) => number[][] {
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  labels.forEach((y, i) => { if (y >= 0 && y < numClasses) byClass[y].push(i); });
  const rng = new Rng(seed);
  for (const list of byClass) {
    const u = rng.uniform(list.length);
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.min(i, Math.floor(u[i] * (i + 1)));
      [list[i], list[j]] = [list[j], list[i]];
    }
  }
  return (n) => byClass.map((list, c) => {
    const want = Math.floor(n / numClasses) + (c < n % numClasses ? 1 : 0);
    if (want > list.length) throw new UserError(`the training set has only ${list.length} images of class ${c}, a floor at ${n} needs ${want}`);
    return list.slice(0, want);
  });
}

/** Centre-crop samples to the classifier's side (a model trained at 32 px pads 28-px images by 2). */
function fitToClassifier(images: Tensor, side: number): Tensor {
  const s = images.shape[2];
  if (s === side) return images;
  const off = (s - side) / 2;
  if (s < side || !Number.isInteger(off)) throw new UserError(`samples are ${s}×${s}, the classifier reads ${side}×${side}`, 'evaluate a model trained at 28 or 32 px');
  return images.narrow(2, off, side).narrow(3, off, side).contiguous();
}

// ====================================================================================== the evaluator

/** One row of the per-class table. */
export interface ClassScore {
  class: string;
  samples: number;
  /** Share of this class's samples the classifier puts in this class. */
  accuracy: number;
  /** FID of this class's samples against the test images of the class (null under 2 samples). */
  fid: number | null;
  /** Same-size floor: that many training images of the class against the test images of the class. */
  floor: number | null;
  /** The class its samples are most often mistaken for, and how often (null when never). */
  confusedWith: { class: string; share: number } | null;
}

export interface Scores {
  fid: number;
  fidMeanTerm: number;
  fidCovTerm: number;
  floor: number;
  classAccuracy: number;
  perClass: ClassScore[];
}

/** The classifier, its reference statistics and floors: turns readouts of samples into scores. */
class Evaluator {
  private constructor(readonly dir: string, readonly model: FmnistEvalClassifier, readonly testAccuracy: number | null,
                      readonly reference: FidReference, private readonly data: string | undefined) {}

  get classNames(): string[] { return this.model.config.classNames; }
  get numClasses(): number { return this.model.numClasses; }

  /** Load a classifier folder; reference statistics come from it, or from a pass over the test set. */
  static async open(dir: string, data: string | undefined, log: (m: string) => void): Promise<Evaluator> {
    if (!fs.existsSync(dir)) {
      throw new UserError(`no classifier at ${dir}`, 'pass --classifier <folder> (one written by `vss eval train-classifier`), or restore models/fmnist-eval-classifier');
    }
    const { model, meta } = FmnistEvalClassifier.fromPretrained(dir);
    let reference = loadReference(dir, model.config.featureDim, model.numClasses);
    if (!reference) {
      log(`${dir} has no reference statistics: reading the Fashion-MNIST test set`);
      reference = (await testReference(model, data)).reference;
    }
    return new Evaluator(dir, model, meta.testAccuracy ?? null, reference, data);
  }

  /** The floor at n samples: shipped in the folder, cached from an earlier run, or measured now. */
  async floor(n: number, log: (m: string) => void): Promise<FidFloor> {
    const shipped = this.reference.floors.get(n);
    if (shipped) return shipped;
    const cache = new FloorCache(this.dir, this.reference.source);
    const cached = cache.get(n);
    if (cached) return cached;
    log(`measuring the FID floor at ${n} images (${n} Fashion-MNIST training images vs the test set; cached afterwards)`);
    const train = await openDataset('fashion-mnist', { split: 'train', data: this.data });
    const [floor] = await computeFloors(this.model, train, [n], this.reference.stats);
    cache.put(floor);
    return floor;
  }

  /** Scores of samples that were asked to show `requested` classes. */
  score(readout: ImageReadout, requested: readonly number[], floor: FidFloor): Scores {
    const dim = this.model.config.featureDim, K = this.numClasses;
    const stats = labelledStats(readout.features, requested, dim, K);
    const overall = frechetDistance(stats.all, this.reference.stats.all);
    let correct = 0;
    const confusion = Array.from({ length: K }, () => new Array<number>(K).fill(0));
    requested.forEach((y, i) => {
      confusion[y][readout.predicted[i]]++;
      if (readout.predicted[i] === y) correct++;
    });
    const perClass = this.classNames.map((name, c): ClassScore => {
      const row = confusion[c];
      const samples = row.reduce((a, b) => a + b, 0);
      let worst = -1;
      row.forEach((v, j) => { if (j !== c && v > 0 && (worst < 0 || v > row[worst])) worst = j; });
      const mine = stats.perClass[c], ref = this.reference.stats.perClass[c];
      return {
        class: name, samples, accuracy: samples > 0 ? row[c] / samples : 0,
        fid: mine && ref ? frechetDistance(mine, ref).distance : null,
        floor: floor.perClass[c] ?? null,
        confusedWith: worst >= 0 ? { class: this.classNames[worst], share: row[worst] / samples } : null,
      };
    });
    return {
      fid: overall.distance, fidMeanTerm: overall.meanTerm, fidCovTerm: overall.covTerm, floor: floor.fid,
      classAccuracy: requested.length > 0 ? correct / requested.length : 0, perClass,
    };
  }
}

/** Readout and statistics of the whole test set (the reference), and the classifier's test accuracy. */
async function testReference(model: FmnistEvalClassifier, data: string | undefined): Promise<{ reference: FidReference; accuracy: number; perClass: number[] }> {
  const test = await openDataset('fashion-mnist', { split: 'test', data });
  const K = model.numClasses, dim = model.config.featureDim;
  const acc = new FeatureAccumulator(dim);
  const per = Array.from({ length: K }, () => new FeatureAccumulator(dim));
  const correct = new Array<number>(K).fill(0), seen = new Array<number>(K).fill(0);
  const chunk = 1000;
  for (let start = 0; start < test.length; start += chunk) {
    const indices = Array.from({ length: Math.min(chunk, test.length - start) }, (_, i) => start + i);
    const { images, labels } = await loadImages(test, indices);
    const r = readImages(model, images);
    acc.add(r.features);
    labels.forEach((y, i) => {
      per[y].add(r.features.subarray(i * dim, (i + 1) * dim), 1);
      seen[y]++;
      if (r.predicted[i] === y) correct[y]++;
    });
  }
  const stats: LabelledStats = { all: acc.stats(), perClass: per.map((a) => (a.count >= 2 ? a.stats() : null)) };
  return {
    reference: { source: `Fashion-MNIST test set (${test.length} images)`, stats, floors: new Map() },
    accuracy: correct.reduce((a, b) => a + b, 0) / test.length,
    perClass: correct.map((c, k) => (seen[k] > 0 ? c / seen[k] : 0)),
  };
}

/** Floors at each n: one pass over the balanced training subset of the largest n (smaller ones are prefixes). */
async function computeFloors(model: FmnistEvalClassifier, train: Dataset, ns: readonly number[], ref: LabelledStats): Promise<FidFloor[]> {
  const K = model.numClasses, dim = model.config.featureDim;
  const subsetOf = balancedSubset(await allLabels(train), K, FLOOR_SEED);
  const largest = subsetOf(Math.max(...ns));
  // Features of every class's list, read once.
  const features: Float32Array[] = [];
  for (const indices of largest) features.push(indices.length ? readImages(model, (await loadImages(train, indices)).images).features : new Float32Array(0));
  return ns.map((n) => {
    const counts = subsetOf(n).map((l) => l.length);
    const all = new FeatureAccumulator(dim);
    const perClass = counts.map((count, c) => {
      const rows = features[c].subarray(0, count * dim);
      all.add(rows);
      const ref_c = ref.perClass[c];
      return count >= 2 && ref_c ? frechetDistance(new FeatureAccumulator(dim).add(rows).stats(), ref_c).distance : NaN;
    });
    return { samples: n, fid: frechetDistance(all.stats(), ref.all).distance, perClass, seed: FLOOR_SEED };
  });
}

/**
 * Floors measured for sample counts the classifier folder does not ship, kept in the user's cache folder
 * (never in the repository's model folder) under the weights' hash, so a retrained classifier gets new ones.
 */
class FloorCache {
  private readonly file: string;
  private readonly key: string;

  constructor(classifierDir: string, source: string) {
    const base = process.env.VSS_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'vss');
    this.file = path.join(base, 'fid-floors.json');
    const weights = fs.readFileSync(path.join(classifierDir, WEIGHTS_FILE));
    this.key = `${createHash('sha256').update(weights).digest('hex').slice(0, 16)} ${source}`;
  }

  private read(): Record<string, Record<string, FidFloor>> {
    try {
      return JSON.parse(fs.readFileSync(this.file, 'utf8')) as Record<string, Record<string, FidFloor>>;
    } catch {
      return {}; // absent or unreadable: measure again
    }
  }

  get(n: number): FidFloor | null {
    return this.read()[this.key]?.[String(n)] ?? null;
  }

  put(floor: FidFloor): void {
    try {
      const all = this.read();
      all[this.key] = { ...all[this.key], [String(floor.samples)]: floor };
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      writeFileAtomic(this.file, `${JSON.stringify(all, null, 1)}\n`);
    } catch {
      // A read-only home only costs the same measurement next time.
    }
  }
}

// ====================================================================================== sampling + scoring

export interface SamplerSetting {
  sampler: string;
  steps: number;
  eta: number;
  guidance: number;
  /** Classifier guidance scale (0 or absent: none); the classifier comes in RunOptions. */
  classifierScale?: number;
}

export interface EvalRun extends Scores {
  setting: SamplerSetting;
  samples: number;
  seed: number;
  /** Wall-clock seconds of sampling alone (not of the classifier), per sample and in all. */
  secondsPerSample: number;
  samplingSeconds: number;
}

/** A few samples per class for a grid, with the classifier's reading of each. */
interface KeptSamples {
  images: Tensor[];
  labels: number[];
  predicted: number[];
}

interface RunOptions {
  samples: number;
  batch: number;
  seed: number;
  /** Progress label; false for none. */
  progress: string | false;
  /** Keep this many samples per class for a grid. */
  keepPerClass?: number;
  /** ∇ log p(y | x_t) of a noise-aware classifier, for settings with a classifier scale. */
  classifierGradient?: ClassifierGradient;
}

/**
 * Generate `samples` images with balanced classes and score them. The starting noise of image i depends
 * only on the seed and i, so every setting of a sweep starts from the same noise (common random numbers:
 * differences between settings are not noise differences); per-step noise (DDPM, DDIM with η > 0) has
 * its own stream.
 */
async function sampleAndScore(pipe: ClassConditionalPipeline, ev: Evaluator, setting: SamplerSetting, o: RunOptions,
                              log: (m: string) => void): Promise<{ run: EvalRun; kept: KeptSamples }> {
  const floor = await ev.floor(o.samples, log);
  const K = ev.numClasses, dim = ev.model.config.featureDim;
  const requested = balancedLabels(o.samples, K);
  const { imageSize: S, channels: C } = pipe.info;
  const noiseRng = new Rng(o.seed);
  const stepRng = new Rng(o.seed + 0x5eed);
  const readout: ImageReadout = { features: new Float32Array(o.samples * dim), predicted: new Int32Array(o.samples) };
  const kept: KeptSamples = { images: [], labels: [], predicted: [] };
  const keptCount = new Array<number>(K).fill(0);
  const progress = o.progress === false ? null : new Progress({
    total: o.samples, label: o.progress, unit: 'img', every: o.batch * Math.max(1, Math.round(o.samples / o.batch / 20)),
  });
  let samplingSeconds = 0;
  try {
    for (let start = 0; start < o.samples; start += o.batch) {
      const labels = requested.slice(start, start + o.batch);
      const noise = randn([labels.length, C, S, S], { rng: noiseRng });
      const t0 = performance.now();
      const images = pipe.generate({
        labels, sampler: setting.sampler, steps: setting.steps, eta: setting.eta, guidanceScale: setting.guidance, noise, rng: stepRng,
        classifierGuidance: o.classifierGradient && setting.classifierScale ? { gradient: o.classifierGradient, scale: setting.classifierScale } : undefined,
      });
      samplingSeconds += (performance.now() - t0) / 1000;
      const fitted = fitToClassifier(images, ev.model.config.imageSize);
      const r = readImages(ev.model, fitted);
      readout.features.set(r.features, start * dim);
      readout.predicted.set(r.predicted, start);
      labels.forEach((y, i) => {
        if (keptCount[y] < (o.keepPerClass ?? 0)) {
          keptCount[y]++;
          kept.images.push(fitted.narrow(0, i, 1));
          kept.labels.push(y);
          kept.predicted.push(r.predicted[i]);
        }
      });
      progress?.update(start + labels.length, { items: labels.length });
    }
  } finally {
    progress?.done();
  }
  const scores = ev.score(readout, requested, floor);
  return {
    run: { ...scores, setting, samples: o.samples, seed: o.seed, secondsPerSample: samplingSeconds / o.samples, samplingSeconds },
    kept,
  };
}

function openPipeline(dir: string, numClasses: number, classNames: readonly string[]): ClassConditionalPipeline {
  if (!fs.existsSync(dir)) throw new UserError(`no model at ${dir}`, 'pass the model folder `vss train ddpm` exported (<run>/model)');
  let pipe: ClassConditionalPipeline;
  try {
    pipe = ClassConditionalPipeline.fromPretrained(dir);
  } catch (err) {
    throw new UserError(`cannot load the model in ${dir}: ${(err as Error).message}`, 'pass a class-conditional model folder written by `vss train ddpm`');
  }
  if (pipe.numClasses !== numClasses || pipe.info.classNames.some((n, i) => n !== classNames[i])) {
    throw new UserError(`the model's classes (${pipe.info.classNames.join(', ')}) are not the classifier's (${classNames.join(', ')})`,
      'evaluate a Fashion-MNIST model, or pass a --classifier trained on the same classes');
  }
  return pipe;
}

function settingLabel(s: SamplerSetting): string {
  const eta = s.sampler.toUpperCase() === 'DDIM' ? `, η ${s.eta}` : '';
  const cg = s.classifierScale ? `, classifier guidance ${s.classifierScale}` : '';
  return `${s.sampler} ${s.steps} steps${eta}, CFG ${s.guidance}${cg}`;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const num = (x: number | null) => (x === null || !Number.isFinite(x) ? '-' : x.toFixed(2));

/** Provenance written into every JSON result: what was measured, with what, where. */
function environment(ev: Evaluator, modelDir: string): Record<string, unknown> {
  return {
    model: modelDir, classifier: path.relative(process.cwd(), ev.dir) || '.', classifier_test_accuracy: ev.testAccuracy, reference: ev.reference.source,
    backend: backendName(), threads: getNumThreads(), cpu: os.cpus()[0]?.model ?? 'unknown', date: new Date().toISOString(),
  };
}

// ====================================================================================== vss eval ddpm

interface DdpmEvalFlags {
  model: string;
  samples: number;
  sampler: string;
  steps: number;
  eta: number;
  guidance: number;
  guideClassifier?: string;
  guideScale: number;
  seed: number;
  batch: number;
  classifier: string;
  data?: string;
  json?: string;
  grid?: string;
  progress?: boolean;
}

function printRun(run: EvalRun, ev: Evaluator, modelDir: string): void {
  const K = ev.numClasses;
  const out: string[] = [];
  out.push(`model         ${modelDir} (${settingLabel(run.setting)}, seed ${run.seed})`);
  out.push(`samples       ${run.samples} (${Math.floor(run.samples / K)}${run.samples % K ? '+' : ''} per class), ` +
    `${run.secondsPerSample.toFixed(3)} s/sample (sampling took ${formatDuration(run.samplingSeconds)}, ${getNumThreads()} thread${getNumThreads() > 1 ? 's' : ''})`);
  out.push(`FID-FMNIST    ${run.fid.toFixed(2)}   floor ${run.floor.toFixed(2)} (${run.samples} training vs test images)` +
    `   [mean term ${run.fidMeanTerm.toFixed(2)}, covariance term ${run.fidCovTerm.toFixed(2)}]`);
  const own = ev.testAccuracy === null ? '' : ` (the classifier scores ${pct(ev.testAccuracy)} on real test images)`;
  out.push(`class acc     ${pct(run.classAccuracy)}${own}`);
  out.push('');
  const w = Math.max(5, ...run.perClass.map((c) => c.class.length));
  out.push(`${'class'.padEnd(w)}  ${'n'.padStart(5)}  ${'acc'.padStart(6)}  ${'FID'.padStart(7)}  ${'floor'.padStart(7)}  mistaken for`);
  for (const c of run.perClass) {
    const conf = c.confusedWith ? `${c.confusedWith.class} (${pct(c.confusedWith.share)})` : '-';
    out.push(`${c.class.padEnd(w)}  ${String(c.samples).padStart(5)}  ${pct(c.accuracy).padStart(6)}  ${num(c.fid).padStart(7)}  ${num(c.floor).padStart(7)}  ${conf}`);
  }
  console.log(out.join('\n'));
}

function runToJson(run: EvalRun): Record<string, unknown> {
  return {
    sampler: run.setting.sampler, steps: run.setting.steps, eta: run.setting.eta, guidance: run.setting.guidance,
    classifier_guidance: run.setting.classifierScale ?? 0, samples: run.samples, seed: run.seed, fid: run.fid, fid_mean_term: run.fidMeanTerm, fid_cov_term: run.fidCovTerm,
    fid_floor: run.floor, class_accuracy: run.classAccuracy, seconds_per_sample: run.secondsPerSample, sampling_seconds: run.samplingSeconds,
    per_class: run.perClass.map((c) => ({
      class: c.class, samples: c.samples, accuracy: c.accuracy, fid: c.fid, fid_floor: c.floor,
      mistaken_for: c.confusedWith?.class ?? null, mistaken_share: c.confusedWith?.share ?? 0,
    })),
  };
}

async function evalDdpm(flags: DdpmEvalFlags): Promise<void> {
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const ev = await Evaluator.open(flags.classifier, flags.data, log);
  const pipe = openPipeline(flags.model, ev.numClasses, ev.classNames);
  const setting: SamplerSetting = { sampler: flags.sampler, steps: flags.steps, eta: flags.eta, guidance: flags.guidance };
  checkSampler(pipe, setting);
  let classifierGradient: ClassifierGradient | undefined;
  if (flags.guideClassifier) {
    if (!fs.existsSync(flags.guideClassifier)) throw new UserError(`no classifier at ${flags.guideClassifier}`, 'pass a noise-aware classifier folder, e.g. models/fmnist-noisy-classifier');
    classifierGradient = await loadNoisyClassifier(flags.guideClassifier, pipe.schedulerConfig);
    setting.classifierScale = flags.guideScale;
  }
  const keepPerClass = flags.grid ? 8 : 0;
  const { run, kept } = await sampleAndScore(pipe, ev, setting, {
    samples: flags.samples, batch: flags.batch, seed: flags.seed, progress: flags.progress === false ? false : 'sampling', keepPerClass, classifierGradient,
  }, log);
  printRun(run, ev, flags.model);
  if (flags.json) {
    writeJson(flags.json, { ...environment(ev, flags.model), ...runToJson(run) });
    console.log(`\nnumbers → ${flags.json}`);
  }
  if (flags.grid && kept.images.length > 0) {
    const title = `${settingLabel(setting).replace('η', 'eta')}: the classifier's reading (* = not the class asked for)`;
    await saveSampleGrid(flags.grid, kept, ev, title);
    console.log(`grid → ${flags.grid}`);
  }
}

/** Samples in columns by class; captions give the classifier's reading. */
async function saveSampleGrid(file: string, kept: KeptSamples, ev: Evaluator, title: string): Promise<void> {
  const K = ev.numClasses;
  // Row r holds the r-th kept sample of each class.
  const order: number[] = [];
  const byClass = Array.from({ length: K }, (_, c) => kept.labels.map((y, i) => (y === c ? i : -1)).filter((i) => i >= 0));
  const rows = Math.max(...byClass.map((l) => l.length));
  for (let r = 0; r < rows; r++) for (let c = 0; c < K; c++) if (byClass[c][r] !== undefined) order.push(byClass[c][r]);
  const pixels = order.flatMap((i) => tensorToPixels(kept.images[i], { range: 'signed' }));
  const captions = order.map((i) => {
    const p = kept.predicted[i];
    // The grid font is ASCII: a star marks a sample read as another class than the one asked for.
    return p === kept.labels[i] ? ev.classNames[p] : `*${ev.classNames[p]}`;
  });
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  await saveImage(file, makeGrid(pixels, { columns: K, columnLabels: ev.classNames, captions, title }));
}

function checkSampler(pipe: ClassConditionalPipeline, s: SamplerSetting): void {
  try {
    pipe.scheduler(s.sampler).setTimesteps(s.steps);
  } catch (err) {
    throw new UserError((err as Error).message, 'try --sampler DDIM (or DDPM with --steps 1000)');
  }
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

// ====================================================================================== vss eval sweep

interface SweepFlags {
  model: string;
  what: 'ddim' | 'cfg' | 'all';
  samples: number;
  ddpmSamples?: number;
  ddpmSteps: number;
  ddimSteps: number[];
  etas: number[];
  scales: number[];
  steps: number;
  guidance: number;
  seed: number;
  batch: number;
  classifier: string;
  data?: string;
  out: string;
  fresh?: boolean;
  progress?: boolean;
}

/** A sweep's results file: rows are kept between runs so an interrupted sweep continues where it stopped. */
interface SweepFile {
  what: 'ddim' | 'cfg';
  environment: Record<string, unknown>;
  rows: Record<string, unknown>[];
}

function rowKey(r: { sampler: unknown; steps: unknown; eta: unknown; guidance: unknown; samples: unknown; seed: unknown }): string {
  return JSON.stringify([r.sampler, r.steps, r.eta, r.guidance, r.samples, r.seed]);
}

async function runSweep(flags: SweepFlags): Promise<void> {
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const ev = await Evaluator.open(flags.classifier, flags.data, log);
  const pipe = openPipeline(flags.model, ev.numClasses, ev.classNames);
  fs.mkdirSync(flags.out, { recursive: true });
  const parts: ('ddim' | 'cfg')[] = flags.what === 'all' ? ['ddim', 'cfg'] : [flags.what];
  for (const what of parts) {
    const plan: { setting: SamplerSetting; samples: number }[] = [];
    if (what === 'ddim') {
      for (const eta of flags.etas) for (const steps of flags.ddimSteps) plan.push({ setting: { sampler: 'DDIM', steps, eta, guidance: flags.guidance }, samples: flags.samples });
      plan.push({ setting: { sampler: 'DDPM', steps: flags.ddpmSteps, eta: 0, guidance: flags.guidance }, samples: flags.ddpmSamples ?? flags.samples });
    } else {
      for (const guidance of flags.scales) plan.push({ setting: { sampler: 'DDIM', steps: flags.steps, eta: 0, guidance }, samples: flags.samples });
    }
    for (const p of plan) checkSampler(pipe, p.setting);

    const jsonFile = path.join(flags.out, `${what}.json`);
    const env = environment(ev, flags.model);
    const previous = flags.fresh ? null : readSweep(jsonFile, env);
    const rows: Record<string, unknown>[] = [];
    for (const [i, p] of plan.entries()) {
      const key = rowKey({ ...p.setting, samples: p.samples, seed: flags.seed });
      const old = previous?.rows.find((r) => rowKey(r as never) === key);
      if (old) {
        log(`[${i + 1}/${plan.length}] ${settingLabel(p.setting)}: kept from ${jsonFile} (--fresh measures again)`);
        rows.push(old);
        continue;
      }
      log(`[${i + 1}/${plan.length}] ${settingLabel(p.setting)}, ${p.samples} samples`);
      const { run } = await sampleAndScore(pipe, ev, p.setting, {
        samples: p.samples, batch: flags.batch, seed: flags.seed, progress: flags.progress === false ? false : `${p.setting.sampler} ${p.setting.steps}`,
      }, log);
      log(`    FID-FMNIST ${run.fid.toFixed(2)} (floor ${run.floor.toFixed(2)}), class accuracy ${pct(run.classAccuracy)}, ${run.secondsPerSample.toFixed(3)} s/sample`);
      rows.push(runToJson(run));
      // Saved after every row: hours of sampling survive an interruption.
      writeJson(jsonFile, { what, environment: env, rows } satisfies SweepFile);
    }
    writeJson(jsonFile, { what, environment: env, rows } satisfies SweepFile);
    const md = sweepMarkdown(what, rows, env);
    writeFileAtomic(path.join(flags.out, `${what}.md`), md);
    const plots = await sweepPlots(what, rows, flags.out);
    console.log(md);
    console.log(`→ ${[jsonFile, path.join(flags.out, `${what}.md`), ...plots].join(', ')}\n`);
  }
}

function readSweep(file: string, env: Record<string, unknown>): SweepFile | null {
  if (!fs.existsSync(file)) return null;
  try {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as SweepFile;
    // Rows only count for the same model and classifier.
    if (saved.environment?.model !== env.model || saved.environment?.classifier !== env.classifier) return null;
    return saved;
  } catch {
    return null;
  }
}

type Row = Record<string, number | string>;

function sweepMarkdown(what: 'ddim' | 'cfg', rowsIn: Record<string, unknown>[], env: Record<string, unknown>): string {
  const rows = rowsIn as Row[];
  const f2 = (v: unknown) => (typeof v === 'number' ? v.toFixed(2) : '-');
  const lines: string[] = [];
  if (what === 'ddim') {
    lines.push(`## Sampler steps vs FID-FMNIST (CFG ${rows[0]?.guidance ?? '-'})`, '');
    lines.push('| sampler | steps | η | FID-FMNIST | floor | class accuracy | s/sample | samples |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      lines.push(`| ${r.sampler} | ${r.steps} | ${r.sampler === 'DDIM' ? r.eta : '-'} | ${f2(r.fid)} | ${f2(r.fid_floor)} | ${pct(Number(r.class_accuracy))} | ${Number(r.seconds_per_sample).toFixed(3)} | ${r.samples} |`);
    }
  } else {
    lines.push(`## Classifier-free guidance scale vs FID-FMNIST and class accuracy (DDIM ${rows[0]?.steps ?? '-'} steps, η 0)`, '');
    lines.push('| CFG scale | FID-FMNIST | floor | class accuracy | s/sample | samples |');
    lines.push('|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      lines.push(`| ${r.guidance} | ${f2(r.fid)} | ${f2(r.fid_floor)} | ${pct(Number(r.class_accuracy))} | ${Number(r.seconds_per_sample).toFixed(3)} | ${r.samples} |`);
    }
  }
  const acc = typeof env.classifier_test_accuracy === 'number' ? `, ${pct(env.classifier_test_accuracy)} test accuracy` : '';
  lines.push('', `FID-FMNIST: Fréchet distance of the evaluation classifier's 128-d features (${env.classifier}${acc}) ` +
    `between the samples (classes balanced) and the ${env.reference}. Floor: the same for as many real training images ` +
    `(the best a generator can score at that sample count). Class accuracy: share of samples the classifier puts in the class asked for. ` +
    `Seconds per sample: sampling only, ${env.backend} backend, ${env.threads} thread(s), ${env.cpu}. Model: ${env.model}.`, '');
  return lines.join('\n');
}

async function sweepPlots(what: 'ddim' | 'cfg', rowsIn: Record<string, unknown>[], out: string): Promise<string[]> {
  const rows = rowsIn as Row[];
  const files: string[] = [];
  if (what === 'ddim') {
    const ddim = rows.filter((r) => r.sampler === 'DDIM');
    const etas = [...new Set(ddim.map((r) => Number(r.eta)))];
    const steps = ddim.map((r) => Number(r.steps));
    const xr = [Math.min(...steps), Math.max(...steps)];
    const ddpm = rows.find((r) => r.sampler === 'DDPM');
    const ref = (key: string) => (ddpm ? [{ name: `DDPM ${ddpm.steps} steps`, x: xr, y: [Number(ddpm[key]), Number(ddpm[key])] }] : []);
    const series = (key: string) => etas.map((eta) => {
      const rs = ddim.filter((r) => Number(r.eta) === eta);
      return { name: `DDIM eta=${eta}`, x: rs.map((r) => Number(r.steps)), y: rs.map((r) => Number(r[key])) };
    });
    const floor = ddim[0] ? [{ name: 'floor (real images)', x: xr, y: [Number(ddim[0].fid_floor), Number(ddim[0].fid_floor)] }] : [];
    files.push(path.join(out, 'ddim_fid.png'));
    await saveLinePlot(files.at(-1)!, [...series('fid'), ...ref('fid'), ...floor], { title: 'FID-FMNIST vs sampling steps', xLabel: 'steps', yLabel: 'FID-FMNIST' });
    files.push(path.join(out, 'ddim_time.png'));
    await saveLinePlot(files.at(-1)!, [...series('seconds_per_sample'), ...ref('seconds_per_sample')], { title: 'seconds per sample vs sampling steps', xLabel: 'steps', yLabel: 's/sample', logY: true });
  } else {
    const x = rows.map((r) => Number(r.guidance));
    const xr = [Math.min(...x), Math.max(...x)];
    files.push(path.join(out, 'cfg_fid.png'));
    await saveLinePlot(files.at(-1)!, [
      { name: 'FID-FMNIST', x, y: rows.map((r) => Number(r.fid)) },
      ...(rows[0] ? [{ name: 'floor (real images)', x: xr, y: [Number(rows[0].fid_floor), Number(rows[0].fid_floor)] }] : []),
    ], { title: 'FID-FMNIST vs guidance scale', xLabel: 'CFG scale', yLabel: 'FID-FMNIST' });
    files.push(path.join(out, 'cfg_accuracy.png'));
    await saveLinePlot(files.at(-1)!, [{ name: 'class accuracy %', x, y: rows.map((r) => 100 * Number(r.class_accuracy)) }],
      { title: 'class accuracy vs guidance scale', xLabel: 'CFG scale', yLabel: 'class accuracy (%)' });
  }
  return files;
}

// ====================================================================================== vss eval train-classifier

interface ClassifierRunConfig {
  model: 'fmnist-eval-classifier';
  steps: number;
  batch: number;
  lr: number;
  width: number;
  featureDim: number;
  dropout: number;
  labelSmoothing: number;
  augment: boolean;
  seed: number;
  data?: string;
}

interface TrainClassifierFlags {
  out: string;
  export?: string;
  steps: number;
  batch: number;
  lr: number;
  width: number;
  dropout: number;
  labelSmoothing: number;
  augment: boolean;
  seed: number;
  data?: string;
  floors: number[];
  resume?: boolean;
  checkpointEvery: number;
  evalEvery: number;
  evalLimit: number;
  logEvery: number;
  workers: number;
  progress?: boolean;
}

async function trainEvalClassifier(flags: TrainClassifierFlags): Promise<void> {
  const { out, resumeFrom } = locateRun(flags, flags.out, { checkpointArgument: false });
  const exportDir = flags.export ?? path.join(out, 'classifier');
  const resumeHint = `vss eval train-classifier --out ${out} --resume`;
  let config: ClassifierRunConfig = {
    model: 'fmnist-eval-classifier', steps: flags.steps, batch: flags.batch, lr: flags.lr, width: flags.width,
    featureDim: DEFAULT_CLASSIFIER_CONFIG.featureDim, dropout: flags.dropout, labelSmoothing: flags.labelSmoothing,
    augment: flags.augment, seed: flags.seed, data: flags.data,
  };
  if (resumeFrom) {
    // A resumed run continues with its own settings.
    config = savedRunConfig<ClassifierRunConfig>(resumeFrom, 'fmnist-eval-classifier', 'an evaluation-classifier run') as ClassifierRunConfig;
  }
  refuseExistingRun(out, resumeFrom, resumeHint);

  const trainSet = await openDataset('fashion-mnist', { split: 'train', data: config.data });
  const testSet = await openDataset('fashion-mnist', { split: 'test', data: config.data });
  const rng = new Rng(config.seed);
  const augRng = new Rng(config.seed + 1);
  const model = new FmnistEvalClassifier({
    ...DEFAULT_CLASSIFIER_CONFIG, classNames: [...FASHION_MNIST_CLASSES], width: config.width, featureDim: config.featureDim, dropout: config.dropout,
  }, rng);
  const optimizer = new AdamW(model.parameters(), { lr: config.lr, weightDecay: 5e-4 });
  const schedule = new CosineSchedule({ lr: config.lr, warmupSteps: Math.min(200, Math.floor(config.steps / 10)), totalSteps: config.steps, minLr: config.lr / 100 });
  const loader = new DataLoader(trainSet, { batchSize: config.batch, shuffle: true, seed: config.seed, dropLast: true, epochs: Infinity, workers: flags.workers });
  const evalCount = Math.min(flags.evalLimit, testSet.length);
  // A fixed, class-mixed slice of the test set for the periodic accuracy (the full set is read at export).
  const evalIndices = Array.from({ length: evalCount }, (_, i) => Math.floor((i * testSet.length) / evalCount));
  const evalSet = await loadImages(testSet, evalIndices);

  if (!resumeFrom) {
    console.error(`training a ${model.numParameters().toLocaleString('en')}-parameter evaluation classifier on fashion-mnist ` +
      `(batch ${config.batch}, ${config.steps} steps, augmentation ${config.augment ? 'on' : 'off'}, ${backendName()} kernels, ${getNumThreads()} thread(s)) → ${out}`);
  }
  const trainer = new Trainer<Batch>({
    model, optimizer, loader, totalSteps: config.steps, lrSchedule: schedule, clipGradNorm: 2.0,
    outDir: out, checkpointEvery: flags.checkpointEvery, logEvery: flags.logEvery, seed: config.seed,
    rng: { main: rng, augment: augRng }, resume: resumeFrom ?? false, config, resumeHint,
    step: (batch) => classifierTrainStep(model, batch, augRng, { augment: config.augment ? CLASSIFIER_AUGMENT : null, labelSmoothing: config.labelSmoothing }),
    evalEvery: flags.evalEvery,
    evaluate: () => {
      const r = readImages(model, evalSet.images);
      const correct = r.predicted.reduce((n, p, i) => n + (p === evalSet.labels[i] ? 1 : 0), 0);
      return { test_accuracy: correct / evalCount };
    },
    progress: flags.progress === false ? false : undefined,
  });
  const result = await runTraining(trainer, loader);
  if (!result.completed) {
    process.exitCode = 130;
    return;
  }
  const log = (m: string) => process.stderr.write(`${m}\n`);
  await exportClassifier(model, exportDir, {
    data: config.data, floors: flags.floors, log,
    training: { command: 'vss eval train-classifier', ...config, data: undefined, seconds: Math.round(result.elapsed), threads: getNumThreads() },
  });
}

/**
 * Write the classifier folder and measure what ships with it on the weights as saved (f16): test accuracy,
 * the test set's feature statistics, the floors.
 */
async function exportClassifier(trained: FmnistEvalClassifier, dir: string,
                                o: { data?: string; floors: number[]; log: (m: string) => void; training: Record<string, unknown> }): Promise<void> {
  trained.savePretrained(dir, { training: o.training });
  const { model } = FmnistEvalClassifier.fromPretrained(dir);
  o.log('reading the 10 000 test images with the exported (f16) weights…');
  const test = await testReference(model, o.data);
  model.savePretrained(dir, { testAccuracy: test.accuracy, testAccuracyPerClass: test.perClass, training: o.training });
  if (o.floors.length > 0) {
    o.log(`measuring the FID floors at ${o.floors.join(', ')} training images…`);
    const train = await openDataset('fashion-mnist', { split: 'train', data: o.data });
    for (const f of await computeFloors(model, train, o.floors, test.reference.stats)) test.reference.floors.set(f.samples, f);
  }
  saveReference(dir, test.reference);
  console.log(`test accuracy ${pct(test.accuracy)} (10 000 Fashion-MNIST test images, f16 weights as exported)`);
  console.log(`per class: ${model.config.classNames.map((n, c) => `${n} ${pct(test.perClass[c])}`).join(', ')}`);
  for (const f of [...test.reference.floors.values()].sort((a, b) => a.samples - b.samples)) {
    console.log(`FID floor at ${f.samples}: ${f.fid.toFixed(3)} (${f.samples} training vs 10 000 test images)`);
  }
  console.log(`classifier → ${dir}`);
}

// ====================================================================================== registration

/** Checks that need several options together (commander checks them one by one). */
function checkSamples(samples: number, batch: number, numClasses = FASHION_MNIST_CLASSES.length): void {
  if (samples < 2 * numClasses) throw new UserError(`--samples ${samples} is too few: FID needs at least ${2 * numClasses} (2 per class)`, 'use --samples 1000 or more for numbers worth comparing');
  if (batch < 1) throw new UserError('--batch must be at least 1');
}

export function registerEvalCommands(program: Command): void {
  const evalCmd = program.command('eval').description('measure Fashion-MNIST generators (FID-FMNIST with its floor, class accuracy, speed), ViT classifiers and patch sizes');
  const classifierOption = () => new Option('--classifier <dir>', 'evaluation classifier folder').default(DEFAULT_CLASSIFIER_DIR, 'models/fmnist-eval-classifier');

  evalCmd
    .command('ddpm')
    .description('sample a class-conditional model with balanced classes and score the samples')
    .requiredOption('--model <dir>', 'model folder written by `vss train ddpm` (<run>/model)')
    .option('--samples <n>', 'images to generate, classes balanced (the issue\'s number is 10000)', intOption('--samples', 1), 1000)
    .option('--sampler <name>', 'sampler (DDIM, DDPM, Euler, DPM++ 2M, …)', 'DDIM')
    .option('--steps <n>', 'sampling steps', intOption('--steps', 1, 1000), 50)
    .option('--eta <x>', "DDIM's η (0 deterministic, 1 like DDPM)", numberOption('--eta', 0, 1), 0)
    .option('--guidance <s>', 'classifier-free guidance scale (0 unconditional, 1 conditional)', numberOption('--guidance', 0, 100), 3)
    .option('--guide-classifier <dir>', 'also classifier guidance, by this noise-aware classifier (e.g. models/fmnist-noisy-classifier)')
    .option('--guide-scale <s>', 'classifier guidance scale (with --guide-classifier)', numberOption('--guide-scale', 0, 1000), 1)
    .option('--seed <n>', 'seed of the starting noise', intOption('--seed', 0), 0)
    .option('--batch <n>', 'images per sampling batch', intOption('--batch', 1), 100)
    .addOption(classifierOption())
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--json <file>', 'also write every number as JSON')
    .option('--grid <file>', 'also write a PNG of up to 8 samples per class with the classifier\'s reading')
    .option('--no-progress', 'no progress line')
    .addHelpText('after', '\nExamples:\n  vss eval ddpm --model models/fmnist-ddpm --samples 1000\n' +
      '  vss eval ddpm --model runs/ddpm/model --samples 10000 --json bench/ddpm-eval.json --grid bench/ddpm-eval.png')
    .action(async (flags: DdpmEvalFlags) => {
      checkSamples(flags.samples, flags.batch);
      await evalDdpm(flags);
    });

  evalCmd
    .command('sweep')
    .description('tables of FID-FMNIST over DDIM steps × η vs DDPM 1000 steps (ddim), or over CFG scales (cfg)')
    .requiredOption('--model <dir>', 'model folder written by `vss train ddpm`')
    .addOption(new Option('--what <table>', 'which table').choices(['ddim', 'cfg', 'all']).default('all'))
    .option('--samples <n>', 'samples per setting', intOption('--samples', 1), 1000)
    .option('--ddpm-samples <n>', 'samples for DDPM 1000 steps (it costs 1000 model calls per sample; default --samples)', intOption('--ddpm-samples', 1))
    .option('--ddpm-steps <n>', 'steps of the DDPM row (1000: every training timestep, the reference)', intOption('--ddpm-steps', 1, 1000), 1000)
    .option('--ddim-steps <list>', 'DDIM step counts', intListOption('--ddim-steps', 1), [10, 20, 50, 100])
    .option('--etas <list>', 'DDIM η values', numberListOption('--etas', 0), [0, 1])
    .option('--scales <list>', 'CFG scales', numberListOption('--scales', 0), [0, 1, 3, 5, 7])
    .option('--steps <n>', 'DDIM steps of the CFG table', intOption('--steps', 1, 1000), 50)
    .option('--guidance <s>', 'CFG scale of the steps table', numberOption('--guidance', 0, 100), 3)
    .option('--seed <n>', 'seed of the starting noise (the same for every setting)', intOption('--seed', 0), 0)
    .option('--batch <n>', 'images per sampling batch', intOption('--batch', 1), 100)
    .addOption(classifierOption())
    .option('--data <dir>', 'folder of the Fashion-MNIST files')
    .option('-o, --out <dir>', 'where the tables, JSON and plots go', 'bench/ddpm-sweep')
    .option('--fresh', 'measure every setting again (default: keep rows already in <out>/<table>.json)')
    .option('--no-progress', 'no progress lines')
    .addHelpText('after', '\nExamples:\n  vss eval sweep --model models/fmnist-ddpm --what ddim --samples 1000 --ddpm-samples 200\n' +
      '  vss eval sweep --model models/fmnist-ddpm --what cfg --samples 1000')
    .action(async (flags: SweepFlags) => {
      checkSamples(flags.samples, flags.batch);
      if (flags.ddpmSamples !== undefined) checkSamples(flags.ddpmSamples, flags.batch);
      await runSweep(flags);
    });

  const trainClassifierCmd = evalCmd
    .command('train-classifier')
    .description('train the evaluation classifier (shared training loop) and export it with its reference statistics')
    .option('-o, --out <dir>', 'run folder: checkpoint, metrics.jsonl, loss.png', 'runs/eval-classifier')
    .option('--export <dir>', 'where the classifier folder goes (default <out>/classifier)')
    .option('--steps <n>', 'optimiser steps', intOption('--steps', 1), 3000)
    .option('--batch <n>', 'images per step', intOption('--batch', 1), 128)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine decay to lr/100)', numberOption('--lr', 1e-8, 1), 2e-3)
    .option('--width <n>', 'channels of the first conv (multiple of 8)', intOption('--width', 8), DEFAULT_CLASSIFIER_CONFIG.width)
    .option('--dropout <p>', 'dropout on the features while training', numberOption('--dropout', 0, 0.9), DEFAULT_CLASSIFIER_CONFIG.dropout)
    .option('--label-smoothing <x>', 'label smoothing of the cross-entropy', numberOption('--label-smoothing', 0, 0.5), 0.1)
    .option('--no-augment', 'no random flips and shifts')
    .option('--seed <n>', 'seed of the weights, data order and augmentation', intOption('--seed', 0), 0)
    .option('--data <dir>', 'folder of the Fashion-MNIST files')
    .option('--floors <list>', 'sample counts whose FID floor ships with the classifier', intListOption('--floors', 20), [1000, 10000])
    .option('--resume', 'continue the run in --out with its own settings')
    .option('--eval-every <n>', 'measure accuracy on --eval-limit test images every n steps (0: only at the end)', intOption('--eval-every', 0), 500)
    .option('--eval-limit <n>', 'test images of the periodic accuracy', intOption('--eval-limit', 1, 10_000), 2000);
  addTrainingLoopOptions(trainClassifierCmd, { checkpointEvery: 250, logEvery: 10 })
    .addHelpText('after', '\nExample (what made models/fmnist-eval-classifier):\n' +
      '  VSS_NUM_THREADS=1 vss eval train-classifier --out runs/eval-classifier --export models/fmnist-eval-classifier')
    .action((flags: TrainClassifierFlags) => trainEvalClassifier(flags));

  registerVitPatchesCommand(evalCmd);
  registerEvalVitCommand(evalCmd);
}
