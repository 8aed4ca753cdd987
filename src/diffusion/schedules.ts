/**
 * The forward (noising) process of a discrete-time diffusion model, in one place: beta schedules, ᾱ_t, SNR,
 * sigmas, the closed-form q(x_t | x_0), the x0 ↔ ε ↔ v conversions, timestep spacing and Karras sigmas.
 * Every scheduler in ./schedulers/ and the training code take these from here — nothing below is copied
 * into a scheduler file.
 *
 * References
 *   [DDPM]   Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", 2020 (arXiv:2006.11239).
 *   [IDDPM]  Nichol, Dhariwal, "Improved Denoising Diffusion Probabilistic Models", 2021 (arXiv:2102.09672).
 *   [LDM]    Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", 2022.
 *   [PD]     Salimans, Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", 2022 (v-param.).
 *   [EDM]    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative
 *            Models", 2022 (arXiv:2206.00364).
 *   [ZSNR]   Lin, Liu, Li, Yang, "Common Diffusion Noise Schedules and Sample Steps are Flawed", 2024
 *            (arXiv:2305.08891).
 *
 * Numerics. The reference implementation (diffusers on PyTorch) builds betas and ᾱ in float32; so do we:
 * `f32` below rounds each operation to float32 (double rounding is exact for + − × ÷ √ here), and the
 * cumulative product accumulates in float64 and stores float32, as PyTorch's CPU cumprod does. Timestep
 * spacings are computed in float64 like NumPy, with NumPy's round-half-to-even.
 */
import { Tensor, type TensorLike, add, mul, sub, div } from '../engine/index.js';

const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------- small maths

/** NumPy's `np.round`: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** NumPy's `np.linspace(start, stop, num)` (endpoint included), in float64 as NumPy computes it. */
export function linspace(start: number, stop: number, num: number): number[] {
  if (!Number.isInteger(num) || num < 0) throw new Error(`linspace: num must be a non-negative integer, got ${num}`);
  const div = num - 1;
  const step = div > 0 ? (stop - start) / div : 0;
  const out = new Array<number>(num);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** NumPy's `np.interp(x, xp, fp)` for ascending xp: piecewise-linear, clamped to the end values. */
export function interp(x: number, xp: ArrayLike<number>, fp: ArrayLike<number>): number {
  const n = xp.length;
  if (n === 0) throw new Error('interp: empty table');
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xp[mid] <= x) lo = mid; else hi = mid; }
  const w = (x - xp[lo]) / (xp[hi] - xp[lo]);
  return fp[lo] + w * (fp[hi] - fp[lo]);
}

/** NumPy's `np.arange(start, 0, -step)`: ⌈start/step⌉ values start − i·step. */
function arangeDown(start: number, step: number): number[] {
  const n = Math.max(0, Math.ceil(start / step));
  return Array.from({ length: n }, (_, i) => start - i * step);
}

/** `torch.linspace(start, end, n, dtype=float32)` on the CPU: float32 step, filled from both ends. */
function torchLinspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) { out[0] = start; return out; }
  const s = f32(start), e = f32(end), step = f32(f32(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (n - i - 1)));
  return out;
}

// ---------------------------------------------------------------------------------------------- beta schedules

export type BetaScheduleName = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export const BETA_SCHEDULES: readonly BetaScheduleName[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];

export interface BetaScheduleOptions {
  numTrainTimesteps?: number;    // T (default 1000)
  betaStart?: number;            // β_1 of linear / scaled_linear (default 1e-4)
  betaEnd?: number;              // β_T (default 0.02)
  betaSchedule?: BetaScheduleName | 'cosine';   // default 'linear'; 'cosine' = 'squaredcos_cap_v2'
  trainedBetas?: readonly number[] | Float32Array | null;   // a custom schedule: wins over the above
  rescaleBetasZeroSnr?: boolean; // [ZSNR] Algorithm 1
  maxBeta?: number;              // cap of the cosine schedule (default 0.999, [IDDPM] §3.2)
}

/** [DDPM] §4: β_t linear from β_1 to β_T. */
export function linearBetas(n: number, betaStart: number, betaEnd: number): Float32Array {
  return torchLinspaceF32(betaStart, betaEnd, n);
}

