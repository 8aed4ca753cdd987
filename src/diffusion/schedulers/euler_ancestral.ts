/**
 * Euler ancestral ("Euler a"): an Euler step down to σ_down followed by fresh noise of size σ_up, with
 * σ_down² + σ_up² = σ_{i+1}², so the marginals stay those of the forward process (Song et al. 2021,
 * "Score-Based Generative Modeling through SDEs", ancestral sampling; k-diffusion's `sample_euler_ancestral`
 * with η = 1). Reproduces diffusers' `EulerAncestralDiscreteScheduler`.
 */
import { type Tensor, sub, div, mul, add } from '../../engine/index.js';
import { type StepOptions, type StepOutput } from './base.js';
import { commonFields, karrasFields, parseConfig, type ConfigOf } from './config.js';
import { kDiffusionX0 } from './euler.js';
import { KDiffusionScheduler } from './sigma_base.js';

const FIELDS = {
  ...commonFields({ spacing: 'linspace', predictionTypes: ['epsilon', 'v_prediction'] }),
  ...karrasFields(),
};
export type EulerAncestralConfig = ConfigOf<typeof FIELDS>;

export class EulerAncestralDiscreteScheduler extends KDiffusionScheduler<EulerAncestralConfig> {
  readonly className = 'EulerAncestralDiscreteScheduler';

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('EulerAncestralDiscreteScheduler', FIELDS, json));
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts: StepOptions = {}): StepOutput {
    const i = this.indexFor(t, 'step');
    const sigmaFrom = this.sigmas[i], sigmaTo = this.sigmas[i + 1];
    // 1. x̂_0 = D(x; σ)
    const x0 = kDiffusionX0(this.config.predictionType, modelOutput, x, sigmaFrom);
    // 2. split σ_{i+1}² into a deterministic part σ_down² and a fresh-noise part σ_up²
    const sigmaUp = Math.sqrt((sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo)) / (sigmaFrom * sigmaFrom));
    const sigmaDown = Math.sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
    // 3. Euler step to σ_down along d = (x − x̂_0)/σ, then x += σ_up z (z drawn every step, as diffusers)
    const d = div(sub(x, x0), sigmaFrom);
    const prev = add(add(x, mul(d, sigmaDown - sigmaFrom)), mul(this.noiseLike(x, opts), sigmaUp));
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
