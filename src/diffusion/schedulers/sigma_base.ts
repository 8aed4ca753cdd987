/**
 * What the sigma-based samplers share: the σ table, the step counter and its lookup from a timestep, and the
 * two ways of laying out (timesteps, σ) — the k-diffusion family (Euler, Euler ancestral, Heun, LMS), which
 * works on x̃ = x/√ᾱ = x_0 + σ ε ("variance exploding", [EDM] §2), and the multistep solvers (DPM-Solver++,
 * UniPC), which keep the variance-preserving x_t = α_t x_0 + σ_t ε with α_t = 1/√(σ² + 1), σ_t = σ α_t.
 */
import { type Tensor, add, mul } from '../../engine/index.js';
import {
  karrasSigmas, linspace, logSigmas, roundHalfEven, sigmaToT, sigmasAt, spacedTimesteps, spacedTimestepsMultistep, vpFromSigma,
} from '../schedules.js';
import { BaseScheduler } from './base.js';
import type { CommonConfig } from './config.js';

const f32 = Math.fround;

/** The config fields the σ layouts read (each scheduler has the subset its diffusers class has). */
export interface SigmaLayoutConfig extends CommonConfig {
  readonly useKarrasSigmas?: boolean;
  readonly sigmaMin?: number | null;
  readonly sigmaMax?: number | null;
  readonly interpolationType?: 'linear' | 'log_linear';
  readonly finalSigmasType?: 'zero' | 'sigma_min';
  readonly timestepType?: 'discrete' | 'continuous';
  readonly lambdaMinClipped?: number;
}

export abstract class SigmaScheduler<C extends SigmaLayoutConfig> extends BaseScheduler<C> {
  /** σ_t = √((1 − ᾱ_t)/ᾱ_t) for t = 0 … T−1 (float32), and its log. */
  protected readonly trainSigmas: Float32Array;
  protected readonly trainLogSigmas: Float32Array;
  /** Position in `timesteps` of the next step; null until the first step/scaleModelInput. */
  protected stepIndex: number | null = null;

  protected constructor(config: C) {
    super(config, { terminalAlphaBar: 2 ** -24 });
    this.trainSigmas = this.schedule.sigmas();
    this.trainLogSigmas = logSigmas(this.trainSigmas);
  }

  /** The index of the step about to run (null before the first one). */
  get currentStepIndex(): number | null { return this.stepIndex; }

  override setTimesteps(steps: number): void {
    super.setTimesteps(steps);
    this.stepIndex = null;
  }

  /**
   * Where t sits in `timesteps`. When t appears more than once the second occurrence is taken, so that a
   * run starting mid-schedule (img2img) does not skip a step — diffusers' rule.
   */
  protected indexForTimestep(t: number): number {
    const hits: number[] = [];
    this.timesteps.forEach((s, i) => { if (s === t || s === f32(t)) hits.push(i); });
    if (hits.length === 0) {
      throw new Error(`${this.className}: timestep ${t} is not one of the scheduler's timesteps [${this.timesteps.join(', ')}]`);
    }
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /** The step index for a call at t (initialised on first use), after the call-order guard. */
  protected indexFor(t: number, method: string): number {
    this.requireTimesteps(method);
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
    if (this.stepIndex >= this.timesteps.length) {
      throw new Error(`${this.className}.${method}: all ${this.timesteps.length} steps were taken; call setTimesteps again`);
    }
    return this.stepIndex;
  }

  /** The index addNoise uses: t's own index, or the begin/current index in img2img/inpainting flows. */
  protected addNoiseIndex(t: number): number {
    this.requireTimesteps('addNoise');
    if (this.beginIndex === null) return this.indexForTimestep(t);
    return this.stepIndex ?? this.beginIndex;
  }
}

// ---------------------------------------------------------------------------------------------- k-diffusion family

/**
 * Timesteps and σ for Euler, Euler ancestral, Heun and LMS: timesteps spaced over [0, T−1] (not rounded for
 * 'linspace'), σ interpolated at them from the training table; or Karras σ ([EDM] eq. 5) between the first
 * and last of those, mapped back to fractional timesteps. A final σ (0, or σ_min) ends the list.
 */
export function layoutKDiffusion(c: SigmaLayoutConfig, steps: number, trainSigmas: Float32Array,
                                 trainLogSigmas: Float32Array): { timesteps: number[]; sigmas: number[] } {
  let ts = spacedTimesteps(c.timestepSpacing, steps, c.numTrainTimesteps, { stepsOffset: c.stepsOffset, round: false });
  let sig: number[];
  if (c.interpolationType === 'log_linear') {
    // diffusers: n + 1 log-spaced values from σ_max to σ_min, so the last step ends at σ_min.
    const T = trainSigmas.length;
    sig = linspace(Math.log(trainSigmas[T - 1]), Math.log(trainSigmas[0]), steps + 1).map((l) => f32(Math.exp(f32(l))));
  } else {
    sig = sigmasAt(ts, trainSigmas);
  }
  if (c.useKarrasSigmas) {
    sig = karrasSigmas(c.sigmaMin ?? sig[sig.length - 1], c.sigmaMax ?? sig[0], steps);
    ts = sig.map((s) => f32(sigmaToT(s, trainLogSigmas)));
  }
  const last = c.finalSigmasType === 'sigma_min' ? trainSigmas[0] : 0;
  const sigmas = [...sig, last].map(f32);
  if (c.timestepType === 'continuous' && c.predictionType === 'v_prediction') {
    ts = sigmas.slice(0, -1).map((s) => f32(0.25 * Math.log(s)));
  }
  return { timesteps: ts, sigmas };
}

/** Base of the k-diffusion samplers: the model sees x / √(σ² + 1), and x_T = ε · σ_max. */
export abstract class KDiffusionScheduler<C extends SigmaLayoutConfig> extends SigmaScheduler<C> {
  protected layout(steps: number): void {
    const { timesteps, sigmas } = layoutKDiffusion(this.config, steps, this.trainSigmas, this.trainLogSigmas);
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.resetState();
  }

