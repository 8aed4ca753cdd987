/**
 * Layer norm and group norm, forward and backward. Statistics and all row sums are float64; variance is
 * biased and computed in two passes (mean first) so it stays accurate when |mean| ≫ std.
 */
import type { F32 } from '../kernels.js';

let f64Scratch = new Float64Array(0);
function scratch(n: number): Float64Array {
  if (f64Scratch.length < n) f64Scratch = new Float64Array(n);
  return f64Scratch;
}

/** Mean and 1/sqrt(var + eps) of x[base, base + n). */
function moments(x: F32, base: number, n: number, eps: number): [number, number] {
  let sum = 0;
  for (let t = 0; t < n; t++) sum += x[base + t];
  const mean = sum / n;
  let sq = 0;
  for (let t = 0; t < n; t++) { const d = x[base + t] - mean; sq += d * d; }
  return [mean, 1 / Math.sqrt(sq / n + eps)];
}

export function layerNorm(x: F32, w: F32 | null, b: F32 | null, rows: number, cols: number, eps: number,
                          out: F32, mean: F32, rstd: F32): void {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const [mu, rs] = moments(x, base, cols, eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) {
      const xhat = (x[base + c] - mu) * rs;
      out[base + c] = xhat * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
  }
}

/**
 * With xhat = (x - mean)·rstd and g = gy·w over one normalised group of n elements:
 *   gx = rstd · (g - mean(g) - xhat · mean(g·xhat)).
 */
export function layerNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32, rows: number, cols: number,
                                  gx: F32, gw: F32 | null, gb: F32 | null): void {
  const sums = scratch(2 * cols);
  const gwSum = sums.subarray(0, cols);
  const gbSum = sums.subarray(cols, 2 * cols);
  gwSum.fill(0);
  gbSum.fill(0);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const mu = mean[r], rs = rstd[r];
    let sumG = 0, sumGXhat = 0;
    for (let c = 0; c < cols; c++) {
      const g = gy[base + c] * (w ? w[c] : 1);
      const xhat = (x[base + c] - mu) * rs;
      sumG += g;
      sumGXhat += g * xhat;
      gwSum[c] += gy[base + c] * xhat;
      gbSum[c] += gy[base + c];
    }
    const meanG = sumG / cols, meanGXhat = sumGXhat / cols;
    for (let c = 0; c < cols; c++) {
      const g = gy[base + c] * (w ? w[c] : 1);
      const xhat = (x[base + c] - mu) * rs;
      gx[base + c] = rs * (g - meanG - xhat * meanGXhat);
    }
  }
  if (gw) for (let c = 0; c < cols; c++) gw[c] = gwSum[c];
  if (gb) for (let c = 0; c < cols; c++) gb[c] = gbSum[c];
}

export function groupNorm(x: F32, w: F32 | null, b: F32 | null, N: number, C: number, HW: number, G: number,
                          eps: number, out: F32, mean: F32, rstd: F32): void {
  const Cg = C / G;
  for (let n = 0; n < N; n++) {
    for (let grp = 0; grp < G; grp++) {
      const base = (n * C + grp * Cg) * HW;
      const [mu, rs] = moments(x, base, Cg * HW, eps);
      mean[n * G + grp] = mu;
      rstd[n * G + grp] = rs;
      for (let cl = 0; cl < Cg; cl++) {
        const c = grp * Cg + cl;
        // Fold the affine into one scale and shift per channel.
        const a = rs * (w ? w[c] : 1);
        const shift = (b ? b[c] : 0) - mu * a;
        const plane = base + cl * HW;
        for (let t = 0; t < HW; t++) out[plane + t] = x[plane + t] * a + shift;
      }
    }
  }
}

export function groupNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32,
                                  N: number, C: number, HW: number, G: number,
                                  gx: F32, gw: F32 | null, gb: F32 | null): void {
  const Cg = C / G;
  const count = Cg * HW;
  const sums = scratch(2 * C);
  const gwSum = sums.subarray(0, C);
  const gbSum = sums.subarray(C, 2 * C);
  gwSum.fill(0);
  gbSum.fill(0);
  for (let n = 0; n < N; n++) {
    for (let grp = 0; grp < G; grp++) {
      const mu = mean[n * G + grp], rs = rstd[n * G + grp];
      let sumG = 0, sumGXhat = 0;
      for (let cl = 0; cl < Cg; cl++) {
        const c = grp * Cg + cl;
        const wc = w ? w[c] : 1;
        const plane = (n * C + c) * HW;
        let sumGy = 0, sumGyXhat = 0;
        for (let t = 0; t < HW; t++) {
          const g = gy[plane + t];
          const xhat = (x[plane + t] - mu) * rs;
          sumGy += g;
          sumGyXhat += g * xhat;
        }
        sumG += sumGy * wc;
        sumGXhat += sumGyXhat * wc;
        gwSum[c] += sumGyXhat;
        gbSum[c] += sumGy;
      }
      const meanG = sumG / count, meanGXhat = sumGXhat / count;
      for (let cl = 0; cl < Cg; cl++) {
        const c = grp * Cg + cl;
        const wc = w ? w[c] : 1;
        const plane = (n * C + c) * HW;
        for (let t = 0; t < HW; t++) {
          const xhat = (x[plane + t] - mu) * rs;
          gx[plane + t] = rs * (gy[plane + t] * wc - meanG - xhat * meanGXhat);
        }
      }
    }
  }
  if (gw) for (let c = 0; c < C; c++) gw[c] = gwSum[c];
  if (gb) for (let c = 0; c < C; c++) gb[c] = gbSum[c];
}
