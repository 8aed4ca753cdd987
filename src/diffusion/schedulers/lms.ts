/**
 * LMS: a linear multistep (Adams–Bashforth) method in σ for the probability-flow ODE dx/dσ = (x − D(x; σ))/σ,
 * as in k-diffusion's `sample_lms` (Crowson) and diffusers' `LMSDiscreteScheduler`. The derivatives d_{i−k} at
 * the last `order` σ's are interpolated by a Lagrange polynomial and integrated over [σ_i, σ_{i+1}]:
 *   x_{i+1} = x_i + Σ_k c_k d_{i−k},   c_k = ∫_{σ_i}^{σ_{i+1}} Π_{j≠k} (τ − σ_{i−j})/(σ_{i−k} − σ_{i−j}) dτ
 * (Hairer, Nørsett, Wanner, "Solving ODEs I", §III.1, the Adams formulas on a variable grid).
 * The integrand is a polynomial of degree < 4, so 3-point Gauss–Legendre quadrature is exact (diffusers
 * integrates it adaptively with QUADPACK to 1e-4 relative, which is also exact on polynomials).
 */
import { type Tensor, sub, div, add, mul } from '../../engine/index.js';
import { type StepOptions, type StepOutput } from './base.js';
import { commonFields, karrasFields, parseConfig, type ConfigOf } from './config.js';
import { kDiffusionX0 } from './euler.js';
import { KDiffusionScheduler } from './sigma_base.js';

const FIELDS = {
  ...commonFields({ spacing: 'linspace' }),
  ...karrasFields(),
};
export type LMSConfig = ConfigOf<typeof FIELDS>;

/** Nodes and weights of 3-point Gauss–Legendre on [−1, 1] (exact for polynomials of degree ≤ 5). */
const GL_X = [-Math.sqrt(3 / 5), 0, Math.sqrt(3 / 5)];
const GL_W = [5 / 9, 8 / 9, 5 / 9];

/** ∫_a^b g(τ) dτ by 3-point Gauss–Legendre. */
function gaussLegendre3(g: (tau: number) => number, a: number, b: number): number {
  const half = (b - a) / 2, mid = (a + b) / 2;
  let s = 0;
  for (let k = 0; k < 3; k++) s += GL_W[k] * g(mid + half * GL_X[k]);
  return s * half;
}

export class LMSDiscreteScheduler extends KDiffusionScheduler<LMSConfig> {
  readonly className = 'LMSDiscreteScheduler';
  /** Maximum order of the multistep formula (diffusers' default `order=4`). */
  readonly lmsOrder = 4;
  private derivatives: Tensor[] = [];

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('LMSDiscreteScheduler', FIELDS, json));
  }

  protected override resetState(): void { this.derivatives = []; }

  /** c_k of the order-`order` formula at step i (see the header). */
  lmsCoefficient(order: number, i: number, k: number): number {
    const s = this.sigmas;
    const basis = (tau: number) => {
      let p = 1;
      for (let j = 0; j < order; j++) if (j !== k) p *= (tau - s[i - j]) / (s[i - k] - s[i - j]);
      return p;
    };
    return gaussLegendre3(basis, s[i], s[i + 1]);
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts?: StepOptions): StepOutput {
    void opts;
    const i = this.indexFor(t, 'step');
    const sigma = this.sigmas[i];
    // 1. x̂_0 and the ODE derivative d_i = (x − x̂_0)/σ_i
    const x0 = kDiffusionX0(this.config.predictionType, modelOutput, x, sigma);
    this.derivatives.push(div(sub(x, x0), sigma));
    if (this.derivatives.length > this.lmsOrder) this.derivatives.shift();
    // 2. the highest order the history allows, and its coefficients (diffusers uses min(i + 1, 4), the same
    //    in a full run; counting the history instead keeps a run started mid-way, as in img2img, consistent)
    const order = Math.min(this.derivatives.length, this.lmsOrder);
    let prev = x;
    for (let k = 0; k < order; k++) {
      const dk = this.derivatives[this.derivatives.length - 1 - k];
      prev = add(prev, mul(dk, this.lmsCoefficient(order, i, k)));
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
