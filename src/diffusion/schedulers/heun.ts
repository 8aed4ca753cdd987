/**
 * Heun: Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models"
 * (arXiv:2206.00364), Algorithm 1 — Euler predictor, trapezoidal corrector, Euler for the last step (to σ = 0).
 * Reproduces diffusers' `HeunDiscreteScheduler`: every σ but the first and last is listed twice in
 * `timesteps`, and `step` alternates between the two halves:
 *   first order  (dt == null): d_i = (x_i − D(x_i; σ_i))/σ_i,  x' = x_i + (σ_{i+1} − σ_i) d_i      (line 5–6)
 *   second order (dt != null): d' = (x' − D(x'; σ_{i+1}))/σ_{i+1},  x_{i+1} = x_i + (σ_{i+1} − σ_i)(d_i + d')/2
 */
import { type Tensor, sub, div, mul, add, clamp } from '../../engine/index.js';
import { type StepOptions, type StepOutput } from './base.js';
import { bool, commonFields, karrasFields, num, parseConfig, type ConfigOf } from './config.js';
import { kDiffusionX0 } from './euler.js';
import { KDiffusionScheduler } from './sigma_base.js';

const FIELDS = {
  ...commonFields({ spacing: 'linspace', betaStart: 0.00085, betaEnd: 0.012 }),
  ...karrasFields(),
  clipSample: bool(false),
  clipSampleRange: num(1, { min: 0 }),
};
export type HeunConfig = ConfigOf<typeof FIELDS>;

export class HeunDiscreteScheduler extends KDiffusionScheduler<HeunConfig> {
  readonly className = 'HeunDiscreteScheduler';
  override readonly order = 2;
  /** State between the two halves of a step: d_i, Δσ and x_i. */
  private prevDerivative: Tensor | null = null;
  private dt: number | null = null;
  private sample: Tensor | null = null;

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('HeunDiscreteScheduler', FIELDS, json));
  }

  protected override layout(steps: number): void {
    super.layout(steps);
    // σ_0, σ_1, σ_1, σ_2, σ_2, …, σ_{N−1}, σ_{N−1}, 0   and   t_0, t_1, t_1, …, t_{N−1}, t_{N−1}
    const s = this.sigmas, t = this.timesteps;
    this.sigmas = [s[0], ...s.slice(1, -1).flatMap((v) => [v, v]), s[s.length - 1]];
    this.timesteps = [t[0], ...t.slice(1).flatMap((v) => [v, v])];
  }

  protected override resetState(): void {
    this.prevDerivative = null;
    this.dt = null;
    this.sample = null;
  }

  /** True when the next `step` is the predictor (Euler) half. */
  get stateInFirstOrder(): boolean { return this.dt === null; }

  step(modelOutput: Tensor, t: number, x: Tensor, opts?: StepOptions): StepOutput {
    void opts;
    const i = this.indexFor(t, 'step');
    const first = this.stateInFirstOrder;
    const sigma = first ? this.sigmas[i] : this.sigmas[i - 1];
    const sigmaNext = first ? this.sigmas[i + 1] : this.sigmas[i];
    // 1. x̂_0 at the σ the model was evaluated at (σ_i for the predictor, σ_{i+1} for the corrector)
    let x0 = kDiffusionX0(this.config.predictionType, modelOutput, x, first ? sigma : sigmaNext);
    if (this.config.clipSample) x0 = clamp(x0, -this.config.clipSampleRange, this.config.clipSampleRange);
    let prev: Tensor;
    if (first) {
      // 2a. predictor: d_i and an Euler step; remember what the corrector needs
      const d = div(sub(x, x0), sigma);
      const dt = sigmaNext - sigma;
      this.prevDerivative = d;
      this.dt = dt;
      this.sample = x;
      prev = add(x, mul(d, dt));
    } else {
      // 2b. corrector: average the slopes at both ends, restart from x_i
      const d = div(sub(x, x0), sigmaNext);
      const avg = add(this.prevDerivative!, d).mul(0.5);
      prev = add(this.sample!, mul(avg, this.dt!));
      this.resetState();
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
