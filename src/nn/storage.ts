/**
 * Small helpers for reading and writing tensor storage directly. Module loading, optimisers and safetensors
 * all move raw values between tensors without building autograd graphs; these keep that code short and keep
 * 16-bit / integer tensors' exact bit patterns (no detour through f32).
 */
import { type Tensor, numelOf, sameShape } from '../engine/index.js';
import type { Storage } from '../engine/dtype.js';

export { numelOf, sameShape, type Storage };

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** True when the view's elements sit in row-major order with no gaps (size-1 dims may have any stride). */
export const isDense = (t: Tensor): boolean => t.isContiguous();

/**
 * The tensor's elements in row-major order and in its own dtype. A dense view returns a window on the storage
 * (no copy, writes go through); a strided view is gathered into a fresh array.
 */
export function denseElements(t: Tensor): Storage {
  const storage = t.data as Storage;
  const n = numelOf(t.shape);
  if (n === 0 || isDense(t)) return storage.subarray(t.offset, t.offset + n);
  const Ctor = storage.constructor as new (len: number) => Storage;
  const out = new Ctor(n);
  const shape = t.shape, strides = t.strides, nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  // Element types differ (bigint for i64) but indexing is the same; the casts keep TypeScript out of it.
  const src = storage as unknown as { [i: number]: number };
  const dst = out as unknown as { [i: number]: number };
  let pos = t.offset;
  for (let i = 0; i < n; i++) {
    dst[i] = src[pos];
    for (let d = nd - 1; d >= 0; d--) { // odometer step through the multi-index
      idx[d]++;
      pos += strides[d];
      if (idx[d] < shape[d]) break;
      pos -= strides[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** The same elements as bytes (little-endian host), for writing to disk. */
export function denseBytes(t: Tensor): Uint8Array {
  const e = denseElements(t);
  return new Uint8Array(e.buffer, e.byteOffset, e.byteLength);
}

/**
 * Writable dense f32 window on a tensor's storage, for in-place updates (optimisers, EMA). Throws when the
 * tensor is not a dense f32 view, since writes to a copy would be silently lost.
 */
export function f32Storage(t: Tensor, what = 'tensor'): Float32Array {
  if (t.dtype !== 'f32') throw new Error(`${what}: expected f32 storage, got ${t.dtype}`);
  if (!isDense(t)) throw new Error(`${what}: expected a dense tensor, got strides [${t.strides}] for shape [${t.shape}]`);
  return (t.data as Float32Array).subarray(t.offset, t.offset + numelOf(t.shape));
}

/** Dense f32 values of any tensor, for reading (may be the storage itself: do not write). */
export const readF32 = (t: Tensor): Float32Array => t.toFloat32Array();
