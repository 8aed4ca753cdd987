/**
 * Schedulers against diffusers 0.40 (golden trajectories in test/fixtures/golden/sched_*, copied from
 * ../shared/golden): 12 samplers × 4/10/25 steps, driven by the stand-in denoiser of the golden README
 *   eps(x, t) = 0.6 tanh(x) + 0.2 sin(3x + t/1000) + 0.05 t/1000
 * Checked: timesteps (exact where integer, 1e-6 relative where fractional), sigmas, init_noise_sigma, and every
 * step's sample at ≤ 1e-4 relative (‖a − b‖/‖b‖). Stochastic samplers get the recorded `noise_drawn`.
 * Plus the registry, A1111 aliases, call-order guards and config errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng, Tensor, mul, randn, sin, tanh, tensor, zeros } from '../src/engine/index.js';
import { readSafetensors } from '../src/io/safetensors.js';
import {
  SCHEDULER_CLASS_NAMES, samplerFromName, schedulerFromConfig, type Scheduler,
  DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, LMSDiscreteScheduler,
  DPMSolverMultistepScheduler, UniPCMultistepScheduler, PNDMScheduler, EulerAncestralDiscreteScheduler,
} from '../src/diffusion/schedulers/index.js';
import { repoRoot } from './helpers/fixtures.js';
import { relErr } from './helpers/relerr.js';

const GOLDEN = path.join(repoRoot(), 'test', 'fixtures', 'golden');

interface GoldenCase {
  case: string;
  class: string;
  config: Record<string, unknown>;
  steps: number;
  step_kwargs: { eta?: number };
  init_noise_sigma: number;
}

const caseDirs = fs.readdirSync(GOLDEN).filter((d) => d.startsWith('sched_')).sort();

/** The golden README's stand-in denoiser. */
function standIn(x: Tensor, t: number): Tensor {
  return tanh(x).mul(0.6).add(sin(x.mul(3).add(t / 1000)).mul(0.2)).add((0.05 * t) / 1000);
}

const SD_CONFIG = {
  _class_name: 'DDIMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear',
  clip_sample: false, num_train_timesteps: 1000, prediction_type: 'epsilon', set_alpha_to_one: false,
  steps_offset: 1, timestep_spacing: 'leading', trained_betas: null, _diffusers_version: '0.40.0.dev0',
};

const maxErrBySampler = new Map<string, number>();

test(`golden fixtures present (${caseDirs.length} scheduler cases)`, () => {
  assert.equal(caseDirs.length, 36, 'expected 12 schedulers × 3 step counts in test/fixtures/golden/sched_*');
});

for (const dir of caseDirs) {
  test(`${dir}: timesteps, sigmas and every step match diffusers`, () => {
    const meta = JSON.parse(fs.readFileSync(path.join(GOLDEN, dir, 'case.json'), 'utf8')) as GoldenCase;
    const tensors = readSafetensors(path.join(GOLDEN, dir, 'tensors.safetensors')).tensors;
    const get = (k: string) => { const t = tensors.get(k); assert.ok(t, `${dir}: tensor ${k} missing`); return t!; };

    const sched = schedulerFromConfig({ _class_name: meta.class, ...meta.config });
    assert.equal(sched.className, meta.class);
    sched.setTimesteps(meta.steps);

    // Timesteps: integer ones exactly, fractional ones (Karras) to 1e-6 relative.
    const refT = [...get('timesteps').toFloat32Array()];
    assert.equal(sched.timesteps.length, refT.length, `${dir}: ${sched.timesteps.length} timesteps, expected ${refT.length}`);
    refT.forEach((r, i) => {
      const a = sched.timesteps[i];
      if (Number.isInteger(r)) assert.equal(a, r, `${dir}: timestep ${i} is ${a}, expected ${r}`);
      else assert.ok(Math.abs(a - r) <= 1e-6 * Math.abs(r), `${dir}: timestep ${i} is ${a}, expected ${r}`);
    });
    if (tensors.has('sigmas')) {
      const refS = [...get('sigmas').toFloat32Array()];
      assert.equal(sched.sigmas.length, refS.length, `${dir}: ${sched.sigmas.length} sigmas, expected ${refS.length}`);
      refS.forEach((r, i) => assert.ok(Math.abs(sched.sigmas[i] - r) <= 1e-6 * Math.max(Math.abs(r), 1e-3),
        `${dir}: sigma ${i} is ${sched.sigmas[i]}, expected ${r}`));
    }
    assert.ok(Math.abs(sched.initNoiseSigma - meta.init_noise_sigma) <= 1e-6 * meta.init_noise_sigma,
      `${dir}: initNoiseSigma ${sched.initNoiseSigma}, expected ${meta.init_noise_sigma}`);

    // The trajectory, step by step.
    const traj = get('trajectory');
    const noise = tensors.get('noise_drawn');
    let x = mul(get('init_noise'), sched.initNoiseSigma);
    let worst = 0;
    sched.timesteps.forEach((t, k) => {
      const eps = standIn(sched.scaleModelInput(x, t), t);
      x = sched.step(eps, t, x, { eta: meta.step_kwargs.eta, noise: noise?.select(0, k) }).prevSample;
      const err = relErr(x.toFloat32Array(), traj.select(0, k).contiguous().toFloat32Array());
      worst = Math.max(worst, err);
      assert.ok(err <= 1e-4, `${dir}: step ${k} (t = ${t}) relative error ${err.toExponential(2)} > 1e-4`);
    });
    assert.ok(relErr(x.toFloat32Array(), get('final').toFloat32Array()) <= 1e-4);
    const name = dir.replace(/_\d+$/, '');
    maxErrBySampler.set(name, Math.max(maxErrBySampler.get(name) ?? 0, worst));
  });
}

