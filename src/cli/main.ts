/** The `vss` command line. Each subcommand parses into a typed object and calls into the library. */
import { registerPlotCommand } from './plot.js';
import { Command } from 'commander';
import os from 'node:os';
import {
  backendName, getMatmulPrecision, nativeAvailable, randn, Rng, matmul, noGrad, setMatmulPrecision, type MatmulPrecision,
} from '../engine/index.js';
import { cpuFeatures, getNumThreads } from '../engine/backend/native.js';
import { registerInfoCommand } from './info.js';
import { registerDataCommand } from './data.js';
import { registerTrainCommand } from './train.js';
import { registerVitCommands } from './vit.js';
import { registerGenerateCommand } from './generate.js';
import { registerDiffusionCommand } from './diffusion.js';
import { registerEvalCommands } from './eval.js';
import { registerCaptionCommands } from './caption.js';

function engineInfo(): Record<string, unknown> {
  const native = nativeAvailable();
  return {
    backend: backendName(),
    nativeAddon: native ? 'loaded' : 'not available (pure TypeScript kernels)',
    simd: native ? cpuFeatures() : 'n/a',
    threads: native ? getNumThreads() : 1,
    matmul: `${getMatmulPrecision()} (bf16: ${bf16Availability()})`,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    node: process.version,
  };
}

/** Whether --matmul bf16 can run here: 'available', or why not (the setting is left as it was). */
function bf16Availability(): string {
  const was = getMatmulPrecision();
  try {
    setMatmulPrecision('bf16');
    return 'available';
  } catch (e) {
    return (e as Error).message.replace(/^bf16 matmul is not available: /, 'not available: ');
  } finally {
    setMatmulPrecision(was);
  }
}

/** A quick sgemm throughput check: n×n×n products, median of a few runs. */
function gemmCheck(n: number, reps: number): { n: number; ms: number; gflops: number } {
  const rng = new Rng(0);
  const a = randn([n, n], { rng }), b = randn([n, n], { rng });
  const times: number[] = [];
  noGrad(() => {
    matmul(a, b);
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      matmul(a, b);
      times.push(performance.now() - t0);
    }
  });
  times.sort((x, y) => x - y);
  const ms = times[Math.floor(times.length / 2)];
  return { n, ms: +ms.toFixed(2), gflops: +((2 * n ** 3) / (ms * 1e6)).toFixed(1) };
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name('vss')
    .description('The Visual Sovereignty Stack: image generation written from first principles')
    .option('--verbose', 'show stack traces on errors')
    .option('--matmul <precision>', 'matrix products in "f32" (default) or "bf16": operands rounded to bfloat16, '
      + 'f32 sums, ~2x faster on CPUs with AVX512-BF16, ~2e-3 relative error')
    .showHelpAfterError()
    .hook('preAction', (cmd) => {
      const { matmul: precision } = cmd.opts<{ matmul?: string }>();
      if (precision === undefined) return;
      if (precision !== 'f32' && precision !== 'bf16') throw new Error(`--matmul must be "f32" or "bf16", got "${precision}"`);
      setMatmulPrecision(precision as MatmulPrecision);
    });

  const engine = program.command('engine').description('the tensor engine: backend, kernels, threads');
  engine
    .command('info')
    .description('print which backend, SIMD path and thread count are in use')
    .option('--json', 'machine-readable output')
    .action((opts: { json?: boolean }) => {
      const info = engineInfo();
      if (opts.json) console.log(JSON.stringify(info));
      else for (const [k, v] of Object.entries(info)) console.log(`${k.padEnd(12)} ${v}`);
    });
  engine
    .command('gemm')
    .description('measure matrix-multiply throughput (GFLOPS) with the current backend')
    .option('-n, --size <n>', 'matrix size', '1024')
    .option('-r, --reps <n>', 'repetitions (median is reported)', '5')
    .action((opts: { size: string; reps: string }) => {
      const n = Number(opts.size), reps = Number(opts.reps);
      if (!Number.isInteger(n) || n <= 0 || n > 8192) throw new Error(`--size must be an integer in 1..8192, got ${opts.size}`);
      if (!Number.isInteger(reps) || reps <= 0) throw new Error(`--reps must be a positive integer, got ${opts.reps}`);
      const r = gemmCheck(n, reps);
      console.log(`sgemm ${n}³ on ${backendName()}: ${r.ms} ms, ${r.gflops} GFLOPS`);
    });

  registerInfoCommand(program);
  registerDataCommand(program);
  registerTrainCommand(program);
  registerVitCommands(program);
  registerPlotCommand(program);
  registerGenerateCommand(program);
  registerDiffusionCommand(program);
  registerEvalCommands(program);
  registerCaptionCommands(program);

  await program.parseAsync(argv);
}
