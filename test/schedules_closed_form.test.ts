/**
 * The beta schedules and q(x_t | x_0) against their closed forms at every t and at small T, beyond the spot
 * checks of schedules.test.ts: linear and scaled-linear betas, the Nichol–Dhariwal cosine ᾱ up to the
 * 0.999 clip, a custom list round-tripping, and the moments of qSample on a non-constant x_0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, fromTypedArray, randn, zeros } from '../src/engine/index.js';
import { NoiseSchedule, betasForAlphaBar, cosineBetas, linearBetas, makeBetas, scaledLinearBetas } from '../src/diffusion/schedules.js';

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** [IDDPM] eq. 17: f(t) = cos²(((t/T + s)/(1 + s)) · π/2), s = 0.008, written out here rather than imported. */
const f = (u: number) => Math.cos(((u + 0.008) / 1.008) * (Math.PI / 2)) ** 2;

test('linear betas: β_t = β_0 + t (β_T − β_0)/(T − 1) at every t, exact endpoints', () => {
  for (const [T, b0, b1] of [[1000, 1e-4, 0.02], [7, 0.001, 0.3], [2, 0.05, 0.5]] as const) {
    const betas = linearBetas(T, b0, b1);
    assert.equal(betas.length, T);
    assert.equal(betas[0], Math.fround(b0), `T=${T}: β_0`);
    assert.equal(betas[T - 1], Math.fround(b1), `T=${T}: β_T−1`);
    for (let t = 0; t < T; t++) {
      const closed = b0 + (t * (b1 - b0)) / (T - 1);
      assert.ok(relErr(betas[t], closed) < 1e-6, `T=${T}: β_${t} = ${betas[t]} vs ${closed}`);
    }
  }
});

test('scaled-linear betas are the squares of a linspace of square roots, at every t', () => {
  for (const [T, b0, b1] of [[1000, 0.00085, 0.012], [1000, 1e-4, 0.02], [5, 0.01, 0.25]] as const) {
    const betas = scaledLinearBetas(T, b0, b1);
    for (let t = 0; t < T; t++) {
      const root = Math.sqrt(b0) + (t * (Math.sqrt(b1) - Math.sqrt(b0))) / (T - 1);
      assert.ok(relErr(betas[t], root * root) < 2e-6, `T=${T}: β_${t} = ${betas[t]} vs ${root * root}`);
    }
    // Not the linear schedule: √β is linear, so β is convex in t and lies below the chord.
    if (T > 2) assert.ok(betas[(T - 1) >> 1] < (b0 + b1) / 2);
  }
  // T = 5 with √β = 0.1, 0.2, …, 0.5: β = 0.01, 0.04, 0.09, 0.16, 0.25.
  [0.01, 0.04, 0.09, 0.16, 0.25].forEach((b, t) => assert.ok(relErr(scaledLinearBetas(5, 0.01, 0.25)[t], b) < 1e-6, `β_${t}`));
});

test('ᾱ_t = Π_{s≤t} (1 − β_s) for every schedule, against a float64 product', () => {
  for (const betaSchedule of ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const) {
    const s = NoiseSchedule.from({ numTrainTimesteps: 1000, betaSchedule });
    let p = 1;
    for (let t = 0; t < 1000; t++) {
      p *= 1 - s.betas[t];
      assert.ok(relErr(s.alphasCumprod[t], p) < 1e-6, `${betaSchedule}: ᾱ_${t} = ${s.alphasCumprod[t]} vs ${p}`);
      assert.equal(s.alphas[t], Math.fround(1 - s.betas[t]));
    }
  }
});

