/** Views (no copy), copies and casts. Each view's backward maps the gradient back onto the source shape. */
import { Tensor, type Shape, contiguousStrides, numelOf, checkShape } from '../tensor.js';
import { type DType, allocStorage, isHalf } from '../dtype.js';
import { K } from '../backend/index.js';
import { fromOp, viewOf, toDense, forEachIndex } from './data.js';
import { sumTo } from './reduce.js';
import { cat } from './shape.js';
import { zeros } from './creation.js';

export function normDim(dim: number, ndim: number): number {
  const d = dim < 0 ? dim + ndim : dim;
  if (!Number.isInteger(d) || d < 0 || d >= Math.max(ndim, 1)) {
    throw new Error(`dimension ${dim} is out of range for a tensor with ${ndim} dims`);
  }
  return d;
}

export function toNested(t: Tensor): any {
  const flat: number[] = [];
  if (t.dtype === 'f32' || isHalf(t.dtype)) flat.push(...toDense(t));
  else forEachIndex(t, (src) => { const v = t.data[src]; flat.push(typeof v === 'bigint' ? Number(v) : v); });
  if (t.ndim === 0) return flat[0];
  let pos = 0;
  const build = (d: number): any[] => {
    const out: any[] = [];
    for (let i = 0; i < t.shape[d]; i++) out.push(d === t.ndim - 1 ? flat[pos++] : build(d + 1));
    return out;
  };
  return build(0);
}

/** A dense copy of any dtype (no autograd). */
export function cloneData(t: Tensor): Tensor {
  if (t.dtype === 'f32') return new Tensor(Float32Array.from(toDense(t)), t.shape, 'f32');
  const out = allocStorage(t.dtype, t.numel);
  if (isHalf(t.dtype) && t.isContiguous()) {
    (out as Uint16Array).set((t.data as Uint16Array).subarray(t.offset, t.offset + t.numel));
  } else {
    forEachIndex(t, (src, i) => { (out as any)[i] = (t.data as any)[src]; });
  }
  return new Tensor(out, t.shape, t.dtype);
}

export function contiguous(t: Tensor): Tensor {
  if (t.isContiguous()) return t;
  return clone(t);
}

export function clone(t: Tensor): Tensor {
  if (t.dtype !== 'f32') return cloneData(t);
  return fromOp(Float32Array.from(toDense(t)), t.shape, [t], 'clone', (g) => [g]);
}

function resolveShape(shape: readonly number[], numel: number): number[] {
  const out = [...shape];
  const neg = out.indexOf(-1);
  if (neg >= 0) {
    const rest = numelOf(out.filter((_, i) => i !== neg));
    if (rest === 0 || numel % rest !== 0) throw new Error(`cannot reshape ${numel} elements into [${shape}]`);
    out[neg] = numel / rest;
  }
  checkShape(out);
  if (numelOf(out) !== numel) throw new Error(`cannot reshape ${numel} elements into [${shape}]`);
  return out;
}

/**
 * Strides for viewing t as `shape` without a copy, or null when the layout does not allow it. Source
 * dims are grouped into chunks that are contiguous with each other; every target dim must fit in one.
 */
function viewStrides(t: Tensor, shape: number[]): number[] | null {
  if (t.isContiguous() || t.numel === 0) return contiguousStrides(shape);
  const old = t.shape, oldStrides = t.strides;
  const out = new Array<number>(shape.length);
  let viewD = shape.length - 1;
  let chunkBase = oldStrides[old.length - 1];
  let chunkNumel = 1, viewNumel = 1;
  for (let d = old.length - 1; d >= 0; d--) {
    chunkNumel *= old[d];
    const chunkEnds = d === 0 || (old[d - 1] !== 1 && oldStrides[d - 1] !== chunkNumel * chunkBase);
    if (!chunkEnds) continue;
    while (viewD >= 0 && (viewNumel < chunkNumel || shape[viewD] === 1)) {
      out[viewD] = viewNumel * chunkBase;
      viewNumel *= shape[viewD];
      viewD--;
    }
    if (viewNumel !== chunkNumel) return null;
    if (d > 0) { chunkBase = oldStrides[d - 1]; chunkNumel = 1; viewNumel = 1; }
  }
  return viewD === -1 ? out : null;
}

export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  const target = resolveShape(shape, t.numel);
  const strides = viewStrides(t, target);
  if (strides) return viewOf(t, target, strides, t.offset, 'reshape', (g) => [reshape(g, t.shape)]);
  return reshape(contiguous(t), target);
}

export function permute(t: Tensor, dims: readonly number[]): Tensor {
  if (dims.length !== t.ndim) throw new Error(`permute: got ${dims.length} dims for a tensor with ${t.ndim}`);
  const d = dims.map((x) => normDim(x, t.ndim));
  if (new Set(d).size !== d.length) throw new Error(`permute: repeated dims in [${dims}]`);
  const inv = new Array<number>(d.length);
  d.forEach((x, i) => { inv[x] = i; });
  return viewOf(t, d.map((x) => t.shape[x]), d.map((x) => t.strides[x]), t.offset, 'permute', (g) => [permute(g, inv)]);
}

export function transpose(t: Tensor, a: number, b: number): Tensor {
  const dims = t.shape.map((_, i) => i);
  const x = normDim(a, t.ndim), y = normDim(b, t.ndim);
  [dims[x], dims[y]] = [dims[y], dims[x]];
  return permute(t, dims);
}

