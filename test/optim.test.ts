import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, fromTypedArray, tensor } from '../src/engine/index.js';
import { Linear } from '../src/nn/index.js';
import {
  Adam, AdamW, ConstantSchedule, CosineSchedule, EMA, LinearSchedule, SGD, clipGradNorm, cosineLr, type Optimizer,
} from '../src/optim/index.js';

// Expected values below come from the update rules in PyTorch's documentation (torch.optim.SGD / Adam /
// AdamW pseudo-code), evaluated in float64 by hand-written NumPy for these three steps.
const P0 = [1.0, -2.0, 0.5];
const GRADS = [[0.1, -0.2, 0.3], [-0.5, 0.4, 0.0], [1.0, 1.0, -1.0]];

function param(values: number[]): Tensor {
  return fromTypedArray(Float32Array.from(values), [values.length], 'f32').requiresGrad_(true);
}

function setGrad(p: Tensor, values: number[]): void {
  p.grad = fromTypedArray(Float32Array.from(values), [values.length], 'f32');
}

function run(make: (p: Tensor) => Optimizer<any>): number[] {
  const p = param(P0);
  const opt = make(p);
  for (const g of GRADS) { setGrad(p, g); opt.step(); }
  return Array.from(p.toFloat32Array());
}

function close(actual: number[], expected: number[], tol = 1e-6): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]) <= tol * Math.max(1, Math.abs(expected[i])),
    `[${i}] ${a} vs ${expected[i]}`));
}

test('SGD: plain, momentum + weight decay, Nesterov, dampening', () => {
  close(run((p) => new SGD([p], { lr: 0.1 })), [0.94, -2.12, 0.57]);
  close(run((p) => new SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 })), [0.962282789, -2.110625578, 0.5160113695]);
  close(run((p) => new SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true })),
    [0.902997312551, -2.213611225102, 0.5831211848005]);
  close(run((p) => new SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.5 })), [0.9704, -2.0338, 0.4687]);
  assert.throws(() => new SGD([param([1])], { lr: 0.1, nesterov: true }), /Nesterov/);
});

test('Adam (L2 decay), AdamW (decoupled decay), AMSGrad', () => {
  close(run((p) => new Adam([p], { lr: 0.01, weightDecay: 0.1 })), [0.9888245877104588, -1.9919377221559942, 0.48625974869227845]);
  close(run((p) => new AdamW([p], { lr: 0.01, weightDecay: 0.1 })), [0.9894091399285653, -1.9946702503966403, 0.48645986491554777]);
  close(run((p) => new Adam([p], { lr: 0.01, amsgrad: true })), [0.9923921344722195, -2.0006479234327945, 0.48793502596293525]);

  // Adam's first step moves every coordinate by lr against the gradient's sign (m̂/√v̂ = g/|g|).
  const p = param([1, 1, 1]);
  const opt = new Adam([p], { lr: 0.1 });
  setGrad(p, [3, -0.001, 0]);
  opt.step();
  close(Array.from(p.toFloat32Array()), [0.9, 1.1, 1], 1e-5);
});

test('parameters without gradients are skipped; param groups override defaults', () => {
  const a = param([1, 1]), b = param([1, 1]);
  const opt = new SGD([{ params: [a] }, { params: [b], lr: 1 }], { lr: 0.1 });
  setGrad(a, [1, 2]);
  opt.step();
  close(Array.from(a.toFloat32Array()), [0.9, 0.8]);
  close(Array.from(b.toFloat32Array()), [1, 1]);
  setGrad(b, [1, 1]);
  opt.step();
  close(Array.from(b.toFloat32Array()), [0, 0]);
  opt.setLr(0.5);
  assert.deepEqual(opt.paramGroups.map((g) => g.lr), [0.5, 0.5]);
  opt.zeroGrad();
  assert.equal(a.grad, null);
  assert.equal(b.grad, null);
});

test('optimizer state dict round trip continues identically', () => {
  const make = () => { const p = param(P0); return { p, opt: new AdamW([p], { lr: 0.05, weightDecay: 0.1 }) }; };
  const ref = make();
  for (const g of GRADS) { setGrad(ref.p, g); ref.opt.step(); }

  const first = make();
  setGrad(first.p, GRADS[0]); first.opt.step();
  const sd = first.opt.stateDict();
  assert.deepEqual([...sd.state.keys()].sort(), ['0.exp_avg', '0.exp_avg_sq']);
  assert.deepEqual(sd.steps, { 0: 1 });
  assert.equal(sd.groups[0].hyper.lr, 0.05);

  const second = make();
  (second.p.data as Float32Array).set(first.p.toFloat32Array());
  second.opt.loadStateDict(sd);
  // The loaded state is a copy: further steps on `first` must not leak into `second`.
  setGrad(first.p, [9, 9, 9]); first.opt.step();
  for (const g of GRADS.slice(1)) { setGrad(second.p, g); second.opt.step(); }
  assert.deepEqual(Array.from(second.p.toFloat32Array()), Array.from(ref.p.toFloat32Array()));
  assert.throws(() => new SGD([param([1])], { lr: 1 }).loadStateDict(sd), /state is for AdamW, this is SGD/);
});

