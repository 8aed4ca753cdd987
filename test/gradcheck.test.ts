/**
 * Finite-difference gradient checks (test/helpers/gradcheck.ts) for every differentiable op in docs/ENGINE.md,
 * one test per op, on tiny inputs away from kinks. Runs with the default backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as vss from '../src/engine/index.js';
import { backendName } from '../src/engine/backend/index.js';
import { runOp, type Attrs } from './helpers/ops.js';
import {
  gradcheck, TestRng, randnT, uniformT, awayT, distinctT, indexT, indexFrom, boolT, makeTensor,
  type GradcheckOptions,
} from './helpers/gradcheck.js';

type Tensor = vss.Tensor;

interface Spec {
  name: string;
  inputs: (r: TestRng) => Tensor[];
  fn: (...xs: Tensor[]) => Tensor | Tensor[] | { values: Tensor; indices: Tensor };
  opts?: GradcheckOptions;
}

/** A spec that calls the shared op dispatch with torch-style attrs. */
const viaOp = (name: string, op: string, inputs: (r: TestRng) => Tensor[], attrs: Attrs = {},
               opts?: GradcheckOptions): Spec => ({ name, inputs, fn: (...xs) => runOp(op, xs, attrs), opts });

const specs: Spec[] = [];

// ------------------------------------------------------------------ elementwise
const unary: [string, (r: TestRng) => Tensor][] = [
  ['neg', (r) => randnT(r, [2, 3])],
  ['exp', (r) => randnT(r, [2, 3])],
  ['log', (r) => uniformT(r, [2, 3], 0.5, 2)],
  ['sqrt', (r) => uniformT(r, [2, 3], 0.5, 2)],
  ['rsqrt', (r) => uniformT(r, [2, 3], 0.5, 2)],
  ['abs', (r) => awayT(r, [2, 3])],
  ['sin', (r) => randnT(r, [2, 3])],
  ['cos', (r) => randnT(r, [2, 3])],
  ['tanh', (r) => randnT(r, [2, 3])],
  ['sigmoid', (r) => randnT(r, [2, 3])],
  ['relu', (r) => awayT(r, [2, 3])],
  ['quickGelu', (r) => randnT(r, [2, 3], 1.5)],
  ['silu', (r) => randnT(r, [2, 3], 1.5)],
  ['erf', (r) => randnT(r, [2, 3])],
  ['square', (r) => randnT(r, [2, 3])],
  ['reciprocal', (r) => awayT(r, [2, 3], 0.5, 1.5)],
];
for (const [op, gen] of unary) specs.push(viaOp(op, op, (r) => [gen(r)]));
specs.push(viaOp('gelu (approximate none)', 'gelu', (r) => [randnT(r, [2, 3], 1.5)], { approximate: 'none' }));
specs.push(viaOp('gelu (approximate tanh)', 'gelu', (r) => [randnT(r, [2, 3], 1.5)], { approximate: 'tanh' }));
specs.push({
  name: 'clamp',
  // values on a grid at least 0.05 from the bounds ±0.5
  inputs: () => [makeTensor([2, 4], (i) => [-1.1, -0.7, -0.45, -0.1, 0.2, 0.44, 0.8, 1.3][i])],
  fn: (x) => vss.clamp(x, -0.5, 0.5),
});

const binaryGen: Record<string, [(r: TestRng, s: number[]) => Tensor, (r: TestRng, s: number[]) => Tensor]> = {
  add: [(r, s) => randnT(r, s), (r, s) => randnT(r, s)],
  sub: [(r, s) => randnT(r, s), (r, s) => randnT(r, s)],
  mul: [(r, s) => randnT(r, s), (r, s) => randnT(r, s)],
  div: [(r, s) => randnT(r, s), (r, s) => awayT(r, s, 0.5, 1.5)],
  pow: [(r, s) => uniformT(r, s, 0.5, 2), (r, s) => randnT(r, s)],
};
for (const [op, [ga, gb]] of Object.entries(binaryGen)) {
  specs.push(viaOp(`${op} (broadcast [2,1,3] with [4,3])`, op, (r) => [ga(r, [2, 1, 3]), gb(r, [4, 3])]));
}
specs.push({ name: 'pow (scalar exponent 2.5)', inputs: (r) => [uniformT(r, [2, 3], 0.5, 2)], fn: (x) => vss.pow(x, 2.5) });
for (const op of ['maximum', 'minimum'] as const) {
  specs.push({
    name: `${op} (broadcast)`,
    // a in ±[0.3, 1.3], b in ±0.1: never within h of each other
    inputs: (r) => [awayT(r, [2, 1, 3], 0.3, 1.3), uniformT(r, [4, 3], -0.1, 0.1)],
    fn: (a, b) => vss[op](a, b),
  });
}
specs.push({
  name: 'where (broadcast)',
  inputs: (r) => [boolT(r, [2, 3]), randnT(r, [2, 3]), randnT(r, [3])],
  fn: (c, a, b) => vss.where(c, a, b),
});

