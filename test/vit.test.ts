/**
 * ViT: golden parity with transformers' ViTForImageClassification (test/fixtures/golden/vit), patch and
 * position embeddings, attention probabilities and rollout, loading errors, save/load, augmentation, and a
 * few training steps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng, type Tensor, fromTypedArray, layerNorm, noGrad, randn, tensor } from '../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { AdamW, EMA } from '../src/optim/index.js';
import {
  ViTForImageClassification, attentionRollout, interpolatePositionEmbeddings, resampleMatrix, sincosPositionTable,
  vitConfigFromJson, type ViTConfig,
} from '../src/models/vit.js';
import { augmentBatch, vitStep, weightDecayGroups, withEmaWeights } from '../src/train/vit.js';
import type { Batch } from '../src/data/loader.js';
import { relErr } from './helpers/relerr.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const GOLDEN = path.resolve(here, '..', '..', 'test', 'fixtures', 'golden', 'vit');
const MODEL_DIR = path.join(GOLDEN, 'model');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-vit-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

const TOL = 1e-4;
const rel = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.shape, b.shape);
  return relErr(a.contiguous().toFloat32Array(), b.contiguous().toFloat32Array());
};

/** A small 28×28 greyscale ViT for the tests that do not need the golden weights. */
function small(cfg: Partial<ViTConfig> = {}, seed = 0): ViTForImageClassification {
  return new ViTForImageClassification({
    imageSize: 28, patchSize: 7, numChannels: 1, hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
    intermediateSize: 48, labels: ['a', 'b', 'c'], layerNormEps: 1e-6, ...cfg,
  }, { rng: new Rng(seed) });
}

// ------------------------------------------------------------------ golden parity

test('golden: logits, hidden states and every layer\'s attention probabilities match transformers', (t) => {
  const golden = readSafetensors(path.join(GOLDEN, 'tensors.safetensors')).tensors;
  const model = ViTForImageClassification.fromPretrained(MODEL_DIR);
  assert.equal(model.config.numHiddenLayers, 2);
  noGrad(() => {
    const out = model.forward(golden.get('pixel_values')!, { outputAttentions: true });
    const L = model.config.numHiddenLayers;
    // The case's `last_hidden_state` is the encoder output before `vit.layernorm` (transformers' hidden_states[-1]);
    // ours after the final norm is layerNorm of it, which the logits (taken after the norm) check as well.
    const preNorm = golden.get('last_hidden_state')!;
    const errors: Record<string, number> = {
      logits: rel(out.logits, golden.get('logits')!),
      last_hidden_state: rel(out.hiddenStates[L], preNorm),
      final_norm: rel(out.lastHiddenState, layerNorm(preNorm, [32], model.vit.layernorm.weight, model.vit.layernorm.bias, 1e-12)),
    };
    for (let l = 0; l < L; l++) errors[`attention_${l}`] = rel(out.attentions![l], golden.get(`attention_${l}`)!);
    t.diagnostic(`relative errors ${JSON.stringify(errors)}`);
    for (const [name, e] of Object.entries(errors)) assert.ok(e <= TOL, `${name}: rel err ${e}`);

    // The fused-attention path (no probabilities) computes the same function.
    const fused = model.forward(golden.get('pixel_values')!);
    assert.equal(fused.attentions, null);
    assert.ok(rel(fused.logits, golden.get('logits')!) <= TOL);
  });
});

// ------------------------------------------------------------------ embeddings

