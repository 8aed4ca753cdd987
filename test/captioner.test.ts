/**
 * Captioner (ViT encoder + GPT-2 decoder with cross-attention): golden parity with transformers'
 * VisionEncoderDecoderModel (test/fixtures/golden/captioner: teacher-forced logits, greedy and 3-beam ids),
 * decoding invariants (beam width 1 = greedy, KV cache = no cache, causal mask), cross-attention maps,
 * save/load, loading errors, config errors, the loss and a few training steps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng, type Tensor, crossEntropy, fromTypedArray, noGrad, randn } from '../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { AdamW } from '../src/optim/index.js';
import {
  VisionEncoderDecoderModel, captionerConfig, captionerConfigFromJson, captionerConfigToJson, shiftTokensRight, type CaptionerConfig,
} from '../src/models/captioner.js';
import { GPT2LMHeadModel, gpt2ConfigFromJson } from '../src/models/gpt2.js';
import { generateCaptions, sampleToken } from '../src/models/generation.js';
import { relErr } from './helpers/relerr.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const GOLDEN = path.resolve(here, '..', '..', 'test', 'fixtures', 'golden', 'captioner');
const MODEL_DIR = path.join(GOLDEN, 'model');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-captioner-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

interface Case {
  max_new_tokens: number; num_beams: number; length_penalty: number; early_stopping: boolean;
  decoder_start_token_id: number; eos_token_id: number; pad_token_id: number; greedy: number[][]; beam: number[][];
}
const CASE = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'case.json'), 'utf8')) as Case;
const golden = readSafetensors(path.join(GOLDEN, 'tensors.safetensors')).tensors;
const pixels = golden.get('pixel_values')!;
const idsOf = (t: Tensor): number[][] => (t.toArray() as (number | bigint)[][]).map((r) => r.map(Number));

let cached: VisionEncoderDecoderModel | null = null;
const goldenModel = () => (cached ??= VisionEncoderDecoderModel.fromPretrained(MODEL_DIR));

const rel = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.shape, b.shape);
  return relErr(a.contiguous().toFloat32Array(), b.contiguous().toFloat32Array());
};

/** A small random captioner (encoder 24 wide, decoder 32: exercises enc_to_dec_proj). */
function small(seed = 0, over: Partial<CaptionerConfig['decoder']> = {}): VisionEncoderDecoderModel {
  const cfg = captionerConfig({
    encoder: { imageSize: 16, patchSize: 4, numChannels: 3, hiddenSize: 24, numHiddenLayers: 1, numAttentionHeads: 2, intermediateSize: 48 },
    decoder: { vocabSize: 40, nPositions: 24, nEmbd: 32, nLayer: 2, nHead: 4, bosTokenId: 1, eosTokenId: 2, padTokenId: 0, ...over },
    decoderStartTokenId: 1, eosTokenId: 2, padTokenId: 0,
  });
  return new VisionEncoderDecoderModel(cfg, { rng: new Rng(seed) }).eval();
}

// ------------------------------------------------------------------ golden parity

test('golden: config and weights load with transformers\' keys (tied lm_head, pooler kept, no projection)', () => {
  const m = goldenModel();
  assert.equal(m.config.decoderStartTokenId, CASE.decoder_start_token_id);
  assert.equal(m.config.eosTokenId, CASE.eos_token_id);
  assert.equal(m.config.padTokenId, CASE.pad_token_id);
  assert.equal(m.config.decoder.activationFunction, 'gelu_new');
  assert.equal(m.enc_to_dec_proj, null);
  assert.equal(m.decoder.lm_head, null);
  const fileKeys = [...readSafetensors(path.join(MODEL_DIR, 'model.safetensors')).tensors.keys()].sort();
  assert.deepEqual([...m.stateDict().keys()].sort(), fileKeys);
  assert.deepEqual(m.stateDict().get('decoder.transformer.h.0.attn.c_attn.weight')!.shape, [32, 96]); // Conv1D [in, out]
});

