import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, Tensor, fromTypedArray, randn, tensor, zeros } from '../src/engine/index.js';
import {
  Attention, Conv2d, ConvTranspose2d, Dropout, Embedding, GroupNorm, Identity, LayerNorm, Linear, MLP, Module,
  ModuleDict, ModuleList, Sequential,
} from '../src/nn/index.js';

class Block extends Module {
  norm = new LayerNorm(8);
  attn = new Attention({ queryDim: 8, heads: 2, dimHead: 4, rng: new Rng(1) });
  mlp = new MLP(8, 16, 8, { rng: new Rng(2) });
}

class Net extends Module {
  stem = new Conv2d(3, 4, 3, { padding: 1, rng: new Rng(3) });
  blocks = new ModuleList([new Block(), new Block()]);
  heads = [new Linear(8, 2, { bias: false, rng: new Rng(4) }), new Linear(8, 3, { rng: new Rng(5) })];
  seq = new Sequential(new Linear(4, 4, { rng: new Rng(6) }), new Identity(), new Linear(4, 1, { rng: new Rng(7) }));
  scale = randn([4], { rng: new Rng(8) }).requiresGrad_(true);
  byName = new ModuleDict({ proj_in: new Linear(2, 2, { rng: new Rng(9) }) });
  skipped: Linear | null = null;
  _cache: Tensor = zeros([2]);

  constructor() {
    super();
    this.registerBuffer('position_ids', fromTypedArray(new BigInt64Array([0n, 1n, 2n]), [1, 3], 'i64'));
    this.registerBuffer('scratch', zeros([3]), false);
  }
}

const names = (pairs: [string, unknown][]) => pairs.map(([n]) => n);

test('state-dict names follow the PyTorch dotted convention', () => {
  const net = new Net();
  const blockKeys = (i: number) => [
    `blocks.${i}.norm.weight`, `blocks.${i}.norm.bias`,
    `blocks.${i}.attn.to_q.weight`, `blocks.${i}.attn.to_k.weight`, `blocks.${i}.attn.to_v.weight`,
    `blocks.${i}.attn.to_out.0.weight`, `blocks.${i}.attn.to_out.0.bias`,
    `blocks.${i}.mlp.fc1.weight`, `blocks.${i}.mlp.fc1.bias`, `blocks.${i}.mlp.fc2.weight`, `blocks.${i}.mlp.fc2.bias`,
  ];
  const params = [
    'scale', 'stem.weight', 'stem.bias', ...blockKeys(0), ...blockKeys(1),
    'heads.0.weight', 'heads.1.weight', 'heads.1.bias',
    'seq.0.weight', 'seq.0.bias', 'seq.2.weight', 'seq.2.bias', 'byName.proj_in.weight', 'byName.proj_in.bias',
  ];
  assert.deepEqual(names(net.namedParameters()).sort(), [...params].sort());
  assert.deepEqual(names(net.namedBuffers()).sort(), ['position_ids', 'scratch']);
  assert.deepEqual([...net.stateDict().keys()].sort(), [...params, 'position_ids'].sort(), 'non-persistent buffer left out');
  assert.ok(names(net.namedModules()).includes('blocks.1.attn.to_out.1'));
  assert.equal(net.numParameters(), net.parameters().reduce((n, p) => n + p.numel, 0));
  assert.equal(net.numParameters(), 4 + (4 * 3 * 9 + 4) + 2 * (16 + 3 * 64 + 64 + 8 + (128 + 16) + (128 + 8)) + 16 + (24 + 3) + (16 + 4) + (4 + 1) + 6);
});

test('strict loading lists every missing, unexpected and mis-shaped key at once', () => {
  const lin = new Linear(3, 4);
  const norm = new LayerNorm(4);
  class Pair extends Module { a = lin; b = norm; }
  const model = new Pair();
  const sd = new Map<string, Tensor>([
    ['a.weight', zeros([3, 4])],
    ['c.x', zeros([1])],
  ]);
  assert.throws(() => model.loadStateDict(sd), {
    message: 'loadStateDict: 3 missing keys: a.bias, b.weight, b.bias; 1 unexpected: c.x; 1 shape mismatch: a.weight expected [4, 3] found [3, 4]',
  });
  // Shape mismatches are errors even when not strict.
  assert.throws(() => model.loadStateDict(sd, { strict: false }), /1 shape mismatch: a.weight expected \[4, 3\] found \[3, 4\]/);
});