test('patch embedding: [B, C, H, W] → [B, gh·gw, D], CLS first; each stride-2 stem layer halves the image', () => {
  // [patch, stem channels, grid side]: 28 / 7 = 4, 28 / 4 = 7; stems: 28 → 14 → 7 (→ 4, rounding up).
  const cases: [number, number[], number][] = [[7, [], 4], [4, [], 7], [1, [8, 16], 7], [1, [8, 16, 16], 4], [2, [8], 7]];
  for (const [patch, stem, side] of cases) {
    const m = small({ patchSize: patch, convStem: stem });
    const x = randn([2, 1, 28, 28], { rng: new Rng(1) });
    noGrad(() => {
      const n = side * side;
      const pe = m.vit.embeddings.patch_embeddings.forward(x);
      assert.deepEqual(pe.tokens.shape, [2, n, 32]);
      assert.deepEqual(pe.grid, [side, side]);
      const o = m.forward(x);
      assert.deepEqual(o.hiddenStates[0].shape, [2, n + 1, 32]);
      assert.deepEqual(o.lastHiddenState.shape, [2, n + 1, 32]);
      assert.deepEqual(o.logits.shape, [2, 3]);
      assert.deepEqual(o.grid, [side, side]);
    });
  }
  assert.throws(() => small({ patchSize: 2, convStem: [8, 8] }), /image size 28 \(7 after the conv stem\) is not a multiple of the patch size 2/);
  const m = small();
  assert.equal(m.stateDict().get('vit.embeddings.patch_embeddings.projection.weight')!.shape.join(), '32,1,7,7');
  assert.throws(() => m.forward(randn([1, 1, 30, 28])), /not a multiple of the patch size 7/);
  assert.throws(() => m.forward(randn([1, 3, 28, 28])), /1-channel images, got 3/);
});

test('conv stem strides: stride-1 layers keep the size; saved in config.json only when not all 2; bad strides refused', () => {
  // 28 → 28 (stride 1) → 14 → 7 → 4; and a stride-1 layer in the middle: 28 → 14 → 14 → 7.
  const cases: [number[], number[], number][] = [[[8, 8, 16, 16], [1], 4], [[8, 16, 16], [2, 1, 2], 7], [[8, 16], [], 7]];
  for (const [stem, strides, side] of cases) {
    const m = small({ patchSize: 1, convStem: stem, convStemStrides: strides });
    const layers = m.vit.embeddings.patch_embeddings.stem;
    assert.deepEqual(layers.map((l) => l.conv.stride[0]), stem.map((_, i) => strides[i] ?? 2));
    const o = noGrad(() => m.forward(randn([2, 1, 28, 28], { rng: new Rng(2) })));
    assert.deepEqual(o.grid, [side, side]);
    assert.deepEqual(o.logits.shape, [2, 3]);
  }
  const dir = path.join(tmpDir, 'strides');
  const m = small({ patchSize: 1, convStem: [8, 8, 16, 16], convStemStrides: [1] });
  m.savePretrained(dir, { dtype: 'f32' });
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.deepEqual(json.vss_conv_stem_strides, [1, 2, 2, 2]);
  const back = ViTForImageClassification.fromPretrained(dir);
  assert.deepEqual(back.config.convStemStrides, [1, 2, 2, 2]);
  const x = randn([1, 1, 28, 28], { rng: new Rng(3) });
  m.eval(); back.eval();
  assert.ok(noGrad(() => rel(back.forward(x).logits, m.forward(x).logits)) < 1e-6); // f32 save: the same logits
  small({ patchSize: 1, convStem: [8, 16], convStemStrides: [2, 2] }).savePretrained(path.join(dir, 'default'));
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'default', 'config.json'), 'utf8')).vss_conv_stem_strides, undefined);
  assert.throws(() => small({ patchSize: 1, convStem: [8], convStemStrides: [3] }), /conv stem strides must be 1 or 2/);
  assert.throws(() => small({ patchSize: 1, convStem: [8], convStemStrides: [1, 2] }), /one per stem layer \(1\)/);
});

