/**
 * A noise-aware classifier p(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models
 * Beat GANs on Image Synthesis", §4 and Algorithm 2): trained on noisy samples x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
 * of the same schedule as the denoiser, so its gradient ∇_{x_t} log p(y | x_t) is meaningful at every step of
 * sampling, where an ordinary classifier only ever saw clean images.
 *
 * It is the down half of our U-Net, with the same blocks and weight names:
 *
 *   t ──sinusoid──▶ time_embedding (MLP) ──▶ temb
 *   x_t [B, C, H, W] ─conv_in─▶ down_blocks (ResnetBlock2D with AdaGN on temb, Downsample2D between levels)
 *       ─▶ norm_out, SiLU ─▶ mean over H, W ─▶ head (Linear) ─▶ logits [B, classes]
 *
 * (The paper pools with attention; at 28×28 and three levels the last feature map already sees the whole
 * image, so a mean is enough.) No BatchNorm anywhere: each row's logits depend only on its own input, which
 * `gradLogProb` relies on to get every row's gradient from one backward pass.
 *
 * On disk: `config.json` (below) + `model.safetensors`, and `scheduler_config.json`, the noise schedule it
 * was trained on (a guided sampler must use the same one; `classifierGradientFrom` checks).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, fromTypedArray, gather, logSoftmax, withGrad } from '../engine/index.js';
import { Module, ModuleList, type Conv2d, type GroupNorm, type Linear } from '../nn/index.js';
import { schedulerFromConfig } from '../diffusion/schedulers/index.js';
import { writeSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../image/io.js';
import type { ClassifierGradient } from '../pipelines/class_conditional.js';
import { ConfigReader, checkClassName, type ConfigReadOptions } from './config.js';
import { TimestepEmbedding, sinusoidalEmbedding, timestepList } from './blocks/embeddings.js';
import { Ctx, hasShapeOnly, type CtxOptions } from './blocks/layers.js';
import { Downsample2D, ResnetBlock2D, type ResnetSettings } from './blocks/resnet.js';
import { WeightsError, findWeightFiles, loadWeights } from './blocks/weights.js';

export const NOISY_CLASSIFIER_CLASS = 'VSSNoisyClassifier';
export const SCHEDULER_CONFIG_FILE = 'scheduler_config.json';

export interface NoisyClassifierConfig {
  inChannels: number;
  /** Side of the square inputs it was trained on (any size runs; this is for users and checks). */
  sampleSize: number;
  classNames: string[];
  /** Channels per level; every level but the last halves the resolution. */
  blockOutChannels: number[];
  layersPerBlock: number;
  normNumGroups: number;
  normEps: number;
  /** Width of the time-embedding MLP (default 4 × blockOutChannels[0], as the U-Net). */
  timeEmbeddingDim: number;
  flipSinToCos: boolean;
  freqShift: number;
}

export const NOISY_CLASSIFIER_DEFAULTS: Omit<NoisyClassifierConfig, 'classNames'> = {
  inChannels: 1, sampleSize: 28, blockOutChannels: [32, 64, 64], layersPerBlock: 1, normNumGroups: 8, normEps: 1e-5,
  timeEmbeddingDim: 128, flipSinToCos: true, freqShift: 0,
};