test('non-strict loading copies what matches and reports the rest', () => {
  const model = new Linear(2, 2);
  const weightBefore = model.weight;
  const w = tensor([[1, 2], [3, 4]]);
  const result = model.loadStateDict({ weight: w, extra: zeros([1]) }, { strict: false });
  assert.deepEqual(result, { missing: ['bias'], unexpected: ['extra'] });
  assert.equal(model.weight, weightBefore, 'loaded in place: optimisers keep their reference');
  assert.deepEqual(model.weight.toArray(), [[1, 2], [3, 4]]);
  assert.ok(model.weight.requiresGrad);
  // The source tensor's storage is not shared.
  (w.data as Float32Array)[0] = 99;
  assert.equal(model.weight.toArray()[0][0], 1);
});

test('loading converts dtypes, or keeps 16-bit weights when asked', () => {
  const half = tensor([[0.5, -1.5], [2, 0.25]]).to('f16');
  const model = new Linear(2, 2, { bias: false });
  model.loadStateDict({ weight: half });
  assert.equal(model.weight.dtype, 'f32');
  assert.deepEqual(model.weight.toArray(), [[0.5, -1.5], [2, 0.25]]);

  const kept = new Linear(2, 2, { bias: false });
  kept.loadStateDict({ weight: tensor([[1, 2], [3, 4]]).to('bf16') }, { keepDtype: true });
  assert.equal(kept.weight.dtype, 'bf16');
  assert.deepEqual(kept.forward(tensor([[1, 1]])).toArray(), [[3, 7]]);

  const inference = new Linear(2, 2, { bias: false }).to('f16');
  assert.equal(inference.weight.dtype, 'f16');
  inference.loadStateDict({ weight: tensor([[1, 0], [0, 1]]) }); // f32 file → narrowed into f16 storage
  assert.equal(inference.weight.dtype, 'f16');
  assert.deepEqual(inference.forward(tensor([[3, 4]])).toArray(), [[3, 4]]);
  inference.to('f32');
  assert.equal(inference.weight.dtype, 'f32');
  assert.ok(inference.weight.requiresGrad);

  // Integer buffers load as integers.
  const net = new Net();
  const sd = new Map(new Net().stateDict());
  sd.set('position_ids', fromTypedArray(new BigInt64Array([5n, 6n, 7n]), [1, 3], 'i64'));
  net.loadStateDict(sd);
  assert.deepEqual(Array.from((net as unknown as { position_ids: Tensor }).position_ids.data as BigInt64Array), [5n, 6n, 7n]);
});

test('initialisation follows PyTorch defaults and the seed', () => {
  const a = new Linear(16, 8, { rng: new Rng(42) });
  const b = new Linear(16, 8, { rng: new Rng(42) });
  assert.deepEqual(Array.from(a.weight.toFloat32Array()), Array.from(b.weight.toFloat32Array()));
  const bound = 1 / Math.sqrt(16);
  for (const v of a.weight.toFloat32Array()) assert.ok(Math.abs(v) <= bound);
  for (const v of a.bias!.toFloat32Array()) assert.ok(Math.abs(v) <= bound);
  const conv = new Conv2d(4, 6, 3, { groups: 2, rng: new Rng(1) });
  const convBound = 1 / Math.sqrt(2 * 9);
  for (const v of conv.weight.toFloat32Array()) assert.ok(Math.abs(v) <= convBound);
  assert.ok(Math.max(...conv.weight.toFloat32Array()) > convBound * 0.8, 'uses the whole range');
  const tconv = new ConvTranspose2d(4, 6, 2, { rng: new Rng(1) });
  assert.deepEqual([...tconv.weight.shape], [4, 6, 2, 2]);
  for (const v of tconv.weight.toFloat32Array()) assert.ok(Math.abs(v) <= 1 / Math.sqrt(6 * 4));
  const gn = new GroupNorm(2, 4);
  assert.deepEqual(Array.from(gn.weight!.toFloat32Array()), [1, 1, 1, 1]);
  assert.deepEqual(Array.from(gn.bias!.toFloat32Array()), [0, 0, 0, 0]);
  const emb = new Embedding(100, 20, { rng: new Rng(3), paddingIdx: 0 });
  const e = emb.weight.toFloat32Array();
  assert.ok(e.subarray(0, 20).every((v) => v === 0));
  const rest = e.subarray(20);
  const mean = rest.reduce((s, v) => s + v, 0) / rest.length;
  const variance = rest.reduce((s, v) => s + (v - mean) ** 2, 0) / rest.length;
  assert.ok(Math.abs(mean) < 0.1 && Math.abs(variance - 1) < 0.15, `N(0,1): mean ${mean}, var ${variance}`);
});

