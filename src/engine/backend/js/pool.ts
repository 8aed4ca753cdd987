/**
 * Pooling and resampling over NCHW planes, following PyTorch's index conventions (floor output sizes,
 * no ceil_mode).
 */
import type { F32 } from '../kernels.js';
import { convOutSize } from '../kernels.js';

export function maxPool2d(x: F32, N: number, C: number, H: number, W: number, kh: number, kw: number,
                          sh: number, sw: number, ph: number, pw: number, out: F32, argmax: Int32Array): void {
  const OH = convOutSize(H, kh, sh, ph, 1), OW = convOutSize(W, kw, sw, pw, 1);
  if (OH <= 0 || OW <= 0) return;
  const planes = N * C;
  for (let p = 0; p < planes; p++) {
    const xBase = p * H * W;
    for (let oh = 0; oh < OH; oh++) {
      const h0 = oh * sh - ph;
      const hLo = Math.max(h0, 0), hHi = Math.min(h0 + kh, H);
      for (let ow = 0; ow < OW; ow++) {
        const w0 = ow * sw - pw;
        const wLo = Math.max(w0, 0), wHi = Math.min(w0 + kw, W);
        // PyTorch starts from the window's first in-bounds element and lets a NaN take over.
        let best = -Infinity;
        let bestIndex = hLo * W + wLo;
        for (let ih = hLo; ih < hHi; ih++) {
          for (let iw = wLo; iw < wHi; iw++) {
            const v = x[xBase + ih * W + iw];
            if (v > best || v !== v) { best = v; bestIndex = ih * W + iw; }
          }
        }
        const o = (p * OH + oh) * OW + ow;
        out[o] = best;
        argmax[o] = bestIndex;
      }
    }
  }
}

export function maxPool2dBackward(gy: F32, argmax: Int32Array, N: number, C: number, H: number, W: number,
                                  OH: number, OW: number, gx: F32): void {
  const planes = N * C;
  gx.fill(0, 0, planes * H * W);
  for (let p = 0; p < planes; p++) {
    const xBase = p * H * W, oBase = p * OH * OW;
    for (let t = 0; t < OH * OW; t++) gx[xBase + argmax[oBase + t]] += gy[oBase + t];
  }
}

/** Visits each output cell's in-bounds window with its divisor. */
function forEachAvgWindow(N: number, C: number, H: number, W: number, kh: number, kw: number,
                          sh: number, sw: number, ph: number, pw: number, countIncludePad: boolean,
                          visit: (xBase: number, o: number, hLo: number, hHi: number, wLo: number, wHi: number,
                                  divisor: number) => void): void {
  const OH = convOutSize(H, kh, sh, ph, 1), OW = convOutSize(W, kw, sw, pw, 1);
  if (OH <= 0 || OW <= 0) return;
  for (let p = 0; p < N * C; p++) {
    for (let oh = 0; oh < OH; oh++) {
      const h0 = oh * sh - ph;
      const hLo = Math.max(h0, 0), hHi = Math.min(h0 + kh, H);
      for (let ow = 0; ow < OW; ow++) {
        const w0 = ow * sw - pw;
        const wLo = Math.max(w0, 0), wHi = Math.min(w0 + kw, W);
        const divisor = countIncludePad ? kh * kw : (hHi - hLo) * (wHi - wLo);
        visit(p * H * W, (p * OH + oh) * OW + ow, hLo, hHi, wLo, wHi, divisor);
      }
    }
  }
}

export function avgPool2d(x: F32, N: number, C: number, H: number, W: number, kh: number, kw: number,
                          sh: number, sw: number, ph: number, pw: number, countIncludePad: boolean, out: F32): void {
  forEachAvgWindow(N, C, H, W, kh, kw, sh, sw, ph, pw, countIncludePad, (xBase, o, hLo, hHi, wLo, wHi, divisor) => {
    let sum = 0;
    for (let ih = hLo; ih < hHi; ih++) for (let iw = wLo; iw < wHi; iw++) sum += x[xBase + ih * W + iw];
    out[o] = sum / divisor;
  });
}

export function avgPool2dBackward(gy: F32, N: number, C: number, H: number, W: number, kh: number, kw: number,
                                  sh: number, sw: number, ph: number, pw: number, countIncludePad: boolean,
                                  gx: F32): void {
  gx.fill(0, 0, N * C * H * W);
  forEachAvgWindow(N, C, H, W, kh, kw, sh, sw, ph, pw, countIncludePad, (xBase, o, hLo, hHi, wLo, wHi, divisor) => {
    const g = gy[o] / divisor;
    for (let ih = hLo; ih < hHi; ih++) for (let iw = wLo; iw < wHi; iw++) gx[xBase + ih * W + iw] += g;
  });
}