test('position embeddings: same size is the identity; 28 → 56 keeps CLS and resamples the 4×4 grid to 8×8', () => {
  const m = small();
  const pos = m.vit.embeddings.position_embeddings!; // [1, 17, 32]
  assert.equal(interpolatePositionEmbeddings(pos, 4, 4, 4, 4), pos);
  for (const mode of ['bicubic', 'bilinear'] as const) {
    const up = noGrad(() => interpolatePositionEmbeddings(pos, 4, 4, 8, 8, mode));
    assert.deepEqual(up.shape, [1, 65, 32]);
    assert.deepEqual(up.narrow(1, 0, 1).toArray(), pos.narrow(1, 0, 1).toArray()); // CLS untouched
    // Resampling weights of each output sum to 1: a constant grid stays constant.
    const r = resampleMatrix(4, 8, mode);
    for (let o = 0; o < 8; o++) assert.ok(Math.abs(r.subarray(o * 4, o * 4 + 4).reduce((a, b) => a + b, 0) - 1) < 1e-6);
    // Same size → identity matrix.
    assert.deepEqual([...resampleMatrix(5, 5, mode)], Array.from({ length: 25 }, (_, i) => (i % 6 === 0 ? 1 : 0)));
  }
  // torch.nn.functional.interpolate([0, 1] → 4, bicubic, align_corners=False), Keys a = −0.75, taps clamped:
  // output 0 samples at −0.25 (t = 0.75): only the tap on 1 has weight far(1.25) = −0.10546875; output 1 at 0.25:
  // near(0.75) + far(1.75) = 0.26171875 − 0.03515625.
  const r = resampleMatrix(2, 4, 'bicubic');
  const values = [0, 1, 2, 3].map((o) => r[o * 2 + 1]);
  for (const [got, want] of values.map((v, i) => [v, [-0.10546875, 0.2265625, 0.7734375, 1.10546875][i]])) assert.ok(Math.abs(got - want) < 1e-6, `${values}`);

  // A 56×56 image runs through the model with 64 patches; the sine-cosine variant does too.
  for (const positionEmbedding of ['learned', 'sincos'] as const) {
    const mm = small({ positionEmbedding });
    const o = noGrad(() => mm.forward(randn([1, 1, 56, 56], { rng: new Rng(2) }), { outputAttentions: true }));
    assert.deepEqual(o.lastHiddenState.shape, [1, 65, 32]);
    assert.deepEqual(o.attentions![0].shape, [1, 4, 65, 65]);
  }
  // 2-D sine-cosine table: row and column halves, position (0, 0) is [0…, 1…, 0…, 1…].
  const table = sincosPositionTable(4, 4, 8);
  assert.deepEqual([...table.subarray(0, 8)], [0, 0, 1, 1, 0, 0, 1, 1]);
  assert.ok(Math.abs(table[(1 * 4 + 0) * 8] - Math.sin(1)) < 1e-6 && Math.abs(table[(0 * 4 + 1) * 8 + 4] - Math.sin(1)) < 1e-6);
  assert.equal(small({ positionEmbedding: 'sincos' }).stateDict().has('vit.embeddings.position_embeddings'), false);
});

// ------------------------------------------------------------------ attention

test('attention probabilities are [B, heads, T, T], non-negative, rows sum to 1; rollout rows too', () => {
  const m = small({ patchSize: 4 });
  const o = noGrad(() => m.forward(randn([2, 1, 28, 28], { rng: new Rng(3) }), { outputAttentions: true }));
  assert.equal(o.attentions!.length, 2);
  for (const a of o.attentions!) {
    assert.deepEqual(a.shape, [2, 4, 50, 50]);
    const p = a.toFloat32Array();
    for (let row = 0; row < p.length / 50; row++) {
      let s = 0;
      for (let j = 0; j < 50; j++) { assert.ok(p[row * 50 + j] >= 0); s += p[row * 50 + j]; }
      assert.ok(Math.abs(s - 1) < 1e-5, `row ${row} sums to ${s}`);
    }
  }
  const roll = attentionRollout(o.attentions!);
  assert.deepEqual(roll.shape, [2, 50, 50]);
  const rp = roll.toFloat32Array();
  for (let row = 0; row < 100; row++) assert.ok(Math.abs(rp.subarray(row * 50, row * 50 + 50).reduce((a, b) => a + b, 0) - 1) < 1e-4);
  // Uniform attention: (A + I)/2 per layer; with one layer the CLS row is 1/2 on itself + 1/(2T) everywhere.
  const T = 3;
  const uniform = fromTypedArray(new Float32Array(T * T).fill(1 / T), [1, 1, T, T]);
  const one = attentionRollout([uniform]).toFloat32Array();
  assert.ok(Math.abs(one[0] - (0.5 + 0.5 / T)) < 1e-6 && Math.abs(one[1] - 0.5 / T) < 1e-6);
});