test('forward shapes and values of each layer', () => {
  const rng = new Rng(0);
  const x = randn([2, 3, 8, 8], { rng });
  const shape = (t: Tensor) => [...t.shape];
  assert.deepEqual(shape(new Conv2d(3, 5, 3, { stride: 2, padding: 1 }).forward(x)), [2, 5, 4, 4]);
  assert.deepEqual(shape(new ConvTranspose2d(3, 4, 3, { stride: 2, padding: 1, outputPadding: 1 }).forward(x)), [2, 4, 16, 16]);
  assert.deepEqual(shape(new GroupNorm(3, 3).forward(x)), [2, 3, 8, 8]);
  assert.deepEqual(shape(new LayerNorm(8).forward(x)), [2, 3, 8, 8]);
  assert.deepEqual(shape(new Identity().forward(x)), [2, 3, 8, 8]);
  const tokens = randn([2, 5, 8], { rng });
  assert.deepEqual(shape(new MLP(8, 32, 4, { activation: 'quick_gelu' }).forward(tokens)), [2, 5, 4]);
  const ids = fromTypedArray(new Int32Array([1, 2, 3, 0, 4, 9]), [2, 3], 'i32');
  assert.deepEqual(shape(new Embedding(10, 6).forward(ids)), [2, 3, 6]);
  assert.deepEqual(shape(new Sequential(new Linear(8, 3), new Linear(3, 2)).forward(tokens)), [2, 5, 2]);

  const lin = new Linear(2, 3);
  lin.loadStateDict({ weight: tensor([[1, 0], [0, 1], [1, 1]]), bias: tensor([0.5, 0, -1]) });
  assert.deepEqual(lin.forward(tensor([[2, 3]])).toArray(), [[2.5, 3, 4]]);

  const ln = new LayerNorm(4).forward(tensor([[1, 2, 3, 4]])).toFloat32Array();
  assert.ok(Math.abs(ln.reduce((s, v) => s + v, 0)) < 1e-5);
  assert.ok(Math.abs(ln[3] - 3 / Math.sqrt(5 + 1e-5 * 4)) < 1e-4);
});

test('Attention: diffusers key names, self/cross attention, masks', () => {
  const rng = new Rng(11);
  const self = new Attention({ queryDim: 8, heads: 2, dimHead: 4, rng });
  assert.deepEqual([...self.stateDict().keys()].sort(),
    ['to_k.weight', 'to_out.0.bias', 'to_out.0.weight', 'to_q.weight', 'to_v.weight']);
  const withBias = new Attention({ queryDim: 8, heads: 2, dimHead: 4, bias: true, outBias: false, rng });
  assert.deepEqual([...withBias.stateDict().keys()].sort(),
    ['to_k.bias', 'to_k.weight', 'to_out.0.weight', 'to_q.bias', 'to_q.weight', 'to_v.bias', 'to_v.weight']);

  const x = randn([2, 5, 8], { rng });
  assert.deepEqual([...self.forward(x).shape], [2, 5, 8]);
  assert.deepEqual([...self.forward(randn([1, 8, 3, 4], { rng })).shape], [1, 8, 3, 4], 'feature-map input');

  const cross = new Attention({ queryDim: 8, crossAttentionDim: 6, heads: 2, dimHead: 4, rng });
  assert.deepEqual([...cross.to_k.weight.shape], [8, 6]);
  const ctx = randn([2, 7, 6], { rng });
  const out = cross.forward(x, { context: ctx });
  assert.deepEqual([...out.shape], [2, 5, 8]);

  // Key padding: changing masked-out context tokens must not change the output.
  const keep = fromTypedArray(new Uint8Array([1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]), [2, 7], 'bool');
  const ctxData = Float32Array.from(ctx.toFloat32Array());
  for (let j = 4; j < 7; j++) for (let c = 0; c < 6; c++) ctxData[j * 6 + c] += 10; // batch 0, masked keys 4..6
  const ctx2 = fromTypedArray(ctxData, [2, 7, 6], 'f32');
  const a = cross.forward(x, { context: ctx, mask: keep }).toFloat32Array();
  const b = cross.forward(x, { context: ctx2, mask: keep }).toFloat32Array();
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-5);
  const unmasked = cross.forward(x, { context: ctx2 }).toFloat32Array();
  assert.ok(unmasked.some((v, i) => Math.abs(v - a[i]) > 1e-3), 'without the mask the change is visible');

  // Causal: the first token only sees itself, so later tokens cannot change it.
  const xData = Float32Array.from(x.toFloat32Array());
  const c1 = self.forward(x, { causal: true }).toFloat32Array();
  for (let i = 8; i < 40; i++) xData[i] += 1; // batch 0, tokens 1..4
  const c2 = self.forward(fromTypedArray(xData, [2, 5, 8], 'f32'), { causal: true }).toFloat32Array();
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(c1[i] - c2[i]) < 1e-5);
});

