/**
 * UniPC: Zhao, Bai, Rao, Zhou, Lu, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
 * Diffusion Models", NeurIPS 2023 (arXiv:2302.04867). Reproduces diffusers' `UniPCMultistepScheduler`
 * (B(h) = e^h − 1, "bh2", by default; data prediction).
 *
 * Each `step` first corrects the previous step's result with the new model output (UniC, Algorithm 2 / eq. 8),
 * then predicts the next sample (UniP-p, Algorithm 1 / eq. 5). With λ = log(α/σ), h = λ_t − λ_s0, and for data
 * prediction ĥ = −h:
 *   x_t = (σ_t/σ_s0) x_s0 − α_t (e^{ĥ} − 1) m0 − α_t B(ĥ) Σ_k a_k D_k,   D_k = (m_k − m0)/r_k,  r_k = (λ_{s_k} − λ_s0)/h,
 * the a_k solving R a = φ (eq. 7): R_{ik} = r_k^{i−1}, φ_i = i! h φ_{i+1}(ĥ)/B(ĥ) with φ the exponential-
 * integrator functions φ_{k+1}(h) = (φ_k(h) − 1/k!)/h.
 */
import type { Tensor } from '../../engine/index.js';
import { predictX0Eps } from '../schedules.js';
import { axpby, type StepOptions, type StepOutput } from './base.js';
import {
  bool, commonFields, karrasFields, num, numList, oneOf, parseConfig, thresholdFields, unsupported, type ConfigOf,
} from './config.js';
import { MultistepScheduler, layoutMultistep } from './sigma_base.js';

const FIELDS = {
  ...commonFields({ spacing: 'linspace' }),
  ...karrasFields(),
  ...thresholdFields(false),
  solverOrder: num(2, { int: true, min: 1 }),
  predictX0: bool(true),
  solverType: oneOf<'bh1' | 'bh2'>('bh2', ['bh1', 'bh2']),
  lowerOrderFinal: bool(true),
  /** Steps (indices) after which the corrector is skipped. */
  disableCorrector: numList([], { int: true }),
  finalSigmasType: oneOf<'zero' | 'sigma_min'>('zero', ['zero', 'sigma_min']),
  solverP: unsupported<null>(null, 'an external predictor scheduler is not supported'),
  useFlowSigmas: unsupported(false, 'flow-matching sigmas are not implemented'),
};
export type UniPCMultistepConfig = ConfigOf<typeof FIELDS>;

/** Solve the small dense system A x = b (Gaussian elimination with partial pivoting, float64). */
export function solveLinear(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row.slice(0, n), b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    if (M[p][c] === 0) throw new Error('UniPC: singular coefficient matrix (repeated timesteps?)');
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * x[k];
    x[r] = s / M[r][r];
  }
  return x;
}

