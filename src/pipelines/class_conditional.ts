/**
 * A pixel-space, class-conditional diffusion model and its sampler: the Fashion-MNIST generator VSS trains
 * and ships (`models/fmnist-ddpm`), or any model `vss train ddpm` writes.
 *
 * On disk it is a diffusers-style folder, so each part reads like its official counterpart:
 *
 *   model_index.json                     { _class_name: "VSSClassConditionalPipeline", class_names, image_size, … }
 *   unet/config.json                     a UNet2DModel config (num_class_embeds = classes + 1: the last is "no class")
 *   unet/diffusion_pytorch_model.safetensors
 *   scheduler/scheduler_config.json      the training noise schedule and prediction type
 *
 * Sampling runs any shared scheduler (DDPM ancestral, DDIM with η, DPM-Solver++, Euler, …) with
 *   classifier-free guidance  ε̂ = ε(x, ∅) + s · (ε(x, y) − ε(x, ∅))       (Ho & Salimans 2022, eq. 6)
 *   classifier guidance       ε̂ = ε − w · √(1 − ᾱ_t) · ∇_x log p(y | x_t)   (Dhariwal & Nichol 2021, Algorithm 2)
 * Both are applied to ε; the result goes back to the model's own parameterisation before the scheduler step.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Rng, type Tensor, cat, clamp, fromTypedArray, noGrad, randn } from '../engine/index.js';
import { writeSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../image/io.js';
import { UNet2DModel } from '../models/unet2d.js';
import { type Scheduler, samplerFromName, schedulerFromConfig } from '../diffusion/schedulers/index.js';
import { NoiseSchedule, type PredictionType, predictX0Eps, vFromX0Eps } from '../diffusion/schedules.js';

export const PIPELINE_CLASS = 'VSSClassConditionalPipeline';

export interface ClassConditionalInfo {
  classNames: string[];
  imageSize: number;
  channels: number;
  /** What the training data was scaled to; samples are mapped back from it. */
  dataRange: 'signed';
  /** Defaults `vss generate` uses for this model. */
  defaults: { sampler: string; steps: number; guidanceScale: number };
  /** Free-form provenance: the training command, steps, time. */
  training?: Record<string, unknown>;
}

/** ∇_x log p(y | x_t) for a batch (classifier guidance); x_t is the variance-preserving sample at timestep t. */
export type ClassifierGradient = (xt: Tensor, t: number, labels: number[]) => Tensor;

export interface ClassConditionalGenerateOptions {
  /** One class index per image; null entries (or an empty `labels` with `count`) mean unconditional. */
  labels: (number | null)[];
  /** A scheduler or a sampler name ('DDIM', 'DDPM', 'DPM++ 2M', 'Euler a', …). */
  sampler?: string | Scheduler;
  steps?: number;
  /** DDIM's η (0: deterministic). */
  eta?: number;
  /** Classifier-free guidance scale: 0 unconditional, 1 conditional only, > 1 stronger. */
  guidanceScale?: number;
  classifierGuidance?: { gradient: ClassifierGradient; scale: number };
  rng?: Rng;
  /** Starting noise [B, C, S, S] instead of drawing it (replays, tests). */
  noise?: Tensor;
  /** Called after each step with the current sample and the model's x_0 estimate (previews, strips). */
  onStep?: (i: number, total: number, sample: Tensor, predX0: Tensor | null) => void | boolean;
}

export class ClassConditionalPipeline {
  /** The training noise schedule, built once (guidance reads it every step). */
  readonly schedule: NoiseSchedule;

  constructor(readonly unet: UNet2DModel, readonly schedulerConfig: Record<string, unknown>, readonly info: ClassConditionalInfo) {
    this.schedule = schedulerFromConfig(schedulerConfig).schedule;
    const n = unet.config.numClassEmbeds;
    if (n !== null && n !== info.classNames.length + 1) {
      throw new Error(`${PIPELINE_CLASS}: the U-Net has ${n} class embeddings, expected ${info.classNames.length + 1} (${info.classNames.length} classes + the null class)`);
    }
    if (unet.config.inChannels !== info.channels) throw new Error(`${PIPELINE_CLASS}: the U-Net takes ${unet.config.inChannels} channels, model_index.json says ${info.channels}`);
  }

  get numClasses(): number { return this.info.classNames.length; }
  get nullClass(): number { return this.info.classNames.length; }
  get conditional(): boolean { return this.unet.config.numClassEmbeds !== null; }
  get prediction(): PredictionType { return (this.schedulerConfig.prediction_type as PredictionType | undefined) ?? 'epsilon'; }

  /** Is `dir` a folder this class loads? */
  static isPipelineFolder(dir: string): boolean {
    const index = path.join(dir, 'model_index.json');
    if (!fs.existsSync(index)) return false;
    try {
      return (JSON.parse(fs.readFileSync(index, 'utf8')) as { _class_name?: unknown })._class_name === PIPELINE_CLASS;
    } catch {
      return false;
    }
  }

