/**
 * UNet2DConditionModel: the Stable Diffusion denoiser (Rombach et al. 2022, "High-Resolution Image Synthesis
 * with Latent Diffusion Models"), with diffusers' weight names so official checkpoints load as they are.
 *
 *   t ──sinusoid──▶ time_embedding (MLP) ──▶ temb [B, 4·C0], fed to every resnet
 *   x [B, 4|9, h, w] ─conv_in─▶ down_blocks (resnets, +Transformer2D with cross-attention to the text) ─▶
 *   mid_block ─▶ up_blocks (each resnet takes a skip from the down path) ─▶ norm, SiLU, conv_out ─▶ ε or v
 *
 * Typed config (`UNet2DConditionConfig`, parsed from a diffusers config.json by
 * `parseUNet2DConditionConfig`) → construction; references: diffusers' `UNet2DConditionModel` (the layout
 * and names) and the LDM paper (the architecture).
 */
import type { Tensor } from '../engine/index.js';
import { Module, ModuleList, type Conv2d, type GroupNorm } from '../nn/index.js';
import { ConfigError, ConfigReader, checkClassName, type ConfigReadOptions } from './config.js';
import { TimestepEmbedding, sinusoidalEmbedding, timestepList } from './blocks/embeddings.js';
import { ACT_FNS, Ctx, act, hasShapeOnly, type ActFn, type CtxOptions } from './blocks/layers.js';
import type { ResnetSettings, TimeScaleShift } from './blocks/resnet.js';
import {
  DownBlock, MidBlock, UpBlock, crossAttnMidBlock, makeDownBlock, makeUpBlock, parseBlockTypes,
  type CrossAttnSettings, type DownBlockConfig, type UpBlockConfig,
} from './blocks/unet_blocks.js';
import { loadPretrained, type PretrainedOptions } from './blocks/weights.js';

export interface UNet2DConditionConfig {
  /** 4 (latents), or 9 for inpainting models (latents + mask + masked-image latents). */
  inChannels: number;
  outChannels: number;
  /** Latent size the model was trained at (64 for SD 1.5, 96 for SD 2.1-768). */
  sampleSize: number | null;
  /** Channels of each level, top to bottom. */
  blockOutChannels: number[];
  /** Resnets per down block (up blocks get one more), per level. */
  layersPerBlock: number[];
  /** One per level, top to bottom; cross-attention blocks carry their heads and context width. */
  downBlocks: DownBlockConfig[];
  /** One per level, bottom to top. */
  upBlocks: UpBlockConfig[];
  /** UNetMidBlock2DCrossAttn, or null for no mid block. */
  midBlock: CrossAttnSettings | null;
  midBlockScaleFactor: number;
  downsamplePadding: number;
  act: ActFn;
  normNumGroups: number;
  normEps: number;
  flipSinToCos: boolean;
  freqShift: number;
  /** Width of temb; null → 4 · blockOutChannels[0]. */
  timeEmbeddingDim: number | null;
  resnetTimeScaleShift: TimeScaleShift;
  convInKernel: number;
  convOutKernel: number;
  centerInputSample: boolean;
  dropout: number;
}

const DOWN_TYPES = ['DownBlock2D', 'CrossAttnDownBlock2D'] as const;
const UP_TYPES = ['UpBlock2D', 'CrossAttnUpBlock2D'] as const;
const CLASS = 'UNet2DConditionModel';

