/**
 * DDPM ancestral sampling: Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", 2020
 * (arXiv:2006.11239), on any sub-sequence of timesteps; learned variances from Nichol & Dhariwal 2021
 * ("IDDPM", arXiv:2102.09672). Reproduces diffusers' `DDPMScheduler`.
 *
 * With t_prev the previous timestep of the sub-sequence, the "current" α and β are those of the jump t → t_prev:
 *   α_t' = ᾱ_t/ᾱ_prev,  β_t' = 1 − α_t'.
 */
import { type Tensor, exp, mul, split } from '../../engine/index.js';
import { spacedTimesteps, predictX0Eps } from '../schedules.js';
import { BaseScheduler, axpby, type StepOptions, type StepOutput } from './base.js';
import { commonFields, oneOf, parseConfig, thresholdFields, type ConfigOf } from './config.js';

export type DDPMVarianceType = 'fixed_small' | 'fixed_small_log' | 'fixed_large' | 'fixed_large_log' | 'learned' | 'learned_range';
const VARIANCE_TYPES: readonly DDPMVarianceType[] = ['fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', 'learned', 'learned_range'];

const FIELDS = {
  ...commonFields({ spacing: 'leading' }),
  ...thresholdFields(true),
  varianceType: oneOf<DDPMVarianceType>('fixed_small', VARIANCE_TYPES),
};
export type DDPMConfig = ConfigOf<typeof FIELDS>;

export class DDPMScheduler extends BaseScheduler<DDPMConfig> {
  readonly className = 'DDPMScheduler';

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('DDPMScheduler', FIELDS, json));
  }

  protected layout(steps: number): void {
    const c = this.config;
    this.timesteps = spacedTimesteps(c.timestepSpacing, steps, c.numTrainTimesteps, { stepsOffset: c.stepsOffset });
  }

  private prevTimestep(t: number): number {
    return t - Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps!);
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps('step');
    const c = this.config;
    this.trainTimestep(t, 'step');
    // A model with learned variances outputs [ε, v] stacked on the channel axis.
    let predictedVariance: Tensor | null = null;
    const C = x.shape[1];
    if ((c.varianceType === 'learned' || c.varianceType === 'learned_range') && modelOutput.shape[1] === 2 * C) {
      [modelOutput, predictedVariance] = split(modelOutput, C, 1);
    }
    // 1. ᾱ_t, ᾱ_prev and the jump's α_t', β_t'
    const tPrev = this.prevTimestep(t);
    const aT = this.schedule.alphasCumprod[t];
    const aPrev = tPrev >= 0 ? this.schedule.alphasCumprod[tPrev] : 1;
    const bT = 1 - aT, bPrev = 1 - aPrev;
    const alphaJump = aT / aPrev, betaJump = 1 - alphaJump;
    // 2. x̂_0 from the model output ([DDPM] eq. 15 for ε)
    let { x0 } = predictX0Eps(c.predictionType, modelOutput, x, Math.sqrt(aT), Math.sqrt(bT));
    // 3. optional clipping (the DDPM paper clips x̂_0 to [−1, 1])
    x0 = this.clipX0(x0);
    // 4–5. posterior mean μ̃_t(x_t, x̂_0), [DDPM] eq. 7
    const prev = axpby((Math.sqrt(aPrev) * betaJump) / bT, x0, (Math.sqrt(alphaJump) * bPrev) / bT, x);
    // 6. add σ z, except at t = 0
    if (t <= 0) return { prevSample: prev, predOriginalSample: x0 };
    const z = this.noiseLike(x, opts);
    // Posterior variance β̃_t = (1 − ᾱ_prev)/(1 − ᾱ_t) β_t', [DDPM] eq. 7, floored at 1e-20.
    const betaTilde = Math.max((bPrev / bT) * betaJump, 1e-20);
    let noiseTerm: Tensor;
    switch (c.varianceType) {
      // "_log" variants compute the same standard deviation through exp(½ log Σ) (IDDPM's code path).
      case 'fixed_small': case 'fixed_small_log': noiseTerm = mul(z, Math.sqrt(betaTilde)); break;
      // Σ = β_t': the upper bound of the reverse variance ([DDPM] §3.2).
      case 'fixed_large': case 'fixed_large_log': noiseTerm = mul(z, Math.sqrt(betaJump)); break;
      case 'learned':
        if (!predictedVariance) throw new Error(`DDPMScheduler: variance_type 'learned' needs a model output with ${2 * C} channels`);
        noiseTerm = mul(z, predictedVariance.sqrt());
        break;
      case 'learned_range': {
        if (!predictedVariance) throw new Error(`DDPMScheduler: variance_type 'learned_range' needs a model output with ${2 * C} channels`);
        // [IDDPM] eq. 15: Σ = exp(v log β_t + (1 − v) log β̃_t), with the network's v ∈ [−1, 1] mapped to [0, 1].
        const frac = predictedVariance.add(1).div(2);
        const logVar = axpby(1, mul(frac, Math.log(betaJump)), Math.log(betaTilde), frac.neg().add(1));
        noiseTerm = mul(z, exp(logVar.mul(0.5)));
        break;
      }
    }
    return { prevSample: prev.add(noiseTerm), predOriginalSample: x0 };
  }
}
