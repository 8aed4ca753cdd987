/**
 * The Fashion-MNIST classifier that judges generators: FID-FMNIST is the Fréchet distance between its
 * 128-d penultimate features of generated and of real images (the role Inception-v3's pool3 features play
 * in FID: Heusel et al. 2017), and its argmax says whether a sample shows the class that was asked for.
 *
 * It is trained apart from any generator (never the denoiser's own features, which a generator could
 * flatter), with augmentation so it also reads slightly shifted or mirrored images the way it reads the
 * test set.
 *
 *   x [B, 1, 28, 28] in [-1, 1]
 *   → conv(w) → pool → conv(2w) → conv(2w) → pool → conv(4w) → pool      (each conv: 3×3, GroupNorm, SiLU)
 *   → flatten [B, 4w·3·3] → linear → SiLU = features [B, 128] → dropout → linear = logits [B, 10]
 *
 * On disk a trained one is a folder:
 *   config.json              architecture, class names, measured test accuracy, provenance
 *   model.safetensors        weights in f16 (loaded into f32)
 *   fid_reference.safetensors  feature statistics of the test set (whole and per class) and the FID floors
 *                             (train vs test at N images), so `vss eval` needs no pass over the test set
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Rng, type Tensor, crossEntropy, fromTypedArray, maxPool2d, noGrad, getDefaultRng } from '../engine/index.js';
import { Conv2d, Dropout, GroupNorm, Linear, Module, withoutInit } from '../nn/index.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../image/io.js';
import { ConfigReader } from '../models/config.js';
import { augmentBatch, type AugmentOptions } from '../train/vit.js';
import type { Batch } from '../data/loader.js';
import { FeatureAccumulator, type FeatureStats } from './frechet.js';

export const CLASSIFIER_CLASS = 'VSSFmnistEvalClassifier';
export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const REFERENCE_FILE = 'fid_reference.safetensors';

export interface FmnistClassifierConfig {
  /** Square input side; a multiple of 4 at least 12 (28 for Fashion-MNIST). */
  imageSize: number;
  inChannels: number;
  classNames: string[];
  /** Channels of the first conv; the next stages have 2× and 4× (multiple of 8). */
  width: number;
  /** Size of the penultimate layer, the features FID uses. */
  featureDim: number;
  /** Dropout between features and logits while training. */
  dropout: number;
}

export const DEFAULT_CLASSIFIER_CONFIG: Omit<FmnistClassifierConfig, 'classNames'> = {
  imageSize: 28, inChannels: 1, width: 32, featureDim: 128, dropout: 0.2,
};

/** What config.json records beside the architecture. */
export interface ClassifierMetadata {
  /** Accuracy on the 10 000 Fashion-MNIST test images, measured when exported. */
  testAccuracy?: number;
  /** The same per class, in class order. */
  testAccuracyPerClass?: number[];
  /** Command, steps, seconds, seed… */
  training?: Record<string, unknown>;
}

/** 3×3 conv → GroupNorm → SiLU, keeping the spatial size. */
class ConvBlock extends Module {
  conv: Conv2d;
  norm: GroupNorm;

  constructor(inChannels: number, outChannels: number, rng: Rng) {
    super();
    this.conv = new Conv2d(inChannels, outChannels, 3, { padding: 1, rng });
    // Groups of 8 channels: normalisation that does not depend on the batch (eval of one image = of many).
    this.norm = new GroupNorm(outChannels / 8, outChannels);
  }

  forward(x: Tensor): Tensor {
    return this.norm.forward(this.conv.forward(x)).silu();
  }
}

export class FmnistEvalClassifier extends Module {
  stem: ConvBlock;
  block2a: ConvBlock;
  block2b: ConvBlock;
  block3: ConvBlock;
  /** The feature layer: its (activated) output is what FID compares. */
  fc: Linear;
  drop: Dropout;
  head: Linear;

