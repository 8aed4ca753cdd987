/**
 * Finite-difference gradient checker.
 *
 * For fn(x_1 … x_n) → outputs, with fixed pseudo-random cotangents g_j of the float outputs, the scalar
 *   L(x) = Σ_j Σ_m out_j[m] · g_j[m]          (accumulated in float64)
 * is differentiated two ways: by the engine's autograd (backward with g_j), and by central differences
 *   dL/dx[k] ≈ (L(x + h e_k) − L(x − h e_k)) / ((x+h) − (x−h))
 * where the denominator is the difference of the float32-rounded perturbed values (so rounding of x ± h does
 * not bias the quotient). Computation is float32, so the step is a compromise between truncation (O(h²)) and
 * rounding (O(ε_f32 · |L| / h)); h = 1e-3 with inputs of order 1 keeps both near 1e-5 · |L|. Agreement is
 * |analytic − numeric| ≤ atol + rtol · |numeric| per element (defaults rtol 1e-2, atol 1e-3).
 *
 * Inputs must be dense; those with requiresGrad (f32) are checked, others (indices, masks) are passed as-is.
 * Keep them tiny: the numeric pass evaluates fn twice per checked element. Keep them away from kinks (relu at
 * 0, ties in max) by more than h.
 */
import * as vss from '../../src/engine/index.js';

type Tensor = vss.Tensor;

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-3). */
  eps?: number;
  rtol?: number;
  atol?: number;
  /** Seed of the cotangents. */
  seed?: number;
}

export interface GradcheckResult {
  ok: boolean;
  /** Largest |analytic − numeric| − (atol + rtol·|numeric|) over all elements (≤ 0 when ok). */
  worstExcess: number;
  /** One line per input, and one per mismatching element (at most a few per input). */
  report: string[];
}

/** mulberry32: a tiny seeded generator for test data (independent of the engine's own RNG). */
export class TestRng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number { return lo + (hi - lo) * this.next(); }
  normal(): number {
    const u = Math.max(this.next(), 1e-12), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  int(n: number): number { return Math.floor(this.next() * n); }
}

const numelOf = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);

/** f32 tensor of `shape` from a generator of values. */
export function makeTensor(shape: number[], gen: (i: number) => number, requiresGrad = true): Tensor {
  const data = new Float32Array(numelOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = gen(i);
  const t = vss.fromTypedArray(data, shape, 'f32');
  return requiresGrad ? t.requiresGrad_(true) : t;
}

/** Normal(0, scale²) values. */
export function randnT(rng: TestRng, shape: number[], scale = 1, requiresGrad = true): Tensor {
  return makeTensor(shape, () => rng.normal() * scale, requiresGrad);
}

/** Uniform values in [lo, hi). */
export function uniformT(rng: TestRng, shape: number[], lo: number, hi: number, requiresGrad = true): Tensor {
  return makeTensor(shape, () => rng.uniform(lo, hi), requiresGrad);
}

/** Random sign, magnitude in [lo, hi): keeps away from 0 (relu, abs, division). */
export function awayT(rng: TestRng, shape: number[], lo = 0.2, hi = 1.5, requiresGrad = true): Tensor {
  return makeTensor(shape, () => (rng.next() < 0.5 ? -1 : 1) * rng.uniform(lo, hi), requiresGrad);
}

/** Distinct values spaced `gap` apart in random order, centred on 0 (no near-ties for max/min/sort). */
export function distinctT(rng: TestRng, shape: number[], gap = 0.1, requiresGrad = true): Tensor {
  const n = numelOf(shape);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) { const j = rng.int(i + 1); [perm[i], perm[j]] = [perm[j], perm[i]]; }
  return makeTensor(shape, (i) => (perm[i] - (n - 1) / 2) * gap + rng.uniform(-0.2, 0.2) * gap, requiresGrad);
}