test('train/eval switches Dropout throughout the tree', () => {
  const mlp = new MLP(4, 64, 4, { dropout: 0.5, rng: new Rng(9) });
  const drop = new Dropout(0.5, { rng: new Rng(10) });
  const x = randn([1, 1000], { rng: new Rng(1) });
  const y = drop.forward(x).toFloat32Array();
  const zeroed = y.filter((v) => v === 0).length;
  assert.ok(zeroed > 400 && zeroed < 600, `about half dropped, got ${zeroed}`);
  const kept = y.findIndex((v) => v !== 0);
  assert.ok(Math.abs(y[kept] - 2 * x.toFloat32Array()[kept]) < 1e-6, 'survivors scaled by 1/(1-p)');

  drop.eval();
  assert.equal(drop.training, false);
  assert.deepEqual(Array.from(drop.forward(x).toFloat32Array()), Array.from(x.toFloat32Array()));

  const inp = randn([3, 4], { rng: new Rng(2) });
  mlp.eval();
  assert.ok(mlp.modules().every((m) => !m.training));
  assert.deepEqual(Array.from(mlp.forward(inp).toFloat32Array()), Array.from(mlp.forward(inp).toFloat32Array()));
  mlp.train();
  assert.ok(mlp.drop.training);
  assert.notDeepEqual(Array.from(mlp.forward(inp).toFloat32Array()), Array.from(mlp.forward(inp).toFloat32Array()));
});

test('zeroGrad clears gradients; requiresGrad_ freezes without dropping parameters', () => {
  const model = new Linear(3, 2);
  model.forward(randn([4, 3])).sum().backward();
  assert.ok(model.weight.grad && model.bias!.grad);
  model.zeroGrad();
  assert.equal(model.weight.grad, null);
  model.requiresGrad_(false);
  assert.equal(model.parameters().length, 2);
  assert.equal(model.numParameters(true), 0);
});

test('withoutInit builds shape-only parameters that loadStateDict fills (and counts without allocating)', async () => {
  const nn = await import('../src/nn/index.js');
  const { tensor, zeros } = await import('../src/engine/index.js');
  const m = nn.withoutInit(() => new nn.Sequential(new nn.Linear(3, 2), new nn.Linear(2, 1)));
  assert.equal(m.numParameters(), 3 * 2 + 2 + 2 + 1);
  assert.ok(m.parameters().every((p) => nn.isPlaceholder(p)));
  const sd = new Map([
    ['0.weight', tensor([[1, 0, 0], [0, 1, 0]])], ['0.bias', zeros([2])],
    ['1.weight', tensor([[1, 1]]).half()], ['1.bias', tensor([0.5])],
  ]);
  assert.throws(() => m.loadStateDict(new Map([...sd].slice(0, 3)), { strict: false }), /built without values .*1\.bias/);
  m.loadStateDict(sd, { keepDtype: true });
  assert.ok(!m.parameters().some((p) => nn.isPlaceholder(p)));
  assert.deepEqual((m.forward(tensor([[2, 3, 4]])) as any).toArray(), [[5.5]]);
  assert.equal(m.stateDict().get('1.weight')!.dtype, 'f16');
  assert.equal(m.stateDict().get('0.weight')!.requiresGrad, true);
});