test('clipGradNorm scales to the global L2 norm and returns the norm before clipping', () => {
  const a = param([0, 0]), b = param([0]);
  setGrad(a, [3, 0]); setGrad(b, [4]);
  const norm = clipGradNorm([a, b], 1);
  assert.ok(Math.abs(norm - 5) < 1e-6);
  close(Array.from(a.grad!.toFloat32Array()), [0.6, 0], 1e-5);
  close(Array.from(b.grad!.toFloat32Array()), [0.8], 1e-5);

  setGrad(a, [0.3, 0.4]);
  b.grad = null;
  assert.ok(Math.abs(clipGradNorm([a, b], 1) - 0.5) < 1e-6);
  close(Array.from(a.grad!.toFloat32Array()), [0.3, 0.4], 1e-7); // under the limit: untouched

  // A non-dense gradient (a transposed view) is replaced rather than written through.
  const m = fromTypedArray(new Float32Array(4), [2, 2], 'f32').requiresGrad_(true);
  m.grad = fromTypedArray(Float32Array.from([6, 0, 8, 0]), [2, 2], 'f32').transpose(0, 1);
  clipGradNorm([m], 5);
  close(Array.from(m.grad.toFloat32Array()), [3, 4, 0, 0], 1e-5);
});

test('learning-rate schedules', () => {
  const constant = new ConstantSchedule({ lr: 1e-3, warmupSteps: 4 });
  assert.deepEqual([0, 1, 2, 4, 100].map((s) => constant.lrAt(s)), [0, 2.5e-4, 5e-4, 1e-3, 1e-3]);
  assert.equal(new ConstantSchedule({ lr: 0.1 }).lrAt(0), 0.1);

  const cos = new CosineSchedule({ lr: 1, warmupSteps: 10, totalSteps: 110 });
  assert.equal(cos.lrAt(5), 0.5);
  assert.equal(cos.lrAt(10), 1);
  assert.ok(Math.abs(cos.lrAt(60) - 0.5) < 1e-12);
  assert.ok(Math.abs(cos.lrAt(110)) < 1e-12);
  assert.ok(Math.abs(cos.lrAt(500)) < 1e-12, 'stays at the floor after the end');
  const floored = new CosineSchedule({ lr: 1, totalSteps: 100, minLr: 0.1 });
  assert.ok(Math.abs(floored.lrAt(100) - 0.1) < 1e-12);
  assert.ok(Math.abs(cosineLr(1, 10, 110)(60) - 0.5) < 1e-12);

  const lin = new LinearSchedule({ lr: 2, warmupSteps: 2, totalSteps: 12 });
  assert.deepEqual([0, 1, 2, 7, 12, 20].map((s) => lin.lrAt(s)), [0, 1, 2, 1, 0, 0]);

  const p = param([1]);
  const opt = new SGD([p], { lr: 123 });
  assert.equal(cos.apply(opt, 5), 0.5);
  assert.equal(opt.lr, 0.5);
});

test('EMA of weights: decay, warm-up, copyTo, state dict', () => {
  const model = new Linear(2, 1, { bias: false });
  model.loadStateDict({ weight: tensor([[0, 0]]) });
  const ema = new EMA(model, { decay: 0.9 });
  model.loadStateDict({ weight: tensor([[1, 2]]) });
  ema.update();
  model.loadStateDict({ weight: tensor([[1, 2]]) });
  ema.update();
  // shadow = 0.9·(0.9·0 + 0.1·w) + 0.1·w = 0.19·w
  close(Array.from(ema.shadowParameters().get('weight')!.toFloat32Array()), [0.19, 0.38]);

  const target = new Linear(2, 1, { bias: false });
  ema.copyTo(target);
  close(Array.from(target.weight.toFloat32Array()), [0.19, 0.38]);

  const warm = new EMA(model, { decay: 0.999, warmup: true });
  assert.ok(Math.abs(warm.currentDecay() - 2 / 11) < 1e-12);
  warm.update();
  assert.ok(Math.abs(warm.currentDecay() - 3 / 12) < 1e-12);
  warm.updates = 100_000;
  assert.equal(warm.currentDecay(), 0.999);

  const restored = new EMA(new Linear(2, 1, { bias: false }), { decay: 0.5 });
  restored.loadStateDict(ema.stateDict());
  assert.equal(restored.decay, 0.9);
  assert.equal(restored.updates, 2);
  close(Array.from(restored.shadowParameters().get('weight')!.toFloat32Array()), [0.19, 0.38]);
});