/** Read a diffusers UNet2DConditionModel config.json (defaults as diffusers'). */
export function parseUNet2DConditionConfig(r: ConfigReader, opts: ConfigReadOptions = {}): UNet2DConditionConfig {
  checkClassName(r, [CLASS]);
  const downTypes = parseBlockTypes(r, 'down_block_types', DOWN_TYPES, ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
  const upTypes = parseBlockTypes(r, 'up_block_types', UP_TYPES, ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
  const n = downTypes.length;
  if (upTypes.length !== n) r.fail('up_block_types', `has ${upTypes.length} blocks, down_block_types has ${n}`);
  const blockOutChannels = r.intList('block_out_channels', [320, 640, 1280, 1280]);
  if (blockOutChannels.length !== n) r.fail('block_out_channels', `has ${blockOutChannels.length} entries, expected one per block (${n})`);

  // diffusers' naming slip: `attention_head_dim` holds the number of HEADS for this model (head dim =
  // channels / heads); `num_attention_heads`, when given, means the same thing and takes precedence.
  const headsKey = r.has('num_attention_heads') ? 'num_attention_heads' : 'attention_head_dim';
  r.value('num_attention_heads'); r.value('attention_head_dim');
  const heads = r.intPerBlock(headsKey, n, 8);
  const crossDims = r.intPerBlock('cross_attention_dim', n, 1280);
  const layersPerTransformer = r.intPerBlock('transformer_layers_per_block', n, 1);
  const useLinearProjection = r.bool('use_linear_projection', false);
  const upcastAttention = r.bool('upcast_attention', false);
  const onlyCross = r.value('only_cross_attention');
  if (!(onlyCross === undefined || onlyCross === false || (Array.isArray(onlyCross) && onlyCross.every((v) => v === false)))) {
    r.fail('only_cross_attention', `= ${JSON.stringify(onlyCross)} is not supported; supported: false`);
  }
  const cross = (i: number): CrossAttnSettings => ({
    heads: heads[i], crossAttentionDim: crossDims[i], transformerLayers: layersPerTransformer[i], useLinearProjection, upcastAttention,
  });
  const downBlocks = downTypes.map((type, i): DownBlockConfig => type === 'CrossAttnDownBlock2D' ? { type, ...cross(i) } : { type });
  // Up blocks run bottom to top and take the per-level settings reversed.
  const upBlocks = upTypes.map((type, i): UpBlockConfig => type === 'CrossAttnUpBlock2D' ? { type, ...cross(n - 1 - i) } : { type });

  const midType = r.value('mid_block_type');
  if (!(midType === undefined || midType === null || midType === 'UNetMidBlock2DCrossAttn')) {
    r.fail('mid_block_type', `= ${JSON.stringify(midType)} is not supported; supported: "UNetMidBlock2DCrossAttn", null`);
  }

  for (const [key, allowed, why] of [
    ['addition_embed_type', [null], 'SDXL-style added conditioning'],
    ['addition_time_embed_dim', [null], ''],
    ['class_embed_type', [null], 'class conditioning'],
    ['num_class_embeds', [null], 'class conditioning'],
    ['class_embeddings_concat', [false], ''],
    ['projection_class_embeddings_input_dim', [null], ''],
    ['encoder_hid_dim', [null], 'projected encoder states'],
    ['encoder_hid_dim_type', [null], ''],
    ['time_cond_proj_dim', [null], 'LCM guidance embedding'],
    ['time_embedding_type', ['positional'], ''],
    ['time_embedding_act_fn', [null], ''],
    ['timestep_post_act', [null], ''],
    ['attention_type', ['default'], ''],
    ['dual_cross_attention', [false], ''],
    ['cross_attention_norm', [null], ''],
    ['resnet_skip_time_act', [false], ''],
    ['resnet_out_scale_factor', [1], ''],
    ['mid_block_only_cross_attention', [null, false], ''],
    ['reverse_transformer_layers_per_block', [null], ''],
  ] as const) r.unsupported(key, allowed, why);
  r.ignore('addition_embed_type_num_heads');

  const cfg: UNet2DConditionConfig = {
    inChannels: r.size('in_channels', 4),
    outChannels: r.size('out_channels', 4),
    sampleSize: r.optionalInt('sample_size'),
    blockOutChannels,
    layersPerBlock: r.intPerBlock('layers_per_block', n, 2),
    downBlocks,
    upBlocks,
    midBlock: midType === null ? null : cross(n - 1),
    midBlockScaleFactor: r.number('mid_block_scale_factor', 1),
    downsamplePadding: r.int('downsample_padding', 1),
    act: r.oneOf('act_fn', ACT_FNS, 'silu'),
    normNumGroups: r.size('norm_num_groups', 32),
    normEps: r.number('norm_eps', 1e-5),
    flipSinToCos: r.bool('flip_sin_to_cos', true),
    freqShift: r.number('freq_shift', 0),
    timeEmbeddingDim: r.optionalInt('time_embedding_dim'),
    resnetTimeScaleShift: r.oneOf('resnet_time_scale_shift', ['default', 'scale_shift'] as const, 'default'),
    convInKernel: r.size('conv_in_kernel', 3),
    convOutKernel: r.size('conv_out_kernel', 3),
    centerInputSample: r.bool('center_input_sample', false),
    dropout: r.number('dropout', 0),
  };
  for (const key of ['conv_in_kernel', 'conv_out_kernel'] as const) {
    const k = key === 'conv_in_kernel' ? cfg.convInKernel : cfg.convOutKernel;
    if (k % 2 === 0) throw new ConfigError(`${r.where}: "${key}" must be odd, got ${k}`);
  }
  r.finish(opts);
  return cfg;
}

export class UNet2DConditionModel extends Module {
  conv_in: Conv2d;
  time_embedding: TimestepEmbedding;
  down_blocks: ModuleList<DownBlock>;
  up_blocks: ModuleList<UpBlock>; // before mid_block: diffusers' state-dict order
  mid_block: MidBlock | null;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  private _shapeOnly: boolean;

  constructor(readonly config: UNet2DConditionConfig, opts: CtxOptions = {}) {
    super();
    const ctx = new Ctx(opts);
    this._shapeOnly = ctx.meta;
    const c = config, bc = c.blockOutChannels, n = bc.length;
    const tembDim = c.timeEmbeddingDim ?? 4 * bc[0];
    const resnet = (outputScaleFactor = 1): ResnetSettings => ({
      groups: c.normNumGroups, eps: c.normEps, act: c.act, tembChannels: tembDim, timeScaleShift: c.resnetTimeScaleShift,
      dropout: c.dropout, outputScaleFactor,
    });

    this.conv_in = ctx.conv(c.inChannels, bc[0], c.convInKernel, { padding: (c.convInKernel - 1) / 2 });
    this.time_embedding = new TimestepEmbedding(ctx, bc[0], tembDim, c.act);

    this.down_blocks = new ModuleList(c.downBlocks.map((b, i) => makeDownBlock(ctx, b, {
      inChannels: i === 0 ? bc[0] : bc[i - 1], outChannels: bc[i], numLayers: c.layersPerBlock[i],
      downsamplePadding: i === n - 1 ? null : c.downsamplePadding, resnet: resnet(),
    })));
    this.mid_block = c.midBlock ? crossAttnMidBlock(ctx, bc[n - 1], resnet(c.midBlockScaleFactor), c.midBlock) : null;

    const rev = [...bc].reverse(), revLayers = [...c.layersPerBlock].reverse();
    this.up_blocks = new ModuleList(c.upBlocks.map((b, i) => makeUpBlock(ctx, b, {
      prevOutputChannels: rev[Math.max(i - 1, 0)], outChannels: rev[i], inChannels: rev[Math.min(i + 1, n - 1)],
      numLayers: revLayers[i] + 1, addUpsample: i < n - 1, resnet: resnet(),
    })));

    this.conv_norm_out = ctx.groupNorm(c.normNumGroups, bc[0], c.normEps);
    this.conv_out = ctx.conv(bc[0], c.outChannels, c.convOutKernel, { padding: (c.convOutKernel - 1) / 2 });
  }

  /** Build from a diffusers config object (already parsed JSON). */
  static fromDiffusersConfig(json: Record<string, unknown>, opts: CtxOptions & ConfigReadOptions = {}): UNet2DConditionModel {
    return new UNet2DConditionModel(parseUNet2DConditionConfig(new ConfigReader(json, `${CLASS} config`), opts), opts);
  }

  /** Load a diffusers `unet/` folder: config.json + diffusion_pytorch_model[.fp16].safetensors. */
  static fromPretrained(folder: string, opts: PretrainedOptions = {}): UNet2DConditionModel {
    return loadPretrained(folder, CLASS, opts, (file) =>
      new UNet2DConditionModel(parseUNet2DConditionConfig(ConfigReader.fromFile(file, CLASS), { strict: opts.strictConfig }), { meta: true }));
  }

  /** Width of the context tokens the cross-attention layers expect (768 for SD 1.x, 1024 for SD 2.x). */
  get crossAttentionDim(): number | null {
    const c = this.config;
    const cross = [c.midBlock, ...c.downBlocks, ...c.upBlocks].find((b) => b !== null && 'crossAttentionDim' in b);
    return cross && 'crossAttentionDim' in cross ? cross.crossAttentionDim : null;
  }

  /**
   * sample [B, inChannels, h, w], timestep (a number, or a tensor of 1 or B values), encoderHiddenStates
   * [B, L, crossAttentionDim] → prediction [B, outChannels, h, w].
   */
  forward(sample: Tensor, timestep: number | readonly number[] | Tensor, encoderHiddenStates: Tensor): Tensor {
    this.checkReady(sample);
    const c = this.config;
    const [B, , H, W] = sample.shape;
    const t = sinusoidalEmbedding(timestepList(timestep, B), c.blockOutChannels[0], { flipSinToCos: c.flipSinToCos, freqShift: c.freqShift });
    const temb = this.time_embedding.forward(t); // [B, tembDim]

    let h = this.conv_in.forward(c.centerInputSample ? sample.mul(2).sub(1) : sample);
    const skips: Tensor[] = [h];
    for (const down of this.down_blocks) {
      const r = down.forward(h, temb, encoderHiddenStates);
      h = r.h;
      skips.push(...r.skips);
    }
    if (this.mid_block) h = this.mid_block.forward(h, temb, encoderHiddenStates);

    // Sizes that do not halve evenly: upsample to the skip's size instead of ×2.
    const factor = 2 ** this.up_blocks.items.filter((u) => u.upsamplers.length).length;
    const oddSize = H % factor !== 0 || W % factor !== 0;
    for (const up of this.up_blocks) {
      const mine = skips.splice(skips.length - up.numSkips);
      const next = skips[skips.length - 1];
      const size = oddSize && up.upsamplers.length && next ? [next.shape[2], next.shape[3]] as [number, number] : undefined;
      h = up.forward(h, mine, temb, encoderHiddenStates, size);
    }
    return this.conv_out.forward(act(this.conv_norm_out.forward(h), c.act));
  }

  private checkReady(sample: Tensor): void {
    if (this._shapeOnly) {
      if (hasShapeOnly(this)) throw new Error(`${CLASS}: this model was built shape-only; load weights before running it`);
      this._shapeOnly = false;
    }
    if (sample.ndim !== 4 || sample.shape[1] !== this.config.inChannels) {
      throw new Error(`${CLASS}: sample must be [B, ${this.config.inChannels}, H, W], got [${sample.shape}]`);
    }
  }
}