/** [LDM] (Stable Diffusion): √β linear from √β_1 to √β_T, squared. */
export function scaledLinearBetas(n: number, betaStart: number, betaEnd: number): Float32Array {
  const r = torchLinspaceF32(Math.sqrt(betaStart), Math.sqrt(betaEnd), n);
  for (let i = 0; i < n; i++) r[i] = f32(r[i] * r[i]);
  return r;
}

/** [IDDPM] eq. 17's f(t) = cos²(((t + s)/(1 + s)) · π/2), t ∈ [0, 1], s = 0.008; ᾱ(t) = f(t)/f(0). */
export function cosineAlphaBar(t: number, s = 0.008): number {
  return Math.cos(((t + s) / (1 + s)) * Math.PI / 2) ** 2;
}

/**
 * Betas that discretise a continuous ᾱ(t), t ∈ [0, 1]: β_i = min(1 − ᾱ((i+1)/T) / ᾱ(i/T), maxBeta)
 * ([IDDPM] eq. 17's β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped to ≤ 0.999 to avoid the singularity at t = T).
 */
export function betasForAlphaBar(n: number, alphaBar: (t: number) => number, maxBeta = 0.999): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

/** [IDDPM] cosine schedule ("squaredcos_cap_v2"), β capped at `maxBeta`. */
export function cosineBetas(n: number, maxBeta = 0.999): Float32Array {
  return betasForAlphaBar(n, (t) => cosineAlphaBar(t), maxBeta);
}

/**
 * [ZSNR] Algorithm 1: shift and scale √ᾱ so that √ᾱ_T = 0 (zero terminal SNR) while √ᾱ_1 is unchanged,
 * then recover the betas.
 */
export function rescaleZeroTerminalSnr(betas: ArrayLike<number>): Float32Array {
  const n = betas.length;
  const sq = new Float64Array(n);
  let cum = 1;
  for (let i = 0; i < n; i++) { cum *= f32(1 - betas[i]); sq[i] = Math.sqrt(f32(cum)); }
  const first = sq[0], last = sq[n - 1];
  const ab = new Float64Array(n);
  for (let i = 0; i < n; i++) { const a = ((sq[i] - last) * first) / (first - last); ab[i] = a * a; }
  const out = new Float32Array(n);
  out[0] = 1 - ab[0];
  for (let i = 1; i < n; i++) out[i] = 1 - ab[i] / ab[i - 1];
  return out;
}

/** Betas from a diffusers-style description. */
export function makeBetas(opts: BetaScheduleOptions = {}): Float32Array {
  const T = opts.numTrainTimesteps ?? 1000;
  if (!Number.isInteger(T) || T < 1) throw new Error(`numTrainTimesteps must be a positive integer, got ${T}`);
  let betas: Float32Array;
  if (opts.trainedBetas != null) {
    betas = Float32Array.from(opts.trainedBetas);
    if (betas.length === 0) throw new Error('trainedBetas is empty');
    for (const b of betas) {
      if (!(b > 0 && b <= 1)) throw new Error(`trainedBetas must lie in (0, 1], found ${b}`);
    }
  } else {
    const name = opts.betaSchedule ?? 'linear';
    const start = opts.betaStart ?? 1e-4, end = opts.betaEnd ?? 0.02;
    if (name === 'linear') betas = linearBetas(T, start, end);
    else if (name === 'scaled_linear') betas = scaledLinearBetas(T, start, end);
    else if (name === 'squaredcos_cap_v2' || name === 'cosine') betas = cosineBetas(T, opts.maxBeta ?? 0.999);
    else throw new Error(`unknown beta schedule '${String(name)}' (known: ${BETA_SCHEDULES.join(', ')}, or trainedBetas)`);
  }
  return opts.rescaleBetasZeroSnr ? rescaleZeroTerminalSnr(betas) : betas;
}

// ---------------------------------------------------------------------------------------------- the schedule