test('per-sampler worst step error (diagnostic)', (t) => {
  for (const [name, err] of maxErrBySampler) t.diagnostic(`${name.padEnd(24)} max rel err ${err.toExponential(2)}`);
  assert.equal(maxErrBySampler.size, 12);
});

// ---------------------------------------------------------------------------------------------- registry

test('schedulerFromConfig: an SD scheduler_config.json, class override, unknown class', () => {
  const ddim = schedulerFromConfig(SD_CONFIG);
  assert.ok(ddim instanceof DDIMScheduler);
  assert.equal(ddim.config.stepsOffset, 1);
  assert.equal(ddim.config.betaSchedule, 'scaled_linear');
  assert.ok(Object.isFrozen(ddim.config));
  const euler = schedulerFromConfig(SD_CONFIG, 'EulerDiscreteScheduler');
  assert.ok(euler instanceof EulerDiscreteScheduler);
  assert.equal(euler.config.timestepSpacing, 'leading', 'the config\'s spacing carries over, as in diffusers');
  assert.throws(() => schedulerFromConfig({ ...SD_CONFIG, _class_name: 'KarrasVeScheduler' }),
    (e: Error) => /unknown scheduler class 'KarrasVeScheduler'/.test(e.message) &&
      SCHEDULER_CLASS_NAMES.every((n) => e.message.includes(n)));
  assert.throws(() => schedulerFromConfig({ beta_start: 0.1 }), /no _class_name/);
  // Round trip through toJSON.
  const back = schedulerFromConfig(euler.toJSON());
  assert.deepEqual(back.config, euler.config);
  assert.equal(back.toJSON()._class_name, 'EulerDiscreteScheduler');
});

