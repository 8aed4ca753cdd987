/**
 * DDIM: Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021 (arXiv:2010.02502).
 * Reproduces diffusers' `DDIMScheduler`.
 *
 * Notation (paper ↔ code): α_t of the paper is ᾱ_t here (`aT`), α_{t−1} is ᾱ_prev (`aPrev`); t_prev is the
 * previous entry of the spaced sub-sequence τ (t − T/steps).
 */
import type { Tensor } from '../../engine/index.js';
import { spacedTimesteps, predictX0Eps } from '../schedules.js';
import { BaseScheduler, axpby, type StepOptions, type StepOutput } from './base.js';
import { bool, commonFields, num, parseConfig, thresholdFields, type ConfigOf } from './config.js';

const FIELDS = {
  ...commonFields({ spacing: 'leading' }),
  ...thresholdFields(true),
  /** ᾱ used past the last step: 1 (a clean final sample) or ᾱ_0 (SD's training setting). */
  setAlphaToOne: bool(true),
  /** Default η of every step (diffusers passes it to `step`; here it may also live in the config). */
  eta: num(0, { min: 0 }),
};
export type DDIMConfig = ConfigOf<typeof FIELDS>;

export class DDIMScheduler extends BaseScheduler<DDIMConfig> {
  readonly className = 'DDIMScheduler';
  private readonly finalAlphaCumprod: number;

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('DDIMScheduler', FIELDS, json));
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.schedule.alphasCumprod[0];
  }

  protected layout(steps: number): void {
    const c = this.config;
    this.timesteps = spacedTimesteps(c.timestepSpacing, steps, c.numTrainTimesteps, { stepsOffset: c.stepsOffset });
  }

  /** Eq. 16: σ_t(η)² = η² · (1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev). */
  private variance(aT: number, aPrev: number): number {
    return ((1 - aPrev) / (1 - aT)) * (1 - aT / aPrev);
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps('step');
    const c = this.config;
    const eta = opts.eta ?? c.eta;
    // 1. previous timestep of the sub-sequence
    const tPrev = t - Math.floor(c.numTrainTimesteps / this.numInferenceSteps!);
    // 2. ᾱ_t and ᾱ_prev
    const aT = this.schedule.alphasCumprod[this.trainTimestep(t, 'step')];
    const aPrev = tPrev >= 0 ? this.schedule.alphasCumprod[tPrev] : this.finalAlphaCumprod;
    // 3. predicted x_0 ("predicted x_0" term of eq. 12) and ε, from the model's parameterisation
    let { x0, eps } = predictX0Eps(c.predictionType, modelOutput, x, Math.sqrt(aT), Math.sqrt(1 - aT));
    // 4. optional clipping of x_0; diffusers keeps the unclipped ε for the direction term unless asked
    x0 = this.clipX0(x0);
    if (opts.useClippedModelOutput) eps = axpby(1 / Math.sqrt(1 - aT), x, -Math.sqrt(aT / (1 - aT)), x0);
    // 5. σ_t(η), eq. 16
    const std = eta * Math.sqrt(this.variance(aT, aPrev));
    // 6. eq. 12: x_{t−1} = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ_t²) ε̂ + σ_t z
    let prev = axpby(Math.sqrt(aPrev), x0, Math.sqrt(1 - aPrev - std * std), eps);
    if (eta > 0) prev = prev.add(this.noiseLike(x, opts).mul(std));
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
