/**
 * 2-D convolution (NCHW input, OIHW weight) as im2col + GEMM. The column matrix is built for a band of
 * output rows at a time so scratch stays bounded (about COLS_BUDGET floats) for large images. A 1×1,
 * stride-1, unpadded convolution is already a GEMM over the input planes and skips im2col.
 */
import type { F32, WeightBuf, WeightDtype } from '../kernels.js';
import { convOutSize } from '../kernels.js';
import { gemm } from './gemm.js';

const COLS_BUDGET = 1 << 22;

let colsScratch = new Float32Array(0);
function colsBuffer(n: number): F32 {
  if (colsScratch.length < n) colsScratch = new Float32Array(n);
  return colsScratch;
}

interface Geometry {
  C: number; H: number; W: number; kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number; dh: number; dw: number;
  OH: number; OW: number;
}

/** Output columns ow whose input column ow*sw - pw + kj*dw lies in [0, W): [lo, hi). */
function validColumns(g: Geometry, kj: number): [number, number] {
  const shift = g.pw - kj * g.dw; // iw = ow*sw - shift
  const lo = Math.max(0, Math.ceil(shift / g.sw));
  const hi = Math.min(g.OW, Math.floor((g.W - 1 + shift) / g.sw) + 1);
  return [lo, Math.max(lo, hi)];
}

/**
 * cols[((c*kh + ki)*kw + kj) * L + (oh - oh0)*OW + ow] = x[c, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw]
 * (0 outside the image) for channels [0, channels) of x starting at xBase, output rows [oh0, oh0 + rows).
 */
function im2col(x: F32, xBase: number, channels: number, g: Geometry, oh0: number, rows: number, cols: F32): void {
  const L = rows * g.OW;
  const plane = g.H * g.W;
  for (let c = 0; c < channels; c++) {
    for (let ki = 0; ki < g.kh; ki++) {
      for (let kj = 0; kj < g.kw; kj++) {
        const rowBase = ((c * g.kh + ki) * g.kw + kj) * L;
        const [lo, hi] = validColumns(g, kj);
        const iwShift = kj * g.dw - g.pw;
        for (let r = 0; r < rows; r++) {
          const dst = rowBase + r * g.OW;
          const ih = (oh0 + r) * g.sh - g.ph + ki * g.dh;
          if (ih < 0 || ih >= g.H || lo >= hi) { cols.fill(0, dst, dst + g.OW); continue; }
          const src = xBase + c * plane + ih * g.W + iwShift;
          cols.fill(0, dst, dst + lo);
          for (let ow = lo; ow < hi; ow++) cols[dst + ow] = x[src + ow * g.sw];
          cols.fill(0, dst + hi, dst + g.OW);
        }
      }
    }
  }
}

/** Adjoint of im2col: gx[c, ih, iw] += cols[...] over the same index map. */
function col2imAdd(cols: F32, channels: number, g: Geometry, oh0: number, rows: number, gx: F32, gxBase: number): void {
  const L = rows * g.OW;
  const plane = g.H * g.W;
  for (let c = 0; c < channels; c++) {
    for (let ki = 0; ki < g.kh; ki++) {
      for (let kj = 0; kj < g.kw; kj++) {
        const rowBase = ((c * g.kh + ki) * g.kw + kj) * L;
        const [lo, hi] = validColumns(g, kj);
        const iwShift = kj * g.dw - g.pw;
        for (let r = 0; r < rows; r++) {
          const ih = (oh0 + r) * g.sh - g.ph + ki * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const src = rowBase + r * g.OW;
          const dst = gxBase + c * plane + ih * g.W + iwShift;
          for (let ow = lo; ow < hi; ow++) gx[dst + ow * g.sw] += cols[src + ow];
        }
      }
    }
  }
}

function geometry(C: number, H: number, W: number, kh: number, kw: number, sh: number, sw: number,
                  ph: number, pw: number, dh: number, dw: number): Geometry {
  return { C, H, W, kh, kw, sh, sw, ph, pw, dh, dw,
           OH: convOutSize(H, kh, sh, ph, dh), OW: convOutSize(W, kw, sw, pw, dw) };
}

function isPointwise(g: Geometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.ph === 0 && g.pw === 0;
}

/** Output rows per im2col band: as many as fit the budget, at least one. */
function bandRows(colRows: number, g: Geometry): number {
  return Math.max(1, Math.min(g.OH, Math.floor(COLS_BUDGET / Math.max(1, colRows * g.OW))));
}