  constructor(readonly config: FmnistClassifierConfig, rng: Rng = getDefaultRng()) {
    super();
    const { width: w, imageSize, featureDim } = config;
    if (!Number.isInteger(w) || w < 8 || w % 8 !== 0) throw new Error(`${CLASSIFIER_CLASS}: width must be a multiple of 8, got ${w}`);
    if (!Number.isInteger(imageSize) || imageSize < 12 || imageSize % 4 !== 0) {
      throw new Error(`${CLASSIFIER_CLASS}: image size must be a multiple of 4 of at least 12, got ${imageSize}`);
    }
    if (config.classNames.length < 2) throw new Error(`${CLASSIFIER_CLASS}: needs at least 2 classes, got ${config.classNames.length}`);
    // Three 2× poolings (the last one drops the odd row/column: 7 → 3 at 28 px, background there).
    const side = Math.floor(imageSize / 8);
    this.stem = new ConvBlock(config.inChannels, w, rng);
    this.block2a = new ConvBlock(w, 2 * w, rng);
    this.block2b = new ConvBlock(2 * w, 2 * w, rng);
    this.block3 = new ConvBlock(2 * w, 4 * w, rng);
    this.fc = new Linear(4 * w * side * side, featureDim, { rng });
    this.drop = new Dropout(config.dropout, { rng });
    this.head = new Linear(featureDim, config.classNames.length, { rng });
  }

  get numClasses(): number {
    return this.config.classNames.length;
  }

  /** [B, C, S, S] in [-1, 1] → [B, featureDim], the penultimate activations. */
  features(x: Tensor): Tensor {
    this.checkInput(x);
    let h = maxPool2d(this.stem.forward(x), 2);
    h = maxPool2d(this.block2b.forward(this.block2a.forward(h)), 2);
    h = maxPool2d(this.block3.forward(h), 2);
    return this.fc.forward(h.flatten(1)).silu();
  }

  /** [B, C, S, S] → [B, classes] logits. */
  forward(x: Tensor): Tensor {
    return this.head.forward(this.drop.forward(this.features(x)));
  }

  /** Features and logits of one batch in one pass. */
  featuresAndLogits(x: Tensor): { features: Tensor; logits: Tensor } {
    const features = this.features(x);
    return { features, logits: this.head.forward(this.drop.forward(features)) };
  }

  private checkInput(x: Tensor): void {
    const { inChannels: c, imageSize: s } = this.config;
    if (x.ndim !== 4 || x.shape[1] !== c || x.shape[2] !== s || x.shape[3] !== s) {
      throw new Error(`${CLASSIFIER_CLASS}: expected images [B, ${c}, ${s}, ${s}], got [${x.shape.join(', ')}]`);
    }
  }

  // ------------------------------------------------------------------ folder

  /** Write config.json and model.safetensors (f16) into `dir`; the reference statistics are written apart. */
  savePretrained(dir: string, meta: ClassifierMetadata = {}): void {
    fs.mkdirSync(dir, { recursive: true });
    const tensors = new Map<string, Tensor>();
    for (const [name, t] of this.stateDict()) tensors.set(name, t.detach().to('f16').contiguous());
    writeSafetensors(path.join(dir, WEIGHTS_FILE), tensors, { format: 'pt' });
    const c = this.config;
    const json = {
      _class_name: CLASSIFIER_CLASS, image_size: c.imageSize, in_channels: c.inChannels, class_names: c.classNames,
      width: c.width, feature_dim: c.featureDim, dropout: c.dropout, data_range: 'signed', dtype: 'float16',
      test_accuracy: meta.testAccuracy ?? null, test_accuracy_per_class: meta.testAccuracyPerClass ?? null,
      training: meta.training ?? null,
    };
    writeFileAtomic(path.join(dir, CONFIG_FILE), `${JSON.stringify(json, null, 2)}\n`);
  }