test('cosine ᾱ_t = f((t+1)/T)/f(0) at every t until the 0.999 clip, which binds only at the end', () => {
  for (const T of [1000, 50, 10]) {
    const s = NoiseSchedule.from({ numTrainTimesteps: T, betaSchedule: 'cosine' });
    // Where the unclipped β_t = 1 − f((t+1)/T)/f(t/T) would exceed 0.999.
    const clipped = Array.from({ length: T }, (_, t) => 1 - f((t + 1) / T) / f(t / T) > 0.999);
    assert.deepEqual(clipped.map((c, t) => (c ? t : -1)).filter((t) => t >= 0), [T - 1], `T=${T}: only the last step is clipped`);
    for (let t = 0; t < T - 1; t++) {
      const closed = f((t + 1) / T) / f(0);
      assert.ok(relErr(s.alphasCumprod[t], closed) < 2e-5, `T=${T}: ᾱ_${t} = ${s.alphasCumprod[t]} vs ${closed}`);
      assert.ok(relErr(s.betas[t], 1 - f((t + 1) / T) / f(t / T)) < 1e-5, `T=${T}: β_${t}`);
    }
    assert.equal(s.betas[T - 1], Math.fround(0.999), `T=${T}: β_T−1 is the cap`);
    // Past the clip ᾱ no longer follows f (f(1) = cos²(π/2) ≈ 0): it is ᾱ_{T−2} · (1 − 0.999).
    assert.ok(relErr(s.alphasCumprod[T - 1], s.alphasCumprod[T - 2] * (1 - Math.fround(0.999))) < 1e-5, `T=${T}: ᾱ_T−1`);
  }
  // A lower cap clips more steps, each exactly at the cap; the rest are untouched.
  const capped = cosineBetas(1000, 0.02), free = cosineBetas(1000, 1);
  let clippedCount = 0;
  for (let t = 0; t < 1000; t++) {
    if (free[t] > Math.fround(0.02)) { clippedCount++; assert.equal(capped[t], Math.fround(0.02)); } else assert.equal(capped[t], free[t]);
  }
  assert.ok(clippedCount > 10 && clippedCount < 500, `${clippedCount} steps clipped at 0.02`);
  // betasForAlphaBar of a linear-in-t ᾱ(t) = 1 − t: β_i = 1 − (1 − (i+1)/T)/(1 − i/T) = 1/(T − i).
  const lin = betasForAlphaBar(10, (t) => 1 - t, 1);
  for (let i = 0; i < 10; i++) assert.ok(relErr(lin[i], 1 / (10 - i)) < 1e-6, `β_${i} of ᾱ(t) = 1 − t`);
});

test('a custom list of betas round-trips: betas, ᾱ, T, and no reordering or clipping', () => {
  const list = [0.3, 0.001, 0.05, 0.999, 0.5];
  const s = NoiseSchedule.from({ trainedBetas: list, numTrainTimesteps: 1000 });  // the list wins over T
  assert.equal(s.numTrainTimesteps, 5);
  assert.deepEqual(Array.from(s.betas), list.map(Math.fround));
  assert.deepEqual(makeBetas({ trainedBetas: Float32Array.from(list) }), Float32Array.from(list));
  let p = 1;
  list.forEach((b, t) => { p *= 1 - Math.fround(b); assert.ok(relErr(s.alphaBar(t), p) < 1e-6, `ᾱ_${t}`); });
  // The schedule made from its own betas is the same schedule.
  assert.deepEqual(new NoiseSchedule(s.betas).alphasCumprod, s.alphasCumprod);
  assert.ok(Object.isFrozen(s));
});

test('q(x_t | x_0) on a varied x_0: E[x_t | x_0] = √ᾱ_t x_0 and Var = 1 − ᾱ_t (seeded, per schedule)', () => {
  const n = 100_000;
  const x0 = randn([n], { rng: new Rng(7) });
  const xs = x0.toFloat32Array();
  for (const betaSchedule of ['linear', 'squaredcos_cap_v2'] as const) {
    const s = NoiseSchedule.from({ numTrainTimesteps: 1000, betaSchedule });
    for (const t of [0, 300, 700, 999]) {
      const xt = s.qSample(x0, randn([n], { rng: new Rng(1000 + t) }), t).toFloat32Array();
      // Least squares slope of x_t on x_0 estimates √ᾱ_t; the residual variance estimates 1 − ᾱ_t.
      let sxy = 0, sxx = 0;
      for (let i = 0; i < n; i++) { sxy += xs[i] * xt[i]; sxx += xs[i] * xs[i]; }
      const slope = sxy / sxx;
      let res = 0;
      for (let i = 0; i < n; i++) res += (xt[i] - slope * xs[i]) ** 2;
      res /= n - 1;
      const ab = s.alphaBar(t);
      assert.ok(Math.abs(slope - Math.sqrt(ab)) < 5 * Math.sqrt((1 - ab) / n) + 1e-6, `${betaSchedule} t=${t}: slope ${slope} vs √ᾱ ${Math.sqrt(ab)}`);
      assert.ok(Math.abs(res - (1 - ab)) < 0.02 * (1 - ab) + 1e-9, `${betaSchedule} t=${t}: residual variance ${res} vs ${1 - ab}`);
    }
  }
  // With ε = 0, x_t is exactly √ᾱ_t x_0; with x_0 = 0, it is √(1 − ᾱ_t) ε.
  const s = NoiseSchedule.from({ betaSchedule: 'cosine' });
  const small = fromTypedArray(Float32Array.of(-1, 0.25, 1), [3]), eps = fromTypedArray(Float32Array.of(0.5, -2, 1), [3]);
  const a = Math.sqrt(s.alphaBar(400)), sg = Math.sqrt(1 - s.alphaBar(400));
  Array.from(s.qSample(small, zeros([3]), 400).toFloat32Array()).forEach((v, i) => assert.ok(Math.abs(v - small.toFloat32Array()[i] * a) < 1e-6));
  Array.from(s.qSample(zeros([3]), eps, 400).toFloat32Array()).forEach((v, i) => assert.ok(Math.abs(v - eps.toFloat32Array()[i] * sg) < 1e-6));
});