  /** Clear the sampler's history (called by setTimesteps). */
  protected resetState(): void {}

  override get initNoiseSigma(): number {
    const max = this.sigmas.length ? Math.max(...this.sigmas) : this.trainSigmas[this.trainSigmas.length - 1];
    // 'leading' spacing never reaches t = T−1, and diffusers then starts from √(σ² + 1) instead.
    return this.config.timestepSpacing === 'linspace' || this.config.timestepSpacing === 'trailing' ? max : Math.sqrt(max * max + 1);
  }

  /** [EDM] Table 1, VP preconditioning c_in = 1/√(σ² + 1): the network was trained on x_t = x̃ / √(σ² + 1). */
  override scaleModelInput(x: Tensor, t: number): Tensor {
    const sigma = this.sigmas[this.indexFor(t, 'scaleModelInput')];
    return mul(x, 1 / Math.sqrt(sigma * sigma + 1));
  }

  /** x̃ = x_0 + σ ε. */
  override addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    return add(x0, mul(noise, this.sigmas[this.addNoiseIndex(t)]));
  }
}

// ---------------------------------------------------------------------------------------------- multistep family

/**
 * Timesteps and σ for DPM-Solver++ and UniPC: `steps + 1` spaced integer timesteps, the last dropped; σ from the
 * training table; or Karras σ over the whole trained range with timesteps rounded. A final σ (0 or σ_min).
 */
export function layoutMultistep(c: SigmaLayoutConfig, steps: number, trainSigmas: Float32Array,
                                trainLogSigmas: Float32Array, lambdaT?: Float64Array): { timesteps: number[]; sigmas: number[] } {
  let last = c.numTrainTimesteps;
  if (lambdaT && c.lambdaMinClipped !== undefined && c.lambdaMinClipped > -Infinity) {
    // Clip the range where λ(t) = log α_t − log σ_t falls below λ_min (cosine schedules, Lu et al. 2022b).
    let idx = 0;
    for (let i = lambdaT.length - 1; i >= 0 && lambdaT[i] < c.lambdaMinClipped; i--) idx++;
    last = c.numTrainTimesteps - idx;
  }
  let ts = spacedTimestepsMultistep(c.timestepSpacing, steps, c.numTrainTimesteps, { stepsOffset: c.stepsOffset, lastTimestep: last });
  let sig: number[];
  if (c.useKarrasSigmas) {
    const T = trainSigmas.length;
    sig = karrasSigmas(trainSigmas[0], trainSigmas[T - 1], steps);
    ts = sig.map((s) => roundHalfEven(sigmaToT(s, trainLogSigmas)));
  } else {
    sig = sigmasAt(ts, trainSigmas);
  }
  const lastSigma = c.finalSigmasType === 'sigma_min' ? trainSigmas[0] : 0;
  return { timesteps: ts, sigmas: [...sig, lastSigma].map(f32) };
}

/** Base of the multistep solvers: they step x_t itself (no input scaling, x_T = ε). */
export abstract class MultistepScheduler<C extends SigmaLayoutConfig> extends SigmaScheduler<C> {
  /** α_t, σ_t and λ_t = log(α_t/σ_t) (half log-SNR) of a VE σ. */
  protected alphaSigmaLambda(sigma: number): { alpha: number; sigma: number; lambda: number } {
    const { alpha, sigma: s } = vpFromSigma(sigma);
    return { alpha, sigma: s, lambda: Math.log(alpha) - Math.log(s) };
  }

  override scaleModelInput(x: Tensor, t: number): Tensor {
    this.requireTimesteps('scaleModelInput');
    void t;
    return x;
  }

  /** x_t = α_t x_0 + σ_t ε at the step's σ. */
  override addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    const { alpha, sigma } = vpFromSigma(this.sigmas[this.addNoiseIndex(t)]);
    return add(mul(x0, alpha), mul(noise, sigma));
  }
}
