/**
 * DPM-Solver (Lu, Zhou, Bao, Chen, Li, Zhu, NeurIPS 2022, arXiv:2206.00927) and DPM-Solver++ (same authors,
 * arXiv:2211.01095), multistep, orders 1–3. Reproduces diffusers' `DPMSolverMultistepScheduler`
 * (A1111 "DPM++ 2M", "DPM++ 2M Karras"; "DPM++ 2M SDE" with algorithm_type 'sde-dpmsolver++').
 *
 * Time variable λ_t = log(α_t/σ_t) (half log-SNR); h = λ_t − λ_s. With x̂_0 (data prediction, ++):
 *   1st order (DDIM):  x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) x̂_0(s)                           (++ eq. 8)
 *   2nd order (2M):    … − ½ α_t (e^{−h} − 1) D1,  D1 = (x̂_0(s0) − x̂_0(s1)) / r0,  r0 = h_0/h  (++ Alg. 2)
 * and with ε̂ (noise prediction, the original DPM-Solver, eq. 3.7–3.9):
 *   x_t = (α_t/α_s) x_s − σ_t (e^{h} − 1) ε̂(s)  (+ the same difference terms).
 * The SDE variant (++ Appendix, "SDE-DPM-Solver++") adds σ_t √(1 − e^{−2h}) z per step.
 */
import type { Tensor } from '../../engine/index.js';
import { predictX0Eps } from '../schedules.js';
import { axpby, type StepOptions, type StepOutput } from './base.js';
import {
  bool, commonFields, karrasFields, num, oneOf, parseConfig, strOrNull, thresholdFields, unsupported, type ConfigOf,
} from './config.js';
import { MultistepScheduler, layoutMultistep } from './sigma_base.js';

type Algorithm = 'dpmsolver++' | 'dpmsolver' | 'sde-dpmsolver++' | 'sde-dpmsolver';

const FIELDS = {
  ...commonFields({ spacing: 'linspace' }),
  ...karrasFields(),
  ...thresholdFields(false),
  solverOrder: num(2, { int: true, min: 1, max: 3 }),
  algorithmType: oneOf<Algorithm>('dpmsolver++', ['dpmsolver++', 'dpmsolver', 'sde-dpmsolver++', 'sde-dpmsolver']),
  solverType: oneOf<'midpoint' | 'heun'>('midpoint', ['midpoint', 'heun']),
  /** Use lower orders for the last steps (stabilises sampling with < 15 steps). */
  lowerOrderFinal: bool(true),
  /** Use a first-order step at the very end whatever the step count. */
  eulerAtFinal: bool(false),
  finalSigmasType: oneOf<'zero' | 'sigma_min'>('zero', ['zero', 'sigma_min']),
  lambdaMinClipped: num(-Infinity),
  useLuLambdas: unsupported(false, 'Lu lambdas are not implemented; use use_karras_sigmas'),
  useFlowSigmas: unsupported(false, 'flow-matching sigmas are not implemented'),
  /** 'learned' / 'learned_range' models output [ε, v] stacked on channels: the solver keeps the ε half. */
  varianceType: strOrNull(null),
};
export type DPMSolverMultistepConfig = ConfigOf<typeof FIELDS>;