/**
 * A discrete noise schedule t = 0 … T−1 and everything derived from it:
 *   α_t = 1 − β_t,  ᾱ_t = Π_{s≤t} α_s                             ([DDPM] §2, notation above eq. 4)
 *   SNR(t) = ᾱ_t / (1 − ᾱ_t)                                        (Kingma et al. 2021, "VDM", eq. 2)
 *   σ_t = √((1 − ᾱ_t) / ᾱ_t) = SNR^{-1/2}                           ([EDM] Table 1, VP ↔ VE sigmas)
 * Arrays are float32 like the reference implementation; scalar accessors return JS numbers.
 */
export class NoiseSchedule {
  readonly numTrainTimesteps: number;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;

  /**
   * `terminalAlphaBar` replaces ᾱ_{T−1} (after a zero-terminal-SNR rescale it is 0 and σ_T = ∞, which the
   * sigma-based samplers cannot take; diffusers uses 2⁻²⁴ there).
   */
  constructor(betas: ArrayLike<number>, opts: { terminalAlphaBar?: number } = {}) {
    const n = betas.length;
    if (n < 1) throw new Error('NoiseSchedule: no betas');
    this.numTrainTimesteps = n;
    this.betas = Float32Array.from(betas);
    this.alphas = new Float32Array(n);
    this.alphasCumprod = new Float32Array(n);
    let cum = 1;
    for (let i = 0; i < n; i++) {
      this.alphas[i] = f32(1 - this.betas[i]);
      cum *= this.alphas[i];            // float64 accumulator, float32 output (torch.cumprod on CPU)
      this.alphasCumprod[i] = cum;
    }
    if (opts.terminalAlphaBar !== undefined) this.alphasCumprod[n - 1] = opts.terminalAlphaBar;
    Object.freeze(this);
  }

  static from(opts: BetaScheduleOptions & { terminalAlphaBar?: number } = {}): NoiseSchedule {
    return new NoiseSchedule(makeBetas(opts), { terminalAlphaBar: opts.terminalAlphaBar });
  }

  /** ᾱ_t, with an integer index check. */
  alphaBar(t: number): number {
    this.checkT(t);
    return this.alphasCumprod[t];
  }
  snr(t: number): number { const a = this.alphaBar(t); return a / (1 - a); }
  logSnr(t: number): number { return Math.log(this.snr(t)); }
  /** σ_t = √((1 − ᾱ_t)/ᾱ_t), the noise level of the variance-exploding view x/√ᾱ_t = x_0 + σ_t ε. */
  sigma(t: number): number { const a = this.alphaBar(t); return Math.sqrt((1 - a) / a); }

  /** σ for every t (ascending in t), computed in float32 as `((1 - ᾱ)/ᾱ) ** 0.5` is in the reference. */
  sigmas(): Float32Array {
    const out = new Float32Array(this.numTrainTimesteps);
    for (let i = 0; i < out.length; i++) {
      const a = this.alphasCumprod[i];
      out[i] = Math.sqrt(f32(f32(1 - a) / a));
    }
    return out;
  }

  /** (√ᾱ_t, √(1 − ᾱ_t)): the signal and noise scales of q(x_t | x_0). */
  alphaSigma(t: number): { alpha: number; sigma: number } {
    const a = this.alphaBar(t);
    return { alpha: Math.sqrt(a), sigma: Math.sqrt(1 - a) };
  }

  /**
   * [DDPM] eq. 4: q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), sampled as x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
   * `t` is one timestep for the whole batch or one per batch element (x0's first dimension).
   */
  qSample(x0: Tensor, noise: Tensor, t: number | readonly number[]): Tensor {
    const { alpha, sigma } = this.coefficients(t, x0);
    return add(mul(x0, alpha), mul(noise, sigma));
  }

  /** [PD] §4 (v-parameterisation): v = √ᾱ_t ε − √(1 − ᾱ_t) x_0, the training target of v-prediction. */
  velocity(x0: Tensor, noise: Tensor, t: number | readonly number[]): Tensor {
    const { alpha, sigma } = this.coefficients(t, x0);
    return sub(mul(noise, alpha), mul(x0, sigma));
  }

