/** Joining, splitting and indexing. */
import { emptyF32 } from '../dtype.js';
import { Tensor, numelOf } from '../tensor.js';
import { fromOp, indexArray, toDense } from './data.js';
import { expand, narrow, normDim, reshape, unsqueeze } from './view.js';
import { full } from './creation.js';

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new Error('cat: needs at least one tensor');
  const ref = tensors[0];
  const d = normDim(dim, ref.ndim);
  for (const t of tensors) {
    if (t.ndim !== ref.ndim || t.shape.some((s, i) => i !== d && s !== ref.shape[i])) {
      throw new Error(`cat: shapes ${tensors.map((x) => `[${x.shape}]`).join(', ')} differ outside dim ${dim}`);
    }
  }
  const sizes = tensors.map((t) => t.shape[d]);
  const shape = [...ref.shape];
  shape[d] = sizes.reduce((a, b) => a + b, 0);
  const outer = numelOf(shape.slice(0, d)), inner = numelOf(shape.slice(d + 1));
  const rowLen = shape[d] * inner;
  const out = emptyF32(outer * rowLen);
  let at = 0;
  for (const t of tensors) {
    const src = toDense(t), chunk = t.shape[d] * inner;
    for (let o = 0; o < outer; o++) out.set(src.subarray(o * chunk, (o + 1) * chunk), o * rowLen + at);
    at += chunk;
  }
  return fromOp(out, shape, tensors, 'cat', (g) => {
    let start = 0;
    return tensors.map((t, i) => {
      const part = t.requiresGrad ? narrow(g, d, start, sizes[i]) : null;
      start += sizes[i];
      return part;
    });
  });
}

export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new Error('stack: needs at least one tensor');
  const d = normDim(dim, tensors[0].ndim + 1);
  return cat(tensors.map((t) => unsqueeze(t, d)), d);
}

/** Split into pieces of `size` (last may be smaller) or of the given sizes; views. */
export function split(x: Tensor, sizeOrSizes: number | number[], dim = 0): Tensor[] {
  const d = normDim(dim, x.ndim), n = x.shape[d];
  let sizes: number[];
  if (typeof sizeOrSizes === 'number') {
    if (!(sizeOrSizes > 0)) throw new Error(`split: size must be positive, got ${sizeOrSizes}`);
    sizes = [];
    for (let s = 0; s < n; s += sizeOrSizes) sizes.push(Math.min(sizeOrSizes, n - s));
  } else {
    sizes = sizeOrSizes;
    if (sizes.reduce((a, b) => a + b, 0) !== n) throw new Error(`split: sizes [${sizes}] do not add up to ${n}`);
  }
  let start = 0;
  return sizes.map((s) => { const t = narrow(x, d, start, s); start += s; return t; });
}

export function chunk(x: Tensor, chunks: number, dim = 0): Tensor[] {
  const n = x.shape[normDim(dim, x.ndim)];
  return split(x, Math.max(1, Math.ceil(n / chunks)), dim);
}

/** out[i][j][k] = x[i][index[i][j][k]][k] (for dim = 1); index has x's rank. */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  const d = normDim(dim, x.ndim);
  if (index.ndim !== x.ndim) throw new Error(`gather: index rank ${index.ndim} differs from input rank ${x.ndim}`);
  for (let i = 0; i < x.ndim; i++) {
    if (i !== d && index.shape[i] > x.shape[i]) throw new Error(`gather: index [${index.shape}] larger than input [${x.shape}] at dim ${i}`);
  }
  const idx = indexArray(index, 'gather index');
  const xd = toDense(x), n = x.shape[d];
  const out = new Float32Array(idx.length);
  // Source offset of every output element (kept for the backward scatter).
  const srcPos = new Int32Array(idx.length);
  const ishape = index.shape, nd = ishape.length;
  const xStr = new Array<number>(nd);
  for (let i = nd - 1, s = 1; i >= 0; i--) { xStr[i] = s; s *= x.shape[i]; }
  const pos = new Array<number>(nd).fill(0);
  for (let e = 0; e < idx.length; e++) {
    const j = idx[e] < 0 ? idx[e] + n : idx[e];
    if (j < 0 || j >= n) throw new Error(`gather: index ${idx[e]} is out of range for dim ${dim} of size ${n}`);
    let off = 0;
    for (let k = 0; k < nd; k++) off += (k === d ? j : pos[k]) * xStr[k];
    srcPos[e] = off; out[e] = xd[off];
    for (let k = nd - 1; k >= 0; k--) { if (++pos[k] < ishape[k]) break; pos[k] = 0; }
  }
  return fromOp(out, ishape, [x], 'gather', (g) => {
    const gd = toDense(g), gx = new Float32Array(xd.length);
    for (let e = 0; e < gd.length; e++) gx[srcPos[e]] += gd[e];
    return [new Tensor(gx, x.shape, 'f32')];
  });
}