export function parseNoisyClassifierConfig(r: ConfigReader, opts: ConfigReadOptions = {}): NoisyClassifierConfig {
  checkClassName(r, [NOISY_CLASSIFIER_CLASS]);
  const d = NOISY_CLASSIFIER_DEFAULTS;
  const classNames = r.stringList('class_names');
  if (classNames.length < 2) r.fail('class_names', `needs at least 2 classes, got ${classNames.length}`);
  const blockOutChannels = r.intList('block_out_channels', d.blockOutChannels);
  const groups = r.size('norm_num_groups', d.normNumGroups);
  if (blockOutChannels.length < 1 || blockOutChannels.some((c) => c < 1 || c % groups !== 0)) {
    r.fail('block_out_channels', `must be positive multiples of norm_num_groups (${groups}), got ${JSON.stringify(blockOutChannels)}`);
  }
  const numClasses = r.optionalInt('num_classes');
  if (numClasses !== null && numClasses !== classNames.length) r.fail('num_classes', `= ${numClasses} but class_names lists ${classNames.length}`);
  const cfg: NoisyClassifierConfig = {
    inChannels: r.size('in_channels', d.inChannels),
    sampleSize: r.size('sample_size', d.sampleSize),
    classNames,
    blockOutChannels,
    layersPerBlock: r.size('layers_per_block', d.layersPerBlock),
    normNumGroups: groups,
    normEps: r.number('norm_eps', d.normEps),
    timeEmbeddingDim: r.size('time_embedding_dim', 4 * blockOutChannels[0]),
    flipSinToCos: r.bool('flip_sin_to_cos', d.flipSinToCos),
    freqShift: r.number('freq_shift', d.freqShift),
  };
  r.ignore('training', 'dtype'); // provenance written by savePretrained; no effect on the computation
  r.finish(opts);
  return cfg;
}

export function noisyClassifierConfigToJson(c: NoisyClassifierConfig): Record<string, unknown> {
  return {
    _class_name: NOISY_CLASSIFIER_CLASS, in_channels: c.inChannels, sample_size: c.sampleSize,
    num_classes: c.classNames.length, class_names: c.classNames, block_out_channels: c.blockOutChannels,
    layers_per_block: c.layersPerBlock, norm_num_groups: c.normNumGroups, norm_eps: c.normEps,
    time_embedding_dim: c.timeEmbeddingDim, flip_sin_to_cos: c.flipSinToCos, freq_shift: c.freqShift,
  };
}

/** One resolution level: resnets, then (except at the last level) a stride-2 conv. */
class ClassifierDownBlock extends Module {
  resnets: ModuleList<ResnetBlock2D>;
  downsamplers: ModuleList<Downsample2D> | null;

  constructor(ctx: Ctx, inChannels: number, outChannels: number, layers: number, downsample: boolean, s: ResnetSettings) {
    super();
    this.resnets = new ModuleList(Array.from({ length: layers }, (_, i) => new ResnetBlock2D(ctx, i === 0 ? inChannels : outChannels, outChannels, s)));
    this.downsamplers = downsample ? new ModuleList([new Downsample2D(ctx, outChannels, outChannels, 1)]) : null;
  }

  forward(h: Tensor, temb: Tensor): Tensor {
    for (const r of this.resnets) h = r.forward(h, temb);
    return this.downsamplers ? this.downsamplers.items[0].forward(h) : h;
  }
}

export interface NoisyClassifierLoadOptions {
  /** Weight dtype after loading (default f32: gradients need f32, and the model is small). */
  dtype?: 'f32' | 'f16';
  strictConfig?: boolean;
}

export class NoisyClassifier extends Module {
  conv_in: Conv2d;
  time_embedding: TimestepEmbedding;
  down_blocks: ModuleList<ClassifierDownBlock>;
  norm_out: GroupNorm;
  head: Linear;
  /** The training noise schedule (a diffusers scheduler config), when known. */
  schedulerConfig: Record<string, unknown> | null = null;
  /** Free-form provenance read from / written to config.json (command, steps, accuracy by t). */
  provenance: Record<string, unknown> | null = null;
  private _shapeOnly: boolean;

  constructor(readonly config: NoisyClassifierConfig, opts: CtxOptions = {}) {
    super();
    const ctx = new Ctx(opts);
    this._shapeOnly = ctx.meta;
    const c = config, bc = c.blockOutChannels;
    const s: ResnetSettings = {
      groups: c.normNumGroups, eps: c.normEps, act: 'silu', tembChannels: c.timeEmbeddingDim,
      timeScaleShift: 'scale_shift', dropout: 0, outputScaleFactor: 1,
    };
    this.conv_in = ctx.conv(c.inChannels, bc[0], 3, { padding: 1 });
    this.time_embedding = new TimestepEmbedding(ctx, bc[0], c.timeEmbeddingDim, 'silu');
    this.down_blocks = new ModuleList(bc.map((ch, i) =>
      new ClassifierDownBlock(ctx, i === 0 ? bc[0] : bc[i - 1], ch, c.layersPerBlock, i < bc.length - 1, s)));
    this.norm_out = ctx.groupNorm(c.normNumGroups, bc[bc.length - 1], c.normEps);
    this.head = ctx.linear(bc[bc.length - 1], c.classNames.length);
  }