// ------------------------------------------------------------------ loading

test('loading: wrong shapes, missing and unexpected keys and bad configs fail with clear messages', () => {
  const weights = readSafetensors(path.join(MODEL_DIR, 'model.safetensors')).tensors;
  const config = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'config.json'), 'utf8'));
  let n = 0;
  const folder = (cfg: object, tensors: Map<string, Tensor>) => {
    const dir = path.join(tmpDir, `m${n++}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    return dir;
  };
  const wrong = new Map(weights);
  wrong.set('vit.encoder.layer.1.intermediate.dense.weight', randn([36, 32]));
  assert.throws(() => ViTForImageClassification.fromPretrained(folder(config, wrong)),
    /key "vit\.encoder\.layer\.1\.intermediate\.dense\.weight" has shape \[36, 32\], the config expects \[37, 32\]/);

  const missing = new Map(weights);
  missing.delete('vit.embeddings.cls_token');
  missing.set('vit.pooler.dense.weight', randn([32, 32]));
  assert.throws(() => ViTForImageClassification.fromPretrained(folder(config, missing)),
    (err: Error) => /missing key "vit\.embeddings\.cls_token" \(expected shape \[1, 1, 32\]\)/.test(err.message) && /vit\.pooler\.dense\.weight.*not a weight of this model/.test(err.message));

  // 224-pixel position table for a config that says 32 pixels.
  assert.throws(() => ViTForImageClassification.fromPretrained(folder({ ...config, image_size: 64 }, weights)),
    /position_embeddings" has shape \[1, 65, 32\], the config expects \[1, 257, 32\]/);
  assert.throws(() => vitConfigFromJson({ ...config, num_attention_heads: 5 }), /not divisible by 5 heads/);
  assert.throws(() => vitConfigFromJson({ ...config, model_type: 'deit' }), /"model_type" is "deit", expected "vit"/);
  assert.throws(() => ViTForImageClassification.fromPretrained(path.join(tmpDir, 'nothing')), /not a folder/);
});

test('savePretrained (f16) → fromPretrained round trip: same keys, logits within f16 rounding; extensions survive', () => {
  const m = small({ convStem: [8], patchSize: 7, imageSize: 28, positionEmbedding: 'sincos', pooling: 'mean', dropPathRate: 0.1 }).eval();
  const dir = path.join(tmpDir, 'saved');
  m.savePretrained(dir, { dtype: 'f16' });
  const file = readSafetensors(path.join(dir, 'model.safetensors')).tensors;
  assert.ok([...file.values()].every((t) => t.dtype === 'f16'));
  assert.deepEqual([...file.keys()].sort(), [...m.stateDict().keys()].sort());
  const back = ViTForImageClassification.fromPretrained(dir);
  assert.deepEqual(back.config, m.config);
  const x = randn([2, 1, 28, 28], { rng: new Rng(4) });
  noGrad(() => assert.ok(rel(back.forward(x).logits, m.forward(x).logits) < 5e-3));
});

// ------------------------------------------------------------------ training

test('augmentation is seeded and keeps shapes; flips mirror, erasing blanks a rectangle', () => {
  const x = randn([4, 1, 28, 28], { rng: new Rng(5) });
  const a = augmentBatch(x, new Rng(9)), b = augmentBatch(x, new Rng(9)), c = augmentBatch(x, new Rng(10));
  assert.deepEqual(a.shape, [4, 1, 28, 28]);
  assert.deepEqual(a.toArray(), b.toArray());
  assert.notDeepEqual(a.toArray(), c.toArray());
  const only = (o: object) => ({ cropPadding: 0, cropProb: 1, flip: false, erasing: 0, background: -1, ...o });
  assert.deepEqual(augmentBatch(x, new Rng(1), only({})).toArray(), x.toArray());
  // Flip: each image is either itself or its mirror image.
  const f = augmentBatch(x, new Rng(1), only({ flip: true })).toFloat32Array(), src = x.toFloat32Array();
  for (let i = 0; i < 4; i++) {
    const img = f.subarray(i * 784, (i + 1) * 784), orig = src.subarray(i * 784, (i + 1) * 784);
    const same = img.every((v, k) => v === orig[k]);
    const mirrored = img.every((v, k) => v === orig[Math.floor(k / 28) * 28 + 27 - (k % 28)]);
    assert.ok(same || mirrored);
  }
  const e = augmentBatch(x, new Rng(1), only({ erasing: 1 })).toFloat32Array();
  const zeros = e.filter((v) => v === 0).length;
  assert.ok(zeros >= 4 * Math.floor(0.02 * 784 * 0.5), `${zeros} erased pixels`);
});

test('a few training steps (AdamW, label smoothing, augmentation, stochastic depth) lower the loss', () => {
  const rng = new Rng(7);
  const m = small({ dropPathRate: 0.1, hiddenDropoutProb: 0.05 }, 7);
  // Three classes any patch tells apart: horizontal stripes, vertical stripes, blank (with noise).
  const B = 24;
  const noise = randn([B * 784], { rng: new Rng(12) }).toFloat32Array();
  const data = new Float32Array(B * 784);
  const labels: number[] = [];
  for (let b = 0; b < B; b++) {
    const c = b % 3;
    labels.push(c);
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
      const on = c === 0 ? y % 4 < 2 : c === 1 ? x % 4 < 2 : false;
      data[b * 784 + y * 28 + x] = (on ? 1 : -1) + 0.3 * noise[b * 784 + y * 28 + x];
    }
  }
  const batch = { images: fromTypedArray(data, [B, 1, 28, 28]), labels: tensor(labels).to('i32') } as Batch;
  const opt = new AdamW(weightDecayGroups(m, 0.05), { lr: 2e-3 });
  const ema = new EMA(m, { decay: 0.9, warmup: true });
  const augment = { cropPadding: 2, cropProb: 0.5, flip: false, erasing: 0.25, background: -1 };
  const losses: number[] = [];
  m.train();
  for (let i = 0; i < 30; i++) {
    const { loss } = vitStep(m, batch, rng, { labelSmoothing: 0.1, augment });
    losses.push(loss.item());
    opt.zeroGrad();
    loss.backward();
    opt.step();
    ema.update();
  }
  const first = losses.slice(0, 3).reduce((a, b) => a + b) / 3, last = losses.slice(-3).reduce((a, b) => a + b) / 3;
  assert.ok(last < first * 0.7, `loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
  // Weight decay only on matrices and kernels.
  const [decay, noDecay] = weightDecayGroups(m, 0.05);
  assert.ok(decay.params.every((p) => p.ndim >= 2) && noDecay.params.some((p) => p.shape.join() === '1,1,32'));
  // EMA weights are swapped in and back out.
  const before = m.classifier.weight.toFloat32Array().slice();
  const inside = withEmaWeights(m, ema, () => m.classifier.weight.toFloat32Array().slice());
  return inside.then((w) => {
    assert.notDeepEqual([...w], [...before]);
    assert.deepEqual([...m.classifier.weight.toFloat32Array()], [...before]);
  });
});

test('stochastic depth and dropout draw from the model\'s generator: same seed, same training forward; eval is deterministic', () => {
  const x = randn([3, 1, 28, 28], { rng: new Rng(8) });
  const run = () => {
    const m = small({ dropPathRate: 0.5 }, 11).train();
    return noGrad(() => [m.forward(x).logits.toArray(), m.forward(x).logits.toArray(), m.eval().forward(x).logits.toArray(), m.forward(x).logits.toArray()]);
  };
  const [a1, a2, e1, e2] = run();
  const [b1] = run();
  assert.deepEqual(a1, b1);
  assert.notDeepEqual(a1, a2);
  assert.deepEqual(e1, e2);
});
