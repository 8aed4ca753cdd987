/**
 * The bridge between tensors and kernels: dense/strided f32 views of tensor data, index arrays, and
 * the one function (`fromOp`) through which every differentiable op records itself on the tape.
 */
import { Tensor, type Shape, numelOf } from '../tensor.js';
import { type GradFn, isGradEnabled } from '../autograd.js';
import { K } from '../backend/index.js';
import { isHalf, emptyF32 } from '../dtype.js';

/** Dense row-major f32 data of t. No copy when t is already dense f32. Never mutate the result. */
export function toDense(t: Tensor): Float32Array {
  const n = t.numel;
  if (t.dtype === 'f32' && t.isContiguous()) {
    const d = t.data as Float32Array;
    return t.offset === 0 && d.length === n ? d : d.subarray(t.offset, t.offset + n);
  }
  const out = emptyF32(n);
  if (n === 0) return out;
  if (t.dtype === 'f32' || isHalf(t.dtype)) {
    K.stridedCopy(t.data as Float32Array | Uint16Array, t.dtype as 'f32' | 'f16' | 'bf16', t.offset, t.shape, t.strides, out);
    return out;
  }
  forEachIndex(t, (src, i) => { const v = t.data[src]; out[i] = typeof v === 'bigint' ? Number(v) : v; });
  return out;
}

/** Calls fn(storageIndex, denseIndex) for every element in row-major order (integer/bool dtypes). */
export function forEachIndex(t: Tensor, fn: (src: number, i: number) => void): void {
  const { shape, strides } = t;
  const nd = shape.length, n = t.numel;
  if (n === 0) return;
  const idx = new Array<number>(nd).fill(0);
  let src = t.offset;
  for (let i = 0; i < n; i++) {
    fn(src, i);
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]++; src += strides[d];
      if (idx[d] < shape[d]) break;
      src -= strides[d] * shape[d]; idx[d] = 0;
    }
  }
}

/** Strided f32 view for kernels that take (buffer, offset, strides): no copy for f32 tensors. */
export function stridedF32(t: Tensor): { buf: Float32Array; offset: number; strides: number[] } {
  if (t.dtype === 'f32') return { buf: t.data as Float32Array, offset: t.offset, strides: [...t.strides] };
  return { buf: toDense(t), offset: 0, strides: contiguousStridesOf(t.shape) };
}

function contiguousStridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}

/** Strides of t as seen when broadcast to `shape` (0 on broadcast dims). */
export function broadcastStrides(t: Shape, tStrides: readonly number[], shape: Shape): number[] {
  const out = new Array<number>(shape.length).fill(0);
  const lead = shape.length - t.length;
  for (let i = 0; i < t.length; i++) {
    if (t[i] === shape[lead + i]) out[lead + i] = t[i] === 1 ? 0 : tStrides[i];
    else if (t[i] !== 1) throw new Error(`cannot broadcast shape [${t}] to [${shape}]`);
  }
  return out;
}

export function broadcastShapes(...shapes: Shape[]): number[] {
  const nd = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(nd).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const j = nd - s.length + i, a = out[j], b = s[i];
      if (a === b || b === 1) continue;
      if (a === 1) out[j] = b;
      else throw new Error(`shapes ${shapes.map((x) => `[${x}]`).join(' and ')} cannot be broadcast together`);
    }
  }
  return out;
}

/** Integer indices of an index tensor (i32, i64, bool or integral f32) as a dense Int32Array. */
export function indexArray(t: Tensor, what = 'index'): Int32Array {
  if (t.dtype === 'i32' && t.isContiguous()) return (t.data as Int32Array).subarray(t.offset, t.offset + t.numel);
  const out = new Int32Array(t.numel);
  if (t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16') {
    const d = toDense(t);
    for (let i = 0; i < d.length; i++) {
      if (!Number.isInteger(d[i])) throw new Error(`${what} must hold integers, found ${d[i]}`);
      out[i] = d[i];
    }
    return out;
  }
  forEachIndex(t, (src, i) => { out[i] = Number(t.data[src]); });
  return out;
}

export function scalarTensor(v: number): Tensor {
  return new Tensor(new Float32Array([v]), [], 'f32');
}

export function asTensor(x: Tensor | number): Tensor {
  return typeof x === 'number' ? scalarTensor(x) : x;
}

/**
 * Wrap a freshly computed dense f32 buffer as an op's output, recording `backward` on the tape when
 * gradients are on and some input needs one.
 */
export function fromOp(data: Float32Array, shape: Shape, inputs: readonly Tensor[], name: string,
                       backward: GradFn['backward'], strides?: Shape): Tensor {
  if (data.length !== numelOf(shape)) throw new Error(`${name}: internal error, ${data.length} values for shape [${shape}]`);
  const out = new Tensor(data, shape, 'f32', strides);
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradFn = { name, inputs, backward };
  }
  return out;
}

/** Record a view (or any tensor sharing storage) on the tape. */
export function viewOf(src: Tensor, shape: Shape, strides: Shape, offset: number, name: string,
                       backward: GradFn['backward']): Tensor {
  const out = new Tensor(src.data, shape, src.dtype, strides, offset);
  if (isGradEnabled() && src.requiresGrad) {
    out.requiresGrad = true;
    out.gradFn = { name, inputs: [src], backward };
  }
  return out;
}

export function needsGrad(...ts: Tensor[]): boolean {
  return isGradEnabled() && ts.some((t) => t.requiresGrad);
}

/** f32 buffer and dtype tag for kernels that accept 16-bit weights directly (dense). */
export function weightBuf(t: Tensor): { buf: Float32Array | Uint16Array; dtype: 'f32' | 'f16' | 'bf16' } {
  if (isHalf(t.dtype) && t.isContiguous()) {
    return { buf: (t.data as Uint16Array).subarray(t.offset, t.offset + t.numel), dtype: t.dtype as 'f16' | 'bf16' };
  }
  return { buf: toDense(t), dtype: 'f32' };
}
