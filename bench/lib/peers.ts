/**
 * The peers of the engine benchmark: OpenBLAS sgemm (a small C program compiled on the fly) and
 * PyTorch (a Python script kept running per thread count, fed one case per line). Neither is installed
 * by the bench: when one is missing it says what to install and the bench goes on without it.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Timing } from './timing.js';

export interface PeerResult extends Timing {
  id?: string;
  max_rss_mib?: number;
  /** parameters of the model the peer ran (the training rows) */
  params?: number;
}

export interface CpuInfo {
  model: string;
  avx512: boolean;
  flags: string[];
}

export function cpuInfo(): CpuInfo {
  let text = '';
  try { text = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
  const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1]?.trim() ?? 'unknown';
  const flags = (/^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? '').split(/\s+/).filter(Boolean);
  return { model, avx512: flags.includes('avx512f'), flags };
}

/**
 * Environment for anything that calls OpenBLAS (the C peer, and PyTorch, whose matmuls go to Debian's
 * OpenBLAS). Debian's OpenBLAS 0.3.21 treats AMD Zen 4/5 as Haswell (AVX2) and runs at about half speed
 * unless told OPENBLAS_CORETYPE=SkylakeX; on a CPU without AVX-512 that setting dies with SIGILL, so it
 * is set only when /proc/cpuinfo lists avx512f (and never overrides a value the user gave).
 */
export function blasEnv(threads: number, cpu: CpuInfo): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
  if (cpu.avx512 && env.OPENBLAS_CORETYPE === undefined) env.OPENBLAS_CORETYPE = 'SkylakeX';
  return env;
}

// ------------------------------------------------------------------------------------------ OpenBLAS

const CBLAS_DIRS = [
  '/usr/include/x86_64-linux-gnu/openblas-pthread',
  '/usr/include/aarch64-linux-gnu/openblas-pthread',
  '/usr/include/openblas',
  '/usr/include',
];

export type OpenBlasPeer = { ok: true; bin: string } | { ok: false; why: string };

/** Compiles bench/peers/openblas_sgemm.c into a cache dir (keyed by the source's hash) once. */
export function prepareOpenBlas(root: string): OpenBlasPeer {
  const src = join(root, 'bench', 'peers', 'openblas_sgemm.c');
  if (!existsSync(src)) return { ok: false, why: `missing ${src}` };
  const gcc = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  if (gcc.error || gcc.status !== 0) {
    return { ok: false, why: 'gcc not found: install it (apt-get install gcc libopenblas-dev)' };
  }
  const inc = CBLAS_DIRS.find((d) => existsSync(join(d, 'cblas.h')));
  if (!inc) return { ok: false, why: 'cblas.h not found: install OpenBLAS (apt-get install libopenblas-dev)' };
  const flags = ['-O2', `-I${inc}`];
  const hash = createHash('sha1').update(readFileSync(src)).update(flags.join(' ')).digest('hex').slice(0, 12);
  const dir = join(process.env.XDG_CACHE_HOME ?? tmpdir(), 'vss-bench');
  const bin = join(dir, `openblas_sgemm-${hash}`);
  if (existsSync(bin)) return { ok: true, bin };
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  const cc = spawnSync('gcc', [...flags, src, '-o', tmp, '-lopenblas'], { encoding: 'utf8' });
  if (cc.status !== 0) {
    return {
      ok: false,
      why: `compiling the OpenBLAS peer failed (apt-get install libopenblas-dev): ${(cc.stderr || String(cc.error)).trim().split('\n').slice(-3).join(' | ')}`,
    };
  }
  renameSync(tmp, bin);
  return { ok: true, bin };
}

export interface OpenBlasRun {
  core: string;
  threads: number;
  result: PeerResult;
}

/** Times one sgemm case (`TA,TB,M,N,K`) in a fresh process. */
export function runOpenBlas(bin: string, gemmCase: string, threads: number, cpu: CpuInfo,
                            o: { reps: number; minTime: number; warmup: number }): OpenBlasRun {
  const r = spawnSync(bin, ['--reps', String(o.reps), '--min-time', String(o.minTime), '--warmup', String(o.warmup), gemmCase],
    { encoding: 'utf8', env: blasEnv(threads, cpu), maxBuffer: 1 << 20 });
  if (r.status !== 0) {
    const sig = r.signal ? ` (signal ${r.signal})` : '';
    throw new Error(`OpenBLAS peer exited with ${r.status}${sig}: ${r.stderr.trim()}`);
  }
  const j = JSON.parse(r.stdout) as { core: string; threads: number; results: PeerResult[] };
  const result = j.results[0];
  if (!result) throw new Error('OpenBLAS peer printed no result');
  return { core: j.core, threads: j.threads, result };
}

// ------------------------------------------------------------------------------------------ PyTorch

export const TORCH_PYTHON = '/usr/bin/python3';

/** null when usable, else what to do about it. */
export function checkTorch(root: string): string | null {
  if (!existsSync(join(root, 'bench', 'peers', 'torch_bench.py'))) return 'missing bench/peers/torch_bench.py';
  const r = spawnSync(TORCH_PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.error) return `${TORCH_PYTHON} not found (apt-get install python3-torch)`;
  if (r.status !== 0) return `${TORCH_PYTHON} cannot import torch (apt-get install python3-torch)`;
  return null;
}

/** One long-lived `torch_bench.py --threads T` process; cases go in as JSON lines, results come back. */
export class TorchPeer {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: Array<{ resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }> = [];
  private closed = false;
  private stderr = '';
  header: Promise<{ version: string; threads: number }>;

  constructor(root: string, threads: number, cpu: CpuInfo) {
    this.child = spawn(TORCH_PYTHON, [join(root, 'bench', 'peers', 'torch_bench.py'), '--threads', String(threads)],
      { env: blasEnv(threads, cpu), stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d: string) => { this.stderr = (this.stderr + d).slice(-4000); });
    const lines = createInterface({ input: this.child.stdout });
    lines.on('line', (line) => {
      const w = this.waiting.shift();
      if (!w) return;
      try { w.resolve(JSON.parse(line) as Record<string, unknown>); } catch (e) { w.reject(e as Error); }
    });
    this.child.on('close', (code) => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) {
        w.reject(new Error(`PyTorch peer exited (${code}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`));
      }
    });
    this.child.on('error', (e) => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w.reject(e);
    });
    this.header = this.next() as Promise<{ version: string; threads: number }>;
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      if (this.closed) reject(new Error('PyTorch peer is not running'));
      else this.waiting.push({ resolve, reject });
    });
  }

  async run(spec: Record<string, unknown>): Promise<PeerResult> {
    await this.header;
    const p = this.next();
    this.child.stdin.write(JSON.stringify(spec) + '\n');
    const r = await p;
    if (typeof r.error === 'string') throw new Error(r.error);
    return r as unknown as PeerResult;
  }

  /** the peer's process id (for CPU accounting), or undefined when it did not start */
  get pid(): number | undefined {
    return this.closed ? undefined : this.child.pid;
  }

  close(): void {
    if (!this.closed) this.child.stdin.end();
  }
}
