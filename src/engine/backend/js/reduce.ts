import type { ArgReduceOp, F32, ReduceOp } from '../kernels.js';

/** Shared column accumulator for inner > 1 (float64, grown on demand). */
let columnScratch = new Float64Array(0);
function columns(n: number): Float64Array {
  if (columnScratch.length < n) columnScratch = new Float64Array(n);
  return columnScratch;
}

export function reduce(op: ReduceOp, x: F32, outer: number, n: number, inner: number, out: F32): void {
  const init = op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity;
  if (n === 0) { out.fill(init, 0, outer * inner); return; }
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const base = o * n;
      let acc = init;
      if (op === 'sum') {
        for (let r = 0; r < n; r++) acc += x[base + r];
      } else if (op === 'max') {
        // Once acc is NaN, neither test can replace it: NaN propagates.
        for (let r = 0; r < n; r++) { const v = x[base + r]; if (v > acc || v !== v) acc = v; }
      } else {
        for (let r = 0; r < n; r++) { const v = x[base + r]; if (v < acc || v !== v) acc = v; }
      }
      out[o] = acc;
    }
    return;
  }
  // Reduce over a strided axis: walk rows r in order so reads stay contiguous, one accumulator per column.
  const acc = columns(inner);
  for (let o = 0; o < outer; o++) {
    acc.fill(init, 0, inner);
    for (let r = 0; r < n; r++) {
      const base = (o * n + r) * inner;
      if (op === 'sum') {
        for (let i = 0; i < inner; i++) acc[i] += x[base + i];
      } else if (op === 'max') {
        for (let i = 0; i < inner; i++) { const v = x[base + i]; if (v > acc[i] || v !== v) acc[i] = v; }
      } else {
        for (let i = 0; i < inner; i++) { const v = x[base + i]; if (v < acc[i] || v !== v) acc[i] = v; }
      }
    }
    for (let i = 0; i < inner; i++) out[o * inner + i] = acc[i];
  }
}

/**
 * Index of the first max/min. Like PyTorch, NaN counts as the extreme value: the first NaN wins.
 * n = 0 has no answer; it writes -1 (callers reject empty arg-reductions before getting here).
 */
export function argReduce(op: ArgReduceOp, x: F32, outer: number, n: number, inner: number, out: Int32Array): void {
  if (n === 0) { out.fill(-1, 0, outer * inner); return; }
  const isMax = op === 'argmax';
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      let best = x[base];
      let bestIndex = 0;
      if (best === best) {
        for (let r = 1; r < n; r++) {
          const v = x[base + r * inner];
          if (v !== v) { bestIndex = r; break; }
          if (isMax ? v > best : v < best) { best = v; bestIndex = r; }
        }
      }
      out[o * inner + i] = bestIndex;
    }
  }
}

export function softmax(x: F32, rows: number, cols: number, log: boolean, out: F32): void {
  for (let row = 0; row < rows; row++) {
    const base = row * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) { const v = x[base + j]; if (v > max || v !== v) max = v; }
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += Math.exp(x[base + j] - max);
    if (log) {
      const shift = max + Math.log(sum);
      for (let j = 0; j < cols; j++) out[base + j] = x[base + j] - shift;
    } else {
      const inv = 1 / sum;
      for (let j = 0; j < cols; j++) out[base + j] = Math.exp(x[base + j] - max) * inv;
    }
  }
}

export function softmaxBackward(y: F32, gy: F32, rows: number, cols: number, log: boolean, gx: F32): void {
  for (let row = 0; row < rows; row++) {
    const base = row * cols;
    if (log) {
      let sumGy = 0;
      for (let j = 0; j < cols; j++) sumGy += gy[base + j];
      for (let j = 0; j < cols; j++) gx[base + j] = gy[base + j] - Math.exp(y[base + j]) * sumGy;
    } else {
      let dot = 0;
      for (let j = 0; j < cols; j++) dot += gy[base + j] * y[base + j];
      for (let j = 0; j < cols; j++) gx[base + j] = y[base + j] * (gy[base + j] - dot);
    }
  }
}
