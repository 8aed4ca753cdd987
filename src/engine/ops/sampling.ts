/** Sampling helpers: top-k and multinomial draws. */
import { Tensor, numelOf } from '../tensor.js';
import { type Rng, getDefaultRng } from '../rng.js';
import { toDense } from './data.js';
import { normDim, transpose, contiguous } from './view.js';
import { gather } from './shape.js';

/** The k largest (or smallest) values along dim, sorted, with their i32 indices. Differentiable in values. */
export function topk(x: Tensor, k: number, dim = -1, largest = true): { values: Tensor; indices: Tensor } {
  const d = normDim(dim, x.ndim);
  const n = x.shape[d];
  if (!Number.isInteger(k) || k < 0 || k > n) throw new Error(`topk: k = ${k} is outside [0, ${n}]`);
  const moved = contiguous(transpose(x.detach(), d, -1));
  const xd = toDense(moved), rows = n ? xd.length / n : 0;
  const idx = new Int32Array(rows * k);
  const order = new Array<number>(n);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) order[i] = i;
    const base = r * n;
    // NaN counts as largest, like PyTorch; ties keep the lower index first.
    const key = (i: number) => { const v = xd[base + i]; return Number.isNaN(v) ? Infinity : v; };
    order.sort((a, b) => (largest ? key(b) - key(a) : key(a) - key(b)) || a - b);
    for (let i = 0; i < k; i++) idx[r * k + i] = order[i];
  }
  const idxShape = [...moved.shape.slice(0, -1), k];
  const indices = transpose(new Tensor(idx, idxShape, 'i32'), d, -1);
  const values = gather(x, d, contiguous(indices));
  return { values, indices: contiguous(indices) };
}

/** Draw `n` category indices per row of non-negative weights [C] or [R, C]. */
export function multinomial(probs: Tensor, n: number, opts: { replacement?: boolean; rng?: Rng } = {}): Tensor {
  if (probs.ndim !== 1 && probs.ndim !== 2) throw new Error(`multinomial: expected [C] or [R, C], got [${probs.shape}]`);
  const C = probs.shape[probs.ndim - 1], R = probs.ndim === 2 ? probs.shape[0] : 1;
  const replacement = opts.replacement ?? false;
  if (!replacement && n > C) throw new Error(`multinomial: cannot draw ${n} samples without replacement from ${C} categories`);
  const rng = opts.rng ?? getDefaultRng();
  const p = toDense(probs);
  const out = new Int32Array(R * n);
  const u = rng.uniform(R * n);
  const w = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    let total = 0;
    for (let c = 0; c < C; c++) {
      const v = p[r * C + c];
      if (!(v >= 0) || !Number.isFinite(v)) throw new Error(`multinomial: weights must be finite and non-negative, found ${v}`);
      w[c] = v; total += v;
    }
    for (let s = 0; s < n; s++) {
      if (!(total > 0)) throw new Error('multinomial: weights sum to zero');
      let target = u[r * n + s] * total, c = 0;
      while (c < C - 1 && (target >= w[c] || w[c] === 0)) { target -= w[c]; c++; }
      while (w[c] === 0 && c > 0) c--; // guard against rounding past the last positive weight
      out[r * n + s] = c;
      if (!replacement) { total -= w[c]; w[c] = 0; }
    }
  }
  return new Tensor(out, probs.ndim === 2 ? [R, n] : [n], 'i32');
}

export { numelOf };
