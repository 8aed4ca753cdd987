/** CLIP text encoder: parity with transformers (golden clip_text), loading layouts, errors, parameter counts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Tensor, fromTypedArray, noGrad } from '../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { CLIPTextModel, clipTextConfigFromJson, clipTextParamCount } from '../src/models/clip_text.js';
import { relErr } from './helpers/relerr.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const GOLDEN = path.resolve(here, '..', '..', 'test', 'fixtures', 'golden');
const ENCODER_DIR = path.join(GOLDEN, 'sd_pipe', 'text_encoder');
const cases = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'tokenizer', 'cases.json'), 'utf-8'));
const golden = readSafetensors(path.join(GOLDEN, 'clip_text', 'tensors.safetensors')).tensors;
const weights = readSafetensors(path.join(ENCODER_DIR, 'model.safetensors')).tensors;
const configJson = JSON.parse(fs.readFileSync(path.join(ENCODER_DIR, 'config.json'), 'utf-8'));

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-clip-text-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));
let counter = 0;
/** A text_encoder folder with this config and these tensors. */
function encoderFolder(config: object, tensors: Map<string, Tensor>): string {
  const dir = path.join(tmpDir, `e${counter++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

const model = CLIPTextModel.fromPretrained(ENCODER_DIR);
const ids = golden.get('input_ids')!; // [6, 77] i64, padded with <|endoftext|>
const TOL = 1e-4;
const rel = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.shape, b.shape);
  return relErr(a.toFloat32Array(), b.toFloat32Array());
};

test('last_hidden_state, pooler_output and the penultimate hidden state match transformers', (t) => {
  noGrad(() => {
    const out = model.forward(ids);
    const L = model.config.numHiddenLayers;
    assert.equal(out.hiddenStates.length, L + 1);
    const errors = {
      last_hidden_state: rel(out.lastHiddenState, golden.get('last_hidden_state')!),
      pooler_output: rel(out.pooled!, golden.get('pooler_output')!),
      penultimate_hidden_state: rel(out.hiddenStates[L - 1], golden.get('penultimate_hidden_state')!),
    };
    t.diagnostic(`relative errors ${JSON.stringify(errors)}`);
    for (const [name, e] of Object.entries(errors)) assert.ok(e <= TOL, `${name}: rel err ${e}`);

    // clip_skip 1 (diffusers) = final_layer_norm(hidden_states[-2]).
    const skipped = model.forward(ids, { clipSkip: 1 });
    const expected = model.text_model.final_layer_norm.forward(golden.get('penultimate_hidden_state')!);
    const e = rel(skipped.lastHiddenState, expected);
    t.diagnostic(`clipSkip 1 rel err ${e}`);
    assert.ok(e <= TOL);
    assert.ok(rel(skipped.pooled!, golden.get('pooler_output')!) <= TOL); // pooled still from the full model
    // Without pooled, the skipped layer is not run and the result is the same.
    const early = model.forward(ids, { clipSkip: 1, pooled: false });
    assert.equal(early.pooled, null);
    assert.equal(early.hiddenStates.length, L);
    assert.deepEqual([...early.lastHiddenState.toFloat32Array()], [...skipped.lastHiddenState.toFloat32Array()]);
  });
});

test('pooling: first eos_token_id, or argmax of the ids for legacy configs (eos_token_id 2)', () => {
  noGrad(() => {
    const legacy = new CLIPTextModel({ ...model.config, eosTokenId: 2 });
    legacy.loadWeights(weights);
    // Golden ids are eot-padded: both rules pick the first 49407.
    assert.ok(rel(legacy.forward(ids).pooled!, golden.get('pooler_output')!) <= TOL);
    // Ids where the rules differ: no 49407, the largest id at position 2.
    const seq = [1, 320, 49000, 2368, 0, 0];
    const rowAt = (out: { lastHiddenState: Tensor }, i: number) => [...out.lastHiddenState.select(0, 0).select(0, i).toFloat32Array()];
    const a = model.forward(seq), b = legacy.forward(seq);
    assert.deepEqual([...a.pooled!.toFloat32Array()], rowAt(a, 0)); // no eos: position 0, as transformers
    assert.deepEqual([...b.pooled!.toFloat32Array()], rowAt(b, 2)); // argmax
  });
});

test('parameter counts: SD 1.5 / 2.1 text encoders from their configs, and the formula against a built model', () => {
  const real = cases.real_configs;
  const sd15 = clipTextConfigFromJson(real.clip_vit_l_text.config);
  const sd21 = clipTextConfigFromJson(real.openclip_h_text_23.config);
  assert.equal(clipTextParamCount(sd15), 123_060_480);
  assert.equal(clipTextParamCount(sd15), real.clip_vit_l_text.params);
  assert.equal(clipTextParamCount(sd21), 340_387_840);
  assert.equal(clipTextParamCount(sd21), real.openclip_h_text_23.params);
  assert.equal(sd21.hiddenAct, 'gelu');
  // State-dict tensor counts: 2 embeddings + 16 per layer + final norm weight and bias.
  assert.equal(2 + 16 * sd15.numHiddenLayers + 2, real.clip_vit_l_text.tensors);
  assert.equal(2 + 16 * sd21.numHiddenLayers + 2, real.openclip_h_text_23.tensors);

  // The formula mirrors construction: check it on the loaded model and on an odd-shaped one.
  assert.equal(model.numParameters(), clipTextParamCount(model.config));
  assert.equal(model.stateDict().size, weights.size);
  const odd = new CLIPTextModel({ vocabSize: 50, hiddenSize: 12, intermediateSize: 20, numHiddenLayers: 3, numAttentionHeads: 3, maxPositionEmbeddings: 9 });
  assert.equal(odd.numParameters(), clipTextParamCount(odd.config));
  assert.equal(odd.stateDict().size, 2 + 16 * 3 + 2);
});

test('weights with the text_model. prefix and a position_ids buffer load to the same outputs', () => {
  const prefixed = new Map<string, Tensor>();
  for (const [k, v] of weights) prefixed.set(`text_model.${k}`, v);
  prefixed.set('text_model.embeddings.position_ids', fromTypedArray(BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)), [1, 77], 'i64'));
  const m = CLIPTextModel.fromPretrained(encoderFolder(configJson, prefixed));
  noGrad(() => {
    assert.deepEqual([...m.forward(ids).lastHiddenState.toFloat32Array()], [...model.forward(ids).lastHiddenState.toFloat32Array()]);
  });
  assert.ok([...m.stateDict().keys()].every((k) => k.startsWith('text_model.')));
  assert.ok(m.stateDict().has('text_model.encoder.layers.1.self_attn.out_proj.bias'));
});

test('16-bit weights: kept as f16 in memory, outputs close to f32', (t) => {
  const half = new Map<string, Tensor>();
  for (const [k, v] of weights) half.set(k, v.half());
  const dir = encoderFolder(configJson, half);
  const kept = CLIPTextModel.fromPretrained(dir, { dtype: 'keep' });
  const converted = CLIPTextModel.fromPretrained(ENCODER_DIR, { dtype: 'bf16' });
  assert.equal(kept.text_model.embeddings.token_embedding.weight.dtype, 'f16');
  assert.equal(kept.text_model.encoder.layers[0].mlp.fc1.weight.dtype, 'f16');
  assert.equal(converted.text_model.embeddings.token_embedding.weight.dtype, 'bf16');
  assert.equal(CLIPTextModel.fromPretrained(dir).text_model.final_layer_norm.weight!.dtype, 'f32'); // default widens
  noGrad(() => {
    const eh = rel(kept.forward(ids).lastHiddenState, golden.get('last_hidden_state')!);
    const eb = rel(converted.forward(ids).lastHiddenState, golden.get('last_hidden_state')!);
    t.diagnostic(`f16 weights rel err ${eh}, bf16 weights rel err ${eb}`);
    assert.ok(eh < 2e-3 && eb < 2e-2);
  });
});

test('wrong shapes, missing keys and bad configs fail at load with clear messages', () => {
  // intermediate_size 38 in the config, 37 in the file.
  assert.throws(() => CLIPTextModel.fromPretrained(encoderFolder({ ...configJson, intermediate_size: 38 }, weights)),
    /shape mismatches: text_model\.encoder\.layers\.0\.mlp\.fc1\.weight expected \[38, 32\] found \[37, 32\]/);
  const missing = new Map(weights);
  missing.delete('encoder.layers.1.layer_norm2.bias');
  missing.set('text_projection.weight', weights.get('final_layer_norm.weight')!);
  assert.throws(() => CLIPTextModel.fromPretrained(encoderFolder(configJson, missing)),
    /1 missing key: text_model\.encoder\.layers\.1\.layer_norm2\.bias; 1 unexpected: text_model\.text_projection\.weight/);
  const badPositions = new Map(weights);
  badPositions.set('text_model.embeddings.position_ids', fromTypedArray(new BigInt64Array(76), [1, 76], 'i64'));
  assert.throws(() => CLIPTextModel.fromPretrained(encoderFolder(configJson, badPositions)), /position_ids expected \[1, 77\] found \[1, 76\]/);

  assert.throws(() => clipTextConfigFromJson({ ...configJson, hidden_act: 'swish' }), /hidden_act "swish" not supported/);
  assert.throws(() => clipTextConfigFromJson({ ...configJson, model_type: 'clip' }), /not "clip_text_model".*CLIPModel/);
  assert.throws(() => clipTextConfigFromJson({ ...configJson, architectures: ['CLIPTextModelWithProjection'] }), /CLIPTextModelWithProjection.*not supported/);
  assert.throws(() => clipTextConfigFromJson({ ...configJson, num_attention_heads: 5 }), /hidden_size 32 is not divisible by num_attention_heads 5/);
  assert.throws(() => clipTextConfigFromJson({ ...configJson, num_hidden_layers: 2.5 }), /num_hidden_layers must be a non-negative integer/);
  // Harmless extras are ignored.
  const cfg = clipTextConfigFromJson({ ...configJson, some_future_flag: true, torch_dtype: 'float16', attention_dropout: 0.1 });
  assert.equal(cfg.intermediateSize, 37);
  assert.equal(cfg.eosTokenId, 49407);

  const noConfig = path.join(tmpDir, 'empty');
  fs.mkdirSync(noConfig);
  assert.throws(() => CLIPTextModel.fromPretrained(noConfig), /has no config\.json/);
  const noWeights = encoderFolder(configJson, new Map());
  fs.rmSync(path.join(noWeights, 'model.safetensors'));
  fs.writeFileSync(path.join(noWeights, 'pytorch_model.bin'), '');
  assert.throws(() => CLIPTextModel.fromPretrained(noWeights), /no model\.safetensors \(found pytorch_model\.bin/);
  // Truncated weight file: the safetensors reader names the file.
  const truncated = encoderFolder(configJson, weights);
  const file = path.join(truncated, 'model.safetensors');
  fs.truncateSync(file, fs.statSync(file).size - 1000);
  assert.throws(() => CLIPTextModel.fromPretrained(truncated), /model\.safetensors is truncated/);
});

test('forward checks its input', () => {
  noGrad(() => {
    assert.throws(() => model.forward([49406, 49408]), /token id 49408 is outside the vocabulary/);
    assert.throws(() => model.forward(new Array(78).fill(1)), /78 tokens exceed max_position_embeddings 77/);
    assert.throws(() => model.forward(ids, { clipSkip: 3 }), /clipSkip must be an integer in 0…2/);
    assert.throws(() => model.forward([[1, 2], [3]]), /same length/);
    // A shorter sequence works (positions 0…L−1) and matches the prefix of the full one (causal mask).
    const full = model.forward(ids).hiddenStates[2];
    const prefix = model.forward([[...(ids.toArray() as bigint[][])[0].slice(0, 5).map(Number)]]).hiddenStates[2];
    assert.ok(relErr(prefix.toFloat32Array(), full.select(0, 0).narrow(0, 0, 5).toFloat32Array()) < 1e-6);
  });
});
