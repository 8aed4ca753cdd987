/** Reductions over any set of dims. Adjacent reduced dims are merged into one kernel pass. */
import { emptyF32 } from '../dtype.js';
import { Tensor, type Shape, numelOf } from '../tensor.js';
import { K } from '../backend/index.js';
import type { ReduceOp } from '../backend/kernels.js';
import { fromOp, toDense } from './data.js';
import { normDim, reshape, expand, squeeze } from './view.js';
import { gather } from './shape.js';
import { mul, div, sub, add, exp, log, sqrt, eq, where } from './elementwise.js';

function normDims(dim: number | number[] | undefined, ndim: number): number[] {
  if (dim === undefined) return Array.from({ length: ndim }, (_, i) => i);
  const dims = (Array.isArray(dim) ? dim : [dim]).map((d) => normDim(d, ndim));
  if (new Set(dims).size !== dims.length) throw new Error(`reduction: repeated dims [${dim}]`);
  return dims.sort((a, b) => a - b);
}

const keptShape = (shape: Shape, dims: number[]) => shape.map((s, i) => (dims.includes(i) ? 1 : s));
const finalShape = (shape: Shape, dims: number[], keepdim: boolean) =>
  keepdim ? keptShape(shape, dims) : shape.filter((_, i) => !dims.includes(i));

/** Raw reduction (no autograd): dense result in keepdim layout. */
function reduceRaw(op: ReduceOp, x: Tensor, dims: number[]): Float32Array {
  let data = toDense(x);
  const shape = [...x.shape];
  // Walk groups of adjacent dims from the innermost outwards.
  let i = dims.length - 1;
  if (dims.length === 0) return Float32Array.from(data);
  while (i >= 0) {
    let j = i;
    while (j > 0 && dims[j - 1] === dims[j] - 1) j--;
    const lo = dims[j], hi = dims[i];
    const outer = numelOf(shape.slice(0, lo)), n = numelOf(shape.slice(lo, hi + 1)), inner = numelOf(shape.slice(hi + 1));
    const out = emptyF32(outer * inner);
    K.reduce(op, data, outer, n, inner, out);
    data = out;
    for (let d = lo; d <= hi; d++) shape[d] = 1;
    i = j - 1;
  }
  return data;
}

export function sum(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  const dims = normDims(dim, x.ndim);
  const out = reduceRaw('sum', x, dims);
  const kept = keptShape(x.shape, dims);
  return fromOp(out, finalShape(x.shape, dims, keepdim), [x], 'sum', (g) => [expand(reshape(g, kept), x.shape)]);
}

export function mean(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  const dims = normDims(dim, x.ndim);
  const count = numelOf(dims.map((d) => x.shape[d]));
  return div(sum(x, dims, keepdim), count);
}

/** Gradient flows to every position equal to the extreme value, shared equally between ties. */
function extreme(op: 'max' | 'min', x: Tensor, dim: number | number[] | undefined, keepdim: boolean): Tensor {
  const dims = normDims(dim, x.ndim);
  if (x.numel === 0) throw new Error(`${op}(): reduction over an empty tensor`);
  const out = reduceRaw(op, x, dims);
  const kept = keptShape(x.shape, dims);
  return fromOp(out, finalShape(x.shape, dims, keepdim), [x], op, (g) => {
    const ref = new Tensor(out, kept, 'f32');
    const hit = where(eq(x, ref), 1, 0);
    const share = div(hit, sum(hit, dims, true));
    return [mul(share, reshape(g, kept))];
  });
}

export const max = (x: Tensor, dim?: number | number[], keepdim = false) => extreme('max', x, dim, keepdim);
export const min = (x: Tensor, dim?: number | number[], keepdim = false) => extreme('min', x, dim, keepdim);

function argReduce(op: 'argmax' | 'argmin', x: Tensor, dim: number | undefined, keepdim: boolean): Tensor {
  if (dim === undefined) return argReduce(op, reshape(x, [x.numel]), 0, false);
  const d = normDim(dim, x.ndim);
  if (x.shape[d] === 0) throw new Error(`${op}(): dim ${dim} is empty`);
  const outer = numelOf(x.shape.slice(0, d)), n = x.shape[d], inner = numelOf(x.shape.slice(d + 1));
  const out = new Int32Array(outer * inner);
  K.argReduce(op, toDense(x), outer, n, inner, out);
  return new Tensor(out, finalShape(x.shape, [d], keepdim), 'i32');
}

/** Index of the largest value (first on ties); i32 indices. Without dim, over the flattened tensor. */
export const argmax = (x: Tensor, dim?: number, keepdim = false) => argReduce('argmax', x, dim, keepdim);
export const argmin = (x: Tensor, dim?: number, keepdim = false) => argReduce('argmin', x, dim, keepdim);

/**
 * Values and indices of the max/min along one dim (like torch.max(x, dim)). Unlike max(), the gradient
 * goes to the one returned index, not shared between ties.
 */
function extremeDim(op: 'argmax' | 'argmin', x: Tensor, dim: number, keepdim: boolean): { values: Tensor; indices: Tensor } {
  const indices = argReduce(op, x, dim, true);
  const values = gather(x, dim, indices);
  const d = normDim(dim, x.ndim);
  return keepdim ? { values, indices } : { values: squeeze(values, d), indices: squeeze(indices, d) };
}
export const maxDim = (x: Tensor, dim: number, keepdim = false) => extremeDim('argmax', x, dim, keepdim);
export const minDim = (x: Tensor, dim: number, keepdim = false) => extremeDim('argmin', x, dim, keepdim);

export interface VarOptions { correction?: number; keepdim?: boolean }

export function variance(x: Tensor, dim?: number | number[], opts: VarOptions = {}): Tensor {
  const dims = normDims(dim, x.ndim);
  const count = numelOf(dims.map((d) => x.shape[d]));
  const dev = sub(x, mean(x, dims, true));
  return div(sum(mul(dev, dev), dims, opts.keepdim ?? false), Math.max(count - (opts.correction ?? 1), 0));
}

export const std = (x: Tensor, dim?: number | number[], opts: VarOptions = {}) => sqrt(variance(x, dim, opts));

/** log Σ exp(x), stable: the max is subtracted first (and treated as a constant). */
export function logsumexp(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  const dims = normDims(dim, x.ndim);
  const m = reduceRaw('max', x, dims);
  for (let i = 0; i < m.length; i++) if (!Number.isFinite(m[i])) m[i] = 0;
  const shift = new Tensor(m, keptShape(x.shape, dims), 'f32');
  const out = add(log(sum(exp(sub(x, shift)), dims, true)), shift);
  return keepdim ? out : reshape(out, finalShape(x.shape, dims, false));
}

/** Sum g over the dims that broadcasting expanded, so it matches `shape` (the gradient of expand). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.ndim - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  return reshape(sum(g, dims, true), shape);
}
