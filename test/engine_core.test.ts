/** Tensor core: views, autograd mechanics, dtypes, random numbers, errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as v from '../src/engine/index.js';
import { philoxBlock } from '../src/engine/rng.js';
import { emptyF32, recycleF32, recycledFloatsHeld } from '../src/engine/dtype.js';
import { relErr } from './helpers/relerr.js';

const close = (a: number[], b: number[], tol = 1e-6) =>
  a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= tol * (1 + Math.abs(b[i])));

test('Philox 4x32-10 matches the Random123 known-answer vectors', () => {
  const out = new Uint32Array(4);
  const hex = () => [...out].map((x) => x.toString(16).padStart(8, '0')).join(' ');
  philoxBlock(0, 0, 0, 0, 0, 0, out, 0);
  assert.equal(hex(), '6627e8d5 e169c58d bc57ac4c 9b00dbd8');
  philoxBlock(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, out, 0);
  assert.equal(hex(), '408f276d 41c83b0e a20bc7c6 6d5451fd');
  philoxBlock(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, out, 0);
  assert.equal(hex(), 'd16cfe09 94fdcceb 5001e420 24126ea1');
});

test('Rng: same seed same numbers; state round-trips; chunking does not matter', () => {
  const a = new v.Rng(42), b = new v.Rng(42);
  assert.deepEqual([...a.normal(10)], [...b.normal(10)]);
  const st = a.getState();
  const next = [...a.uniform(7)];
  const c = new v.Rng(1);
  c.setState(st);
  assert.deepEqual([...c.uniform(7)], next);
  // Drawing 8 then 8 equals drawing 16 at once (block-aligned positions).
  const d = new v.Rng(5), e = new v.Rng(5);
  assert.deepEqual([...d.uint32(8), ...d.uint32(8)], [...e.uint32(16)]);
  const n = new v.Rng(3).normal(20000);
  let mean = 0, sq = 0;
  for (const x of n) { mean += x; sq += x * x; }
  mean /= n.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(sq / n.length - 1) < 0.05, `normal moments ${mean} ${sq / n.length}`);
  const ints = new v.Rng(9).integers(1000, -3, 4);
  assert.ok(ints.every((x) => x >= -3 && x < 4));
});

test('views share storage and only copy when the layout requires it', () => {
  const x = v.arange(24).reshape([2, 3, 4]);
  const t = x.transpose(0, 2);
  assert.equal(t.data, x.data);
  assert.deepEqual(t.shape, [4, 3, 2]);
  assert.equal(t.isContiguous(), false);
  assert.deepEqual(t.contiguous().toArray()[1][2], [9, 21]);
  const n = x.narrow(1, 1, 2);
  assert.equal(n.data, x.data);
  assert.equal(n.offset, 4);
  // A view that cannot be expressed with strides copies.
  const r = t.reshape([24]);
  assert.notEqual(r.data, x.data);
  assert.deepEqual(r.toArray().slice(0, 4), [0, 12, 4, 16]);
  // A reshape that merges contiguous dims of a narrowed view stays a view.
  const m = x.narrow(0, 1, 1).reshape([3, 4]);
  assert.equal(m.data, x.data);
  assert.deepEqual(m.toArray()[0], [12, 13, 14, 15]);
  assert.deepEqual(x.slice(2, 0, 4, 2).toArray()[0][0], [0, 2]);
  assert.deepEqual(v.tensor([1, 2, 3]).expand([2, 3]).strides, [0, 1]);
  assert.deepEqual(x.unsqueeze(1).shape, [2, 1, 3, 4]);
  assert.deepEqual(x.unsqueeze(1).squeeze().shape, [2, 3, 4]);
  assert.deepEqual(x.flatten(1).shape, [2, 12]);
});

test('autograd: accumulation, reuse, noGrad, detach, views', () => {
  const a = v.tensor([1, 2, 3], { requiresGrad: true });
  const y = a.mul(a).add(a).sum(); // d/da = 2a + 1
  y.backward();
  assert.deepEqual(a.grad!.toArray(), [3, 5, 7]);
  a.mul(2).sum().backward(); // accumulates
  assert.deepEqual(a.grad!.toArray(), [5, 7, 9]);
  a.zeroGrad();
  const z = v.noGrad(() => a.mul(3));
  assert.equal(z.requiresGrad, false);
  assert.equal(a.detach().requiresGrad, false);
  // gradients through views land in the right places
  const m = v.zeros([3, 4], { requiresGrad: true });
  m.narrow(1, 1, 2).transpose(0, 1).mul(v.tensor([[1, 2, 3], [4, 5, 6]])).sum().backward();
  assert.deepEqual(m.grad!.toArray(), [[0, 1, 4, 0], [0, 2, 5, 0], [0, 3, 6, 0]]);
  const s = v.zeros([6], { requiresGrad: true });
  s.slice(0, 1, 6, 2).sum().backward();
  assert.deepEqual(s.grad!.toArray(), [0, 1, 0, 1, 0, 1]);
  // broadcasting reduces gradients back to the input shape
  const b = v.ones([1, 3], { requiresGrad: true });
  v.ones([4, 3]).mul(b).sum().backward();
  assert.deepEqual(b.grad!.toArray(), [[4, 4, 4]]);
  assert.throws(() => v.tensor([1, 2]).sum().backward(), /does not require grad/);
  assert.throws(() => a.mul(2).backward(), /gradient must be given/);
});

test('dtypes: 16-bit casts, integer indices, bool masks', () => {
  const x = v.tensor([1, -2.5, 65504, 1e-8]);
  assert.deepEqual(x.half().float().toArray().slice(0, 3), [1, -2.5, 65504]);
  assert.deepEqual(x.bfloat16().float().toArray().slice(0, 2), [1, -2.5]);
  const ids = v.tensor([2, 0]).to('i64');
  assert.equal(ids.dtype, 'i64');
  assert.deepEqual(v.embedding(ids, v.arange(6).reshape([3, 2])).toArray(), [[4, 5], [0, 1]]);
  const mask = v.tensor([1, 5, 3]).gt(2);
  assert.equal(mask.dtype, 'bool');
  assert.deepEqual(v.where(mask, 1, -1).toArray(), [-1, 1, 1]);
  assert.deepEqual(v.argmax(v.tensor([[1, 9, 3], [7, 2, 7]]), 1).toArray(), [1, 0]);
  // 16-bit weights go straight into matmul/linear
  const w = v.randn([5, 7], { rng: new v.Rng(1) });
  const inp = v.randn([3, 7], { rng: new v.Rng(2) });
  const ref = v.linear(inp, w.half().float()).toArray().flat();
  assert.ok(close(v.linear(inp, w.half()).toArray().flat(), ref, 1e-5));
});

test('clear errors for impossible shapes and arguments', () => {
  assert.throws(() => v.matmul(v.ones([2, 3]), v.ones([4, 5])), /do not align/);
  assert.throws(() => v.ones([6]).reshape([4, -1]), /cannot reshape 6 elements/);
  assert.throws(() => v.add(v.ones([2, 3]), v.ones([4])), /cannot be broadcast/);
  assert.throws(() => v.conv2d(v.ones([1, 3, 2, 2]), v.ones([4, 3, 3, 3])), /too small/);
  assert.throws(() => v.ones([2, 2]).permute(0, 0), /repeated dims/);
  assert.throws(() => v.ones([2]).sum(3), /out of range/);
  assert.throws(() => v.zeros([-1]), /non-negative/);
  assert.throws(() => v.crossEntropy(v.ones([2, 3]), v.tensor([0, 3]).to('i32')), /outside \[0, 3\)/);
  assert.throws(() => v.groupNorm(v.ones([1, 6, 2]), 4), /cannot be split/);
});

test('a tensor keeps its own frozen shape and strides: caller arrays are copied, frozen ones shared', () => {
  const shape = [2, 3], strides = [3, 1];
  const t = new v.Tensor(new Float32Array(6), shape, 'f32', strides);
  shape[0] = 5; strides[0] = 7;
  assert.deepEqual([t.shape, t.strides, t.numel], [[2, 3], [3, 1], 6]);
  assert.ok(Object.isFrozen(t.shape) && Object.isFrozen(t.strides));
  const u = t.add(t); // same shapes: the result shares the operand's frozen shape array
  assert.deepEqual([u.shape, u.numel], [[2, 3], 6]);
  assert.throws(() => { (u.shape as number[])[0] = 9; });
});

test('empty tensors flow through ops', () => {
  const e = v.zeros([0, 3]);
  assert.deepEqual(e.add(1).shape, [0, 3]);
  assert.deepEqual(e.sum(0).toArray(), [0, 0, 0]);
  assert.deepEqual(v.matmul(e, v.ones([3, 2])).shape, [0, 2]);
  assert.deepEqual(v.cat([e, v.ones([2, 3])], 0).shape, [2, 3]);
});

test('attention on heads split from [B, L, H·D] by views: no copies in or out, same values as dense heads', () => {
  const rng = new v.Rng(11);
  const [B, L, H, d] = [2, 40, 4, 8];
  const x = v.randn([B, L, H * d], { rng, requiresGrad: true });
  const heads = x.reshape([B, L, H, d]).transpose(1, 2); // [B, H, L, d], strided
  const out = v.scaledDotProductAttention(heads, heads, heads);
  // the result lies as [B, L, H, d]: merging the heads back is a free view
  assert.ok(out.transpose(1, 2).isContiguous(), 'output is not laid out token-major');
  const dense = v.contiguous(heads.detach());
  const ref = v.scaledDotProductAttention(dense, dense, dense);
  const diff = out.sub(ref).abs().max().item();
  assert.ok(diff < 1e-6, `strided and dense heads differ by ${diff}`);
  const g = v.randn([B, L, H * d], { rng });
  out.transpose(1, 2).reshape([B, L, H * d]).mul(g).sum().backward();
  assert.ok(x.grad && x.grad.isContiguous());
  const xd = x.detach().clone().requiresGrad_();
  const hd = v.contiguous(xd.reshape([B, L, H, d]).transpose(1, 2));
  v.contiguous(v.scaledDotProductAttention(hd, hd, hd).transpose(1, 2)).reshape([B, L, H * d]).mul(g).sum().backward();
  const gdiff = x.grad!.sub(xd.grad!).abs().max().item();
  assert.ok(gdiff < 1e-5, `gradients differ by ${gdiff}`);
});

test('native and JS backends agree on a small network, forward and backward', { skip: !v.nativeAvailable() && 'native addon not built' }, () => {
  const run = (backend: v.BackendName) => {
    v.setBackend(backend);
    const rng = new v.Rng(7);
    const x = v.randn([2, 3, 12, 12], { rng });
    const w1 = v.randn([8, 3, 3, 3], { rng, requiresGrad: true });
    const w2 = v.randn([10, 8 * 36], { rng, requiresGrad: true });
    let h = v.conv2d(x, w1, null, { padding: 1 });
    h = v.groupNorm(h, 4).silu();
    h = v.avgPool2d(h, 2);
    const q = h.flatten(2).transpose(1, 2); // [2, 36, 8]
    h = v.scaledDotProductAttention(q, q, q).transpose(1, 2).reshape([2, 8 * 36]);
    const loss = v.crossEntropy(v.linear(h, w2), v.tensor([3, 7]).to('i32'));
    loss.backward();
    return [loss.item(), ...w1.grad!.toArray().flat(3), ...w2.grad!.toArray().flat()];
  };
  const before = v.backendName();
  try {
    const js = run('js'), nat = run('native');
    let num = 0, den = 0;
    for (let i = 0; i < js.length; i++) { num += (js[i] - nat[i]) ** 2; den += js[i] ** 2; }
    assert.ok(Math.sqrt(num / den) < 1e-5, `relative error ${Math.sqrt(num / den)}`);
  } finally {
    v.setBackend(before);
  }
});

test('backward recycles the gradient buffers it is done with, never one that a pending gradient still uses', () => {
  // f = Σ (h + h) ∘ h over views, h = x·w: h feeds three inputs, add hands one gradient tensor to both of
  // its inputs, the views pass gradients that share storage. df/dh = 4h. (Under VSS_POISON_EMPTY, which the
  // op suites also run with, a recycled buffer is NaN-filled, so reading one too early would show.)
  const rng = new v.Rng(3);
  const x = v.randn([64, 40], { rng, requiresGrad: true });
  const w = v.randn([40, 48], { rng, requiresGrad: true });
  const h = v.matmul(x, w);
  const s = v.add(h, h);
  const f = v.mul(v.transpose(v.reshape(s, [48, 64]), 0, 1), v.transpose(v.reshape(h, [48, 64]), 0, 1)).sum();
  const held = recycledFloatsHeld();
  f.backward();
  // the pass gave buffers back, and the next allocation of that size takes one of them
  const after = recycledFloatsHeld();
  assert.ok(after > held, `nothing recycled (held ${held} → ${after})`);
  emptyF32(64 * 48);
  assert.equal(recycledFloatsHeld(), after - 64 * 48, 'an allocation of a recycled size did not reuse a buffer');
  // the leaves' gradients (adopted without a copy when nothing else shares them) are never handed out again
  for (let i = 0; i < 4; i++) {
    assert.notEqual(emptyF32(64 * 40), x.grad!.data);
    assert.notEqual(emptyF32(40 * 48), w.grad!.data);
  }
  const [gx, gw] = v.noGrad(() => {
    const g = v.mul(v.matmul(x, w), 4);
    return [v.matmul(g, v.transpose(w, 0, 1)), v.matmul(v.transpose(x, 0, 1), g)];
  });
  for (const [got, want, what] of [[x.grad!, gx, 'dx'], [w.grad!, gw, 'dw']] as const) {
    const err = relErr(got.toFloat32Array(), want.toFloat32Array());
    assert.ok(err < 1e-5, `${what}: relative error ${err}`);
  }
});

test('the recycled pool, when full, makes room by dropping the lengths used longest ago', () => {
  const CAP = 1 << 24;   // the pool's limit in floats
  // one buffer as large as the pool pushes out whatever earlier tests left, and taking it empties the pool
  recycleF32(emptyF32(CAP));
  emptyF32(CAP);
  assert.equal(recycledFloatsHeld(), 0);
  const A = CAP / 2, B = CAP / 4, C = CAP / 2 - 16;
  const a1 = emptyF32(A), a2 = emptyF32(A), b1 = emptyF32(B);
  recycleF32(a1); recycleF32(a2);                 // full
  recycleF32(b1);                                 // room made from A, the length used longest ago
  assert.equal(recycledFloatsHeld(), A + B);
  assert.equal(emptyF32(A), a1);                  // A used again: now the most recent
  recycleF32(a1);
  recycleF32(emptyF32(C));                        // room made from B this time
  assert.equal(recycledFloatsHeld(), A + C);
  assert.notEqual(emptyF32(B), b1, 'B, used longest ago, should have been dropped');
  assert.equal(emptyF32(A), a1, 'A, used recently, should have been kept');
});