test('golden: teacher-forced logits match transformers (≤ 1e-4 relative), fused and explicit attention', (t) => {
  const m = goldenModel();
  const ref = golden.get('teacher_forced_logits')!; // [3, 6, 100]
  // The case fed the first 6 greedy ids (start token + 5 generated): their argmax is the next greedy token.
  const inputs = CASE.greedy.map((r) => r.slice(0, ref.shape[1]));
  noGrad(() => {
    const fused = m.forward(pixels, inputs);
    const explicit = m.forward(pixels, inputs, { outputCrossAttentions: true });
    const errors = { fused: rel(fused.logits, ref), explicit: rel(explicit.logits, ref) };
    t.diagnostic(`relative errors ${JSON.stringify(errors)}`);
    for (const [k, e] of Object.entries(errors)) assert.ok(e <= 1e-4, `${k}: rel err ${e}`);
    assert.equal(explicit.crossAttentions!.length, 2);
    const p = explicit.crossAttentions![0];
    assert.deepEqual(p.shape, [3, 4, 6, 17]); // [B, heads, T, CLS + 4×4 patches]
    const d = p.contiguous().toFloat32Array();
    for (let r = 0; r < d.length / 17; r++) {
      let s = 0;
      for (let j = 0; j < 17; j++) s += d[r * 17 + j];
      assert.ok(Math.abs(s - 1) < 1e-5);
    }
  });
});

test('golden: greedy and 3-beam ids equal transformers\' generate, with and without the KV cache', () => {
  const m = goldenModel();
  for (const useCache of [true, false]) {
    const g = generateCaptions(m, pixels, { maxNewTokens: CASE.max_new_tokens, useCache });
    assert.deepEqual(g.ids, CASE.greedy, `greedy, useCache ${useCache}`);
    assert.deepEqual(g.ids, idsOf(golden.get('greedy_ids')!));
    const b = generateCaptions(m, pixels, {
      method: 'beam', numBeams: CASE.num_beams, lengthPenalty: CASE.length_penalty, earlyStopping: CASE.early_stopping,
      maxNewTokens: CASE.max_new_tokens, useCache,
    });
    assert.deepEqual(b.ids, CASE.beam, `beam, useCache ${useCache}`);
    assert.deepEqual(b.ids, idsOf(golden.get('beam3_ids')!));
    assert.equal(b.scores.length, 3);
    // A finished beam's score is its summed log-prob / generated length: below 0, and at least the greedy one's.
    b.scores.forEach((s, i) => assert.ok(s < 0 && s * CASE.max_new_tokens >= g.scores[i] - 1e-4, `${s} vs ${g.scores[i]}`));
  }
});

// ------------------------------------------------------------------ decoding invariants

test('beam search with width 1 equals greedy (also when eos is produced early)', () => {
  const m = goldenModel();
  // eos 51 and 66 are tokens the model actually emits, so rows finish at different steps and get padded.
  for (const eosTokenId of [CASE.eos_token_id, 51, 66, 74]) {
    const g = generateCaptions(m, pixels, { maxNewTokens: 12, eosTokenId });
    const b = generateCaptions(m, pixels, { method: 'beam', numBeams: 1, maxNewTokens: 12, eosTokenId });
    assert.deepEqual(b.ids, g.ids, `eos ${eosTokenId}`);
    if (eosTokenId !== CASE.eos_token_id) {
      assert.ok(g.ids.some((r) => r.includes(eosTokenId)), 'eos appears');
      // After eos: only padding.
      for (const r of g.ids) {
        const at = r.indexOf(eosTokenId, 1);
        if (at > 0) assert.ok(r.slice(at + 1).every((t) => t === CASE.pad_token_id));
      }
    }
  }
});

