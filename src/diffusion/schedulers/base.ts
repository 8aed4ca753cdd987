/**
 * The one interface every sampler implements, and the base class holding what they share: the noise schedule
 * built from the config, the call-order guards, noise drawing and x_0 clipping.
 *
 * The protocol is diffusers':
 *
 *   scheduler.setTimesteps(steps);
 *   let x = mul(noise, scheduler.initNoiseSigma);
 *   for (const t of scheduler.timesteps) {
 *     const out = model(scheduler.scaleModelInput(x, t), t);
 *     x = scheduler.step(out, t, x, { rng }).prevSample;
 *   }
 *
 * `timesteps` may repeat a value (Heun evaluates twice per step, PNDM repeats one): always iterate over the
 * array and pass its values. Sigma-based schedulers count their position internally, from the first `step`
 * or `scaleModelInput` call.
 */
import { Tensor, type Rng, randn, clamp, div, mul, fromTypedArray } from '../../engine/index.js';
import { NoiseSchedule } from '../schedules.js';
import { configToJSON, type CommonConfig, type ThresholdConfig } from './config.js';

export interface StepOptions {
  /** Stochastic samplers draw their noise from here (default: the engine's default generator)… */
  rng?: Rng;
  /** …unless the noise is given (same shape as the sample), e.g. to replay a reference run. */
  noise?: Tensor;
  /** DDIM only: η of the step (overrides the config's `eta`); 0 is deterministic DDIM, 1 is DDPM-like. */
  eta?: number;
  /**
   * DDIM only: re-derive ε̂ from the clipped x̂_0 (GLIDE; diffusers' `use_clipped_model_output`). Off by default
   * as in diffusers; a guided sampler wants it on, since an extrapolated ε̂ otherwise pushes x_t off the data range.
   */
  useClippedModelOutput?: boolean;
}

export interface StepOutput {
  /** x_{t−1}: the sample to pass to the next step. */
  prevSample: Tensor;
  /** The model's estimate of x_0 at this step, where the sampler forms one (previews, guidance). */
  predOriginalSample?: Tensor;
}

export interface Scheduler {
  /** The diffusers class this reproduces, e.g. 'EulerDiscreteScheduler'. */
  readonly className: string;
  readonly config: Readonly<CommonConfig>;
  /** Model evaluations per step of the underlying method (Heun: 2); `timesteps` already lists each one. */
  readonly order: number;
  /** The training noise schedule (betas, ᾱ_t). */
  readonly schedule: NoiseSchedule;
  /** The timesteps to evaluate the model at, in order; empty until `setTimesteps`. Float32 values. */
  readonly timesteps: readonly number[];
  /** σ per entry of `timesteps` plus the final one, for sigma-based schedulers (empty for the others). */
  readonly sigmas: readonly number[];
  /** Standard deviation of the starting noise: x_T = ε · initNoiseSigma. */
  readonly initNoiseSigma: number;
  /** The step count given to `setTimesteps`, or null before it. */
  readonly numInferenceSteps: number | null;

  /** Lay out the inference timesteps and reset the sampler's state; throws if steps > numTrainTimesteps. */
  setTimesteps(steps: number): void;
  /** img2img: start at entry `index` of `timesteps` (diffusers' `set_begin_index`). */
  setBeginIndex(index: number): void;
  /** The model input for timestep t (sigma-based samplers divide by √(σ² + 1)). */
  scaleModelInput(x: Tensor, t: number): Tensor;
  /** One sampler step from x_t to x_{t−1}, given the model's output at (scaleModelInput(x, t), t). */
  step(modelOutput: Tensor, t: number, x: Tensor, opts?: StepOptions): StepOutput;
  /** Noise clean samples to the level of timestep t, the way this sampler expects its input (img2img). */
  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor;
  /** The config as a `scheduler_config.json` object. */
  toJSON(): Record<string, unknown>;
}

export abstract class BaseScheduler<C extends CommonConfig> implements Scheduler {
  abstract readonly className: string;
  readonly order: number = 1;
  readonly config: C;
  readonly schedule: NoiseSchedule;
  timesteps: number[] = [];
  sigmas: number[] = [];
  numInferenceSteps: number | null = null;
  protected beginIndex: number | null = null;

  protected constructor(config: C, scheduleOpts: { terminalAlphaBar?: number } = {}) {
    this.config = config;
    // The sigma-based samplers cannot take ᾱ_T = 0 (σ_T = ∞) after a zero-SNR rescale: they pass 2⁻²⁴.
    this.schedule = NoiseSchedule.from({
      ...config,
      terminalAlphaBar: config.rescaleBetasZeroSnr ? scheduleOpts.terminalAlphaBar : undefined,
    });
  }

