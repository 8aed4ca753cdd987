/** The forward process (src/diffusion/schedules.ts) against its closed forms. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, full, randn } from '../src/engine/index.js';
import {
  NoiseSchedule, cosineAlphaBar, epsFromV, epsFromX0, interp, karrasSigmas, linspace, makeBetas, predictX0Eps,
  rescaleZeroTerminalSnr, roundHalfEven, sigmaToT, spacedTimesteps, spacedTimestepsMultistep, vFromX0Eps, x0FromEps, x0FromV,
} from '../src/diffusion/schedules.js';
import { relErr } from './helpers/relerr.js';

const near = (a: number, b: number, rel: number, what: string) =>
  assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${what}: ${a} vs ${b} (rel ${(Math.abs(a - b) / Math.abs(b)).toExponential(2)})`);

const SD = { numTrainTimesteps: 1000, betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' as const };

test('every schedule: betas in (0, 1), ᾱ_t strictly decreasing from ≈ 1, SNR and σ consistent', () => {
  for (const betaSchedule of ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const) {
    const s = NoiseSchedule.from({ numTrainTimesteps: 1000, betaSchedule, betaStart: 0.00085, betaEnd: 0.012 });
    assert.equal(s.betas.length, 1000);
    assert.ok(s.betas.every((b) => b > 0 && b < 1), betaSchedule);
    const ab = s.alphasCumprod;
    for (let t = 1; t < 1000; t++) assert.ok(ab[t] < ab[t - 1], `${betaSchedule}: ᾱ not decreasing at ${t}`);
    assert.ok(ab[0] > 0.99 && ab[999] < 0.01, `${betaSchedule}: ᾱ_0 = ${ab[0]}, ᾱ_T = ${ab[999]}`);
    for (const t of [0, 17, 500, 999]) {
      near(s.snr(t), ab[t] / (1 - ab[t]), 1e-12, `${betaSchedule} SNR(${t})`);
      near(s.sigma(t), 1 / Math.sqrt(s.snr(t)), 1e-12, `${betaSchedule} σ(${t})`);
      near(s.sigmas()[t], s.sigma(t), 1e-6, `${betaSchedule} σ table(${t})`);
      const { alpha, sigma } = s.alphaSigma(t);
      near(alpha * alpha + sigma * sigma, 1, 1e-12, 'α² + σ² = 1');
    }
  }
});

test('scaled_linear (SD): endpoints, √β linear, the σ range of SD 1.x', () => {
  const s = NoiseSchedule.from(SD);
  near(s.betas[0], 0.00085, 1e-6, 'β_0');
  near(s.betas[999], 0.012, 1e-6, 'β_T');
  for (const t of [1, 250, 500, 998]) near(s.betas[t], (Math.sqrt(0.00085) + (t / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2, 1e-6, `β_${t}`);
  // The values every SD sampler starts from (diffusers: sigmas[0] of Euler, init_noise_sigma).
  near(s.sigma(999), 14.614646911621094, 1e-6, 'σ_max');
  near(s.sigma(0), 0.029167532920837402, 1e-6, 'σ_min');
  const lin = NoiseSchedule.from({ numTrainTimesteps: 1000, betaSchedule: 'linear' });
  near(lin.betas[0], 1e-4, 1e-6, 'linear β_0');
  near(lin.betas[999], 0.02, 1e-6, 'linear β_T');
  near(lin.betas[500] - lin.betas[499], (0.02 - 1e-4) / 999, 1e-3, 'linear Δβ');
});

test('cosine schedule: ᾱ_t = f(t/T)/f(0) with f(t) = cos²((t/T + s)/(1 + s) · π/2) (Nichol & Dhariwal eq. 17)', () => {
  const T = 1000;
  const s = NoiseSchedule.from({ numTrainTimesteps: T, betaSchedule: 'squaredcos_cap_v2' });
  // β_i = 1 − ᾱ((i+1)/T)/ᾱ(i/T), so Π_{j≤i}(1 − β_j) = f((i+1)/T)/f(0) until the 0.999 cap bites at the end.
  for (const t of [0, 1, 100, 250, 500, 750, 900]) near(s.alphasCumprod[t], cosineAlphaBar((t + 1) / T) / cosineAlphaBar(0), 1e-4, `ᾱ_${t}`);
  near(cosineAlphaBar(0.5), Math.cos(((0.5 + 0.008) / 1.008) * Math.PI / 2) ** 2, 1e-15, 'f(0.5)');
  assert.ok(Math.max(...s.betas) <= 0.999 + 1e-7, 'β capped at 0.999');
  near(s.betas[T - 1], 0.999, 1e-6, 'the last β hits the cap');
  // 'cosine' is accepted as a name for the same schedule.
  assert.deepEqual(makeBetas({ betaSchedule: 'cosine' }), s.betas);
});

test('custom betas (trained_betas) and zero-terminal-SNR rescaling', () => {
  const custom = NoiseSchedule.from({ trainedBetas: [0.1, 0.2, 0.5] });
  assert.equal(custom.numTrainTimesteps, 3);
  near(custom.alphasCumprod[2], 0.9 * 0.8 * 0.5, 1e-6, 'ᾱ of a custom list');
  assert.throws(() => makeBetas({ trainedBetas: [0.1, 1.5] }), /trainedBetas must lie in \(0, 1\]/);
  assert.throws(() => makeBetas({ trainedBetas: [] }), /empty/);
  assert.throws(() => makeBetas({ betaSchedule: 'sigmoid' as never }), /unknown beta schedule 'sigmoid'/);
  assert.throws(() => makeBetas({ numTrainTimesteps: 0 }), /positive integer/);

  const base = makeBetas(SD);
  const z = NoiseSchedule.from({ ...SD, rescaleBetasZeroSnr: true });
  assert.ok(z.alphasCumprod[999] < 1e-10, `ᾱ_T = ${z.alphasCumprod[999]} after rescaling (Lin et al. 2024, Alg. 1)`);
  near(z.alphasCumprod[0], NoiseSchedule.from(SD).alphasCumprod[0], 1e-6, 'ᾱ_0 kept');
  for (let t = 1; t < 1000; t++) assert.ok(z.alphasCumprod[t] <= z.alphasCumprod[t - 1]);
  assert.equal(rescaleZeroTerminalSnr(base).length, 1000);
  // The sigma-based samplers' 2⁻²⁴ stand-in for ᾱ_T = 0.
  const clamped = NoiseSchedule.from({ ...SD, rescaleBetasZeroSnr: true, terminalAlphaBar: 2 ** -24 });
  assert.equal(clamped.alphasCumprod[999], 2 ** -24);
});

test('q(x_t | x_0): mean √ᾱ_t x_0 and variance 1 − ᾱ_t on 2·10⁵ draws; per-sample timesteps', () => {
  const s = NoiseSchedule.from(SD);
  const n = 200_000, c = 0.7;
  const x0 = full([n], c);
  for (const t of [10, 400, 900]) {
    const xt = s.qSample(x0, randn([n], { rng: new Rng(t) }), t).toFloat32Array();
    let m = 0, v = 0;
    for (const x of xt) m += x;
    m /= n;
    for (const x of xt) v += (x - m) ** 2;
    v /= n - 1;
    const ab = s.alphaBar(t);
    assert.ok(Math.abs(m - Math.sqrt(ab) * c) < 5 * Math.sqrt((1 - ab) / n) + 1e-6, `t=${t}: mean ${m} vs ${Math.sqrt(ab) * c}`);
    assert.ok(Math.abs(v / (1 - ab) - 1) < 0.02, `t=${t}: variance ${v} vs ${1 - ab}`);
  }
  // One timestep per batch element.
  const xb = full([2, 3], 1), eb = full([2, 3], 0);
  const out = s.qSample(xb, eb, [0, 999]).toArray() as number[][];
  near(out[0][0], Math.sqrt(s.alphaBar(0)), 1e-6, 'batch 0');
  near(out[1][2], Math.sqrt(s.alphaBar(999)), 1e-6, 'batch 1');
  assert.throws(() => s.qSample(xb, eb, [1, 2, 3]), /3 timesteps for a batch of 2/);
  assert.throws(() => s.qSample(xb, eb, 1000), /timestep 1000 is not an integer in \[0, 999\]/);
  assert.throws(() => s.alphaBar(2.5), /not an integer/);
});

test('x0 ↔ ε ↔ v conversions are mutually consistent (Salimans & Ho §4)', () => {
  const s = NoiseSchedule.from(SD);
  const x0 = randn([2, 4, 3, 3], { rng: new Rng(1) }), eps = randn([2, 4, 3, 3], { rng: new Rng(2) });
  for (const t of [0, 300, 999]) {
    const { alpha, sigma } = s.alphaSigma(t);
    const xt = s.qSample(x0, eps, t);
    const v = s.velocity(x0, eps, t);
    const close = (a: ReturnType<typeof randn>, b: ReturnType<typeof randn>, what: string, tol = 1e-5) =>
      assert.ok(relErr(a.toFloat32Array(), b.toFloat32Array()) < tol, `t=${t} ${what}: ${relErr(a.toFloat32Array(), b.toFloat32Array())}`);
    close(vFromX0Eps(x0, eps, alpha, sigma), v, 'v');
    close(x0FromV(xt, v, alpha, sigma), x0, 'x0 from v');
    close(epsFromV(xt, v, alpha, sigma), eps, 'ε from v');
    // Dividing by α (or σ) near the ends amplifies float32 rounding: looser there.
    close(x0FromEps(xt, eps, alpha, sigma), x0, 'x0 from ε', t === 999 ? 1e-3 : 1e-5);
    close(epsFromX0(xt, x0, alpha, sigma), eps, 'ε from x0', t === 0 ? 1e-3 : 1e-5);
    for (const [type, out] of [['epsilon', eps], ['v_prediction', v], ['sample', x0]] as const) {
      const p = predictX0Eps(type, out, xt, alpha, sigma);
      close(p.x0, x0, `${type} → x0`, 1e-3);
      close(p.eps, eps, `${type} → ε`, 1e-3);
    }
  }
  assert.throws(() => predictX0Eps('flow' as never, x0, x0, 1, 0), /unknown prediction type 'flow'/);
});

test('timestep spacing: leading (+offset), trailing, linspace; the multistep variant; limits', () => {
  assert.deepEqual(spacedTimesteps('leading', 10, 1000, { stepsOffset: 1 }), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  assert.deepEqual(spacedTimesteps('trailing', 10, 1000), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  assert.deepEqual(spacedTimesteps('linspace', 4, 1000), [999, 666, 333, 0]);
  assert.deepEqual(spacedTimesteps('trailing', 3, 1000), [999, 666, 332]);   // 333.33… rounds to 333, minus 1
  // Not rounded for the Euler family: float32 values of i·999/24.
  assert.equal(spacedTimesteps('linspace', 25, 1000, { round: false })[23], Math.fround(41.625));
  // n + 1 points with the last dropped; np.round sends 499.5 to 500 (half to even).
  assert.deepEqual(spacedTimestepsMultistep('linspace', 4, 1000), [999, 749, 500, 250]);
  assert.deepEqual(spacedTimestepsMultistep('leading', 4, 1000, { stepsOffset: 1 }), [801, 601, 401, 201]);
  assert.deepEqual(spacedTimestepsMultistep('trailing', 4, 1000), [999, 749, 499, 249]);
  assert.throws(() => spacedTimesteps('leading', 1001, 1000), /cannot run 1001 inference steps: the model was trained with only 1000/);
  assert.throws(() => spacedTimesteps('leading', 0, 1000), /positive integer/);
  assert.throws(() => spacedTimesteps('uniform' as never, 10, 1000), /unknown timestep spacing 'uniform'/);
  assert.equal(spacedTimesteps('leading', 1000, 1000).length, 1000);
});

test('Karras sigmas (ρ = 7) and σ → t', () => {
  const ks = karrasSigmas(0.029167532920837402, 14.614646911621094, 4);
  // Golden values (diffusers, euler_karras_4).
  [14.614646911621094, 3.1686110496520996, 0.44692090153694153, 0.029167532920837402].forEach((r, i) => near(ks[i], r, 1e-6, `σ_${i}`));
  const n = 10, rho = 7, lo = 0.1, hi = 80;
  const k = karrasSigmas(lo, hi, n, rho);
  near(k[0], hi, 1e-12, 'σ_max');
  near(k[n - 1], lo, 1e-12, 'σ_min');
  near(k[3], (hi ** (1 / rho) + (3 / (n - 1)) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho, 1e-12, 'eq. 5 at i = 3');
  for (let i = 1; i < n; i++) assert.ok(k[i] < k[i - 1]);

  const s = NoiseSchedule.from(SD);
  const ls = s.sigmas().map(Math.log);
  assert.equal(sigmaToT(s.sigmas()[0], ls), 0);
  for (const t of [1, 37, 500, 998, 999]) near(sigmaToT(s.sigmas()[t], ls), t, 1e-5, `t(σ_${t})`);
  assert.equal(sigmaToT(1e-4, ls), 0, 'below σ_min clamps to t = 0');
  assert.equal(sigmaToT(1e4, ls), 999, 'above σ_max clamps to t = T − 1');
  near(sigmaToT(3.1686110496520996, ls), 687.1532592773438, 1e-6, 'golden Karras timestep');
});

test('NumPy helpers: round half to even, linspace, interp', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 2, 3]);
  assert.deepEqual(linspace(0, 1, 5), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(linspace(3, 3, 1), [3]);
  assert.equal(interp(1.5, [0, 1, 2], [0, 10, 30]), 20);
  assert.equal(interp(-1, [0, 1], [5, 6]), 5);
  assert.equal(interp(9, [0, 1], [5, 6]), 6);
});