export class UniPCMultistepScheduler extends MultistepScheduler<UniPCMultistepConfig> {
  readonly className = 'UniPCMultistepScheduler';
  /** Converted outputs (x̂_0 or ε̂) of the last `solverOrder` steps, newest last. */
  private modelOutputs: (Tensor | null)[] = [];
  private lowerOrderNums = 0;
  /** The sample the last predictor started from (the corrector redoes that step), and its order. */
  private lastSample: Tensor | null = null;
  private thisOrder = 1;

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('UniPCMultistepScheduler', FIELDS, json));
    if (!this.config.predictX0 && this.config.finalSigmasType === 'zero') {
      // The ε form's last step would need σ_t · (e^{h} − 1) at σ_t = 0, h = ∞.
      throw new Error("UniPCMultistepScheduler: predict_x0 false cannot step to σ = 0; use final_sigmas_type 'sigma_min'");
    }
  }

  protected layout(steps: number): void {
    const { timesteps, sigmas } = layoutMultistep(this.config, steps, this.trainSigmas, this.trainLogSigmas);
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.modelOutputs = new Array(this.config.solverOrder).fill(null);
    this.lowerOrderNums = 0;
    this.lastSample = null;
    this.thisOrder = 1;
  }

  private convertModelOutput(modelOutput: Tensor, x: Tensor, i: number): Tensor {
    const { alpha, sigma } = this.alphaSigmaLambda(this.sigmas[i]);
    const { x0, eps } = predictX0Eps(this.config.predictionType, modelOutput, x, alpha, sigma);
    if (this.config.predictX0) return this.clipX0(x0);
    if (this.config.thresholding) return axpby(1 / sigma, x, -alpha / sigma, this.clipX0(x0));
    return eps;
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts?: StepOptions): StepOutput {
    void opts;
    const i = this.indexFor(t, 'step');
    const c = this.config;
    const useCorrector = i > 0 && !(c.disableCorrector ?? []).includes(i - 1) && this.lastSample !== null;
    const m = this.convertModelOutput(modelOutput, x, i);
    // UniC: refine x_{t_i} using the model output just computed at it.
    if (useCorrector) x = this.corrector(m, this.lastSample!, x, this.thisOrder, i);
    this.modelOutputs.shift();
    this.modelOutputs.push(m);
    // Order of this predictor: warm up from 1, and step down near the end with lower_order_final.
    let order = c.lowerOrderFinal ? Math.min(c.solverOrder, this.timesteps.length - i) : c.solverOrder;
    order = Math.min(order, this.lowerOrderNums + 1);
    this.thisOrder = order;
    this.lastSample = x;
    const prev = this.predictor(x, order, i);
    if (this.lowerOrderNums < c.solverOrder) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: c.predictX0 ? m : undefined };
  }

  /**
   * The coefficient system shared by predictor and corrector: ĥ, h φ_1(ĥ) = e^{ĥ} − 1, B(ĥ), the matrix
   * R_{ik} = r_k^{i−1} (i = 1 … order) and φ_i = h φ_k(ĥ) · i! / B(ĥ).
   */
  private coefficients(h: number, rks: number[], order: number): { hPhi1: number; Bh: number; R: number[][]; b: number[] } {
    const hh = this.config.predictX0 ? -h : h;
    const hPhi1 = Math.expm1(hh);
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    const Bh = this.config.solverType === 'bh1' ? hh : Math.expm1(hh);
    const R: number[][] = [], b: number[] = [];
    for (let k = 1; k <= order; k++) {
      R.push(rks.map((r) => r ** (k - 1)));
      b.push((hPhiK * factorial) / Bh);
      factorial *= k + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    return { hPhi1, Bh, R, b };
  }

  /** Σ_k a_k D_k with D_k = (m_k − m0)/r_k. */
  private weightedDifferences(coef: number[], ds: { m: Tensor; r: number }[], m0: Tensor): Tensor | null {
    let acc: Tensor | null = null;
    ds.forEach(({ m, r }, k) => {
      const term = axpby(coef[k] / r, m, -coef[k] / r, m0);
      acc = acc ? acc.add(term) : term;
    });
    return acc;
  }

  /** UniP with B(h): x_{t_{i+1}} from x_{t_i} and the last `order` model outputs. */
  private predictor(x: Tensor, order: number, i: number): Tensor {
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1]!;
    const t = this.alphaSigmaLambda(this.sigmas[i + 1]), s0 = this.alphaSigmaLambda(this.sigmas[i]);
    const h = t.lambda - s0.lambda;
    const ds: { m: Tensor; r: number }[] = [];
    for (let k = 1; k < order; k++) {
      const sk = this.alphaSigmaLambda(this.sigmas[i - k]);
      ds.push({ m: mo[mo.length - 1 - k]!, r: (sk.lambda - s0.lambda) / h });
    }
    const rks = [...ds.map((d) => d.r), 1];
    const { hPhi1, Bh, R, b } = this.coefficients(h, rks, order);
    // a_k: ½ for order 2 (the paper's choice for one difference), else R[:-1,:-1] a = φ[:-1]
    const rhos = ds.length === 0 ? [] : order === 2 ? [0.5] : solveLinear(R.slice(0, -1).map((r) => r.slice(0, -1)), b.slice(0, -1));
    const res = this.weightedDifferences(rhos, ds, m0);
    return this.combine(x, m0, t, s0, hPhi1, Bh, res);
  }

  /** UniC: x_{t_i} corrected with the fresh output m_t at t_i (order `order`, including m_t itself). */
  private corrector(mT: Tensor, lastSample: Tensor, x: Tensor, order: number, i: number): Tensor {
    void x;
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1]!;
    const t = this.alphaSigmaLambda(this.sigmas[i]), s0 = this.alphaSigmaLambda(this.sigmas[i - 1]);
    const h = t.lambda - s0.lambda;
    const ds: { m: Tensor; r: number }[] = [];
    for (let k = 1; k < order; k++) {
      const sk = this.alphaSigmaLambda(this.sigmas[i - (k + 1)]);
      ds.push({ m: mo[mo.length - 1 - k]!, r: (sk.lambda - s0.lambda) / h });
    }
    const rks = [...ds.map((d) => d.r), 1];
    const { hPhi1, Bh, R, b } = this.coefficients(h, rks, order);
    const rhos = order === 1 ? [0.5] : solveLinear(R, b);
    // The new output enters as D_t = m_t − m0 (r = 1) with weight a_last.
    let res = this.weightedDifferences(rhos.slice(0, -1), ds, m0);
    const dT = axpby(rhos[rhos.length - 1], mT, -rhos[rhos.length - 1], m0);
    res = res ? res.add(dT) : dT;
    return this.combine(lastSample, m0, t, s0, hPhi1, Bh, res);
  }

  /** x_t = (σ_t/σ_s) x − α_t h φ_1 m0 − α_t B(h) res (data prediction), or the ε form with α ↔ σ swapped. */
  private combine(x: Tensor, m0: Tensor, t: { alpha: number; sigma: number }, s0: { alpha: number; sigma: number },
                  hPhi1: number, Bh: number, res: Tensor | null): Tensor {
    const px = this.config.predictX0;
    const base = px ? axpby(t.sigma / s0.sigma, x, -t.alpha * hPhi1, m0) : axpby(t.alpha / s0.alpha, x, -t.sigma * hPhi1, m0);
    return res ? base.add(res.mul(-(px ? t.alpha : t.sigma) * Bh)) : base;
  }
}