  /**
   * The per-sample coefficients as scalars (one t) or [B, 1, …, 1] tensors (one t per batch element), to
   * broadcast against `like`.
   */
  coefficients(t: number | readonly number[], like: Tensor): { alpha: TensorLike; sigma: TensorLike } {
    if (typeof t === 'number') return this.alphaSigma(t);
    if (t.length !== like.shape[0]) throw new Error(`qSample: ${t.length} timesteps for a batch of ${like.shape[0]}`);
    const shape = [t.length, ...like.shape.slice(1).map(() => 1)];
    const a = new Float32Array(t.length), s = new Float32Array(t.length);
    t.forEach((ti, i) => { const c = this.alphaSigma(ti); a[i] = c.alpha; s[i] = c.sigma; });
    return { alpha: new Tensor(a, shape, 'f32'), sigma: new Tensor(s, shape, 'f32') };
  }

  private checkT(t: number): void {
    if (!Number.isInteger(t) || t < 0 || t >= this.numTrainTimesteps) {
      throw new Error(`timestep ${t} is not an integer in [0, ${this.numTrainTimesteps - 1}]`);
    }
  }
}

// ---------------------------------------------------------------------------------------------- parameterisations

/** What a denoiser predicts: the noise ε, the clean sample x_0 ("sample"), or the velocity v ([PD]). */
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];

/**
 * Conversions between parameterisations at a point x_t = α x_0 + σ ε with α = √ᾱ_t, σ = √(1 − ᾱ_t)
 * (α² + σ² = 1). `alpha`/`sigma` are numbers or tensors broadcastable to x (one per batch element).
 *   x_0 = (x_t − σ ε)/α,   ε = (x_t − α x_0)/σ               ([DDPM] eq. 15 rearranged)
 *   v = α ε − σ x_0,  x_0 = α x_t − σ v,  ε = σ x_t + α v       ([PD] §4, using α² + σ² = 1)
 */
export const x0FromEps = (xt: Tensor, eps: Tensor, alpha: TensorLike, sigma: TensorLike): Tensor =>
  div(sub(xt, mul(eps, sigma)), alpha);
export const epsFromX0 = (xt: Tensor, x0: Tensor, alpha: TensorLike, sigma: TensorLike): Tensor =>
  div(sub(xt, mul(x0, alpha)), sigma);
export const x0FromV = (xt: Tensor, v: Tensor, alpha: TensorLike, sigma: TensorLike): Tensor =>
  sub(mul(xt, alpha), mul(v, sigma));
export const epsFromV = (xt: Tensor, v: Tensor, alpha: TensorLike, sigma: TensorLike): Tensor =>
  add(mul(xt, sigma), mul(v, alpha));
export const vFromX0Eps = (x0: Tensor, eps: Tensor, alpha: TensorLike, sigma: TensorLike): Tensor =>
  sub(mul(eps, alpha), mul(x0, sigma));

/** x_0 and ε from a model output of any parameterisation. */
export function predictX0Eps(type: PredictionType, modelOutput: Tensor, xt: Tensor, alpha: TensorLike,
                             sigma: TensorLike): { x0: Tensor; eps: Tensor } {
  switch (type) {
    case 'epsilon': return { x0: x0FromEps(xt, modelOutput, alpha, sigma), eps: modelOutput };
    case 'sample': return { x0: modelOutput, eps: epsFromX0(xt, modelOutput, alpha, sigma) };
    case 'v_prediction': return { x0: x0FromV(xt, modelOutput, alpha, sigma), eps: epsFromV(xt, modelOutput, alpha, sigma) };
    default: throw new Error(`unknown prediction type '${String(type)}' (known: ${PREDICTION_TYPES.join(', ')})`);
  }
}

// ---------------------------------------------------------------------------------------------- timestep spacing

export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

export interface SpacingOptions {
  /** Added to 'leading' timesteps (SD uses 1, so the last step is t = 1). */
  stepsOffset?: number;
  /** 'linspace' only: round to integers (DDIM/DDPM/PNDM) or keep float32 values (Euler family). */
  round?: boolean;
}

function checkSteps(steps: number, trainSteps: number): void {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`number of inference steps must be a positive integer, got ${steps}`);
  if (steps > trainSteps) {
    throw new Error(`cannot run ${steps} inference steps: the model was trained with only ${trainSteps} timesteps`);
  }
}

