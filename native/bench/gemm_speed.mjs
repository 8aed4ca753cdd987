// Quick sgemm speed check of the addon: node native/bench/gemm_speed.mjs [reps]
// Prints GFLOPS per SIMD path and thread count for 1024³ and 4096×320×320 (C = A·Bᵀ and C = A·B).
// "wall" is the best wall-clock rate; "cpu" divides by the process CPU time instead, which is the fairer
// single-thread number on a machine shared with other jobs (it excludes time spent descheduled).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const addon = createRequire(import.meta.url)(join(root, 'build', 'Release', 'vss_native.node'));
const reps = Number(process.argv[2] ?? 5);

function randn(n) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}

function bench(M, N, K, transB) {
  const A = randn(M * K), B = randn(K * N), C = new Float32Array(M * N);
  const run = () => addon.gemm(false, transB, M, N, K, 1, A, 0, K, 0, B, 0, transB ? K : N, 0, 0, C, N, 0, 1);
  run();
  let wall = Infinity, cpu = Infinity;
  for (let r = 0; r < reps; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    run();
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    const du = process.cpuUsage(c0);
    wall = Math.min(wall, dt);
    cpu = Math.min(cpu, (du.user + du.system) / 1e6);
  }
  const flop = 2 * M * N * K;
  return { wall: flop / wall / 1e9, cpu: flop / cpu / 1e9 };
}

const shapes = [[1024, 1024, 1024, false], [1024, 1024, 1024, true], [4096, 320, 320, false], [4096, 320, 320, true]];
for (const path of addon.supportedSimd()) {
  addon.setSimd(path);
  for (const threads of [1, 2]) {
    addon.setNumThreads(threads);
    for (const [M, N, K, tB] of shapes) {
      const r = bench(M, N, K, tB);
      const name = `${M}x${N}x${K}${tB ? ' (B^T)' : ''}`;
      console.log(`${path.padEnd(8)} threads=${threads}  ${name.padEnd(22)} wall ${r.wall.toFixed(1).padStart(6)} GFLOPS` +
                  `   cpu-time ${(r.cpu / threads).toFixed(1).padStart(6)} GFLOPS/thread`);
    }
  }
}