test('config: unknown keys ignored, used keys type-checked, unsupported values refused', () => {
  const s = schedulerFromConfig({ ...SD_CONFIG, some_future_option: [1, 2], variance_type: 'fixed_small' });
  assert.ok(s instanceof DDIMScheduler);
  assert.throws(() => new DDIMScheduler({ num_train_timesteps: '1000' }), /num_train_timesteps' must be a number/);
  assert.throws(() => new DDIMScheduler({ num_train_timesteps: 10.5 }), /must be an integer/);
  assert.throws(() => new DDIMScheduler({ beta_schedule: 'sigmoid' }), /beta_schedule' must be one of 'linear', 'scaled_linear', 'squaredcos_cap_v2'/);
  assert.throws(() => new EulerDiscreteScheduler({ prediction_type: 'flow' }), /prediction_type' must be one of/);
  assert.throws(() => new EulerDiscreteScheduler({ use_karras_sigmas: 'yes' }), /use_karras_sigmas' must be true or false/);
  assert.throws(() => new EulerDiscreteScheduler({ use_beta_sigmas: true }), /not supported/);
  assert.throws(() => new DDIMScheduler({ trained_betas: [0.1, 'x'] }), /trained_betas' must be a list of numbers/);
  assert.throws(() => new PNDMScheduler({ prediction_type: 'sample' }), /must be one of 'epsilon', 'v_prediction'/);
  assert.throws(() => new DPMSolverMultistepScheduler({ algorithm_type: 'dpmsolver' }), /final_sigmas_type 'zero' needs/);
  assert.throws(() => new UniPCMultistepScheduler({ predict_x0: false }), /use final_sigmas_type 'sigma_min'/);
  // camelCase keys work too (TS callers).
  assert.equal(new EulerDiscreteScheduler({ useKarrasSigmas: true }).config.useKarrasSigmas, true);
  // trained_betas (a custom schedule) wins over beta_schedule.
  const custom = new DDPMScheduler({ trained_betas: [0.1, 0.2, 0.3], num_train_timesteps: 3 });
  assert.deepEqual([...custom.schedule.betas].map((b) => +b.toFixed(6)), [0.1, 0.2, 0.3]);
});

test('samplerFromName: A1111 names map to the right class and options', () => {
  const cases: [string, Function, Record<string, unknown>][] = [
    ['DPM++ 2M Karras', DPMSolverMultistepScheduler, { useKarrasSigmas: true, algorithmType: 'dpmsolver++', solverOrder: 2 }],
    ['DPM++ 2M', DPMSolverMultistepScheduler, { useKarrasSigmas: false }],
    ['DPM++ 2M SDE', DPMSolverMultistepScheduler, { algorithmType: 'sde-dpmsolver++' }],
    ['Euler a', EulerAncestralDiscreteScheduler, {}],
    ['Euler', EulerDiscreteScheduler, { useKarrasSigmas: false }],
    ['Heun', HeunDiscreteScheduler, {}],
    ['LMS', LMSDiscreteScheduler, {}],
    ['LMS Karras', LMSDiscreteScheduler, { useKarrasSigmas: true }],
    ['DDIM', DDIMScheduler, {}],
    ['PLMS', PNDMScheduler, { skipPrkSteps: true }],
    ['UniPC', UniPCMultistepScheduler, {}],
    ['DDPM', DDPMScheduler, {}],
    ['euler_a', EulerAncestralDiscreteScheduler, {}],
    ['EulerDiscreteScheduler', EulerDiscreteScheduler, {}],
    ['  dpm++ 2m   karras ', DPMSolverMultistepScheduler, { useKarrasSigmas: true }],
  ];
  for (const [name, cls, expect] of cases) {
    const s = samplerFromName(name, SD_CONFIG);
    assert.ok(s instanceof cls, `${name} → ${s.className}`);
    for (const [k, v] of Object.entries(expect)) assert.equal((s.config as any)[k], v, `${name}: ${k}`);
    assert.equal(s.config.betaSchedule, 'scaled_linear', `${name} keeps the model's training schedule`);
  }
  assert.throws(() => samplerFromName('DPM++ 3M Turbo', SD_CONFIG), /unknown sampler 'DPM\+\+ 3M Turbo' \(known: .*Euler a/);
  assert.throws(() => samplerFromName('constructor', SD_CONFIG), /unknown sampler/);
});

// ---------------------------------------------------------------------------------------------- guards

test('call-order guards and step-count limits, for every scheduler', () => {
  const x = zeros([1, 4, 2, 2]);
  for (const cls of SCHEDULER_CLASS_NAMES) {
    const s = schedulerFromConfig(SD_CONFIG, cls);
    assert.throws(() => s.step(x, 1, x), /called before setTimesteps\(\)/, `${cls}.step before setTimesteps`);
    assert.throws(() => s.scaleModelInput(x, 1), /called before setTimesteps\(\)/, `${cls}.scaleModelInput before setTimesteps`);
    assert.throws(() => s.setTimesteps(1001), /cannot exceed num_train_timesteps = 1000/, `${cls}.setTimesteps(1001)`);
    assert.throws(() => s.setTimesteps(0), /positive integer/);
    s.setTimesteps(1000);   // the limit itself is fine
    assert.ok(s.timesteps.length >= 1000);
  }
  const e = new EulerDiscreteScheduler(SD_CONFIG);
  e.setTimesteps(4);
  assert.throws(() => e.step(x, 123.5, x), /timestep 123.5 is not one of the scheduler's timesteps/);
  const d = new DDIMScheduler(SD_CONFIG);
  d.setTimesteps(4);
  assert.throws(() => d.step(x, 1000, x), /not an integer in \[0, 999\]/);
});

test('stochastic samplers: opts.noise wins, an rng gives reproducible draws, wrong noise shape is refused', () => {
  const x = randn([1, 4, 4, 4], { rng: new Rng(1) });
  const run = (rng?: Rng, noise?: Tensor) => {
    const s = new EulerAncestralDiscreteScheduler(SD_CONFIG);
    s.setTimesteps(5);
    const t = s.timesteps[0];
    return s.step(standIn(s.scaleModelInput(x, t), t), t, x, { rng, noise }).prevSample.toFloat32Array();
  };
  assert.deepEqual(run(new Rng(7)), run(new Rng(7)));
  assert.notDeepEqual(run(new Rng(7)), run(new Rng(8)));
  const n = randn([1, 4, 4, 4], { rng: new Rng(3) });
  assert.deepEqual(run(new Rng(7), n), run(new Rng(9), n));
  assert.throws(() => run(undefined, zeros([1, 4, 4, 3])), /noise has shape \[1,4,4,3\], the sample \[1,4,4,4\]/);
  // DDIM with η = 0 is deterministic and ignores the rng; η > 0 is not.
  const ddim = (eta: number, seed: number) => {
    const s = new DDIMScheduler(SD_CONFIG);
    s.setTimesteps(10);
    return s.step(standIn(x, 901), 901, x, { eta, rng: new Rng(seed) }).prevSample.toFloat32Array();
  };
  assert.deepEqual(ddim(0, 1), ddim(0, 2));
  assert.notDeepEqual(ddim(1, 1), ddim(1, 2));
});

test('addNoise: q(x_t|x_0) for the DDPM family, x_0 + σ ε for Euler, α x_0 + σ ε for DPM-Solver', () => {
  const x0 = randn([1, 4, 4, 4], { rng: new Rng(2) }), n = randn([1, 4, 4, 4], { rng: new Rng(3) });
  const ddim = new DDIMScheduler(SD_CONFIG);
  const a = ddim.schedule.alphasCumprod[501];
  const expect = x0.mul(Math.sqrt(a)).add(n.mul(Math.sqrt(1 - a)));
  assert.ok(relErr(ddim.addNoise(x0, n, 501).toFloat32Array(), expect.toFloat32Array()) < 1e-6);

  const euler = new EulerDiscreteScheduler(SD_CONFIG);
  euler.setTimesteps(10);
  const t = euler.timesteps[3], sigma = euler.sigmas[3];
  assert.ok(relErr(euler.addNoise(x0, n, t).toFloat32Array(), x0.add(n.mul(sigma)).toFloat32Array()) < 1e-6);
  // img2img: a scheduler started mid-way (setBeginIndex) runs from there.
  euler.setBeginIndex(3);
  const xt = euler.addNoise(x0, n, t);
  const out = euler.step(standIn(euler.scaleModelInput(xt, t), t), t, xt).prevSample;
  assert.equal(out.shape.join(), '1,4,4,4');

  const dpm = new DPMSolverMultistepScheduler(SD_CONFIG);
  dpm.setTimesteps(10);
  const s = dpm.sigmas[2], al = 1 / Math.sqrt(s * s + 1);
  const ref = x0.mul(al).add(n.mul(s * al));
  assert.ok(relErr(dpm.addNoise(x0, n, dpm.timesteps[2]).toFloat32Array(), ref.toFloat32Array()) < 1e-6);
});

test('v-prediction and sample prediction agree with epsilon on an exact denoiser (one step)', () => {
  // If the model is exact for a known (x0, ε), every parameterisation must give the same step.
  const x0 = randn([1, 2, 3, 3], { rng: new Rng(4) }), eps = randn([1, 2, 3, 3], { rng: new Rng(5) });
  for (const cls of ['DDIMScheduler', 'DDPMScheduler', 'EulerDiscreteScheduler', 'HeunDiscreteScheduler', 'LMSDiscreteScheduler',
    'DPMSolverMultistepScheduler', 'UniPCMultistepScheduler']) {
    const outs: Float32Array[] = [];
    for (const pt of ['epsilon', 'v_prediction', 'sample']) {
      const s = schedulerFromConfig({ ...SD_CONFIG, prediction_type: pt, clip_sample: false }, cls);
      s.setTimesteps(10);
      const t = s.timesteps[2];
      const xt = s.addNoise(x0, eps, t);
      const sig = s.sigmas.length ? s.sigmas[s.timesteps.indexOf(t)] : 0;
      // The model sees the scaled input; in that VP space x_t = α x0 + σ_vp ε.
      const ab = s.sigmas.length ? 1 / (sig * sig + 1) : s.schedule.alphasCumprod[t];
      const alpha = Math.sqrt(ab), sigma = Math.sqrt(1 - ab);
      const out = pt === 'epsilon' ? eps : pt === 'sample' ? x0 : eps.mul(alpha).sub(x0.mul(sigma));
      s.scaleModelInput(xt, t);
      outs.push(s.step(out, t, xt, { noise: zeros([1, 2, 3, 3]) }).prevSample.toFloat32Array());
    }
    assert.ok(relErr(outs[1], outs[0]) < 1e-5, `${cls}: v vs eps ${relErr(outs[1], outs[0])}`);
    assert.ok(relErr(outs[2], outs[0]) < 1e-5, `${cls}: sample vs eps ${relErr(outs[2], outs[0])}`);
  }
});

test('samplers denoise: an exact model of a one-point data set takes every variant from noise to x_0', (ctx) => {
  // With data = {x0}, the exact ε at x_t = α x0 + σ ε is (x_t − α x0)/σ; x̂_0 is then exact at every step, so
  // every sampler built on x̂_0 lands on x0 (up to float32). PLMS combines past ε's and is only close.
  const x0 = randn([1, 2, 4, 4], { rng: new Rng(11) }).mul(0.5);
  const variants: [string, string, Record<string, unknown>, number?][] = [
    ['DDIM', 'DDIMScheduler', {}],
    ['DDIM η=1', 'DDIMScheduler', { eta: 1 }],
    ['DDPM', 'DDPMScheduler', {}],
    ['DDPM fixed_large (keeps √β_1 of noise)', 'DDPMScheduler', { variance_type: 'fixed_large' }, 0.2],
    ['PLMS', 'PNDMScheduler', { skip_prk_steps: true }, 2e-2],
    ['PNDM (PRK start)', 'PNDMScheduler', { skip_prk_steps: false }, 2e-2],
    ['Euler', 'EulerDiscreteScheduler', {}],
    ['DDIM zero terminal SNR', 'DDIMScheduler', { rescale_betas_zero_snr: true }],
    ['Euler zero terminal SNR, trailing', 'EulerDiscreteScheduler', { rescale_betas_zero_snr: true, timestep_spacing: 'trailing' }],
    ['Euler Karras trailing', 'EulerDiscreteScheduler', { use_karras_sigmas: true, timestep_spacing: 'trailing' }],
    // diffusers adds the churn noise inside step, after the model saw x at σ (not σ̂): not exact.
    ['Euler churn', 'EulerDiscreteScheduler', { s_churn: 1 }, 0.1],
    ['Euler a', 'EulerAncestralDiscreteScheduler', {}],
    ['Heun Karras', 'HeunDiscreteScheduler', { use_karras_sigmas: true }],
    ['LMS', 'LMSDiscreteScheduler', {}],
    ['DPM++ 2M', 'DPMSolverMultistepScheduler', {}],
    ['DPM++ 3M heun', 'DPMSolverMultistepScheduler', { solver_order: 3, solver_type: 'heun' }],
    // These end at σ_min, not 0: compared with DPM++ ending there too (the one-point ODE path is the same).
    ['DPM++ 2M to σ_min', 'DPMSolverMultistepScheduler', { final_sigmas_type: 'sigma_min' }, Infinity],
    ['DPM-Solver 2M (ε)', 'DPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver', final_sigmas_type: 'sigma_min' }, -1],
    ['DPM-Solver 3M (ε)', 'DPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver', final_sigmas_type: 'sigma_min', solver_order: 3 }, -1],
    ['DPM++ 2M SDE Karras', 'DPMSolverMultistepScheduler', { algorithm_type: 'sde-dpmsolver++', use_karras_sigmas: true }],
    ['UniPC', 'UniPCMultistepScheduler', {}],
    ['UniPC 3 bh1', 'UniPCMultistepScheduler', { solver_order: 3, solver_type: 'bh1' }],
    ['UniPC ε', 'UniPCMultistepScheduler', { predict_x0: false, final_sigmas_type: 'sigma_min' }, -1],
  ];
  let toSigmaMin: Float32Array | null = null;
  for (const [label, cls, overrides, tol] of variants) {
    const s: Scheduler = schedulerFromConfig({ ...SD_CONFIG, set_alpha_to_one: true, ...overrides }, cls);
    s.setTimesteps(10);
    const rng = new Rng(12);
    let x = randn([1, 2, 4, 4], { rng }).mul(s.initNoiseSigma);
    s.timesteps.forEach((t, k) => {
      const xin = s.scaleModelInput(x, t);
      // ᾱ at this step: from the step's σ for sigma-based samplers (the model input is x/√(σ²+1)).
      const sig = s.sigmas.length ? s.sigmas[k] : null;
      const ab = sig !== null ? 1 / (sig * sig + 1) : s.schedule.alphasCumprod[t];
      const eps = xin.sub(x0.mul(Math.sqrt(ab))).div(Math.sqrt(1 - ab));
      x = s.step(eps, t, x, { rng }).prevSample;
    });
    if (tol === Infinity) { toSigmaMin = x.toFloat32Array(); continue; }
    const target = tol === -1 ? toSigmaMin! : x0.toFloat32Array();
    const err = relErr(x.toFloat32Array(), target);
    ctx.diagnostic(`${label.padEnd(40)} ${err.toExponential(2)}`);
    assert.ok(err < (tol === -1 ? 1e-4 : tol ?? 1e-4), `${label}: ended ${err.toExponential(2)} away from its target`);
  }
});

test('DDIM useClippedModelOutput: ε re-derived from the clipped x̂_0 (GLIDE); unchanged when nothing is clipped', () => {
  const ddim = new DDIMScheduler({ ...SD_CONFIG, clip_sample: true, clip_sample_range: 1 });
  ddim.setTimesteps(10);
  const t = ddim.timesteps[1], tPrev = ddim.timesteps[2];
  const a = ddim.schedule.alphasCumprod[t], aPrev = ddim.schedule.alphasCumprod[tPrev];
  const x = tensor([[0.5, -0.2]]);
  // ε chosen so x̂_0 = (x − √(1−ᾱ) ε)/√ᾱ is 3 (clipped to 1) in the first element and 0.1 in the second.
  const x0Wanted = [3, 0.1];
  const eps = tensor([[0, 1].map((i) => (x.toFloat32Array()[i] - Math.sqrt(a) * x0Wanted[i]) / Math.sqrt(1 - a))]);
  const plain = ddim.step(eps, t, x).prevSample.toFloat32Array();
  const clipped = ddim.step(eps, t, x, { useClippedModelOutput: true }).prevSample.toFloat32Array();
  const xs = x.toFloat32Array(), es = eps.toFloat32Array();
  // element 0: x̂_0 = 1; default keeps the raw ε, the option re-derives ε' = (x − √ᾱ)/√(1−ᾱ)
  const epsClipped = (xs[0] - Math.sqrt(a)) / Math.sqrt(1 - a);
  assert.ok(Math.abs(plain[0] - (Math.sqrt(aPrev) + Math.sqrt(1 - aPrev) * es[0])) < 1e-5);
  assert.ok(Math.abs(clipped[0] - (Math.sqrt(aPrev) + Math.sqrt(1 - aPrev) * epsClipped)) < 1e-5);
  // element 1 is inside the range: both variants agree
  assert.ok(Math.abs(plain[1] - clipped[1]) < 1e-5);
});