  get numClasses(): number { return this.config.classNames.length; }

  /** A freshly initialised model; `config` fills in the defaults. */
  static create(config: Partial<NoisyClassifierConfig> & { classNames: string[] }, opts: CtxOptions = {}): NoisyClassifier {
    const json = noisyClassifierConfigToJson({ ...NOISY_CLASSIFIER_DEFAULTS, timeEmbeddingDim: 4 * (config.blockOutChannels ?? NOISY_CLASSIFIER_DEFAULTS.blockOutChannels)[0], ...config });
    return new NoisyClassifier(parseNoisyClassifierConfig(new ConfigReader(json, `${NOISY_CLASSIFIER_CLASS} config`), { strict: true }), opts);
  }

  /** x_t [B, C, H, W], timesteps (one number, or one per row) → logits [B, classes]. */
  forward(xt: Tensor, t: number | readonly number[]): Tensor {
    const c = this.config;
    if (this._shapeOnly) {
      if (hasShapeOnly(this)) throw new Error(`${NOISY_CLASSIFIER_CLASS}: this model was built shape-only; load weights before running it`);
      this._shapeOnly = false;
    }
    if (xt.ndim !== 4 || xt.shape[1] !== c.inChannels) throw new Error(`${NOISY_CLASSIFIER_CLASS}: input must be [B, ${c.inChannels}, H, W], got [${xt.shape}]`);
    const B = xt.shape[0];
    const emb = sinusoidalEmbedding(timestepList(t, B), c.blockOutChannels[0], { flipSinToCos: c.flipSinToCos, freqShift: c.freqShift });
    const temb = this.time_embedding.forward(emb); // [B, timeEmbeddingDim]
    let h = this.conv_in.forward(xt);
    for (const block of this.down_blocks) h = block.forward(h, temb);
    h = this.norm_out.forward(h).silu();
    return this.head.forward(h.mean([2, 3])); // [B, C_last] → [B, classes]
  }

  /**
   * ∇_{x_t} log p(y_i | x_t,i) for every row i, [B, C, H, W], detached. One backward pass of
   * Σ_i log softmax(logits_i)[y_i] gives them all, since row i's term depends only on row i's input.
   * The weights are taken out of the graph for the pass, so nothing accumulates in their `.grad`, and
   * recording is switched on even when the caller samples under `noGrad`.
   */
  gradLogProb(xt: Tensor, t: number | readonly number[], labels: readonly number[]): Tensor {
    const B = xt.shape[0];
    if (labels.length !== B) throw new Error(`gradLogProb: ${labels.length} labels for a batch of ${B}`);
    const bad = labels.find((y) => !Number.isInteger(y) || y < 0 || y >= this.numClasses);
    if (bad !== undefined) throw new Error(`gradLogProb: class ${bad} is outside 0…${this.numClasses - 1}`);
    const params = this.parameters();
    const wasTracked = params.map((p) => p.requiresGrad);
    try {
      for (const p of params) p.requiresGrad = false;
      return withGrad(true, () => {
        const x = xt.detach().to('f32').contiguous().requiresGrad_(true);
        const logp = logSoftmax(this.forward(x, t), 1);
        const index = fromTypedArray(Int32Array.from(labels), [B, 1], 'i32');
        gather(logp, 1, index).sum().backward();
        return x.grad!.detach();
      });
    } finally {
      params.forEach((p, i) => { p.requiresGrad = wasTracked[i]; });
    }
  }