export class DPMSolverMultistepScheduler extends MultistepScheduler<DPMSolverMultistepConfig> {
  readonly className = 'DPMSolverMultistepScheduler';
  /** Converted model outputs (x̂_0 for ++, ε̂ otherwise) of the last `solverOrder` steps, newest last. */
  private modelOutputs: (Tensor | null)[] = [];
  private lowerOrderNums = 0;
  private readonly lambdaT: Float64Array;
  private readonly dataPrediction: boolean;
  private readonly sde: boolean;

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('DPMSolverMultistepScheduler', FIELDS, json));
    const c = this.config;
    this.dataPrediction = c.algorithmType.endsWith('++');
    this.sde = c.algorithmType.startsWith('sde-');
    if (!this.dataPrediction && c.finalSigmasType === 'zero') {
      throw new Error(`DPMSolverMultistepScheduler: final_sigmas_type 'zero' needs algorithm_type 'dpmsolver++' or 'sde-dpmsolver++' (got '${c.algorithmType}'); use final_sigmas_type 'sigma_min'`);
    }
    if (this.sde && c.solverOrder === 3) throw new Error(`DPMSolverMultistepScheduler: solver_order 3 is not implemented for '${c.algorithmType}'`);
    const ab = this.schedule.alphasCumprod;
    this.lambdaT = Float64Array.from(ab, (a) => 0.5 * Math.log(a) - 0.5 * Math.log(1 - a));
  }

  protected layout(steps: number): void {
    const { timesteps, sigmas } = layoutMultistep(this.config, steps, this.trainSigmas, this.trainLogSigmas, this.lambdaT);
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.modelOutputs = new Array(this.config.solverOrder).fill(null);
    this.lowerOrderNums = 0;
  }

  /** The solver's working quantity: x̂_0 (DPM-Solver++) or ε̂ (DPM-Solver), from any parameterisation. */
  private convertModelOutput(modelOutput: Tensor, x: Tensor, i: number): Tensor {
    const vt = this.config.varianceType;
    if ((vt === 'learned' || vt === 'learned_range') && modelOutput.shape[1] === 2 * x.shape[1]) {
      modelOutput = modelOutput.narrow(1, 0, x.shape[1]);
    }
    const { alpha, sigma } = this.alphaSigmaLambda(this.sigmas[i]);
    const { x0, eps } = predictX0Eps(this.config.predictionType, modelOutput, x, alpha, sigma);
    if (this.dataPrediction) return this.clipX0(x0);
    if (this.config.thresholding) {
      // Threshold x̂_0 and recover ε̂ from it.
      const x0c = this.clipX0(x0);
      return axpby(1 / sigma, x, -alpha / sigma, x0c);
    }
    return eps;
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts: StepOptions = {}): StepOutput {
    const i = this.indexFor(t, 'step');
    const c = this.config;
    const n = this.timesteps.length;
    // Lower the order at the end: first order for the last step (always when it ends at σ = 0), second
    // order for the one before it, when the run is short.
    const lowerOrderFinal = i === n - 1 && (c.eulerAtFinal || (c.lowerOrderFinal && n < 15) || c.finalSigmasType === 'zero');
    const lowerOrderSecond = i === n - 2 && c.lowerOrderFinal && n < 15;

    const m = this.convertModelOutput(modelOutput, x, i);
    this.modelOutputs.shift();
    this.modelOutputs.push(m);
    const noise = this.sde ? this.noiseLike(x, opts) : null;

    let prev: Tensor;
    if (c.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) prev = this.firstOrder(m, x, i, noise);
    else if (c.solverOrder === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) prev = this.secondOrder(x, i, noise);
    else prev = this.thirdOrder(x, i);

    if (this.lowerOrderNums < c.solverOrder) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: this.dataPrediction ? m : undefined };
  }

  /** One step from σ_i to σ_{i+1} with the newest output only (= DDIM for ++, eq. 8 / eq. 3.7). */
  private firstOrder(m: Tensor, x: Tensor, i: number, noise: Tensor | null): Tensor {
    const t = this.alphaSigmaLambda(this.sigmas[i + 1]), s = this.alphaSigmaLambda(this.sigmas[i]);
    const h = t.lambda - s.lambda;
    switch (this.config.algorithmType) {
      case 'dpmsolver++': return axpby(t.sigma / s.sigma, x, -t.alpha * Math.expm1(-h), m);
      case 'dpmsolver': return axpby(t.alpha / s.alpha, x, -t.sigma * Math.expm1(h), m);
      case 'sde-dpmsolver++':
        return axpby((t.sigma / s.sigma) * Math.exp(-h), x, -t.alpha * Math.expm1(-2 * h), m)
          .add(noise!.mul(t.sigma * Math.sqrt(-Math.expm1(-2 * h))));
      case 'sde-dpmsolver':
        return axpby(t.alpha / s.alpha, x, -2 * t.sigma * Math.expm1(h), m)
          .add(noise!.mul(t.sigma * Math.sqrt(Math.expm1(2 * h))));
    }
  }

  /** Multistep second order (++ Algorithm 2; eq. 3.9-like for ε̂) from the last two outputs. */
  private secondOrder(x: Tensor, i: number, noise: Tensor | null): Tensor {
    const t = this.alphaSigmaLambda(this.sigmas[i + 1]);
    const s0 = this.alphaSigmaLambda(this.sigmas[i]), s1 = this.alphaSigmaLambda(this.sigmas[i - 1]);
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1]!, m1 = mo[mo.length - 2]!;
    const h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda, r0 = h0 / h;
    // D0 = m0, D1 = (m0 − m1)/r0
    const D1 = axpby(1 / r0, m0, -1 / r0, m1);
    const mid = this.config.solverType === 'midpoint';
    switch (this.config.algorithmType) {
      case 'dpmsolver++': {
        const e = Math.expm1(-h);                                        // e^{−h} − 1
        return axpby(t.sigma / s0.sigma, x, -t.alpha * e, m0).add(D1.mul(mid ? -0.5 * t.alpha * e : t.alpha * (e / h + 1)));
      }
      case 'dpmsolver': {
        const e = Math.expm1(h);                                         // e^{h} − 1
        return axpby(t.alpha / s0.alpha, x, -t.sigma * e, m0).add(D1.mul(mid ? -0.5 * t.sigma * e : -t.sigma * (e / h - 1)));
      }
      case 'sde-dpmsolver++': {
        const e = -Math.expm1(-2 * h);                                   // 1 − e^{−2h}
        const d1 = mid ? 0.5 * t.alpha * e : t.alpha * (e / (-2 * h) + 1);
        return axpby((t.sigma / s0.sigma) * Math.exp(-h), x, t.alpha * e, m0).add(D1.mul(d1))
          .add(noise!.mul(t.sigma * Math.sqrt(e)));
      }
      case 'sde-dpmsolver': {
        const e = Math.expm1(h);
        const d1 = mid ? -t.sigma * e : -2 * t.sigma * (e / h - 1);
        return axpby(t.alpha / s0.alpha, x, -2 * t.sigma * e, m0).add(D1.mul(d1))
          .add(noise!.mul(t.sigma * Math.sqrt(Math.expm1(2 * h))));
      }
    }
  }

  /** Multistep third order (++ eq. 3.x / DPM-Solver-3 differences) from the last three outputs. */
  private thirdOrder(x: Tensor, i: number): Tensor {
    const t = this.alphaSigmaLambda(this.sigmas[i + 1]);
    const s0 = this.alphaSigmaLambda(this.sigmas[i]), s1 = this.alphaSigmaLambda(this.sigmas[i - 1]);
    const s2 = this.alphaSigmaLambda(this.sigmas[i - 2]);
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1]!, m1 = mo[mo.length - 2]!, m2 = mo[mo.length - 3]!;
    const h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda, h1 = s1.lambda - s2.lambda;
    const r0 = h0 / h, r1 = h1 / h;
    const D1_0 = axpby(1 / r0, m0, -1 / r0, m1);
    const D1_1 = axpby(1 / r1, m1, -1 / r1, m2);
    const D1 = axpby(1 + r0 / (r0 + r1), D1_0, -r0 / (r0 + r1), D1_1);
    const D2 = axpby(1 / (r0 + r1), D1_0, -1 / (r0 + r1), D1_1);
    if (this.dataPrediction) {
      const e = Math.expm1(-h);
      return axpby(t.sigma / s0.sigma, x, -t.alpha * e, m0)
        .add(axpby(t.alpha * (e / h + 1), D1, -t.alpha * ((e + h) / (h * h) - 0.5), D2));
    }
    const e = Math.expm1(h);
    return axpby(t.alpha / s0.alpha, x, -t.sigma * e, m0)
      .add(axpby(-t.sigma * (e / h - 1), D1, -t.sigma * ((e - h) / (h * h) - 0.5), D2));
  }
}
