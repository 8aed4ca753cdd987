/**
 * The real Stable Diffusion 1.5 / 2.1 U-Net and VAE configs, built by the same construction code as every
 * other model but shape-only (no weight storage), give exactly the parameter and tensor counts PyTorch reports
 * (test/fixtures/golden/real_configs.json, from the golden cases.json).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Module } from '../src/nn/index.js';
import { AutoencoderKL } from '../src/models/autoencoder_kl.js';
import { isShapeOnly } from '../src/models/blocks/layers.js';
import { UNet2DConditionModel } from '../src/models/unet2d_condition.js';
import { repoRoot } from './helpers/fixtures.js';

interface RealConfigs {
  configs: Record<string, Record<string, unknown>>;
  counts: Record<string, { params: number; tensors: number; keys_sample: string[] }>;
}
const REAL = JSON.parse(fs.readFileSync(path.join(repoRoot(), 'test', 'fixtures', 'golden', 'real_configs.json'), 'utf8')) as RealConfigs;

function checkCounts(name: string, model: Module): void {
  const want = REAL.counts[name];
  const sd = model.stateDict();
  assert.equal(model.numParameters(), want.params, `${name}: parameters`);
  assert.equal(sd.size, want.tensors, `${name}: tensors`);
  assert.deepEqual([...sd.keys()].slice(0, want.keys_sample.length), want.keys_sample, `${name}: first keys, in PyTorch's order`);
  const stored = model.parameters().filter((p) => !isShapeOnly(p));
  assert.ok(stored.every((p) => p.numel <= 2560), 'only norm weights (one float per channel) have storage');
}

test('SD 1.5 U-Net: 859,520,964 parameters', () => {
  const unet = UNet2DConditionModel.fromDiffusersConfig(REAL.configs.sd15_unet, { meta: true });
  checkCounts('sd15_unet', unet);
  assert.equal(REAL.counts.sd15_unet.params, 859_520_964);
  const sd = unet.stateDict();
  assert.deepEqual(sd.get('down_blocks.0.attentions.0.proj_in.weight')!.shape, [320, 320, 1, 1]); // 1×1 conv
  assert.deepEqual(sd.get('down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight')!.shape, [320, 768]);
  assert.deepEqual(sd.get('up_blocks.1.resnets.0.conv1.weight')!.shape, [1280, 2560, 3, 3]);
});

test('SD 2.1 U-Net: 865,910,724 parameters (linear projections, per-block heads)', () => {
  const unet = UNet2DConditionModel.fromDiffusersConfig(REAL.configs.sd21_unet, { meta: true });
  checkCounts('sd21_unet', unet);
  assert.equal(REAL.counts.sd21_unet.params, 865_910_724);
  assert.deepEqual(unet.stateDict().get('down_blocks.0.attentions.0.proj_in.weight')!.shape, [320, 320]); // Linear
});

test('SD VAE: 83,653,863 parameters', () => {
  const vae = AutoencoderKL.fromDiffusersConfig(REAL.configs.sd_vae, { meta: true });
  checkCounts('sd_vae', vae);
  assert.equal(REAL.counts.sd_vae.params, 83_653_863);
  assert.equal(vae.scalingFactor, 0.18215);
  assert.equal(vae.downscaleFactor, 8);
});

test('shape-only construction allocates next to nothing', () => {
  const before = process.memoryUsage().arrayBuffers;
  const unet = UNet2DConditionModel.fromDiffusersConfig(REAL.configs.sd15_unet, { meta: true });
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 8e6, `meta SD 1.5 U-Net allocated ${grown} bytes of arrays`); // norms only (~100 k floats)
  assert.ok(unet.numParameters() > 8e8);
});
