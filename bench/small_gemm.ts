/**
 * GEMMs with a few rows of A (a decoder's next token, a handful of beams): time per call.
 *
 *   VSS_NUM_THREADS=1 node dist/bench/small_gemm.js
 *
 * Shapes are those of a small GPT-2 decoder step (and one large projection); "B [N,K]" is how Linear stores
 * its weights (C = A·Bᵀ), "B [K,N]" the other layout (attention's P·V, backward passes). Each row is the
 * mean over ≥ 200 ms of calls after 20 warm-up calls. Compare builds by running it under each.
 */
import { K } from '../src/engine/backend/index.js';

const SHAPES: Array<[number, number, number, boolean]> = [
  [1, 384, 128, true], [1, 128, 128, true], [1, 39, 128, true], [4, 384, 128, true], [6, 384, 128, true],
  [1, 384, 128, false], [1, 3072, 768, true], [1, 768, 3072, false], [64, 384, 128, true],
];

function microseconds(M: number, N: number, Kd: number, transB: boolean): number {
  const A = Float32Array.from({ length: M * Kd }, (_, i) => Math.sin(i));
  const B = Float32Array.from({ length: N * Kd }, (_, i) => Math.cos(i));
  const C = new Float32Array(M * N);
  const call = () => K.gemm(false, transB, M, N, Kd, 1, A, 'f32', Kd, 0, B, 'f32', transB ? Kd : N, 0, 0, C, N, 0, 1);
  for (let i = 0; i < 20; i++) call();
  let calls = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 200) { call(); calls++; }
  return ((performance.now() - t0) / calls) * 1000;
}

console.log(`backend ${K.name}; M×N×K, B layout, µs per call, GFLOPS`);
for (const [M, N, Kd, transB] of SHAPES) {
  const us = microseconds(M, N, Kd, transB);
  console.log(`${`${M}×${N}×${Kd}`.padEnd(12)} B ${transB ? '[N,K]' : '[K,N]'}  ${us.toFixed(1).padStart(8)} µs  ${((2 * M * N * Kd) / us / 1e3).toFixed(2).padStart(6)}`);
}