  /** Load a folder written by `savePretrained`; every problem is an error that names the file. */
  static fromPretrained(dir: string): { model: FmnistEvalClassifier; meta: ClassifierMetadata } {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ClassifierFileError(`no classifier folder at ${dir}`);
    const configFile = path.join(dir, CONFIG_FILE);
    if (!fs.existsSync(configFile)) throw new ClassifierFileError(`${dir} is not a classifier folder: no ${CONFIG_FILE}`);
    let config: FmnistClassifierConfig, meta: ClassifierMetadata;
    try {
      const r = ConfigReader.fromFile(configFile, CLASSIFIER_CLASS);
      if (r.raw._class_name !== CLASSIFIER_CLASS) r.fail('_class_name', `must be "${CLASSIFIER_CLASS}", got ${JSON.stringify(r.raw._class_name)}`);
      config = {
        imageSize: r.size('image_size'), inChannels: r.size('in_channels'), classNames: r.stringList('class_names'),
        width: r.size('width'), featureDim: r.size('feature_dim'), dropout: r.number('dropout', 0),
      };
      r.oneOf('data_range', ['signed'], 'signed');
      r.ignore('dtype');
      const acc = r.optionalNumber('test_accuracy');
      const perClass = r.value('test_accuracy_per_class');
      const training = r.value('training');
      meta = {
        testAccuracy: acc ?? undefined,
        testAccuracyPerClass: Array.isArray(perClass) ? perClass as number[] : undefined,
        training: training && typeof training === 'object' ? training as Record<string, unknown> : undefined,
      };
    } catch (err) {
      throw new ClassifierFileError(`cannot read ${configFile}: ${(err as Error).message}`);
    }
    const weightsFile = path.join(dir, WEIGHTS_FILE);
    if (!fs.existsSync(weightsFile)) throw new ClassifierFileError(`${dir}: missing ${WEIGHTS_FILE}`);
    let model: FmnistEvalClassifier;
    try {
      model = withoutInit(() => new FmnistEvalClassifier(config));
      const { tensors } = readSafetensors(weightsFile);
      model.loadStateDict(tensors);
    } catch (err) {
      throw new ClassifierFileError(`cannot load ${weightsFile}: ${(err as Error).message}`);
    }
    for (const [name, t] of model.stateDict()) {
      if (!t.toFloat32Array().every(Number.isFinite)) throw new ClassifierFileError(`${weightsFile}: "${name}" holds NaN or infinite values (a corrupt file)`);
    }
    model.eval();
    return { model, meta };
  }
}

/** A classifier folder that cannot be used; the hint says how to get a good one. */
export class ClassifierFileError extends Error {
  readonly hint = 'use the shipped models/fmnist-eval-classifier (restore it with git checkout), or train one with `vss eval train-classifier`';
  constructor(message: string) {
    super(message);
    this.name = 'ClassifierFileError';
  }
}

// ------------------------------------------------------------------ training

/** Flips and small shifts: clothes are mirror-symmetric enough, and generated ones are not perfectly centred. */
export const CLASSIFIER_AUGMENT: AugmentOptions = { cropPadding: 2, cropProb: 0.5, flip: true, erasing: 0, background: -1 };

/** One training step: label-smoothed cross-entropy on augmented images, and the batch accuracy. */
export function classifierTrainStep(model: FmnistEvalClassifier, batch: Batch, augRng: Rng,
                                    opts: { augment: AugmentOptions | null; labelSmoothing: number }): { loss: Tensor; metrics: { accuracy: number } } {
  const images = opts.augment ? augmentBatch(batch.images, augRng, opts.augment) : batch.images;
  const logits = model.forward(images);
  const loss = crossEntropy(logits, batch.labels, { labelSmoothing: opts.labelSmoothing });
  const predicted = logits.detach().argmax(1).toArray() as number[];
  const truth = batch.labels.toArray() as number[];
  const correct = predicted.reduce((n, p, i) => n + (p === truth[i] ? 1 : 0), 0);
  return { loss, metrics: { accuracy: correct / truth.length } };
}

// ------------------------------------------------------------------ features

/** What the classifier makes of a set of images. */
export interface ImageReadout {
  /** [N × featureDim] features, row after row. */
  features: Float32Array;
  /** Argmax class per image. */
  predicted: Int32Array;
}

