/** Timing helpers shared by the VSS side of the engine benchmark. */

export interface Timing {
  /** number of timed samples */
  reps: number;
  median_s: number;
  min_s: number;
  max_s: number;
  /** 10th / 90th percentiles (= min / max for 10 samples or fewer) */
  p10_s: number;
  p90_s: number;
}

export interface TimeOptions {
  /** at least this many timed samples */
  reps: number;
  /** and at least this many seconds of timed samples */
  minTime: number;
  /** untimed calls first (times `inner`) */
  warmup: number;
  /** each sample is the mean of this many back-to-back calls (for µs-scale ops); default 1 */
  inner?: number;
  /**
   * Seconds the timed samples may take at most, judged from the warm-up: a slow call (an unoptimised
   * backend) lowers `reps` (never below 1) instead of running for minutes. Default: no limit.
   */
  budget?: number;
}

function nowS(): number {
  return Number(process.hrtime.bigint()) * 1e-9;
}

/** The median (NaN for no values). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : 0.5 * (s[n / 2 - 1]! + s[n / 2]!);
}

export function summarize(samples: number[]): Timing {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const cut = n > 10 ? Math.floor((n - 1) / 10) : 0; // the 10th / 90th percentiles, rounded outwards
  return { reps: n, median_s: median(s), min_s: s[0]!, max_s: s[n - 1]!, p10_s: s[cut]!, p90_s: s[n - 1 - cut]! };
}

export function timeIt(fn: () => void, o: TimeOptions): Timing {
  const inner = Math.max(1, o.inner ?? 1);
  let reps = o.reps, minTime = o.minTime;
  const w0 = nowS();
  for (let i = 0; i < o.warmup * inner; i++) fn();
  const perCall = o.warmup > 0 ? (nowS() - w0) / o.warmup : 0;
  if (o.budget !== undefined && perCall * reps > o.budget) {
    reps = Math.max(1, Math.floor(o.budget / perCall));
    minTime = 0;
  }
  const samples: number[] = [];
  let total = 0;
  while ((samples.length < reps || total < minTime) && samples.length < 100000) {
    const t0 = nowS();
    for (let i = 0; i < inner; i++) fn();
    const dt = nowS() - t0;
    samples.push(dt / inner);
    total += dt;
  }
  return summarize(samples);
}

/** Half the p10–p90 range over the median (min–max for 10 samples or fewer). */
export function spread(t: Timing): number {
  return t.median_s > 0 ? (t.p90_s - t.p10_s) / (2 * t.median_s) : 0;
}

/** Deterministic fill with values in [-scale, scale] (an LCG; the bench only needs non-degenerate data). */
export function filled(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = (seed * 2654435761 + 1) >>> 0;
  const k = scale / 1000;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (((s >>> 9) % 2001) - 1000) * k;
  }
  return a;
}

export function formatTime(s: number): string {
  if (!Number.isFinite(s)) return '-';
  if (s < 1e-3) return `${(s * 1e6).toPrecision(3)} µs`;
  if (s < 1) return `${(s * 1e3).toPrecision(3)} ms`;
  return `${s.toPrecision(3)} s`;
}