test('KV cache: cached decoding equals uncached (ids exactly, every step\'s logits ≤ 1e-5)', () => {
  for (const m of [goldenModel(), small(3)]) {
    const px = m === cached ? pixels : randn([2, 3, 16, 16], { rng: new Rng(5) });
    const settings = [
      { maxNewTokens: 12 },
      { method: 'beam' as const, numBeams: 3, maxNewTokens: 10 },
      { method: 'sample' as const, maxNewTokens: 12, topK: 20, topP: 0.9, temperature: 1.3 },
    ];
    for (const s of settings) {
      const a = generateCaptions(m, px, { ...s, useCache: true, outputLogits: true, rng: new Rng(11) });
      const b = generateCaptions(m, px, { ...s, useCache: false, outputLogits: true, rng: new Rng(11) });
      assert.deepEqual(a.ids, b.ids, JSON.stringify(s));
      assert.equal(a.logits!.length, b.logits!.length);
      a.logits!.forEach((l, i) => assert.ok(rel(l, b.logits![i]) <= 1e-5, `${JSON.stringify(s)} step ${i}: ${rel(l, b.logits![i])}`));
    }
  }
  // At the decoder level: feeding tokens one by one through the cache reproduces the full forward.
  const m = goldenModel();
  const ids = CASE.greedy;
  noGrad(() => {
    const enc = m.encode(pixels);
    const full = m.decoder.forward(ids, { encoderHiddenStates: enc }).logits; // [3, 13, 100]
    const cache = m.decoder.newCache();
    const first = m.decoder.forward(ids.map((r) => r.slice(0, 4)), { encoderHiddenStates: enc, cache }).logits; // a 4-token prefill
    assert.ok(rel(first, full.narrow(1, 0, 4)) <= 1e-5);
    const chunk = m.decoder.forward(ids.map((r) => r.slice(4, 7)), { cache }).logits; // 3 tokens after 4 cached: offset causal mask
    assert.ok(rel(chunk, full.narrow(1, 4, 3)) <= 1e-5);
    for (let t = 7; t < 13; t++) {
      const step = m.decoder.forward(ids.map((r) => [r[t]]), { cache }).logits;
      assert.ok(rel(step, full.narrow(1, t, 1)) <= 1e-5, `position ${t}`);
    }
    assert.equal(cache.length, 13);
    assert.throws(() => m.decoder.forward(ids.map(() => new Array(20).fill(3)), { cache }), /33 tokens exceed n_positions = 32/);
  });
});

test('causal mask: changing a later token leaves every earlier position\'s logits unchanged', () => {
  for (const m of [goldenModel(), small(1)]) {
    const px = m === cached ? pixels : randn([3, 3, 16, 16], { rng: new Rng(2) });
    const a = CASE.greedy.map((r) => r.slice(0, 8).map((t) => t % m.config.decoder.vocabSize));
    const b = a.map((r) => r.map((t, i) => (i === 5 ? (t + 7) % m.config.decoder.vocabSize : t)));
    noGrad(() => {
      const la = m.forward(px, a).logits, lb = m.forward(px, b).logits;
      assert.ok(rel(la.narrow(1, 0, 5), lb.narrow(1, 0, 5)) <= 1e-6, 'positions before the change');
      assert.ok(rel(la.narrow(1, 5, 3), lb.narrow(1, 5, 3)) > 1e-3, 'positions from the change on differ');
    });
  }
});

test('cross-attention maps: one [gh, gw] map per generated token, equal to the teacher-forced attention', () => {
  const m = goldenModel();
  const g = generateCaptions(m, pixels, { maxNewTokens: 6, outputCrossAttentions: true });
  const perLayer = generateCaptions(m, pixels, { maxNewTokens: 6, outputCrossAttentions: true, crossAttentionLayers: 'layers' });
  const beam = generateCaptions(m, pixels, { numBeams: 3, maxNewTokens: 6, outputCrossAttentions: true });
  assert.equal(g.crossAttentions!.length, 3);
  const { crossAttentions } = noGrad(() => m.forward(pixels, g.ids, { outputCrossAttentions: true }));
  for (let b = 0; b < 3; b++) {
    assert.equal(g.crossAttentions![b].length, 6);
    assert.equal(beam.crossAttentions![b].length, beam.ids[b].length - 1);
    for (let k = 0; k < 6; k++) {
      const map = g.crossAttentions![b][k];
      assert.deepEqual(map.shape, [4, 4]);
      assert.deepEqual(perLayer.crossAttentions![b][k].shape, [2, 4, 4]);
      // Token k + 1 was predicted at position k: mean over heads and layers of that row, CLS dropped.
      const want = new Float32Array(16);
      for (const p of crossAttentions!) {
        const sel = p.narrow(0, b, 1).narrow(2, k, 1).mean(1).contiguous().toFloat32Array(); // [17]
        for (let i = 0; i < 16; i++) want[i] += sel[1 + i] / crossAttentions!.length;
      }
      assert.ok(relErr(map.toFloat32Array(), want) <= 1e-5);
      const total = map.toFloat32Array().reduce((x, y) => x + y, 0);
      assert.ok(total > 0 && total <= 1 + 1e-6);
    }
  }
});

