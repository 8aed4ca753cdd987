/** Storage dtypes. Compute is always float32; 16-bit floats are a storage format widened by kernels. */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'i64' | 'bool';
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32', 'i64', 'bool'];

export type Storage = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

// Kernel outputs are written in full (backend/kernels.ts), so their buffers need not be zeroed first: the
// zero fill of `new Float32Array(n)` was 6 % of a small ViT training step's `perf` samples.
// VSS_POISON_EMPTY=1 fills them with NaN instead, so a test run under it shows any op that leaves an element
// unwritten.
const poisonEmpty = process.env.VSS_POISON_EMPTY === '1';
const UNZEROED_MIN = 1024;   // below this the zero fill is cheaper than a separate ArrayBuffer

/** A float32 buffer whose contents are unspecified: for outputs that a kernel overwrites in full. */
export function emptyF32(n: number): Float32Array {
  if (poisonEmpty) return new Float32Array(n).fill(NaN);
  if (n < UNZEROED_MIN) return new Float32Array(n);
  const bytes = Buffer.allocUnsafeSlow(n * 4);
  return new Float32Array(bytes.buffer, bytes.byteOffset, n);
}

export function allocStorage(dtype: DType, n: number): Storage {
  switch (dtype) {
    case 'f32': return new Float32Array(n);
    case 'f16': case 'bf16': return new Uint16Array(n);
    case 'i32': return new Int32Array(n);
    case 'i64': return new BigInt64Array(n);
    case 'bool': return new Uint8Array(n);
  }
}

export function storageMatches(dtype: DType, data: Storage): boolean {
  switch (dtype) {
    case 'f32': return data instanceof Float32Array;
    case 'f16': case 'bf16': return data instanceof Uint16Array;
    case 'i32': return data instanceof Int32Array;
    case 'i64': return data instanceof BigInt64Array;
    case 'bool': return data instanceof Uint8Array;
  }
}

export const itemSize: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, i64: 8, bool: 1 };
export const isFloat = (d: DType) => d === 'f32' || d === 'f16' || d === 'bf16';
export const isHalf = (d: DType): d is 'f16' | 'bf16' => d === 'f16' || d === 'bf16';
export const isInt = (d: DType) => d === 'i32' || d === 'i64';