// ------------------------------------------------------------------ reductions
for (const op of ['sum', 'mean', 'logsumexp']) {
  specs.push(viaOp(`${op} (dims [0,2], keepdim)`, op, (r) => [randnT(r, [2, 3, 4])], { dim: [0, 2], keepdim: true }));
}
for (const op of ['max', 'min']) {
  specs.push(viaOp(`${op} (dim 1)`, op, (r) => [distinctT(r, [2, 3, 4])], { dim: 1, keepdim: false }));
}
for (const op of ['var', 'std']) {
  specs.push(viaOp(`${op} (dim -1, correction 1)`, op, (r) => [randnT(r, [3, 4])], { dim: -1, keepdim: false, correction: 1 }));
}
specs.push(viaOp('maxDim (values)', 'maxDim', (r) => [distinctT(r, [3, 4])], { dim: 0, keepdim: false }));
specs.push(viaOp('minDim (values)', 'minDim', (r) => [distinctT(r, [3, 4])], { dim: 1, keepdim: true }));
specs.push(viaOp('topk (values)', 'topk', (r) => [distinctT(r, [3, 5])], { k: 2, dim: -1, largest: true }));

// ------------------------------------------------------------------ linear algebra
specs.push(viaOp('matmul (broadcast batch)', 'matmul', (r) => [randnT(r, [2, 1, 2, 3]), randnT(r, [2, 3, 2])]));
specs.push(viaOp('bmm', 'bmm', (r) => [randnT(r, [2, 2, 3]), randnT(r, [2, 3, 2])]));
specs.push(viaOp('linear', 'linear', (r) => [randnT(r, [2, 3]), randnT(r, [4, 3]), randnT(r, [4])]));

// ------------------------------------------------------------------ convolution, pooling, resize
specs.push(viaOp('conv2d (stride 2, padding 1, dilation 1, groups 2)', 'conv2d',
  (r) => [randnT(r, [1, 4, 5, 4]), randnT(r, [2, 2, 3, 3], 0.5), randnT(r, [2])],
  { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 2 }));
specs.push(viaOp('convTranspose2d (stride 2, output padding 1)', 'convTranspose2d',
  (r) => [randnT(r, [1, 2, 3, 2]), randnT(r, [2, 3, 3, 3], 0.5), randnT(r, [3])],
  { stride: [2, 2], padding: [1, 1], output_padding: [1, 1], dilation: [1, 1], groups: 1 }));
specs.push(viaOp('avgPool2d (count_include_pad false)', 'avgPool2d', (r) => [randnT(r, [1, 2, 5, 4])],
  { kernel_size: [3, 3], stride: [2, 2], padding: [1, 1], count_include_pad: false }));
specs.push(viaOp('maxPool2d', 'maxPool2d', (r) => [distinctT(r, [1, 2, 5, 4])],
  { kernel_size: [2, 2], stride: [2, 1], padding: [1, 0] }));
specs.push(viaOp('interpolate (nearest)', 'interpolate', (r) => [randnT(r, [1, 2, 3, 2])],
  { mode: 'nearest', size: [5, 3], align_corners: false }));
specs.push(viaOp('interpolate (bilinear)', 'interpolate', (r) => [randnT(r, [1, 2, 3, 2])],
  { mode: 'bilinear', size: [5, 3], align_corners: false }));
specs.push(viaOp('interpolate (bilinear, align corners)', 'interpolate', (r) => [randnT(r, [1, 1, 3, 3])],
  { mode: 'bilinear', size: [2, 5], align_corners: true }));
specs.push(viaOp('pad', 'pad', (r) => [randnT(r, [2, 3])], { pads: [1, 2, 0, 1], value: 0.5 }));

// ------------------------------------------------------------------ shape
specs.push(viaOp('cat', 'cat', (r) => [randnT(r, [2, 1]), randnT(r, [2, 3])], { dim: 1 }));
specs.push(viaOp('stack', 'stack', (r) => [randnT(r, [2, 3]), randnT(r, [2, 3])], { dim: 1 }));
specs.push(viaOp('split', 'split', (r) => [randnT(r, [5, 2])], { split: 2, dim: 0 }));
specs.push(viaOp('chunk', 'chunk', (r) => [randnT(r, [2, 5])], { chunks: 3, dim: 1 }));
specs.push(viaOp('gather', 'gather', (r) => [randnT(r, [3, 4]), indexT(r, [3, 5], 4)], { dim: 1 }));
specs.push(viaOp('indexSelect (repeated indices)', 'indexSelect',
  (r) => [randnT(r, [4, 2]), indexFrom([3, 0, 3, 1])], { dim: 0 }));
specs.push(viaOp('embedding (repeated ids)', 'embedding', (r) => [indexFrom([1, 4, 1, 0], [2, 2]), randnT(r, [5, 3])]));
specs.push(viaOp('cumsum', 'cumsum', (r) => [randnT(r, [3, 4])], { dim: 1 }));
specs.push(viaOp('flip', 'flip', (r) => [randnT(r, [2, 3, 2])], { dims: [0, 2] }));
specs.push(viaOp('repeat', 'repeat', (r) => [randnT(r, [2, 3])], { sizes: [2, 1, 2] }));