export function narrow(t: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normDim(dim, t.ndim);
  if (start < 0) start += t.shape[d];
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > t.shape[d]) {
    throw new Error(`narrow: [${start}, ${start + length}) is outside dim ${dim} of size ${t.shape[d]}`);
  }
  const shape = [...t.shape];
  shape[d] = length;
  return viewOf(t, shape, t.strides, t.offset + start * t.strides[d], 'narrow', (g) => {
    const parts: Tensor[] = [];
    const before = [...t.shape], after = [...t.shape];
    before[d] = start; after[d] = t.shape[d] - start - length;
    if (start > 0) parts.push(zeros(before));
    parts.push(g);
    if (after[d] > 0) parts.push(zeros(after));
    return [parts.length === 1 ? g : cat(parts, d)];
  });
}

/** Python-style slice along one dim (negative indices count from the end; step > 0). */
export function slice(t: Tensor, dim: number, start?: number, end?: number, step = 1): Tensor {
  const d = normDim(dim, t.ndim), n = t.shape[d];
  if (!Number.isInteger(step) || step < 1) throw new Error(`slice: step must be a positive integer, got ${step}`);
  const clampIdx = (i: number) => Math.min(Math.max(i < 0 ? i + n : i, 0), n);
  const s = clampIdx(start ?? 0), e = Math.max(clampIdx(end ?? n), s);
  if (step === 1) return narrow(t, d, s, e - s);
  const len = Math.ceil((e - s) / step);
  const shape = [...t.shape], strides = [...t.strides];
  shape[d] = len; strides[d] *= step;
  return viewOf(t, shape, strides, t.offset + s * t.strides[d], 'slice', (g) => {
    // Scatter g into every step-th position of a zero gradient.
    const gx = new Float32Array(numelOf(t.shape));
    const gd = toDense(g);
    const xs = contiguousStrides(t.shape);
    const inner = xs[d];
    const outer = numelOf(t.shape.slice(0, d));
    let k = 0;
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < len; i++) {
        const base = o * n * inner + (s + i * step) * inner;
        for (let j = 0; j < inner; j++) gx[base + j] = gd[k++];
      }
    }
    return [new Tensor(gx, t.shape, 'f32')];
  });
}

export function select(t: Tensor, dim: number, index: number): Tensor {
  const d = normDim(dim, t.ndim);
  return squeeze(narrow(t, d, index < 0 ? index + t.shape[d] : index, 1), d);
}

export function expand(t: Tensor, shape: readonly number[]): Tensor {
  if (shape.length < t.ndim) throw new Error(`expand: target [${shape}] has fewer dims than [${t.shape}]`);
  const lead = shape.length - t.ndim;
  const out = shape.map((s, i) => (s === -1 ? (i < lead ? -1 : t.shape[i - lead]) : s));
  const strides = out.map((s, i) => {
    if (i < lead) { if (s < 0) throw new Error(`expand: -1 not allowed for new dims`); return 0; }
    const src = t.shape[i - lead];
    if (src === s) return t.strides[i - lead];
    if (src === 1) return 0;
    throw new Error(`expand: cannot expand [${t.shape}] to [${shape}]`);
  });
  checkShape(out);
  return viewOf(t, out, strides, t.offset, 'expand', (g) => [sumTo(g, t.shape)]);
}

export function squeeze(t: Tensor, dim?: number): Tensor {
  let keep: number[];
  if (dim === undefined) keep = t.shape.map((_, i) => i).filter((i) => t.shape[i] !== 1);
  else {
    const d = normDim(dim, t.ndim);
    keep = t.shape.map((_, i) => i).filter((i) => i !== d || t.shape[i] !== 1);
  }
  return viewOf(t, keep.map((i) => t.shape[i]), keep.map((i) => t.strides[i]), t.offset, 'squeeze', (g) => [reshape(g, t.shape)]);
}

export function unsqueeze(t: Tensor, dim: number): Tensor {
  const d = normDim(dim, t.ndim + 1);
  const shape = [...t.shape], strides = [...t.strides];
  shape.splice(d, 0, 1);
  strides.splice(d, 0, d < t.ndim ? t.strides[d] * t.shape[d] : 1);
  return viewOf(t, shape, strides, t.offset, 'unsqueeze', (g) => [reshape(g, t.shape)]);
}

export function flatten(t: Tensor, start = 0, end = -1): Tensor {
  if (t.ndim === 0) return reshape(t, [1]);
  const s = normDim(start, t.ndim), e = normDim(end, t.ndim);
  if (e < s) throw new Error(`flatten: end dim ${end} is before start dim ${start}`);
  const shape = [...t.shape.slice(0, s), numelOf(t.shape.slice(s, e + 1)), ...t.shape.slice(e + 1)];
  return reshape(t, shape);
}

/** Dtype conversion. Float→float casts pass gradients through (as f32); casts to integers end the graph. */
export function cast(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  const n = t.numel;
  if (dtype === 'f32') {
    const out = toDense(t);
    const data = out === t.data || out.buffer === t.data.buffer ? Float32Array.from(out) : out;
    return fromOp(data, t.shape, [t], 'cast', (g) => [g]);
  }
  if (isHalf(dtype)) {
    const bits = new Uint16Array(n);
    if (n) K.narrow(toDense(t), dtype, bits);
    return new Tensor(bits, t.shape, dtype);
  }
  const src = toDense(t);
  const out = allocStorage(dtype, n);
  for (let i = 0; i < n; i++) {
    const v = src[i];
    if (dtype === 'i64') (out as BigInt64Array)[i] = BigInt(Math.trunc(v));
    else if (dtype === 'bool') (out as Uint8Array)[i] = v !== 0 ? 1 : 0;
    else (out as Int32Array)[i] = Math.trunc(v);
  }
  return new Tensor(out, t.shape, dtype);
}

export { type Shape };