/**
 * `steps` timesteps out of 0 … T−1, descending (Lin et al. [ZSNR] Table 2 names the three spacings):
 *   linspace  evenly from T−1 down to 0 (both ends included)
 *   leading   0, k, 2k, … (k = ⌊T/steps⌋), plus `stepsOffset`, reversed — never reaches T−1
 *   trailing  T, T − T/steps, … rounded, minus 1 — starts at T−1
 */
export function spacedTimesteps(spacing: TimestepSpacing, steps: number, trainSteps: number, opts: SpacingOptions = {}): number[] {
  checkSteps(steps, trainSteps);
  const offset = opts.stepsOffset ?? 0;
  switch (spacing) {
    case 'linspace': {
      const ts = linspace(0, trainSteps - 1, steps).map((t) => (opts.round ?? true) ? roundHalfEven(t) : f32(t));
      return ts.reverse();
    }
    case 'leading': {
      const ratio = Math.floor(trainSteps / steps);
      const ts: number[] = [];
      for (let i = steps - 1; i >= 0; i--) ts.push(i * ratio + offset);
      return ts;
    }
    case 'trailing': {
      return arangeDown(trainSteps, trainSteps / steps).map((t) => roundHalfEven(t) - 1);
    }
    default: throw new Error(`unknown timestep spacing '${String(spacing)}' (known: ${TIMESTEP_SPACINGS.join(', ')})`);
  }
}

/**
 * The multistep solvers' variant (DPM-Solver, UniPC): `steps + 1` points are spaced and the final one (t ≈ 0)
 * dropped, since their last step goes straight to σ = 0. `lastTimestep` (default T) lets a clipped λ_min cut
 * the range.
 */
export function spacedTimestepsMultistep(spacing: TimestepSpacing, steps: number, trainSteps: number,
                                         opts: SpacingOptions & { lastTimestep?: number } = {}): number[] {
  checkSteps(steps, trainSteps);
  const last = opts.lastTimestep ?? trainSteps;
  const offset = opts.stepsOffset ?? 0;
  switch (spacing) {
    case 'linspace':
      return linspace(0, last - 1, steps + 1).map(roundHalfEven).reverse().slice(0, steps);
    case 'leading': {
      const ratio = Math.floor(last / (steps + 1));
      const ts: number[] = [];
      for (let i = steps; i >= 1; i--) ts.push(i * ratio + offset);
      return ts;
    }
    case 'trailing': {
      return arangeDown(last, trainSteps / steps).map((t) => roundHalfEven(t) - 1);
    }
    default: throw new Error(`unknown timestep spacing '${String(spacing)}' (known: ${TIMESTEP_SPACINGS.join(', ')})`);
  }
}

// ---------------------------------------------------------------------------------------------- sigmas

/**
 * [EDM] eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0 … N−1, ρ = 7
 * (descending from σ_max to σ_min).
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): number[] {
  const minInv = sigmaMin ** (1 / rho), maxInv = sigmaMax ** (1 / rho);
  return linspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/**
 * The (fractional) timestep whose σ is `sigma`: linear interpolation in log σ between the two training
 * timesteps around it, clamped to [0, T−1]. `logSigmas` ascends with t.
 */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const n = logSigmas.length;
  // Last index whose log σ is ≤ log σ_query (0 when there is none), at most n − 2.
  let low = 0;
  for (let i = 0; i < n; i++) if (logSigma - logSigmas[i] >= 0) low = i;
  low = Math.min(low, n - 2);
  const lo = logSigmas[low], hi = logSigmas[low + 1];
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** σ interpolated at (fractional) timesteps from the training σ table. */
export function sigmasAt(timesteps: readonly number[], trainSigmas: ArrayLike<number>): number[] {
  const xp = Array.from({ length: trainSigmas.length }, (_, i) => i);
  return timesteps.map((t) => interp(t, xp, trainSigmas));
}

/** log σ in float32, as `np.log` of the float32 σ table gives. */
export function logSigmas(trainSigmas: Float32Array): Float32Array {
  return trainSigmas.map((s) => Math.log(s));
}

/** Variance-preserving scales of a VE sigma: α_t = 1/√(σ² + 1), σ_t = σ α_t (so x_t = α_t (x_0 + σ ε)). */
export function vpFromSigma(sigma: number): { alpha: number; sigma: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return { alpha, sigma: sigma * alpha };
}
