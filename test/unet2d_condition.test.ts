/**
 * UNet2DConditionModel: parity with diffusers on the golden `unet` case, loading (variants, dtypes, strict
 * errors), config validation, the 9-channel inpainting and SD 2.x (linear projection, per-block heads) paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng, noGrad, randn, type Tensor } from '../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { Transformer2DModel } from '../src/models/blocks/attention.js';
import { adoptStateDict } from '../src/models/blocks/weights.js';
import { UNet2DConditionModel } from '../src/models/unet2d_condition.js';
import { repoRoot } from './helpers/fixtures.js';
import { describeDiff, relErr } from './helpers/relerr.js';

const GOLDEN = path.join(repoRoot(), 'test', 'fixtures', 'golden');
const UNET_DIR = path.join(GOLDEN, 'sd_pipe', 'unet');
const CONFIG = JSON.parse(fs.readFileSync(path.join(UNET_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;

function tmpFolder(config: Record<string, unknown>, weights: Map<string, Tensor> | null, file = 'diffusion_pytorch_model.safetensors'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-unet-'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  if (weights) writeSafetensors(path.join(dir, file), weights);
  return dir;
}

const goldenWeights = () => readSafetensors(path.join(UNET_DIR, 'diffusion_pytorch_model.safetensors')).tensors;

test('golden unet: batch 2, timesteps 999 and 37, matches diffusers', () => {
  const unet = UNet2DConditionModel.fromPretrained(UNET_DIR);
  const { tensors: t } = readSafetensors(path.join(GOLDEN, 'unet', 'tensors.safetensors'));
  assert.deepEqual([...t.get('timesteps')!.data as BigInt64Array].map(Number), [999, 37]);
  const out = noGrad(() => unet.forward(t.get('sample')!, t.get('timesteps')!, t.get('encoder_hidden_states')!));
  assert.deepEqual(out.shape, [2, 4, 16, 16]);
  const err = relErr(out.toFloat32Array(), t.get('out')!.toFloat32Array());
  assert.ok(err <= 1e-4, describeDiff(out.toFloat32Array(), t.get('out')!.toFloat32Array()));

  // A number timestep is broadcast over the batch.
  const s = t.get('sample')!, ehs = t.get('encoder_hidden_states')!;
  const one = noGrad(() => unet.forward(s, 37, ehs)).toFloat32Array();
  const ref = t.get('out')!.narrow(0, 1, 1).toFloat32Array();
  assert.ok(relErr(one.subarray(one.length / 2), ref) <= 1e-4);
});

test('f16 weights stay 16-bit in memory and give nearly the same output', () => {
  const { tensors: t } = readSafetensors(path.join(GOLDEN, 'unet', 'tensors.safetensors'));
  const dir = tmpFolder(CONFIG, new Map([...goldenWeights()].map(([k, v]) => [k, v.half()])), 'diffusion_pytorch_model.fp16.safetensors');
  try {
    const unet = UNet2DConditionModel.fromPretrained(dir); // no plain file: falls back to the fp16 variant
    assert.ok(unet.parameters().every((p) => p.dtype === 'f16'));
    const out = noGrad(() => unet.forward(t.get('sample')!, t.get('timesteps')!, t.get('encoder_hidden_states')!));
    assert.ok(relErr(out.toFloat32Array(), t.get('out')!.toFloat32Array()) < 1e-2);
    const f32 = UNet2DConditionModel.fromPretrained(dir, { variant: 'fp16', dtype: 'f32' });
    assert.ok(f32.parameters().every((p) => p.dtype === 'f32' && p.requiresGrad));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('fromPretrained fails clearly on missing keys, wrong shapes and unexpected keys', () => {
  const w = goldenWeights();
  const missing = new Map(w);
  missing.delete('mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight');
  let dir = tmpFolder(CONFIG, missing);
  try {
    assert.throws(() => UNet2DConditionModel.fromPretrained(dir),
      /diffusion_pytorch_model\.safetensors does not match the config \(1 problem\):\n {2}- missing key "mid_block\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight" \(expected shape \[64, 32\]\)/);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }

  // The 4-channel file read with a 9-channel config: the file, key and both shapes are named.
  dir = tmpFolder({ ...CONFIG, in_channels: 9 }, w);
  try {
    assert.throws(() => UNet2DConditionModel.fromPretrained(dir),
      /diffusion_pytorch_model\.safetensors: key "conv_in\.weight" has shape \[32, 4, 3, 3\], the config expects \[32, 9, 3, 3\]/);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }

  const extra = new Map(w);
  extra.set('add_embedding.linear_1.weight', randn([4, 4]));
  dir = tmpFolder(CONFIG, extra);
  try {
    assert.throws(() => UNet2DConditionModel.fromPretrained(dir), /key "add_embedding\.linear_1\.weight" \[4, 4\] is not a weight of this model/);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }

  dir = tmpFolder(CONFIG, null);
  try {
    assert.throws(() => UNet2DConditionModel.fromPretrained(dir), /no diffusion_pytorch_model\.safetensors or diffusion_pytorch_model\.fp16\.safetensors/);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('config validation names the key and what is supported', () => {
  const build = (patch: Record<string, unknown>) => UNet2DConditionModel.fromDiffusersConfig({ ...CONFIG, ...patch }, { meta: true });
  assert.throws(() => build({ down_block_types: ['DownBlock2D', 'SimpleCrossAttnDownBlock2D'] }),
    /down_block_types\[1\] = "SimpleCrossAttnDownBlock2D" is not a supported block type \(supported: DownBlock2D, CrossAttnDownBlock2D\)/);
  assert.throws(() => build({ addition_embed_type: 'text_time' }), /"addition_embed_type" = "text_time" is not supported \(SDXL-style added conditioning\)/);
  assert.throws(() => build({ block_out_channels: [32, 64, 128] }), /"block_out_channels" has 3 entries, expected one per block \(2\)/);
  assert.throws(() => build({ attention_head_dim: [8] }), /"attention_head_dim" has 1 entries, expected one per block \(2\)/);
  assert.throws(() => build({ layers_per_block: 'two' }), /"layers_per_block" must be an integer or a list of 2 integers/);
  assert.throws(() => build({ _class_name: 'AutoencoderKL' }), /_class_name is "AutoencoderKL", expected "UNet2DConditionModel"/);
  assert.throws(() => UNet2DConditionModel.fromDiffusersConfig({ ...CONFIG, shiny_new_option: 1 }, { meta: true, strict: true }),
    /unknown key "shiny_new_option"/);
});

test('a shape-only model refuses to run until a state dict is adopted into it', () => {
  const unet = UNet2DConditionModel.fromDiffusersConfig(CONFIG, { meta: true });
  assert.equal(unet.numParameters(), UNet2DConditionModel.fromDiffusersConfig(CONFIG, { rng: new Rng(0) }).numParameters());
  assert.equal(unet.crossAttentionDim, 32);
  const x = randn([1, 4, 8, 8], { rng: new Rng(1) }), ctx = randn([1, 7, 32], { rng: new Rng(2) });
  assert.throws(() => unet.forward(x, 1, ctx), /built shape-only/);

  const w = goldenWeights();
  const partial = new Map(w);
  partial.delete('conv_out.bias');
  assert.throws(() => adoptStateDict(unet, partial, { label: 'test' }), /test: state dict does not match the config \(1 problem\):\n {2}- missing key "conv_out\.bias"/);
  adoptStateDict(unet, w, { label: 'test' });
  const ref = UNet2DConditionModel.fromPretrained(UNET_DIR);
  assert.deepEqual(noGrad(() => unet.forward(x, 1, ctx)).toFloat32Array(), noGrad(() => ref.forward(x, 1, ctx)).toFloat32Array());
});

// SD 2.x-style options and the 9-channel inpainting input on a random model; odd latent sizes.
const INPAINT_SD2 = {
  ...CONFIG, in_channels: 9, attention_head_dim: [2, 4], use_linear_projection: true, upcast_attention: true,
  cross_attention_dim: 24, layers_per_block: 1, transformer_layers_per_block: [1, 2],
};

test('9-channel input, linear projections, per-block heads; save and reload round-trips exactly', () => {
  const unet = UNet2DConditionModel.fromDiffusersConfig(INPAINT_SD2, { rng: new Rng(7) });
  const sd = unet.stateDict();
  assert.deepEqual(sd.get('conv_in.weight')!.shape, [32, 9, 3, 3]);
  assert.deepEqual(sd.get('down_blocks.1.attentions.0.proj_in.weight')!.shape, [64, 64]); // Linear, not 1×1 conv
  assert.ok(sd.has('down_blocks.1.attentions.0.transformer_blocks.1.ff.net.2.weight'));
  assert.equal((unet.down_blocks.at(1).attentions.at(0) as Transformer2DModel).transformer_blocks.at(0).attn1.heads, 4); // heads from the list

  const rng = new Rng(3);
  const x = randn([1, 9, 9, 11], { rng }), ctx = randn([1, 5, 24], { rng });
  const out = noGrad(() => unet.forward(x, 500, ctx));
  assert.deepEqual(out.shape, [1, 4, 9, 11]); // odd sizes: upsampled to the skip's size
  assert.ok(out.toFloat32Array().every(Number.isFinite));

  const dir = tmpFolder(INPAINT_SD2, sd);
  try {
    const again = UNet2DConditionModel.fromPretrained(dir);
    assert.deepEqual(noGrad(() => again.forward(x, 500, ctx)).toFloat32Array(), out.toFloat32Array());
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});
