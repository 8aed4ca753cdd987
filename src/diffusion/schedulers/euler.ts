/**
 * Euler: Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models"
 * (arXiv:2206.00364), Algorithm 2 with Euler steps (optionally with "churn", S_churn > 0). Reproduces
 * diffusers' `EulerDiscreteScheduler` (A1111 "Euler", and "Euler Karras" with use_karras_sigmas).
 *
 * On x̃ = x_0 + σ ε the probability-flow ODE is dx̃/dσ = (x̃ − D(x̃; σ))/σ ([EDM] eq. 3 with σ(t) = t), D the
 * denoiser (x̂_0); one step is x̃_{i+1} = x̃_i + (σ_{i+1} − σ̂_i) · d_i.
 */
import { type Tensor, sub, div, mul, add } from '../../engine/index.js';
import { type StepOptions, type StepOutput } from './base.js';
import { commonFields, karrasFields, num, numOrNull, oneOf, parseConfig, type ConfigOf } from './config.js';
import { KDiffusionScheduler } from './sigma_base.js';

const FIELDS = {
  ...commonFields({ spacing: 'linspace' }),
  ...karrasFields(),
  interpolationType: oneOf<'linear' | 'log_linear'>('linear', ['linear', 'log_linear']),
  sigmaMin: numOrNull(null, { min: 0 }),
  sigmaMax: numOrNull(null, { min: 0 }),
  timestepType: oneOf<'discrete' | 'continuous'>('discrete', ['discrete', 'continuous']),
  finalSigmasType: oneOf<'zero' | 'sigma_min'>('zero', ['zero', 'sigma_min']),
  // [EDM] Algorithm 2's stochasticity (diffusers passes these to `step`): S_churn, S_tmin, S_tmax (null = ∞), S_noise.
  sChurn: num(0, { min: 0 }),
  sTmin: num(0, { min: 0 }),
  sTmax: numOrNull(null),
  sNoise: num(1, { min: 0 }),
};
export type EulerConfig = ConfigOf<typeof FIELDS>;

/** x̂_0 = D(x̃; σ) from the model output ([EDM] Table 1 preconditioning of an ε / v / x_0 network). */
export function kDiffusionX0(type: string, modelOutput: Tensor, x: Tensor, sigma: number): Tensor {
  switch (type) {
    case 'epsilon': return sub(x, mul(modelOutput, sigma));                // x̃ − σ ε
    case 'v_prediction': {                                                  // c_skip x̃ + c_out v
      const s2 = sigma * sigma + 1;
      return add(mul(modelOutput, -sigma / Math.sqrt(s2)), div(x, s2));
    }
    case 'sample': return modelOutput;
    default: throw new Error(`unknown prediction type '${type}'`);
  }
}

export class EulerDiscreteScheduler extends KDiffusionScheduler<EulerConfig> {
  readonly className = 'EulerDiscreteScheduler';

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('EulerDiscreteScheduler', FIELDS, json));
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts: StepOptions = {}): StepOutput {
    const i = this.indexFor(t, 'step');
    const c = this.config;
    const sigma = this.sigmas[i];
    // Algorithm 2, lines 4–6: γ_i, σ̂ = σ (1 + γ), x̂ = x + √(σ̂² − σ²) ε_churn
    const inRange = c.sTmin <= sigma && sigma <= (c.sTmax ?? Infinity);
    const gamma = inRange ? Math.min(c.sChurn / (this.sigmas.length - 1), Math.SQRT2 - 1) : 0;
    const sigmaHat = sigma * (gamma + 1);
    if (gamma > 0) x = add(x, mul(this.noiseLike(x, opts), c.sNoise * Math.sqrt(sigmaHat * sigmaHat - sigma * sigma)));
    // line 7: x̂_0 = D(x̂; σ̂); line 8: d = (x̂ − x̂_0)/σ̂   (v-prediction is preconditioned with σ, as diffusers)
    const x0 = kDiffusionX0(c.predictionType, modelOutput, x, c.predictionType === 'epsilon' ? sigmaHat : sigma);
    const d = div(sub(x, x0), sigmaHat);
    // line 10: x_{i+1} = x̂ + (σ_{i+1} − σ̂) d
    const prev = add(x, mul(d, this.sigmas[i + 1] - sigmaHat));
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