  static fromPretrained(dir: string): ClassConditionalPipeline {
    const indexFile = path.join(dir, 'model_index.json');
    if (!fs.existsSync(indexFile)) throw new Error(`${dir} is not a model folder: no model_index.json`);
    let index: Record<string, unknown>;
    try {
      index = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`${indexFile} is not valid JSON: ${(err as Error).message}`);
    }
    if (index._class_name !== PIPELINE_CLASS) throw new Error(`${indexFile} describes a ${String(index._class_name)}, not a ${PIPELINE_CLASS}`);
    const info = parseInfo(index, indexFile);
    const schedulerFile = path.join(dir, 'scheduler', 'scheduler_config.json');
    if (!fs.existsSync(schedulerFile)) throw new Error(`${dir}: missing scheduler/scheduler_config.json`);
    const schedulerConfig = JSON.parse(fs.readFileSync(schedulerFile, 'utf8')) as Record<string, unknown>;
    const unet = UNet2DModel.fromPretrained(path.join(dir, 'unet'), { dtype: 'f32' });
    unet.eval();
    return new ClassConditionalPipeline(unet, schedulerConfig, info);
  }

  /** Write the folder (weights as f16 by default: half the size, and sampling computes in f32 anyway). */
  save(dir: string, opts: { unetConfig: Record<string, unknown>; dtype?: 'f16' | 'f32'; weights?: Map<string, Tensor> }): void {
    const dtype = opts.dtype ?? 'f16';
    fs.mkdirSync(path.join(dir, 'unet'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'scheduler'), { recursive: true });
    const sd = opts.weights ?? this.unet.stateDict();
    const out = new Map<string, Tensor>();
    for (const [k, v] of sd) out.set(k, v.detach().to(dtype).contiguous());
    writeSafetensors(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), out, { format: 'pt' });
    writeFileAtomic(path.join(dir, 'unet', 'config.json'), `${JSON.stringify(opts.unetConfig, null, 2)}\n`);
    writeFileAtomic(path.join(dir, 'scheduler', 'scheduler_config.json'), `${JSON.stringify(this.schedulerConfig, null, 2)}\n`);
    const i = this.info;
    const index = {
      _class_name: PIPELINE_CLASS, class_names: i.classNames, image_size: i.imageSize, channels: i.channels,
      data_range: i.dataRange, default_sampler: i.defaults.sampler, default_steps: i.defaults.steps,
      default_guidance_scale: i.defaults.guidanceScale, training: i.training ?? null,
      unet: ['vss', 'UNet2DModel'], scheduler: ['diffusers', this.schedulerConfig._class_name ?? 'DDPMScheduler'],
    };
    writeFileAtomic(path.join(dir, 'model_index.json'), `${JSON.stringify(index, null, 2)}\n`);
  }

  /** A scheduler built on this model's training schedule: by name, or the model's default. */
  scheduler(name?: string): Scheduler {
    return samplerFromName(name ?? this.info.defaults.sampler, this.schedulerConfig);
  }

  /** The class index for a class name or a prompt that names one ("a sneaker", "Ankle boot"), or null. */
  classFromText(text: string): number | null {
    const t = ` ${text.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim()} `;
    const names = this.info.classNames.map((n, i) => ({ i, n: n.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim() }));
    // Longest names first, so "ankle boot" wins over a class called "boot".
    names.sort((a, b) => b.n.length - a.n.length);
    for (const { i, n } of names) {
      if (t.includes(` ${n} `) || t.includes(` ${n}s `) || t.includes(` ${n}es `)) return i;
      const last = n.split(' ').at(-1)!;
      if (last.length > 3 && (t.includes(` ${last} `) || t.includes(` ${last}s `))) return i;
    }
    return null;
  }

  /** Samples [B, C, S, S] in [−1, 1]. */
  generate(o: ClassConditionalGenerateOptions): Tensor {
    const B = o.labels.length;
    if (B < 1) throw new Error('generate: no images asked for (labels is empty)');
    for (const y of o.labels) {
      if (y !== null && (!Number.isInteger(y) || y < 0 || y >= this.numClasses)) {
        throw new Error(`generate: class ${y} is outside 0…${this.numClasses - 1} (${this.info.classNames.join(', ')})`);
      }
    }
    const guidance = o.guidanceScale ?? this.info.defaults.guidanceScale;
    if (!(guidance >= 0 && Number.isFinite(guidance))) throw new Error(`generate: guidance scale must be ≥ 0, got ${guidance}`);
    const scheduler = typeof o.sampler === 'object' ? o.sampler : this.scheduler(o.sampler);
    scheduler.setTimesteps(o.steps ?? this.info.defaults.steps);
    const { imageSize: S, channels: C } = this.info;
    const shape = [B, C, S, S];
    if (o.noise && o.noise.shape.join() !== shape.join()) throw new Error(`generate: noise is [${o.noise.shape}], expected [${shape}]`);
    let x = (o.noise ?? randn(shape, { rng: o.rng })).mul(scheduler.initNoiseSigma);

    const cond = o.labels.map((y) => y ?? this.nullClass);
    const uncond = o.labels.map(() => this.nullClass);
    const anyConditional = o.labels.some((y) => y !== null);
    const schedule = scheduler.schedule;
    const steps = scheduler.timesteps;
    for (let i = 0; i < steps.length; i++) {
      const t = steps[i];
      const input = scheduler.scaleModelInput(x, t);
      const tInt = Math.min(Math.max(Math.round(t), 0), schedule.numTrainTimesteps - 1);
      let out = noGrad(() => this.denoise(input, t, cond, uncond, anyConditional ? guidance : 0));
      if (o.classifierGuidance && o.classifierGuidance.scale !== 0 && anyConditional) {
        out = this.applyClassifierGuidance(out, input, tInt, o.labels, o.classifierGuidance);
      }
      const r = scheduler.step(out, t, x, { rng: o.rng, eta: o.eta, useClippedModelOutput: true });
      x = r.prevSample;
      if (o.onStep && o.onStep(i, steps.length, x, r.predOriginalSample ?? null) === false) break;
    }
    return clamp(x, -1, 1);
  }

  /** The model output with classifier-free guidance folded in (one batched forward when guiding). */
  private denoise(x: Tensor, t: number, cond: number[], uncond: number[], scale: number): Tensor {
    if (!this.conditional) return this.unet.forward(x, t);
    if (scale === 1) return this.unet.forward(x, t, cond);
    if (scale === 0) return this.unet.forward(x, t, uncond);
    const both = this.unet.forward(cat([x, x], 0), t, [...cond, ...uncond]);
    const [c, u] = both.chunk(2, 0);
    // Guidance is linear, so mixing the raw outputs equals mixing ε (or x_0, or v) at a fixed x_t.
    return u.add(c.sub(u).mul(scale));
  }

  private applyClassifierGuidance(out: Tensor, xt: Tensor, t: number, labels: (number | null)[],
                                  g: { gradient: ClassifierGradient; scale: number }): Tensor {
    const { alpha, sigma } = this.schedule.alphaSigma(t);
    const { eps } = predictX0Eps(this.prediction, out, xt, alpha, sigma);
    // Unconditional rows get no push: give the classifier a label and zero their gradient.
    const ys = labels.map((y) => y ?? 0);
    let grad = g.gradient(xt, t, ys).detach();
    if (labels.some((y) => y === null)) {
      const mask = labels.map((y) => (y === null ? 0 : 1));
      grad = grad.mul(maskTensor(mask, grad.shape));
    }
    const guidedEps = eps.sub(grad.mul(g.scale * sigma));
    const guidedX0 = xt.sub(guidedEps.mul(sigma)).div(alpha);
    switch (this.prediction) {
      case 'epsilon': return guidedEps;
      case 'sample': return guidedX0;
      default: return vFromX0Eps(guidedX0, guidedEps, alpha, sigma);
    }
  }
}