test('sampling: seeded and reproducible; top-k 1 is greedy; top-p keeps the smallest nucleus', () => {
  const m = goldenModel();
  const s1 = generateCaptions(m, pixels, { method: 'sample', maxNewTokens: 8, rng: new Rng(4), temperature: 2 });
  const s2 = generateCaptions(m, pixels, { method: 'sample', maxNewTokens: 8, rng: new Rng(4), temperature: 2 });
  assert.deepEqual(s1.ids, s2.ids);
  const k1 = generateCaptions(m, pixels, { method: 'sample', maxNewTokens: 8, topK: 1, rng: new Rng(9) });
  assert.deepEqual(k1.ids, CASE.greedy.map((r) => r.slice(0, 9)));
  // probs ∝ exp(logits) = [0.5, 0.3, 0.15, 0.05]: top-p 0.75 keeps {0, 1} (dropped mass 0.2 ≤ 0.25).
  const logits = Float32Array.from([0.5, 0.3, 0.15, 0.05].map(Math.log));
  const drawn = new Set<number>();
  for (let i = 0; i < 200; i++) drawn.add(sampleToken(logits, 1, 0, 0.75, (i + 0.5) / 200));
  assert.deepEqual([...drawn].sort(), [0, 1]);
  assert.equal(sampleToken(logits, 1, 0, 0.75, 0.99), 1); // 0.5 / 0.8 of the mass on token 0
  assert.equal(sampleToken(logits, 1, 2, 1, 0.7), 1);
  assert.throws(() => generateCaptions(m, pixels, { method: 'sample', numBeams: 2 }), /beam sampling is not implemented/);
  assert.throws(() => generateCaptions(m, pixels, { maxNewTokens: 40 }), /exceeds the decoder's n_positions \(32\)/);
});

// ------------------------------------------------------------------ save / load and errors

test('save / load round trip: f32 exact, f16 close; config.json and generation_config.json', () => {
  const m = goldenModel();
  const dir = path.join(tmpDir, 'f32');
  m.savePretrained(dir);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', 'generation_config.json', 'model.safetensors']);
  const back = VisionEncoderDecoderModel.fromPretrained(dir);
  assert.deepEqual(back.config, m.config);
  const ids = CASE.greedy.map((r) => r.slice(0, 6));
  noGrad(() => {
    assert.equal(rel(back.forward(pixels, ids).logits, m.forward(pixels, ids).logits), 0);
    m.savePretrained(path.join(tmpDir, 'f16'), { dtype: 'f16' });
    const half = VisionEncoderDecoderModel.fromPretrained(path.join(tmpDir, 'f16'));
    assert.ok(rel(half.forward(pixels, ids).logits, m.forward(pixels, ids).logits) < 1e-2);
  });
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(json.model_type, 'vision-encoder-decoder');
  assert.equal(json.decoder.add_cross_attention, true);
  assert.deepEqual(captionerConfigFromJson(captionerConfigToJson(m.config)), m.config);
  const gen = JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8'));
  assert.equal(gen.decoder_start_token_id, 1);

  // A model built from scratch (with enc_to_dec_proj and an untied lm_head) round-trips too.
  const s = small(7, { tieWordEmbeddings: false });
  assert.ok(s.enc_to_dec_proj && s.decoder.lm_head);
  s.savePretrained(path.join(tmpDir, 'small'));
  const s2 = VisionEncoderDecoderModel.fromPretrained(path.join(tmpDir, 'small'));
  assert.ok(s2.stateDict().has('enc_to_dec_proj.weight') && s2.stateDict().has('decoder.lm_head.weight'));
  const px = randn([1, 3, 16, 16], { rng: new Rng(1) });
  noGrad(() => assert.equal(rel(s2.forward(px, [[1, 5, 6]]).logits, s.eval().forward(px, [[1, 5, 6]]).logits), 0));
});

/** A copy of the golden model folder whose weights file is replaced by `write(dir)`. */
function brokenCopy(name: string, write: (file: string) => void): string {
  const dir = path.join(tmpDir, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(MODEL_DIR, 'config.json'), path.join(dir, 'config.json'));
  write(path.join(dir, 'model.safetensors'));
  return dir;
}

test('loading errors name the file and the key: truncated file, wrong shape, missing and unexpected keys', () => {
  const src = path.join(MODEL_DIR, 'model.safetensors');
  const truncated = brokenCopy('truncated', (f) => {
    const bytes = fs.readFileSync(src);
    fs.writeFileSync(f, bytes.subarray(0, bytes.length - 1000));
  });
  assert.throws(() => VisionEncoderDecoderModel.fromPretrained(truncated), /model\.safetensors is truncated/);

  const weights = readSafetensors(src).tensors;
  const wrongShape = brokenCopy('shape', (f) => {
    const sd = new Map(weights);
    sd.set('decoder.transformer.wpe.weight', weights.get('decoder.transformer.wpe.weight')!.narrow(0, 0, 16).contiguous());
    writeSafetensors(f, sd);
  });
  assert.throws(() => VisionEncoderDecoderModel.fromPretrained(wrongShape),
    /model\.safetensors: key "decoder\.transformer\.wpe\.weight" has shape \[16, 32\], the config expects \[32, 32\]/);

  const missing = brokenCopy('missing', (f) => {
    const sd = new Map(weights);
    sd.delete('decoder.transformer.h.1.crossattention.q_attn.weight');
    sd.set('decoder.lm_head.weight', weights.get('decoder.transformer.wte.weight')!);
    writeSafetensors(f, sd);
  });
  assert.throws(() => VisionEncoderDecoderModel.fromPretrained(missing), (err: Error) => {
    assert.match(err.message, /missing key "decoder\.transformer\.h\.1\.crossattention\.q_attn\.weight"/);
    assert.match(err.message, /"decoder\.lm_head\.weight" \[100, 32\] is not a weight of this model/);
    return true;
  });

  // Old GPT-2 checkpoints stored the causal-mask buffers; they are skipped. A file without the pooler loads.
  const legacy = brokenCopy('legacy', (f) => {
    const sd = new Map(weights);
    sd.set('decoder.transformer.h.0.attn.bias', fromTypedArray(new Float32Array(4), [1, 1, 2, 2]));
    sd.set('decoder.transformer.h.0.attn.masked_bias', fromTypedArray(new Float32Array([-1e4]), []));
    sd.delete('encoder.pooler.dense.weight');
    sd.delete('encoder.pooler.dense.bias');
    writeSafetensors(f, sd);
  });
  const m = VisionEncoderDecoderModel.fromPretrained(legacy);
  assert.equal(m.encoder.pooler, null);
  assert.deepEqual(generateCaptions(m, pixels, { maxNewTokens: 12 }).ids, CASE.greedy);

  assert.throws(() => VisionEncoderDecoderModel.fromPretrained(path.join(tmpDir, 'nowhere')), /not a folder/);
});

test('config errors are clear: activation, head split, cross-attention, token ids', () => {
  const raw = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'config.json'), 'utf8'));
  const withDecoder = (d: Record<string, unknown>) => ({ ...raw, decoder: { ...raw.decoder, ...d } });
  assert.throws(() => captionerConfigFromJson(withDecoder({ activation_function: 'swishy' })), /activation_function "swishy" is not supported/);
  assert.throws(() => captionerConfigFromJson(withDecoder({ n_head: 5 })), /n_embd 32 is not divisible by n_head 5/);
  assert.throws(() => captionerConfigFromJson(withDecoder({ add_cross_attention: false })), /add_cross_attention = true/);
  assert.throws(() => captionerConfigFromJson(withDecoder({ model_type: 'bert' })), /model_type "bert" is not supported \(gpt2\)/);
  assert.throws(() => captionerConfigFromJson({ ...raw, eos_token_id: 100 }), /eosTokenId 100 is outside the decoder vocabulary/);
  assert.throws(() => captionerConfigFromJson({ ...raw, encoder: { ...raw.encoder, patch_size: 7 } }), /not a multiple of the patch size 7/);
  assert.throws(() => gpt2ConfigFromJson({ n_embd: 32, n_head: 4, resid_pdrop: 1.5 }), /residPdrop must be in \[0, 1\)/);
  assert.throws(() => gpt2ConfigFromJson({ n_layer: 'two' }), /"n_layer" must be an integer/);
});

