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

// Recycled buffers, by length: gradients a backward pass is done with come back here (autograd.ts), and
// the next op that asks for as many floats takes one instead of a fresh allocation, which costs GC work
// and comes cold from memory (about half of the large buffers a ViT training step asks for, 120 of 217 MB,
// come from here).
// The map's order is the order of last use of each length (oldest first): when the pool is full, the
// lengths used longest ago make room, so a process that moves on to another model (the benchmark's U-Net,
// then its ViT) is not left with a pool of sizes nobody asks for (5 % of a ViT training step).
const recycled = new Map<number, Float32Array[]>();
let recycledFloats = 0;
const RECYCLED_MAX_FLOATS = 1 << 24;   // hold at most 64 MiB
// Buffers handed out while a backward pass tracks them: only those may be recycled by it.
let tracked: WeakSet<Float32Array> | null = null;

/** A float32 buffer whose contents are unspecified: for outputs that a kernel overwrites in full. */
export function emptyF32(n: number): Float32Array {
  const list = n >= UNZEROED_MIN ? recycled.get(n) : undefined;
  let a = list?.pop();
  if (a) {
    recycledFloats -= n;
    recycled.delete(n);   // now the most recently used length
    if (list!.length) recycled.set(n, list!);
  }
  else if (poisonEmpty) a = new Float32Array(n).fill(NaN);
  else if (n < UNZEROED_MIN) a = new Float32Array(n);
  else {
    const bytes = Buffer.allocUnsafeSlow(n * 4);
    a = new Float32Array(bytes.buffer, bytes.byteOffset, n);
  }
  tracked?.add(a);
  return a;
}

/**
 * Track the buffers emptyF32 hands out from now on (autograd's backward pass; returns the set that was
 * tracked before, to give back to endTracking: passes may nest).
 */
export function startTracking(): { set: WeakSet<Float32Array>; outer: WeakSet<Float32Array> | null } {
  const outer = tracked;
  tracked = new WeakSet();
  return { set: tracked, outer };
}
export function endTracking(t: { outer: WeakSet<Float32Array> | null }): void { tracked = t.outer; }

/** Floats waiting in the recycled pool (tests). */
export function recycledFloatsHeld(): number { return recycledFloats; }

/**
 * Give a buffer from emptyF32 back for reuse. The caller vouches that nothing reads or writes it any more;
 * under VSS_POISON_EMPTY it is filled with NaN here, so a test that still reads it fails.
 */
export function recycleF32(a: Float32Array): void {
  if (a.length < UNZEROED_MIN || a.length > RECYCLED_MAX_FLOATS) return;
  if (a.byteOffset !== 0 || a.buffer.byteLength !== a.byteLength) return;
  const list = recycled.get(a.length) ?? [];
  recycled.delete(a.length);
  // make room: drop buffers of the lengths used longest ago (then of this one)
  for (const [n, old] of recycled) {
    if (recycledFloats + a.length <= RECYCLED_MAX_FLOATS) break;
    while (old.length && recycledFloats + a.length > RECYCLED_MAX_FLOATS) { old.pop(); recycledFloats -= n; }
    if (!old.length) recycled.delete(n);
  }
  while (list.length && recycledFloats + a.length > RECYCLED_MAX_FLOATS) { list.pop(); recycledFloats -= a.length; }
  if (poisonEmpty) a.fill(NaN);
  list.push(a);
  recycled.set(a.length, list);
  recycledFloats += a.length;
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