  get initNoiseSigma(): number { return 1; }

  setTimesteps(steps: number): void {
    const T = this.config.numTrainTimesteps;
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`${this.className}.setTimesteps: steps must be a positive integer, got ${steps}`);
    if (steps > T) {
      throw new Error(`${this.className}.setTimesteps(${steps}): cannot exceed num_train_timesteps = ${T} (the model was trained with only ${T} timesteps)`);
    }
    this.numInferenceSteps = steps;
    this.beginIndex = null;
    this.layout(steps);
  }

  /** Compute `timesteps` (and `sigmas`) for `steps` and reset the sampler state. */
  protected abstract layout(steps: number): void;

  setBeginIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0) throw new Error(`${this.className}.setBeginIndex: index must be a non-negative integer, got ${index}`);
    this.beginIndex = index;
  }

  scaleModelInput(x: Tensor, t: number): Tensor {
    this.requireTimesteps('scaleModelInput');
    void t;
    return x;
  }

  abstract step(modelOutput: Tensor, t: number, x: Tensor, opts?: StepOptions): StepOutput;

  /** [DDPM] eq. 4: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε at an integer training timestep. */
  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    return this.schedule.qSample(x0, noise, this.trainTimestep(t, 'addNoise'));
  }

  toJSON(): Record<string, unknown> { return configToJSON(this.className, this.config); }

  // ------------------------------------------------------------------ helpers for the samplers

  /** The call-order guard: `step`/`scaleModelInput` need `setTimesteps` first. */
  protected requireTimesteps(method: string): void {
    if (this.numInferenceSteps === null) {
      throw new Error(`${this.className}.${method}() called before setTimesteps(): call setTimesteps(steps) first`);
    }
  }

  /** An integer training timestep in [0, T). */
  protected trainTimestep(t: number, method: string): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.config.numTrainTimesteps) {
      throw new Error(`${this.className}.${method}: timestep ${t} is not an integer in [0, ${this.config.numTrainTimesteps - 1}]`);
    }
    return t;
  }

  /** Noise for a stochastic step: opts.noise if given (shape-checked), else drawn from opts.rng. */
  protected noiseLike(x: Tensor, opts?: StepOptions): Tensor {
    const n = opts?.noise;
    if (n) {
      if (n.shape.length !== x.shape.length || n.shape.some((d, i) => d !== x.shape[i])) {
        throw new Error(`${this.className}.step: noise has shape [${n.shape}], the sample [${x.shape}]`);
      }
      return n;
    }
    return randn(x.shape, { rng: opts?.rng });
  }

  /** x_0 post-processing: dynamic thresholding or clipping, when the config asks for it. */
  protected clipX0(x0: Tensor): Tensor {
    const c = this.config as unknown as Partial<ThresholdConfig>;
    if (c.thresholding) return dynamicThreshold(x0, c.dynamicThresholdingRatio ?? 0.995, c.sampleMaxValue ?? 1);
    if (c.clipSample) return clamp(x0, -(c.clipSampleRange ?? 1), c.clipSampleRange ?? 1);
    return x0;
  }
}

/**
 * Imagen's dynamic thresholding (Saharia et al. 2022, §2.3): per sample, s = the `ratio` quantile of |x_0|
 * (linear interpolation, as torch.quantile), clamped to [1, maxValue]; x_0 ← clamp(x_0, −s, s) / s.
 */
export function dynamicThreshold(x0: Tensor, ratio: number, maxValue: number): Tensor {
  const b = x0.shape[0] ?? 1;
  const per = x0.numel / b;
  const data = x0.toFloat32Array();
  const s = new Float32Array(b);
  for (let i = 0; i < b; i++) {
    const a = Array.from(data.subarray(i * per, (i + 1) * per), Math.abs).sort((p, q) => p - q);
    const pos = ratio * (a.length - 1), lo = Math.floor(pos), hi = Math.min(lo + 1, a.length - 1);
    const q = a[lo] + (pos - lo) * (a[hi] - a[lo]);
    s[i] = Math.min(Math.max(q, 1), maxValue);
  }
  const sT = fromTypedArray(s, [b, ...x0.shape.slice(1).map(() => 1)]);
  return div(clampPerSample(x0, s, per), sT);
}

function clampPerSample(x: Tensor, s: Float32Array, per: number): Tensor {
  const d = x.toFloat32Array();
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) { const m = s[Math.floor(i / per)]; out[i] = Math.min(Math.max(d[i], -m), m); }
  return fromTypedArray(out, x.shape);
}

/** a·x + b·y (engine ops, f32). */
export function axpby(a: number, x: Tensor, b: number, y: Tensor): Tensor {
  return mul(x, a).add(mul(y, b));
}