/** Features and predictions of images [N, C, S, S], in batches, without gradients (eval mode). */
export function readImages(model: FmnistEvalClassifier, images: Tensor, batchSize = 250): ImageReadout {
  const n = images.shape[0], d = model.config.featureDim, k = model.numClasses;
  const out: ImageReadout = { features: new Float32Array(n * d), predicted: new Int32Array(n) };
  const wasTraining = model.training;
  model.eval();
  try {
    for (let start = 0; start < n; start += batchSize) {
      const count = Math.min(batchSize, n - start);
      const { features, logits } = noGrad(() => model.featuresAndLogits(images.narrow(0, start, count).contiguous()));
      out.features.set(features.contiguous().toFloat32Array(), start * d);
      const l = logits.contiguous().toFloat32Array();
      for (let i = 0; i < count; i++) {
        let best = 0;
        for (let j = 1; j < k; j++) if (l[i * k + j] > l[i * k + best]) best = j;
        out.predicted[start + i] = best;
      }
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
}

/** Feature statistics of a labelled set: of all of it and of each class. */
export interface LabelledStats {
  all: FeatureStats;
  /** Per class; null where a class has fewer than 2 images. */
  perClass: (FeatureStats | null)[];
}

export function labelledStats(features: Float32Array, labels: ArrayLike<number>, dim: number, numClasses: number): LabelledStats {
  const all = new FeatureAccumulator(dim).add(features);
  const per = Array.from({ length: numClasses }, () => new FeatureAccumulator(dim));
  for (let i = 0; i < labels.length; i++) per[labels[i]].add(features.subarray(i * dim, (i + 1) * dim), 1);
  return { all: all.stats(), perClass: per.map((a) => (a.count >= 2 ? a.stats() : null)) };
}

// ------------------------------------------------------------------ reference statistics

/** FID of N real training images (balanced over classes) against the test set: the best a generator can hope for. */
export interface FidFloor {
  samples: number;
  fid: number;
  /** Per class: N/classes training images of the class against the test images of the class. */
  perClass: number[];
  seed: number;
}

export interface FidReference {
  /** Which images the statistics describe, e.g. 'fashion-mnist test (10000 images)'. */
  source: string;
  stats: LabelledStats;
  /** Keyed by N. */
  floors: Map<number, FidFloor>;
}

/** A covariance is symmetric: store the upper triangle (with the diagonal) only. */
function packUpper(cov: Float64Array, n: number): Float32Array {
  const out = new Float32Array((n * (n + 1)) / 2);
  let k = 0;
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) out[k++] = cov[i * n + j];
  return out;
}

function unpackUpper(packed: Float32Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  let k = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      out[i * n + j] = packed[k];
      out[j * n + i] = packed[k++];
    }
  }
  return out;
}

/** Write the reference statistics (f32: FID needs no more than 7 digits of a covariance) and floors. */
export function saveReference(dir: string, ref: FidReference): void {
  const tensors = new Map<string, Tensor>();
  const put = (key: string, s: FeatureStats) => {
    tensors.set(`${key}.mean`, fromTypedArray(Float32Array.from(s.mean), [s.dim]));
    tensors.set(`${key}.cov_upper`, fromTypedArray(packUpper(s.cov, s.dim), [(s.dim * (s.dim + 1)) / 2]));
  };
  put('all', ref.stats.all);
  ref.stats.perClass.forEach((s, c) => { if (s) put(`class_${c}`, s); });
  const counts = { all: ref.stats.all.count, per_class: ref.stats.perClass.map((s) => s?.count ?? 0) };
  const floors = [...ref.floors.values()].sort((a, b) => a.samples - b.samples);
  writeSafetensors(path.join(dir, REFERENCE_FILE), tensors, {
    format: 'vss-fid-reference', source: ref.source, counts: JSON.stringify(counts), floors: JSON.stringify(floors),
  });
}

/** Read `fid_reference.safetensors` of a classifier folder, or null when the folder has none. */
export function loadReference(dir: string, dim: number, numClasses: number): FidReference | null {
  const file = path.join(dir, REFERENCE_FILE);
  if (!fs.existsSync(file)) return null;
  try {
    const { tensors, metadata } = readSafetensors(file);
    const counts = JSON.parse(metadata.counts) as { all: number; per_class: number[] };
    const get = (key: string, count: number): FeatureStats => {
      const mean = tensors.get(`${key}.mean`), cov = tensors.get(`${key}.cov_upper`);
      if (!mean || !cov) throw new Error(`no statistics "${key}"`);
      if (mean.shape[0] !== dim) throw new Error(`"${key}" has ${mean.shape[0]} features, the classifier ${dim}`);
      return { count, dim, mean: Float64Array.from(mean.toFloat32Array()), cov: unpackUpper(cov.toFloat32Array(), dim) };
    };
    if (counts.per_class.length !== numClasses) throw new Error(`statistics of ${counts.per_class.length} classes, the classifier has ${numClasses}`);
    const stats: LabelledStats = {
      all: get('all', counts.all),
      perClass: counts.per_class.map((n, c) => (n >= 2 ? get(`class_${c}`, n) : null)),
    };
    const floors = new Map<number, FidFloor>((JSON.parse(metadata.floors ?? '[]') as FidFloor[]).map((f) => [f.samples, f]));
    return { source: metadata.source ?? 'unknown', stats, floors };
  } catch (err) {
    throw new ClassifierFileError(`cannot read ${file}: ${(err as Error).message}`);
  }
}
