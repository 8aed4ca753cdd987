/**
 * Batched GEMM, cache-blocked. For each (row block, column block) of C the products accumulate in a
 * float64 block over all of K, so C is written once, with one rounding. Blocks of op(A) and op(B) are
 * packed into float64 scratch with k contiguous (widening 16-bit operands and resolving transposes
 * there), and a 4×4 register-blocked micro-kernel sweeps them: in JS that runs about twice as fast as an
 * i-k-j loop, which has to load and store C for every multiply-add.
 */
import type { F32, WeightBuf, WeightDtype } from '../kernels.js';
import { tableFor } from './half.js';

const MC = 32;   // rows of C per block (multiple of 4)
const NC = 128;  // columns of C per block (multiple of 4)
const KC = 128;  // depth per packed block: 128×128 f64 of B (128 KiB) stays in L2 while the rows sweep it

/**
 * aPack[i*kc + k] = op(A)[i0+i, k0+k]. The micro-kernel runs over mc and nc rounded up to 4; the extra
 * rows/columns hold stale values that only reach accumulator entries which are never written to C.
 */
const aPack = new Float64Array(MC * KC);
/** bPack[j*kc + k] = op(B)[k0+k, j0+j]. */
const bPack = new Float64Array(NC * KC);
const accBlock = new Float64Array(MC * NC);

const roundUp4 = (n: number): number => (n + 3) & ~3;

function packA(A: WeightBuf, table: Float32Array | null, base: number, lda: number, trans: boolean,
               i0: number, mc: number, k0: number, kc: number): void {
  if (!trans) {
    for (let i = 0; i < mc; i++) {
      const src = base + (i0 + i) * lda + k0;
      const dst = i * kc;
      if (table === null) for (let k = 0; k < kc; k++) aPack[dst + k] = A[src + k];
      else for (let k = 0; k < kc; k++) aPack[dst + k] = table[A[src + k]];
    }
  } else {
    for (let k = 0; k < kc; k++) {
      const src = base + (k0 + k) * lda + i0;
      if (table === null) for (let i = 0; i < mc; i++) aPack[i * kc + k] = A[src + i];
      else for (let i = 0; i < mc; i++) aPack[i * kc + k] = table[A[src + i]];
    }
  }
}

function packB(B: WeightBuf, table: Float32Array | null, base: number, ldb: number, trans: boolean,
               k0: number, kc: number, j0: number, nc: number): void {
  if (trans) {
    for (let j = 0; j < nc; j++) {
      const src = base + (j0 + j) * ldb + k0;
      const dst = j * kc;
      if (table === null) for (let k = 0; k < kc; k++) bPack[dst + k] = B[src + k];
      else for (let k = 0; k < kc; k++) bPack[dst + k] = table[B[src + k]];
    }
  } else {
    for (let k = 0; k < kc; k++) {
      const src = base + (k0 + k) * ldb + j0;
      if (table === null) for (let j = 0; j < nc; j++) bPack[j * kc + k] = B[src + j];
      else for (let j = 0; j < nc; j++) bPack[j * kc + k] = table[B[src + j]];
    }
  }
}

/** accBlock[i*accStride + j] += Σ_k aPack[i*kc + k] · bPack[j*kc + k] over padded mc×nc, 4×4 at a time. */
function multiplyPacked(mcPad: number, ncPad: number, kc: number, accStride: number): void {
  for (let i = 0; i < mcPad; i += 4) {
    const a0r = i * kc, a1r = a0r + kc, a2r = a1r + kc, a3r = a2r + kc;
    for (let j = 0; j < ncPad; j += 4) {
      const b0r = j * kc, b1r = b0r + kc, b2r = b1r + kc, b3r = b2r + kc;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      for (let k = 0; k < kc; k++) {
        const a0 = aPack[a0r + k], a1 = aPack[a1r + k], a2 = aPack[a2r + k], a3 = aPack[a3r + k];
        const b0 = bPack[b0r + k], b1 = bPack[b1r + k], b2 = bPack[b2r + k], b3 = bPack[b3r + k];
        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
      }
      const r0 = i * accStride + j, r1 = r0 + accStride, r2 = r1 + accStride, r3 = r2 + accStride;
      accBlock[r0] += c00; accBlock[r0 + 1] += c01; accBlock[r0 + 2] += c02; accBlock[r0 + 3] += c03;
      accBlock[r1] += c10; accBlock[r1 + 1] += c11; accBlock[r1 + 2] += c12; accBlock[r1 + 3] += c13;
      accBlock[r2] += c20; accBlock[r2 + 1] += c21; accBlock[r2 + 2] += c22; accBlock[r2 + 3] += c23;
      accBlock[r3] += c30; accBlock[r3 + 1] += c31; accBlock[r3 + 2] += c32; accBlock[r3 + 3] += c33;
    }
  }
}

/** C = beta·C (+ bias in every row) on an M×N block with row stride ldc; beta = 0 overwrites (NaN included). */
function scaleC(C: F32, base: number, ldc: number, M: number, N: number, beta: number, bias: F32 | null): void {
  if (beta === 1 && !bias) return;
  for (let i = 0; i < M; i++) {
    const row = base + i * ldc;
    if (beta === 0) C.fill(0, row, row + N);
    else if (beta !== 1) for (let j = 0; j < N; j++) C[row + j] *= beta;
    if (bias) for (let j = 0; j < N; j++) C[row + j] += bias[j];
  }
}

export function gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
                     A: WeightBuf, aDtype: WeightDtype, lda: number, strideA: number,
                     B: WeightBuf, bDtype: WeightDtype, ldb: number, strideB: number,
                     beta: number, C: F32, ldc: number, strideC: number, batch: number, bias?: F32 | null): void {
  if (M <= 0 || N <= 0) return;
  const aTable = tableFor(aDtype);
  const bTable = tableFor(bDtype);
  for (let p = 0; p < batch; p++) {
    const aBase = p * strideA;
    const bBase = p * strideB;
    const cBase = p * strideC;
    if (K <= 0 || alpha === 0) { scaleC(C, cBase, ldc, M, N, beta, bias ?? null); continue; }
    if (bias) scaleC(C, cBase, ldc, M, N, beta, bias);   // C = beta·C + bias, then the products add onto it
    const betaEff = bias ? 1 : beta;
    for (let j0 = 0; j0 < N; j0 += NC) {
      const nc = Math.min(NC, N - j0);
      for (let i0 = 0; i0 < M; i0 += MC) {
        const mc = Math.min(MC, M - i0);
        const ncPad = roundUp4(nc);
        accBlock.fill(0, 0, roundUp4(mc) * ncPad);
        for (let k0 = 0; k0 < K; k0 += KC) {
          const kc = Math.min(KC, K - k0);
          packA(A, aTable, aBase, lda, transA, i0, mc, k0, kc);
          packB(B, bTable, bBase, ldb, transB, k0, kc, j0, nc);
          multiplyPacked(roundUp4(mc), ncPad, kc, ncPad);
        }
        for (let i = 0; i < mc; i++) {
          const row = cBase + (i0 + i) * ldc + j0;
          const accRow = i * ncPad;
          if (betaEff === 0) for (let j = 0; j < nc; j++) C[row + j] = alpha * accBlock[accRow + j];
          else for (let j = 0; j < nc; j++) C[row + j] = alpha * accBlock[accRow + j] + betaEff * C[row + j];
        }
      }
    }
  }
}
