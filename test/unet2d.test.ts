/**
 * UNet2DModel (DDPM): parity with diffusers on the golden `unet2d_ddpm` case; class conditioning and
 * AdaGN (scale_shift); training — gradients reach every parameter and an AdamW step lowers the loss.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Rng, mseLoss, noGrad, randn } from '../src/engine/index.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { AdamW } from '../src/optim/index.js';
import { SpatialAttention } from '../src/models/blocks/attention.js';
import { UNet2DModel } from '../src/models/unet2d.js';
import { repoRoot } from './helpers/fixtures.js';
import { describeDiff, relErr } from './helpers/relerr.js';

const GOLDEN = path.join(repoRoot(), 'test', 'fixtures', 'golden', 'unet2d_ddpm');

test('golden unet2d_ddpm: matches diffusers UNet2DModel', () => {
  const unet = UNet2DModel.fromPretrained(path.join(GOLDEN, 'model'));
  const { tensors: t } = readSafetensors(path.join(GOLDEN, 'tensors.safetensors'));
  const out = noGrad(() => unet.forward(t.get('sample')!, t.get('timesteps')!));
  assert.deepEqual(out.shape, [2, 3, 16, 16]);
  const a = out.toFloat32Array(), b = t.get('out')!.toFloat32Array();
  assert.ok(relErr(a, b) <= 1e-4, describeDiff(a, b));
});

/** A small class-conditional AdaGN model: 10 classes + 1 null class for classifier-free guidance. */
const SMALL = {
  in_channels: 1, out_channels: 1, block_out_channels: [16, 32], layers_per_block: 1, norm_num_groups: 8,
  down_block_types: ['DownBlock2D', 'AttnDownBlock2D'], up_block_types: ['AttnUpBlock2D', 'UpBlock2D'],
  attention_head_dim: 8, resnet_time_scale_shift: 'scale_shift', num_class_embeds: 11,
};

test('class-conditional AdaGN model: layout, labels required and used', () => {
  const unet = UNet2DModel.fromDiffusersConfig(SMALL, { rng: new Rng(1) });
  const sd = unet.stateDict();
  assert.deepEqual(sd.get('class_embedding.weight')!.shape, [11, 64]);
  assert.deepEqual(sd.get('down_blocks.0.resnets.0.time_emb_proj.weight')!.shape, [32, 64]); // 2·C: scale and shift
  assert.ok(!sd.has('mid_block.attentions.0.group_norm.weight'), 'scale_shift mid attention has no GroupNorm (diffusers)');
  assert.ok(sd.has('down_blocks.1.attentions.0.group_norm.weight'));
  assert.equal((unet.down_blocks.at(1).attentions.at(0) as SpatialAttention).heads, 4); // 32 channels / head dim 8

  const x = randn([2, 1, 8, 8], { rng: new Rng(2) });
  assert.throws(() => unet.forward(x, 10), /class labels are required/);
  assert.throws(() => unet.forward(x, 10, [0, 11]), /class label 11 is outside \[0, 11\)/);
  const a = noGrad(() => unet.forward(x, [10, 500], [3, 3])).toFloat32Array();
  const b = noGrad(() => unet.forward(x, 10, [3, 10])).toFloat32Array();
  assert.ok(a.every(Number.isFinite));
  assert.notDeepEqual(a, b);
  assert.throws(() => unet.forward(randn([1, 1, 9, 9]), 1, [0]), /must be divisible by 2/);
});

test('training: every parameter gets a gradient and one AdamW step lowers the MSE loss', () => {
  const rng = new Rng(3);
  const unet = UNet2DModel.fromDiffusersConfig(SMALL, { rng });
  const x = randn([4, 1, 8, 8], { rng }), noise = randn([4, 1, 8, 8], { rng });
  const t = randn([4], { rng }).abs().mul(300); // fractional timesteps are fine
  const labels = [0, 4, 7, 10];
  const loss = () => mseLoss(unet.forward(x, t, labels), noise);

  const opt = new AdamW(unet.parameters(), { lr: 1e-3, weightDecay: 0 });
  const before = loss();
  before.backward();
  const missing = unet.namedParameters().filter(([, p]) => !p.grad).map(([n]) => n);
  assert.deepEqual(missing, []);
  opt.step();
  opt.zeroGrad();
  const after = noGrad(loss).item();
  assert.ok(after < before.item(), `loss ${before.item()} → ${after}`);
});
