/**
 * The Fréchet distance and the linear algebra under it (src/eval/frechet.ts), against closed forms:
 * eigenpairs rebuild the matrix and are orthonormal, the PSD square root squares back, identical
 * sets are at distance 0, and Gaussians with known μ/Σ match the analytic d² (diagonal, commuting, and a
 * non-commuting 2×2 case whose trace term has its own closed form).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/engine/index.js';
import {
  type FeatureStats, FeatureAccumulator, featureStats, frechetDistance, matmulSquare, sqrtPsd, symmetricEigen,
} from '../src/eval/frechet.js';

function randomSymmetric(n: number, rng: Rng): Float64Array {
  const g = rng.normal(n * n);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = (g[i * n + j] + g[j * n + i]) / 2;
  return a;
}

/** B Bᵀ with B n×k: positive semi-definite, of rank k when k < n. */
function randomPsd(n: number, k: number, rng: Rng): Float64Array {
  const b = rng.normal(n * k);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let m = 0; m < k; m++) s += b[i * k + m] * b[j * k + m];
      a[i * n + j] = s;
    }
  }
  return a;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}

function diag(values: number[]): Float64Array {
  const n = values.length;
  const a = new Float64Array(n * n);
  values.forEach((v, i) => (a[i * n + i] = v));
  return a;
}

const gaussian = (mean: number[], cov: Float64Array): FeatureStats => ({ count: 1000, dim: mean.length, mean: Float64Array.from(mean), cov });

test('eigenpairs rebuild a random symmetric matrix; the eigenvectors are orthonormal; values descend', () => {
  const rng = new Rng(1);
  for (const n of [1, 2, 7, 40]) {
    const a = randomSymmetric(n, rng);
    const { values, vectors: v } = symmetricEigen(a, n);
    const vl = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) vl[i * n + j] = v[i * n + j] * values[j];
    assert.ok(maxAbsDiff(matmulSquare(vl, transpose(v, n), n), a) < 1e-10, `rebuild n=${n}`);
    assert.ok(maxAbsDiff(matmulSquare(transpose(v, n), v, n), diag(new Array(n).fill(1))) < 1e-12, `orthonormal n=${n}`);
    for (let i = 1; i < n; i++) assert.ok(values[i - 1] >= values[i], 'descending');
    // The trace is the sum of the eigenvalues.
    let tr = 0;
    for (let i = 0; i < n; i++) tr += a[i * n + i];
    assert.ok(Math.abs(tr - values.reduce((s, x) => s + x, 0)) < 1e-10);
  }
});

test('eigenvalues of known matrices: a diagonal one, repeated values, a rotated diagonal', () => {
  const d = symmetricEigen(diag([3, -1, 2, 2]), 4);
  assert.deepEqual([...d.values], [3, 2, 2, -1]);
  // R diag(5, 1) Rᵀ with R a rotation by 0.3 rad: eigenvalues 5 and 1 again.
  const c = Math.cos(0.3), s = Math.sin(0.3);
  const r = Float64Array.from([c, -s, s, c]);
  const a = matmulSquare(matmulSquare(r, diag([5, 1]), 2), transpose(r, 2), 2);
  const e = symmetricEigen(a, 2);
  assert.ok(Math.abs(e.values[0] - 5) < 1e-12 && Math.abs(e.values[1] - 1) < 1e-12, `${e.values}`);
  // The first eigenvector is R's first column, up to sign.
  assert.ok(Math.abs(Math.abs(e.vectors[0] * c + e.vectors[2] * s) - 1) < 1e-12);
  assert.throws(() => symmetricEigen([1, 2, 3], 2), /expected 2×2 = 4 values, got 3/);
});

test('128×128 (the feature size) decomposes accurately and fast', () => {
  const n = 128;
  const a = randomPsd(n, 200, new Rng(2));
  const t0 = performance.now();
  const { values, vectors: v, iterations } = symmetricEigen(a, n);
  const ms = performance.now() - t0;
  const vl = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) vl[i * n + j] = v[i * n + j] * values[j];
  const scale = Math.max(...values);
  assert.ok(maxAbsDiff(matmulSquare(vl, transpose(v, n), n), a) < 1e-11 * scale);
  assert.ok(iterations < 4 * n, `${iterations} QL steps`);
  assert.ok(ms < 2000, `${ms.toFixed(0)} ms`);
  // Eigenvalues alone agree with those that came with vectors.
  assert.ok(maxAbsDiff(symmetricEigen(a, n, { vectors: false }).values, values) < 1e-11 * scale);
});

test('the PSD square root squares back, also for singular matrices; tiny negative eigenvalues count as 0', () => {
  const rng = new Rng(3);
  for (const [n, k] of [[6, 10], [20, 5], [32, 32]]) {
    const a = randomPsd(n, k, rng);
    const r = sqrtPsd(a, n);
    assert.ok(maxAbsDiff(matmulSquare(r, r, n), a) < 1e-9 * Math.max(...a.map(Math.abs)), `n=${n} k=${k}`);
    assert.ok(maxAbsDiff(r, transpose(r, n)) < 1e-12, 'symmetric');
    // Its eigenvalues are the square roots of A's, so none is negative.
    assert.ok(symmetricEigen(r, n).values.every((l) => l > -1e-7));
  }
  assert.deepEqual([...sqrtPsd(diag([4, 9, 0]), 3)], [...diag([2, 3, 0])]);
  assert.deepEqual([...sqrtPsd(diag([4, -1e-14]), 2)], [...diag([2, 0])]);
});

