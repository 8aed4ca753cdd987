import type { F32, Half, WeightDtype } from '../kernels.js';
import { tableFor } from './half.js';
import { coalesce, denseStrides, forEachRow, numel } from './strided.js';

export function stridedCopy(src: F32 | Half, srcDtype: WeightDtype, offset: number, shape: readonly number[],
                            strides: readonly number[], out: F32): void {
  if (numel(shape) === 0) return;
  const c = coalesce(shape, [strides, denseStrides(shape)]);
  const table = tableFor(srcDtype);
  const inStep = c.strides[0][c.shape.length - 1];
  forEachRow(c, [offset, 0], (off, len) => {
    let s = off[0];
    const o = off[1];
    if (table === null) {
      if (inStep === 1) { out.set((src as F32).subarray(s, s + len), o); return; }
      for (let i = 0; i < len; i++, s += inStep) out[o + i] = src[s];
    } else {
      for (let i = 0; i < len; i++, s += inStep) out[o + i] = table[src[s]];
    }
  });
}
