/**
 * The denoising training objective ([DDPM] Algorithm 1), for any parameterisation:
 *
 *   t ~ U{0 … T−1},  ε ~ N(0, I),  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
 *   loss = w(t) · ‖target − model(x_t, t, y)‖²,  target = ε | x_0 | v
 *
 * w(t) is 1, or the min-SNR-γ weight (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
 * Strategy", eq. 9 and its ε / v forms): min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v, min(SNR, γ) for x_0.
 * Class labels are replaced by the null class with probability `classDropout`, so one network learns both
 * p(x | y) and p(x) — what classifier-free guidance needs (Ho & Salimans 2022, Algorithm 1).
 */
import { type Rng, type Tensor, fromTypedArray, randn } from '../engine/index.js';
import type { NoiseSchedule, PredictionType } from './schedules.js';

/** Anything that maps (x_t, timesteps, labels) → a prediction of x_t's shape. */
export type Denoiser = (xt: Tensor, t: number[], labels: number[] | null) => Tensor;

export interface DenoisingLossOptions {
  prediction: PredictionType;
  /** γ of min-SNR weighting; null: plain (unweighted) MSE. */
  minSnrGamma?: number | null;
  /** Probability of replacing a label by `nullClass` (classifier-free guidance training). */
  classDropout?: number;
  /** The label meaning "no class" (conditional models: the number of real classes). */
  nullClass?: number;
  rng: Rng;
  /** Fixed timesteps / noise instead of random ones (tests). */
  timesteps?: number[];
  noise?: Tensor;
}

export interface DenoisingLoss {
  loss: Tensor;
  /** Timesteps drawn for the batch and the per-sample weights used. */
  timesteps: number[];
  weights: number[];
}

/** x0 [B, C, H, W] in the model's data range, labels [B] or null (unconditional). */
export function denoisingLoss(model: Denoiser, schedule: NoiseSchedule, x0: Tensor, labels: number[] | null,
                              o: DenoisingLossOptions): DenoisingLoss {
  const B = x0.shape[0];
  const T = schedule.numTrainTimesteps;
  const t = o.timesteps ?? Array.from(o.rng.integers(B, 0, T));
  if (t.length !== B) throw new Error(`denoisingLoss: ${t.length} timesteps for a batch of ${B}`);
  const noise = o.noise ?? randn(x0.shape, { rng: o.rng });
  const xt = schedule.qSample(x0, noise, t);
  const target = o.prediction === 'epsilon' ? noise : o.prediction === 'sample' ? x0 : schedule.velocity(x0, noise, t);

  let y = labels;
  if (y && (o.classDropout ?? 0) > 0) {
    if (o.nullClass === undefined) throw new Error('denoisingLoss: classDropout needs nullClass');
    const u = o.rng.uniform(B);
    y = y.map((label, i) => (u[i] < o.classDropout! ? o.nullClass! : label));
  }
  const out = model(xt, t, y);
  if (out.shape.join() !== x0.shape.join()) throw new Error(`denoisingLoss: the model returned [${out.shape}] for a sample of [${x0.shape}]`);

  const weights = t.map((ti) => snrWeight(schedule.snr(ti), o.prediction, o.minSnrGamma ?? null));
  const perSample = out.sub(target).square().mean([1, 2, 3]); // [B]
  const w = fromTypedArray(Float32Array.from(weights), [B]);
  return { loss: perSample.mul(w).mean(), timesteps: t, weights };
}

/** The min-SNR-γ loss weight for one timestep (1 when γ is null). */
export function snrWeight(snr: number, prediction: PredictionType, gamma: number | null): number {
  if (gamma === null) return 1;
  const clipped = Math.min(snr, gamma);
  if (prediction === 'epsilon') return clipped / snr;
  if (prediction === 'v_prediction') return clipped / (snr + 1);
  return clipped;
}