/** [B, 1, …] 0/1 rows broadcast over each sample. */
function maskTensor(mask: number[], shape: readonly number[]): Tensor {
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const data = new Float32Array(mask.length * per);
  mask.forEach((m, i) => data.fill(m, i * per, (i + 1) * per));
  return fromTypedArray(data, [...shape]);
}

function parseInfo(index: Record<string, unknown>, file: string): ClassConditionalInfo {
  const names = index.class_names;
  if (!Array.isArray(names) || names.length < 1 || !names.every((n) => typeof n === 'string')) {
    throw new Error(`${file}: class_names must be a non-empty list of strings`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = index[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${file}: ${key} must be a positive integer, got ${JSON.stringify(index[key])}`);
    return v;
  };
  if (index.data_range !== undefined && index.data_range !== 'signed') throw new Error(`${file}: data_range must be "signed" ([−1, 1]), got ${JSON.stringify(index.data_range)}`);
  const guidance = index.default_guidance_scale ?? 3;
  if (typeof guidance !== 'number' || !(guidance >= 0)) throw new Error(`${file}: default_guidance_scale must be a number ≥ 0`);
  const sampler = index.default_sampler ?? 'DDIM';
  if (typeof sampler !== 'string') throw new Error(`${file}: default_sampler must be a sampler name`);
  return {
    classNames: names as string[], imageSize: int('image_size'), channels: int('channels', 1), dataRange: 'signed',
    defaults: { sampler, steps: int('default_steps', 50), guidanceScale: guidance },
    training: (index.training as Record<string, unknown> | null) ?? undefined,
  };
}