export function conv2d(x: F32, w: WeightBuf, wDtype: WeightDtype, bias: F32 | null,
                       N: number, C: number, H: number, W: number, O: number, kh: number, kw: number,
                       sh: number, sw: number, ph: number, pw: number, dh: number, dw: number, groups: number,
                       out: F32): void {
  const g = geometry(C, H, W, kh, kw, sh, sw, ph, pw, dh, dw);
  if (N <= 0 || O <= 0 || g.OH <= 0 || g.OW <= 0) return;
  const Cg = C / groups, Og = O / groups, CK = Cg * kh * kw, OHW = g.OH * g.OW;
  // Bias first, then the GEMMs accumulate onto it (beta = 1).
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const base = (n * O + o) * OHW;
      out.fill(bias ? bias[o] : 0, base, base + OHW);
    }
  }
  for (let grp = 0; grp < groups; grp++) {
    const wg = w.subarray(grp * Og * CK);
    if (isPointwise(g)) {
      gemm(false, false, Og, OHW, Cg, 1, wg, wDtype, CK, 0,
           x.subarray(grp * Cg * H * W), 'f32', OHW, C * H * W,
           1, out.subarray(grp * Og * OHW), OHW, O * OHW, N);
      continue;
    }
    const band = bandRows(CK, g);
    const cols = colsBuffer(CK * band * g.OW);
    for (let n = 0; n < N; n++) {
      for (let oh0 = 0; oh0 < g.OH; oh0 += band) {
        const rows = Math.min(band, g.OH - oh0);
        const L = rows * g.OW;
        im2col(x, (n * C + grp * Cg) * H * W, Cg, g, oh0, rows, cols);
        gemm(false, false, Og, L, CK, 1, wg, wDtype, CK, 0, cols, 'f32', L, 0,
             1, out.subarray((n * O + grp * Og) * OHW + oh0 * g.OW), OHW, 0, 1);
      }
    }
  }
}

export function conv2dBackwardInput(gy: F32, w: WeightBuf, wDtype: WeightDtype,
                                    N: number, C: number, H: number, W: number, O: number, kh: number, kw: number,
                                    sh: number, sw: number, ph: number, pw: number, dh: number, dw: number,
                                    groups: number, gx: F32): void {
  const g = geometry(C, H, W, kh, kw, sh, sw, ph, pw, dh, dw);
  gx.fill(0, 0, N * C * H * W);
  if (N <= 0 || O <= 0 || g.OH <= 0 || g.OW <= 0) return;
  const Cg = C / groups, Og = O / groups, CK = Cg * kh * kw, OHW = g.OH * g.OW;
  for (let grp = 0; grp < groups; grp++) {
    const wg = w.subarray(grp * Og * CK);
    if (isPointwise(g)) {
      // gx_g[Cg, HW] = W_gᵀ · gy_g
      gemm(true, false, Cg, OHW, Og, 1, wg, wDtype, CK, 0,
           gy.subarray(grp * Og * OHW), 'f32', OHW, O * OHW,
           0, gx.subarray(grp * Cg * H * W), OHW, C * H * W, N);
      continue;
    }
    const band = bandRows(CK, g);
    const cols = colsBuffer(CK * band * g.OW);
    for (let n = 0; n < N; n++) {
      for (let oh0 = 0; oh0 < g.OH; oh0 += band) {
        const rows = Math.min(band, g.OH - oh0);
        const L = rows * g.OW;
        gemm(true, false, CK, L, Og, 1, wg, wDtype, CK, 0,
             gy.subarray((n * O + grp * Og) * OHW + oh0 * g.OW), 'f32', OHW, 0, 0, cols, L, 0, 1);
        col2imAdd(cols, Cg, g, oh0, rows, gx, (n * C + grp * Cg) * H * W);
      }
    }
  }
}

export function conv2dBackwardWeight(x: F32, gy: F32,
                                     N: number, C: number, H: number, W: number, O: number, kh: number, kw: number,
                                     sh: number, sw: number, ph: number, pw: number, dh: number, dw: number,
                                     groups: number, gw: F32): void {
  const g = geometry(C, H, W, kh, kw, sh, sw, ph, pw, dh, dw);
  const Cg = C / groups, Og = O / groups, CK = Cg * kh * kw, OHW = g.OH * g.OW;
  gw.fill(0, 0, O * CK);
  if (N <= 0 || O <= 0 || g.OH <= 0 || g.OW <= 0) return;
  for (let grp = 0; grp < groups; grp++) {
    const gwg = gw.subarray(grp * Og * CK);
    const band = isPointwise(g) ? g.OH : bandRows(CK, g);
    const cols = isPointwise(g) ? null : colsBuffer(CK * band * g.OW);
    for (let n = 0; n < N; n++) {
      if (cols === null) {
        // gw_g[Og, Cg] += gy_g[Og, HW] · x_gᵀ
        gemm(false, true, Og, Cg, OHW, 1, gy.subarray((n * O + grp * Og) * OHW), 'f32', OHW, 0,
             x.subarray((n * C + grp * Cg) * H * W), 'f32', H * W, 0, 1, gwg, CK, 0, 1);
        continue;
      }
      for (let oh0 = 0; oh0 < g.OH; oh0 += band) {
        const rows = Math.min(band, g.OH - oh0);
        const L = rows * g.OW;
        im2col(x, (n * C + grp * Cg) * H * W, Cg, g, oh0, rows, cols);
        gemm(false, true, Og, CK, L, 1, gy.subarray((n * O + grp * Og) * OHW + oh0 * g.OW), 'f32', OHW, 0,
             cols, 'f32', L, 0, 1, gwg, CK, 0, 1);
      }
    }
  }
}