  /** Write config.json, model.safetensors (f16 by default) and scheduler_config.json, each atomically. */
  savePretrained(folder: string, opts: { dtype?: 'f16' | 'f32' } = {}): void {
    const dtype = opts.dtype ?? 'f16';
    fs.mkdirSync(folder, { recursive: true });
    const tensors = new Map<string, Tensor>();
    for (const [name, t] of this.stateDict()) tensors.set(name, t.detach().to(dtype).contiguous());
    writeSafetensors(path.join(folder, 'model.safetensors'), tensors, { format: 'pt' });
    const json = { ...noisyClassifierConfigToJson(this.config), dtype: dtype === 'f16' ? 'float16' : 'float32', training: this.provenance };
    writeFileAtomic(path.join(folder, 'config.json'), `${JSON.stringify(json, null, 2)}\n`);
    if (this.schedulerConfig) writeFileAtomic(path.join(folder, SCHEDULER_CONFIG_FILE), `${JSON.stringify(this.schedulerConfig, null, 2)}\n`);
  }

  /** Load a folder written by `savePretrained`: strict keys and shapes, clear errors for damaged files. */
  static fromPretrained(folder: string, opts: NoisyClassifierLoadOptions = {}): NoisyClassifier {
    const label = `${NOISY_CLASSIFIER_CLASS}.fromPretrained(${folder})`;
    if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) throw new WeightsError(`${label}: not a folder`);
    const configFile = path.join(folder, 'config.json');
    if (!fs.existsSync(configFile)) throw new WeightsError(`${label}: no config.json in the folder`);
    const reader = ConfigReader.fromFile(configFile, NOISY_CLASSIFIER_CLASS);
    const model = new NoisyClassifier(parseNoisyClassifierConfig(reader, { strict: opts.strictConfig }), { meta: true });
    const training = reader.raw.training;
    model.provenance = training && typeof training === 'object' && !Array.isArray(training) ? training as Record<string, unknown> : null;
    try {
      loadWeights(model, findWeightFiles(folder, undefined, 'model'), { label, dtype: opts.dtype ?? 'f32' });
    } catch (err) {
      // SafetensorsFile's own messages (truncated, bad header) name the file but not what was being loaded.
      const msg = (err as Error).message;
      throw err instanceof WeightsError ? err : new WeightsError(`${label}: ${msg}`);
    }
    const schedFile = path.join(folder, SCHEDULER_CONFIG_FILE);
    if (fs.existsSync(schedFile)) {
      try {
        model.schedulerConfig = JSON.parse(fs.readFileSync(schedFile, 'utf8')) as Record<string, unknown>;
        schedulerFromConfig(model.schedulerConfig); // validates it
      } catch (err) {
        throw new WeightsError(`${label}: ${SCHEDULER_CONFIG_FILE} is not a usable scheduler config: ${(err as Error).message}`);
      }
    }
    return model.eval();
  }
}

/**
 * Do two scheduler configs describe the same noise schedule (ᾱ_t for every t)? A classifier trained on
 * one schedule reads another's x_t as the wrong noise level, so guidance would push the wrong way.
 */
export function sameNoiseSchedule(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const sa = schedulerFromConfig(a).schedule, sb = schedulerFromConfig(b).schedule;
  if (sa.numTrainTimesteps !== sb.numTrainTimesteps) return false;
  return sa.alphasCumprod.every((v, i) => Math.abs(v - sb.alphasCumprod[i]) <= 1e-6);
}

/**
 * The pipeline's `ClassifierGradient` for a noisy classifier. Give the denoiser's scheduler config
 * (`pipeline.schedulerConfig`) to have it checked against the schedule the classifier was trained on.
 */
export function classifierGradientFrom(model: NoisyClassifier, opts: { schedulerConfig?: Record<string, unknown> } = {}): ClassifierGradient {
  if (opts.schedulerConfig && model.schedulerConfig && !sameNoiseSchedule(opts.schedulerConfig, model.schedulerConfig)) {
    const name = (c: Record<string, unknown>) => `${String(c.beta_schedule ?? 'linear')}, ${String(c.num_train_timesteps ?? 1000)} steps`;
    throw new Error(`classifier guidance: the classifier was trained on another noise schedule (${name(model.schedulerConfig)}) ` +
      `than the diffusion model's (${name(opts.schedulerConfig)}); train it with --like <the diffusion model folder>`);
  }
  return (xt, t, labels) => model.gradLogProb(xt, t, labels);
}