/**
 * Per output coordinate along one axis: the two source indices and their weights. Index arithmetic is
 * done in float32, as PyTorch does for f32 tensors, so floor() lands on the same source cells.
 */
interface AxisMap { i0: Int32Array; i1: Int32Array; w0: Float64Array; w1: Float64Array }

function axisMap(inSize: number, outSize: number, mode: 'nearest' | 'bilinear', alignCorners: boolean): AxisMap {
  const f = Math.fround;
  const map: AxisMap = {
    i0: new Int32Array(outSize), i1: new Int32Array(outSize),
    w0: new Float64Array(outSize), w1: new Float64Array(outSize),
  };
  if (mode === 'nearest') {
    const scale = f(inSize / outSize);
    for (let o = 0; o < outSize; o++) {
      const src = Math.min(Math.floor(f(o * scale)), inSize - 1);
      map.i0[o] = src; map.i1[o] = src; map.w0[o] = 1; map.w1[o] = 0;
    }
    return map;
  }
  const scale = alignCorners ? (outSize > 1 ? f((inSize - 1) / (outSize - 1)) : 0) : f(inSize / outSize);
  for (let o = 0; o < outSize; o++) {
    let src = alignCorners ? f(scale * o) : f(f(scale * f(o + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const lo = Math.min(Math.floor(src), inSize - 1);
    const hi = lo < inSize - 1 ? lo + 1 : lo;
    const lambda = Math.min(Math.max(f(src - lo), 0), 1);
    map.i0[o] = lo; map.i1[o] = hi;
    map.w0[o] = f(1 - lambda); map.w1[o] = lambda;
  }
  return map;
}

export function interpolate(x: F32, P: number, H: number, W: number, OH: number, OW: number,
                            mode: 'nearest' | 'bilinear', alignCorners: boolean, out: F32): void {
  if (P <= 0 || OH <= 0 || OW <= 0) return;
  const rowMap = axisMap(H, OH, mode, alignCorners);
  const colMap = axisMap(W, OW, mode, alignCorners);
  for (let p = 0; p < P; p++) {
    const xBase = p * H * W;
    for (let oh = 0; oh < OH; oh++) {
      const r0 = xBase + rowMap.i0[oh] * W, r1 = xBase + rowMap.i1[oh] * W;
      const a0 = rowMap.w0[oh], a1 = rowMap.w1[oh];
      const oRow = (p * OH + oh) * OW;
      for (let ow = 0; ow < OW; ow++) {
        const c0 = colMap.i0[ow], c1 = colMap.i1[ow], b0 = colMap.w0[ow], b1 = colMap.w1[ow];
        out[oRow + ow] = a0 * (b0 * x[r0 + c0] + b1 * x[r0 + c1]) + a1 * (b0 * x[r1 + c0] + b1 * x[r1 + c1]);
      }
    }
  }
}

export function interpolateBackward(gy: F32, P: number, H: number, W: number, OH: number, OW: number,
                                    mode: 'nearest' | 'bilinear', alignCorners: boolean, gx: F32): void {
  gx.fill(0, 0, P * H * W);
  if (P <= 0 || OH <= 0 || OW <= 0) return;
  const rowMap = axisMap(H, OH, mode, alignCorners);
  const colMap = axisMap(W, OW, mode, alignCorners);
  for (let p = 0; p < P; p++) {
    const xBase = p * H * W;
    for (let oh = 0; oh < OH; oh++) {
      const r0 = xBase + rowMap.i0[oh] * W, r1 = xBase + rowMap.i1[oh] * W;
      const a0 = rowMap.w0[oh], a1 = rowMap.w1[oh];
      const oRow = (p * OH + oh) * OW;
      for (let ow = 0; ow < OW; ow++) {
        const g = gy[oRow + ow];
        const c0 = colMap.i0[ow], c1 = colMap.i1[ow], b0 = colMap.w0[ow], b1 = colMap.w1[ow];
        gx[r0 + c0] += a0 * b0 * g; gx[r0 + c1] += a0 * b1 * g;
        gx[r1 + c0] += a1 * b0 * g; gx[r1 + c1] += a1 * b1 * g;
      }
    }
  }
}
