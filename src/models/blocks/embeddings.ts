/**
 * Timestep embeddings: the sinusoidal projection of DDPM (Ho et al. 2020, after the Transformer's positional
 * encoding) and the two-layer MLP that follows it (`time_embedding.linear_1/2` in diffusers checkpoints).
 */
import { Tensor, fromTypedArray } from '../../engine/index.js';
import { Module, type Linear } from '../../nn/index.js';
import { type ActFn, type Ctx, act } from './layers.js';

/**
 * Timesteps as plain numbers, one per batch element: a number is repeated, a tensor of one element is
 * broadcast (as diffusers does), a tensor of B elements is taken as is.
 */
export function timestepList(t: number | readonly number[] | Tensor, batch: number): number[] {
  let values: number[];
  if (typeof t === 'number') values = [t];
  else if (t instanceof Tensor) {
    const data = t.dtype === 'i64' ? Array.from(t.contiguous().data as BigInt64Array, Number) : Array.from(t.toFloat32Array());
    values = data;
  } else values = [...t];
  if (values.length === 1) return new Array<number>(batch).fill(values[0]);
  if (values.length !== batch) throw new Error(`timesteps: got ${values.length} values for a batch of ${batch}`);
  return values;
}

/**
 * Sinusoidal embedding [B, dim] of timesteps t:
 *   freq_i = exp(−ln(maxPeriod) · i / (half − freqShift)),  i = 0 … half−1
 *   emb    = [sin(t·freq), cos(t·freq)]  (or [cos, sin] with flipSinToCos), zero-padded when dim is odd.
 * Rounded to f32 at each step as PyTorch computes it: at t = 999 the argument is ~1e3, where f64 and f32
 * products differ by ~1e-4 — enough to show at a 1e-5 parity bar.
 */
export function sinusoidalEmbedding(timesteps: readonly number[], dim: number,
                                    opts: { flipSinToCos: boolean; freqShift: number; maxPeriod?: number; scale?: number }): Tensor {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const logMax = f(-Math.log(opts.maxPeriod ?? 10000));
  const denom = f(half - opts.freqShift);
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = f(Math.exp(f(f(logMax * i) / denom)));
  const scale = opts.scale ?? 1;
  const B = timesteps.length;
  const out = new Float32Array(B * dim);
  for (let b = 0; b < B; b++) {
    const t = f(timesteps[b]);
    const row = b * dim;
    const sinAt = opts.flipSinToCos ? half : 0, cosAt = opts.flipSinToCos ? 0 : half;
    for (let i = 0; i < half; i++) {
      const arg = f(f(t * freqs[i]) * scale);
      out[row + sinAt + i] = Math.sin(arg);
      out[row + cosAt + i] = Math.cos(arg);
    }
  }
  return fromTypedArray(out, [B, dim], 'f32');
}

/** linear_1 → act → linear_2: [B, inDim] → [B, timeEmbedDim]. */
export class TimestepEmbedding extends Module {
  linear_1: Linear;
  linear_2: Linear;

  constructor(ctx: Ctx, inDim: number, timeEmbedDim: number, readonly actFn: ActFn = 'silu') {
    super();
    this.linear_1 = ctx.linear(inDim, timeEmbedDim);
    this.linear_2 = ctx.linear(timeEmbedDim, timeEmbedDim);
  }

  forward(x: Tensor): Tensor {
    return this.linear_2.forward(act(this.linear_1.forward(x), this.actFn));
  }
}
