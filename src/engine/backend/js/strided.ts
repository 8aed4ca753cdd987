/**
 * Walking strided views. Every strided kernel coalesces its operands' dims first (dropping size-1 dims
 * and merging dims that are contiguous in every operand), so a dense or scalar operand collapses to a
 * single inner loop and the odometer only turns once per inner row.
 */

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function denseStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) { strides[d] = s; s *= shape[d]; }
  return strides;
}

/** True when `strides` lay `shape` out densely in row-major order (size-1 dims may have any stride). */
export function isDense(shape: readonly number[], strides: readonly number[]): boolean {
  let expect = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue;
    if (strides[d] !== expect) return false;
    expect *= shape[d];
  }
  return true;
}

export interface Coalesced {
  /** At least one dim; the last is the inner loop. */
  shape: number[];
  /** One stride list per operand, same length as shape. */
  strides: number[][];
}

export function coalesce(shape: readonly number[], operands: readonly (readonly number[])[]): Coalesced {
  const outShape: number[] = [];
  const outStrides: number[][] = operands.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const size = shape[d];
    if (size === 1) continue; // its stride never matters
    const last = outShape.length - 1;
    // Merge into the previous kept dim when, for every operand, stepping the previous dim once equals
    // stepping this dim `size` times.
    const mergeable = last >= 0 && operands.every((s, k) => outStrides[k][last] === s[d] * size);
    if (mergeable) {
      outShape[last] = outShape[last] * size;
      operands.forEach((s, k) => { outStrides[k][last] = s[d]; });
    } else {
      outShape.push(size);
      operands.forEach((s, k) => { outStrides[k].push(s[d]); });
    }
  }
  if (outShape.length === 0) {
    outShape.push(1);
    outStrides.forEach((s) => s.push(0));
  }
  return { shape: outShape, strides: outStrides };
}

/**
 * Calls `row(offsets, len)` once per inner row of a coalesced iteration space. `offsets[k]` is operand
 * k's element index of the row's first element; the callee steps by the last stride of each operand.
 * `offsets` is reused between calls.
 */
export function forEachRow(c: Coalesced, start: readonly number[],
                           row: (offsets: number[], len: number) => void): void {
  const rank = c.shape.length;
  const inner = c.shape[rank - 1];
  const k = start.length;
  const offsets = start.slice();
  if (rank === 1) { row(offsets, inner); return; }
  const index = new Array<number>(rank - 1).fill(0);
  for (;;) {
    row(offsets, inner);
    // Odometer over the outer dims, innermost outer dim first.
    let d = rank - 2;
    for (; d >= 0; d--) {
      for (let q = 0; q < k; q++) offsets[q] += c.strides[q][d];
      if (++index[d] < c.shape[d]) break;
      for (let q = 0; q < k; q++) offsets[q] -= c.strides[q][d] * c.shape[d];
      index[d] = 0;
    }
    if (d < 0) return;
  }
}