// views (Tensor methods)
const views: [string, number[], (x: Tensor) => Tensor][] = [
  ['reshape', [2, 6], (x) => x.reshape([3, 4])],
  ['permute', [2, 3, 2], (x) => x.permute([2, 0, 1])],
  ['transpose', [2, 3], (x) => x.transpose(0, 1)],
  ['narrow', [4, 3], (x) => x.narrow(0, 1, 2)],
  ['slice (step 2)', [5, 3], (x) => x.slice(0, 1, 5, 2)],
  ['expand', [3, 1], (x) => x.expand([2, 3, 4])],
  ['squeeze', [3, 1, 2], (x) => x.squeeze(1)],
  ['unsqueeze', [3, 2], (x) => x.unsqueeze(1)],
  ['flatten', [2, 3, 2], (x) => x.flatten(1)],
  ['contiguous (of a transpose)', [2, 3], (x) => x.transpose(0, 1).contiguous()],
];
for (const [name, shape, f] of views) specs.push({ name, inputs: (r) => [randnT(r, shape)], fn: f });

// ------------------------------------------------------------------ nn functional
specs.push(viaOp('softmax (dim 0)', 'softmax', (r) => [randnT(r, [3, 4])], { dim: 0 }));
specs.push(viaOp('logSoftmax (dim -1)', 'logSoftmax', (r) => [randnT(r, [3, 4])], { dim: -1 }));
specs.push(viaOp('layerNorm', 'layerNorm', (r) => [randnT(r, [2, 5]), randnT(r, [5]), randnT(r, [5])],
  { normalized_shape: [5], eps: 1e-5 }));
specs.push(viaOp('groupNorm', 'groupNorm', (r) => [randnT(r, [2, 4, 3]), randnT(r, [4]), randnT(r, [4])],
  { num_groups: 2, eps: 1e-5 }));
specs.push({
  name: 'dropout (p 0.5, fixed rng)',
  inputs: (r) => [randnT(r, [3, 4])],
  // a fresh generator with the same seed each call: the same mask for every evaluation
  fn: (x) => vss.dropout(x, 0.5, { training: true, rng: new vss.Rng(3) }),
});
specs.push(viaOp('crossEntropy (label smoothing, ignore index)', 'crossEntropy',
  (r) => [randnT(r, [4, 3]), indexFrom([2, 0, 1, 1])], { reduction: 'mean', label_smoothing: 0.1, ignore_index: 1 }));
specs.push(viaOp('mseLoss', 'mseLoss', (r) => [randnT(r, [2, 3]), randnT(r, [2, 3])], { reduction: 'mean' }));
specs.push(viaOp('scaledDotProductAttention (causal, cross)', 'scaledDotProductAttention',
  (r) => [randnT(r, [1, 2, 3, 2]), randnT(r, [1, 2, 4, 2]), randnT(r, [1, 2, 4, 3])], { causal: true }));
specs.push({
  name: 'scaledDotProductAttention (key-padding mask)',
  inputs: (r) => [randnT(r, [2, 1, 2, 2]), randnT(r, [2, 1, 3, 2]), randnT(r, [2, 1, 3, 2]),
    vss.fromTypedArray(new Uint8Array([1, 1, 0, 1, 0, 1]), [2, 1, 1, 3], 'bool')],
  fn: (q, k, v, m) => vss.scaledDotProductAttention(q, k, v, { mask: m }),
});
specs.push({
  // heads split from [B, L, H·D] projections by views: the kernels read and write them in place
  name: 'scaledDotProductAttention (heads as views of [B, L, H·D], a key head shared by all)',
  inputs: (r) => [randnT(r, [1, 3, 4]), randnT(r, [1, 4, 4]), randnT(r, [1, 1, 4, 2])],
  fn: (x, y, v) => {
    const heads = (t: Tensor) => t.reshape([1, t.shape[1], 2, 2]).transpose(1, 2);
    const out = vss.scaledDotProductAttention(heads(x), heads(y), v.expand([1, 2, 4, 2]));
    return out.transpose(1, 2).reshape([1, 3, 4]);
  },
});

const seen = new Set<string>();
specs.forEach((s, i) => {
  if (seen.has(s.name)) throw new Error(`duplicate gradcheck spec ${s.name}`);
  seen.add(s.name);
  test(`gradcheck ${s.name} [${backendName()}]`, () => {
    const r = new TestRng(1000 + i);
    const res = gradcheck(s.fn, s.inputs(r), s.opts);
    if (!res.ok) assert.fail(`finite differences disagree with autograd\n  ${res.report.join('\n  ')}`);
  });
});

// The checker itself must catch a wrong gradient: x · detach(x) has autograd gradient x, true gradient 2x.
test('gradcheck detects a wrong gradient (x * x.detach())', () => {
  const r = new TestRng(7);
  const res = gradcheck((x) => vss.mul(x, x.detach()), [awayT(r, [2, 3], 0.5, 1.5)]);
  assert.equal(res.ok, false, 'gradcheck passed a function whose autograd gradient is half the true one');
});