/** Rows (or slices along dim) picked by a 1-D index; repeated indices accumulate gradient. */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  const d = normDim(dim, x.ndim);
  if (index.ndim > 1) throw new Error(`indexSelect: index must be 1-D, got [${index.shape}]`);
  const idx = indexArray(index, 'indexSelect index');
  const n = x.shape[d], outer = numelOf(x.shape.slice(0, d)), inner = numelOf(x.shape.slice(d + 1));
  for (const j of idx) if (j < -n || j >= n) throw new Error(`indexSelect: index ${j} is out of range for dim ${dim} of size ${n}`);
  const xd = toDense(x), m = idx.length;
  const out = emptyF32(outer * m * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < m; i++) {
      const j = idx[i] < 0 ? idx[i] + n : idx[i];
      const src = (o * n + j) * inner;
      out.set(xd.subarray(src, src + inner), (o * m + i) * inner);
    }
  }
  const shape = [...x.shape];
  shape[d] = m;
  return fromOp(out, shape, [x], 'indexSelect', (g) => {
    const gd = toDense(g), gx = new Float32Array(xd.length);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < m; i++) {
        const j = idx[i] < 0 ? idx[i] + n : idx[i];
        const dst = (o * n + j) * inner, src = (o * m + i) * inner;
        for (let k = 0; k < inner; k++) gx[dst + k] += gd[src + k];
      }
    }
    return [new Tensor(gx, x.shape, 'f32')];
  });
}

/** weight [V, D] looked up by integer ids of any shape → [...ids.shape, D]. */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be [num, dim], got [${weight.shape}]`);
  const flat = reshape(ids, [ids.numel]);
  return reshape(indexSelect(weight, 0, flat), [...ids.shape, weight.shape[1]]);
}

export function cumsum(x: Tensor, dim: number): Tensor {
  const d = normDim(dim, Math.max(x.ndim, 1));
  if (x.ndim === 0) return x.clone();
  const n = x.shape[d], outer = numelOf(x.shape.slice(0, d)), inner = numelOf(x.shape.slice(d + 1));
  const xd = toDense(x);
  const scan = (src: Float32Array, reverse: boolean) => {
    const out = new Float32Array(src.length);
    for (let o = 0; o < outer; o++) {
      for (let k = 0; k < inner; k++) {
        let acc = 0;
        for (let r = 0; r < n; r++) {
          const i = (o * n + (reverse ? n - 1 - r : r)) * inner + k;
          acc += src[i]; out[i] = acc;
        }
      }
    }
    return out;
  };
  return fromOp(scan(xd, false), x.shape, [x], 'cumsum', (g) => [new Tensor(scan(toDense(g), true), x.shape, 'f32')]);
}

export function flip(x: Tensor, dims: number | number[]): Tensor {
  let out = x;
  for (const dim of Array.isArray(dims) ? dims : [dims]) {
    const d = normDim(dim, x.ndim), n = x.shape[d];
    const rev = new Int32Array(n);
    for (let i = 0; i < n; i++) rev[i] = n - 1 - i;
    out = indexSelect(out, d, new Tensor(rev, [n], 'i32'));
  }
  return out;
}

/** Tile x `reps` times along each dim (torch.Tensor.repeat). */
export function repeat(x: Tensor, reps: readonly number[]): Tensor {
  if (reps.length < x.ndim) throw new Error(`repeat: ${reps.length} repeats for a tensor with ${x.ndim} dims`);
  const lead = reps.length - x.ndim;
  const src = reshape(x, [...new Array(lead).fill(1), ...x.shape]);
  // Interleave a broadcast dim before each source dim, then merge pairs.
  const wide = reshape(src, src.shape.flatMap((s) => [1, s]));
  const target = src.shape.flatMap((s, i) => [reps[i], s]);
  return reshape(expand(wide, target), src.shape.map((s, i) => s * reps[i]));
}

/**
 * Constant padding; `pads` lists (before, after) pairs starting from the LAST dim, as torch.nn.functional.pad.
 * Negative pads crop.
 */
export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  if (pads.length % 2 || pads.length / 2 > x.ndim) throw new Error(`pad: expected pairs for at most ${x.ndim} dims, got [${pads}]`);
  let out = x;
  for (let p = 0; p < pads.length / 2; p++) {
    const d = x.ndim - 1 - p;
    let before = pads[2 * p], after = pads[2 * p + 1];
    if (before < 0) { out = narrow(out, d, -before, out.shape[d] + before); before = 0; }
    if (after < 0) { out = narrow(out, d, 0, out.shape[d] + after); after = 0; }
    if (before === 0 && after === 0) continue;
    const side = (n: number) => { const s = [...out.shape]; s[d] = n; return full(s, value); };
    out = cat([...(before ? [side(before)] : []), out, ...(after ? [side(after)] : [])], d);
  }
  return out;
}