test('identical feature sets are at distance ~0; a shifted copy is at the squared shift', () => {
  const rng = new Rng(4);
  const n = 400, d = 16;
  const f = rng.normal(n * d);
  const s = featureStats(f, d);
  const same = frechetDistance(s, featureStats(Float32Array.from(f), d));
  assert.ok(same.distance < 1e-8, `${same.distance}`);
  // Adding a constant vector moves only the mean: d² = ‖shift‖².
  const shift = Array.from({ length: d }, (_, j) => 0.1 * (j - 8));
  const moved = Float64Array.from(f, (v, i) => v + shift[i % d]);
  const r = frechetDistance(s, featureStats(moved, d));
  const want = shift.reduce((a, b) => a + b * b, 0);
  assert.ok(Math.abs(r.distance - want) < 1e-8, `${r.distance} vs ${want}`);
  assert.ok(r.covTerm < 1e-8);
});

test('Gaussians with known μ and diagonal Σ: d² = ‖μ1 − μ2‖² + Σ (√a − √b)²', () => {
  const a = [1, 4, 0.25, 9, 2], b = [4, 1, 1, 9, 0.5];
  const m1 = [0, 1, 2, 3, 4], m2 = [1, 1, 0, 3, 5];
  const want = m1.reduce((s, v, i) => s + (v - m2[i]) ** 2, 0) + a.reduce((s, v, i) => s + (Math.sqrt(v) - Math.sqrt(b[i])) ** 2, 0);
  const r = frechetDistance(gaussian(m1, diag(a)), gaussian(m2, diag(b)));
  assert.ok(Math.abs(r.distance - want) < 1e-12, `${r.distance} vs ${want}`);
  assert.equal(r.meanTerm, 6);
  // Rotating both covariances by the same orthogonal matrix (they commute) changes nothing.
  const q = symmetricEigen(randomSymmetric(5, new Rng(5)), 5).vectors;
  const rot = (c: Float64Array) => matmulSquare(matmulSquare(q, c, 5), transpose(q, 5), 5);
  const rr = frechetDistance(gaussian(m1, rot(diag(a))), gaussian(m2, rot(diag(b))));
  assert.ok(Math.abs(rr.distance - want) < 1e-10, `${rr.distance} vs ${want}`);
});

test('non-commuting 2×2 covariances: Tr((Σ1^½ Σ2 Σ1^½)^½) = √(Tr(Σ1Σ2) + 2√(det Σ1 det Σ2))', () => {
  const s1 = Float64Array.from([2, 0.7, 0.7, 1]), s2 = Float64Array.from([1, -0.4, -0.4, 3]);
  const det = (m: Float64Array) => m[0] * m[3] - m[1] * m[2];
  const tr12 = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
  const traceRoot = Math.sqrt(tr12 + 2 * Math.sqrt(det(s1) * det(s2)));
  const want = 0.5 ** 2 + 2 ** 2 + (s1[0] + s1[3] + s2[0] + s2[3]) - 2 * traceRoot;
  const r = frechetDistance(gaussian([0, 0], s1), gaussian([0.5, -2], s2));
  assert.ok(Math.abs(r.distance - want) < 1e-12, `${r.distance} vs ${want}`);
  // Symmetric in its arguments.
  assert.ok(Math.abs(frechetDistance(gaussian([0.5, -2], s2), gaussian([0, 0], s1)).distance - want) < 1e-12);
});

test('sample statistics: batch by batch equals all at once, and a large offset loses no digits', () => {
  const rng = new Rng(6);
  const n = 3000, d = 4;
  // x = L z + μ with known covariance L Lᵀ.
  const L = [[1, 0, 0, 0], [0.5, 1, 0, 0], [0, -0.3, 2, 0], [0.2, 0, 0.1, 0.5]];
  const mu = [1e4, -2, 3, 0.5];
  const z = rng.normal(n * d);
  const x = new Float64Array(n * d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) {
    let s = mu[i];
    for (let k = 0; k < d; k++) s += L[i][k] * z[r * d + k];
    x[r * d + i] = s;
  }
  const whole = featureStats(x, d);
  const acc = new FeatureAccumulator(d);
  for (let r = 0; r < n; r += 700) acc.add(x.subarray(r * d, Math.min(n, r + 700) * d));
  const parts = acc.stats();
  assert.equal(parts.count, n);
  assert.ok(maxAbsDiff(parts.mean, whole.mean) < 1e-9 && maxAbsDiff(parts.cov, whole.cov) < 1e-9);
  // Against the truth: sampling error only (≈ 1/√n relative).
  const trueCov = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) trueCov[i * d + j] += L[i][k] * L[j][k];
  assert.ok(maxAbsDiff(whole.cov, trueCov) < 0.15, `${[...whole.cov]}`);
  assert.ok(Math.abs(whole.mean[0] - 1e4) < 0.1);
  // Unbiased covariance of two points: ((a − b)/2)² · 2 / (2 − 1).
  const two = featureStats([1, 3], 1);
  assert.equal(two.cov[0], 2);
  assert.throws(() => featureStats([1, 2], 2), /at least 2 vectors/);
  assert.throws(() => new FeatureAccumulator(2).add([1, 2, 3]), /not 1\.5 rows of 2/);
  assert.throws(() => new FeatureAccumulator(1).add([NaN]), /is NaN/);
  assert.throws(() => frechetDistance(whole, two), /feature sizes differ/);
});