// ------------------------------------------------------------------ training

test('from scratch: seeded construction, transformers\' key layout, loss helper and a few training steps', () => {
  const a = small(5), b = small(5);
  for (const [k, t] of a.stateDict()) assert.deepEqual(t.toFloat32Array(), b.stateDict().get(k)!.toFloat32Array(), k);
  // The same config as the golden model gives exactly the golden file's keys and shapes.
  const fromCfg = new VisionEncoderDecoderModel(goldenModel().config, { rng: new Rng(0) });
  for (const [k, t] of goldenModel().stateDict()) assert.deepEqual(fromCfg.stateDict().get(k)?.shape, t.shape, k);
  assert.equal(fromCfg.stateDict().size, goldenModel().stateDict().size);

  const model = small(2);
  model.train();
  const px = randn([2, 3, 16, 16], { rng: new Rng(3) });
  const labels = [[5, 6, 7, 2, -100], [9, 10, 2, -100, -100]];
  const inputs = shiftTokensRight(labels, 1, 0);
  assert.deepEqual(inputs, [[1, 5, 6, 7, 2], [1, 9, 10, 2, 0]]);

  // The helper is the mean cross-entropy over the non-ignored labels.
  model.eval();
  noGrad(() => {
    const loss = model.loss(px, inputs, labels).item();
    const { logits } = model.forward(px, inputs);
    const flat = labels.flat();
    const manual = crossEntropy(logits.reshape([10, 40]), fromTypedArray(Int32Array.from(flat), [10], 'i32')).item();
    assert.ok(Math.abs(loss - manual) < 1e-6);
    assert.ok(Math.abs(loss - Math.log(40)) < 1, `near log(V) at init: ${loss}`);
    assert.notEqual(model.loss(px, inputs, labels, { labelSmoothing: 0.1 }).item(), loss);
  });
  assert.throws(() => model.loss(px, inputs, [[-100, -100, -100, -100, -100], [-100, -100, -100, -100, -100]]), /every label is ignored/);
  assert.throws(() => model.loss(px, inputs, [[5, 6]]), /labels must be \[2\]\[5\]/);

  model.train();
  const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0 });
  const losses: number[] = [];
  for (let step = 0; step < 8; step++) {
    opt.zeroGrad();
    const loss = model.loss(px, inputs, labels);
    loss.backward();
    losses.push(loss.item());
    opt.step();
  }
  assert.ok(model.decoder.transformer.wte.weight.grad, 'tied embeddings get gradients');
  assert.ok(model.enc_to_dec_proj!.weight.grad && model.encoder.embeddings.cls_token.grad, 'the encoder learns through cross-attention');
  assert.ok(losses[7] < losses[0] * 0.8, `loss falls: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
});

test('GPT-2 alone (no cross-attention) is a causal language model', () => {
  const lm = new GPT2LMHeadModel({ vocabSize: 30, nPositions: 16, nEmbd: 16, nHead: 2, nLayer: 2 }, { rng: new Rng(1) }).eval();
  assert.ok(!lm.stateDict().has('transformer.h.0.crossattention.c_attn.weight'));
  noGrad(() => {
    const full = lm.forward([[1, 2, 3, 4]]).logits;
    const cache = lm.newCache();
    lm.forward([[1, 2]], { cache });
    const rest = lm.forward([[3, 4]], { cache }).logits;
    assert.ok(rel(rest, full.narrow(1, 2, 2)) <= 1e-5);
  });
  assert.throws(() => lm.forward([[1, 2], [3]]), /different lengths/);
  assert.throws(() => lm.forward([[1, 30]]), /token id 30 .* outside the vocabulary/);
});