/** Integer tensor (i64) with values in [0, n). */
export function indexT(rng: TestRng, shape: number[], n: number): Tensor {
  const data = new BigInt64Array(numelOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = BigInt(rng.int(n));
  return vss.fromTypedArray(data, shape, 'i64');
}

export function indexFrom(values: number[], shape: number[] = [values.length]): Tensor {
  return vss.fromTypedArray(BigInt64Array.from(values.map((v) => BigInt(v))), shape, 'i64');
}

export function boolT(rng: TestRng, shape: number[], pTrue = 0.5): Tensor {
  const data = new Uint8Array(numelOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = rng.next() < pTrue ? 1 : 0;
  return vss.fromTypedArray(data, shape, 'bool');
}

function toList(r: Tensor | Tensor[] | { values: Tensor; indices: Tensor }): Tensor[] {
  if (Array.isArray(r)) return r;
  if (r instanceof vss.Tensor) return [r];
  return [r.values, r.indices];
}

function denseF32(t: Tensor): Float32Array {
  const c = t.contiguous();
  return (c.data as Float32Array).slice(c.offset, c.offset + c.numel);
}

/** A private dense copy of a dense input, optionally with new data. */
function copyOf(t: Tensor, data?: Float32Array): Tensor {
  const c = t.contiguous();
  const d = data ?? c.data.slice(c.offset, c.offset + c.numel);
  return vss.fromTypedArray(d, [...c.shape], c.dtype);
}

export function gradcheck(fn: (...xs: Tensor[]) => Tensor | Tensor[] | { values: Tensor; indices: Tensor },
                          inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-3, rtol = opts.rtol ?? 1e-2, atol = opts.atol ?? 1e-3;
  const checked = inputs.map((t) => t.requiresGrad && t.dtype === 'f32');
  if (!checked.some(Boolean)) throw new Error('gradcheck: no input requires grad');

  // ---- analytic
  const leaves = inputs.map((t, i) => (checked[i] ? copyOf(t).requiresGrad_(true) : t));
  const outs = toList(fn(...leaves));
  const floatIdx = outs.map((o, j) => (o.dtype === 'f32' ? j : -1)).filter((j) => j >= 0);
  if (!floatIdx.length) throw new Error('gradcheck: fn has no float output');
  const rng = new TestRng(opts.seed ?? 1234);
  const gs = new Map<number, Float32Array>();
  for (const j of floatIdx) {
    const g = new Float32Array(outs[j].numel);
    for (let m = 0; m < g.length; m++) g[m] = rng.normal();
    gs.set(j, g);
  }
  const tracked = floatIdx.filter((j) => outs[j].requiresGrad);
  if (tracked.length !== floatIdx.length) {
    return { ok: false, worstExcess: Infinity, report: ['a float output does not require grad although its inputs do'] };
  }
  if (floatIdx.length === 1) {
    const j = floatIdx[0];
    outs[j].backward(vss.fromTypedArray(gs.get(j)!.slice(), [...outs[j].shape], 'f32'));
  } else {
    let loss: Tensor | null = null;
    for (const j of floatIdx) {
      const term = vss.sum(vss.mul(outs[j], vss.fromTypedArray(gs.get(j)!.slice(), [...outs[j].shape], 'f32')));
      loss = loss ? vss.add(loss, term) : term;
    }
    loss!.backward();
  }

  // ---- numeric
  const lossAt = (xs: Tensor[]): number => vss.noGrad(() => {
    const os = toList(fn(...xs));
    let L = 0;
    for (const j of floatIdx) {
      const o = denseF32(os[j]), g = gs.get(j)!;
      if (o.length !== g.length) throw new Error('gradcheck: output size changed between calls');
      for (let m = 0; m < o.length; m++) L += o[m] * g[m];
    }
    return L;
  });

  const report: string[] = [];
  let worst = -Infinity;
  inputs.forEach((inp, i) => {
    if (!checked[i]) return;
    const base = denseF32(inp);
    const ana = leaves[i].grad ? denseF32(leaves[i].grad!) : new Float32Array(base.length);
    let bad = 0, maxDiff = 0;
    for (let k = 0; k < base.length; k++) {
      const plus = base.slice(), minus = base.slice();
      plus[k] = base[k] + eps;
      minus[k] = base[k] - eps;
      const h2 = plus[k] - minus[k]; // the step actually taken, after f32 rounding
      const xsP = inputs.map((t, q) => (q === i ? copyOf(t, plus) : t));
      const xsM = inputs.map((t, q) => (q === i ? copyOf(t, minus) : t));
      const num = (lossAt(xsP) - lossAt(xsM)) / h2;
      const diff = Math.abs(ana[k] - num);
      const excess = diff - (atol + rtol * Math.abs(num));
      maxDiff = Math.max(maxDiff, diff);
      worst = Math.max(worst, excess);
      if (!(excess <= 0)) {
        if (bad < 4) report.push(`  input ${i} [${k}]: autograd ${ana[k]}, finite difference ${num}`);
        bad++;
      }
    }
    report.push(`input ${i} ${'[' + inp.shape.join(',') + ']'}: ${bad} of ${base.length} mismatching, max |diff| ${maxDiff.toExponential(2)}` +
                (leaves[i].grad ? '' : ' (autograd gave no gradient)'));
  });
  return { ok: worst <= 0, worstExcess: worst, report };
}
