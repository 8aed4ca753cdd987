/**
 * UNet2DModel: the pixel-space DDPM denoiser (Ho et al. 2020, "Denoising Diffusion Probabilistic Models";
 * Nichol & Dhariwal 2021 for AdaGN), with diffusers' weight names.
 *
 *   t ──sinusoid──▶ time_embedding (MLP) ──▶ temb  (+ class_embedding[y] when class-conditional)
 *   x [B, C, H, W] ─conv_in─▶ down_blocks (resnets, self-attention at chosen levels) ─▶ mid (resnet, attn,
 *   resnet) ─▶ up_blocks (skips concatenated) ─▶ norm, SiLU, conv_out ─▶ ε (or x₀ / v)
 *
 * `resnet_time_scale_shift: 'scale_shift'` makes every resnet modulate its second GroupNorm by the time
 * (and class) embedding, `h·(1 + s) + b` — adaptive group norm. Class conditioning is a learned embedding
 * added to temb; reserve one extra class as the "null" label for classifier-free guidance.
 * Trains like any Module: every op here has a backward.
 */
import { type Tensor, fromTypedArray } from '../engine/index.js';
import { Module, ModuleList, type Conv2d, type Embedding, type GroupNorm } from '../nn/index.js';
import { ConfigReader, checkClassName, type ConfigReadOptions } from './config.js';
import { TimestepEmbedding, sinusoidalEmbedding, timestepList } from './blocks/embeddings.js';
import { ACT_FNS, Ctx, act, hasShapeOnly, type ActFn, type CtxOptions } from './blocks/layers.js';
import type { ResnetSettings, TimeScaleShift } from './blocks/resnet.js';
import {
  DownBlock, MidBlock, UpBlock, makeDownBlock, makeUpBlock, parseBlockTypes, spatialMidBlock,
  type DownBlockConfig, type UpBlockConfig,
} from './blocks/unet_blocks.js';
import { loadPretrained, renameLegacyAttention, type PretrainedOptions } from './blocks/weights.js';

export interface UNet2DConfig {
  inChannels: number;
  outChannels: number;
  sampleSize: number | null;
  blockOutChannels: number[];
  layersPerBlock: number;
  /** One per level, top to bottom; Attn blocks carry their head dim. */
  downBlocks: DownBlockConfig[];
  /** One per level, bottom to top. */
  upBlocks: UpBlockConfig[];
  /** UNetMidBlock2D, or null for none. */
  midBlock: { addAttention: boolean; attentionHeadDim: number; attnNormNumGroups: number | null } | null;
  midBlockScaleFactor: number;
  downsamplePadding: number;
  act: ActFn;
  normNumGroups: number;
  normEps: number;
  flipSinToCos: boolean;
  freqShift: number;
  timeEmbeddingDim: number | null;
  resnetTimeScaleShift: TimeScaleShift;
  /** Number of classes for a learned class embedding (null: unconditional). */
  numClassEmbeds: number | null;
  centerInputSample: boolean;
  dropout: number;
}

const DOWN_TYPES = ['DownBlock2D', 'AttnDownBlock2D'] as const;
const UP_TYPES = ['UpBlock2D', 'AttnUpBlock2D'] as const;
const CLASS = 'UNet2DModel';

export function parseUNet2DConfig(r: ConfigReader, opts: ConfigReadOptions = {}): UNet2DConfig {
  checkClassName(r, [CLASS]);
  const downTypes = parseBlockTypes(r, 'down_block_types', DOWN_TYPES, ['DownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D']);
  const upTypes = parseBlockTypes(r, 'up_block_types', UP_TYPES, ['AttnUpBlock2D', 'AttnUpBlock2D', 'AttnUpBlock2D', 'UpBlock2D']);
  const n = downTypes.length;
  if (upTypes.length !== n) r.fail('up_block_types', `has ${upTypes.length} blocks, down_block_types has ${n}`);
  const blockOutChannels = r.intList('block_out_channels', [224, 448, 672, 896]);
  if (blockOutChannels.length !== n) r.fail('block_out_channels', `has ${blockOutChannels.length} entries, expected one per block (${n})`);
  // Here attention_head_dim IS the channels per head (null: one head over all channels).
  const headDim = r.optionalInt('attention_head_dim') ?? 8;
  const headDimFor = (ch: number) => r.raw.attention_head_dim === null ? ch : headDim;
  const rev = [...blockOutChannels].reverse();
  const downBlocks = downTypes.map((type, i): DownBlockConfig =>
    type === 'AttnDownBlock2D' ? { type, attentionHeadDim: headDimFor(blockOutChannels[i]) } : { type });
  const upBlocks = upTypes.map((type, i): UpBlockConfig =>
    type === 'AttnUpBlock2D' ? { type, attentionHeadDim: headDimFor(rev[i]) } : { type });

  const midType = r.value('mid_block_type');
  if (!(midType === undefined || midType === 'UNetMidBlock2D' || midType === null)) {
    r.fail('mid_block_type', `= ${JSON.stringify(midType)} is not supported; supported: "UNetMidBlock2D", null`);
  }
  const classEmbedType = r.value('class_embed_type');
  if (classEmbedType !== undefined && classEmbedType !== null) {
    r.fail('class_embed_type', `= ${JSON.stringify(classEmbedType)} is not supported; supported: null (with num_class_embeds)`);
  }
  r.unsupported('time_embedding_type', ['positional'], 'Fourier features');
  r.unsupported('downsample_type', ['conv'], 'resnet downsamplers');
  r.unsupported('upsample_type', ['conv'], 'resnet upsamplers');
  r.ignore('num_train_timesteps'); // only used by the 'learned' time embedding, which we reject above

  const cfg: UNet2DConfig = {
    inChannels: r.size('in_channels', 3),
    outChannels: r.size('out_channels', 3),
    sampleSize: r.optionalInt('sample_size'),
    blockOutChannels,
    layersPerBlock: r.size('layers_per_block', 2),
    downBlocks,
    upBlocks,
    midBlock: midType === null ? null : {
      addAttention: r.bool('add_attention', true),
      attentionHeadDim: headDimFor(blockOutChannels[n - 1]),
      attnNormNumGroups: r.optionalInt('attn_norm_num_groups'),
    },
    midBlockScaleFactor: r.number('mid_block_scale_factor', 1),
    downsamplePadding: r.int('downsample_padding', 1),
    act: r.oneOf('act_fn', ACT_FNS, 'silu'),
    normNumGroups: r.size('norm_num_groups', 32),
    normEps: r.number('norm_eps', 1e-5),
    flipSinToCos: r.bool('flip_sin_to_cos', true),
    freqShift: r.number('freq_shift', 0),
    timeEmbeddingDim: r.optionalInt('time_embedding_dim'),
    resnetTimeScaleShift: r.oneOf('resnet_time_scale_shift', ['default', 'scale_shift'] as const, 'default'),
    numClassEmbeds: r.optionalInt('num_class_embeds'),
    centerInputSample: r.bool('center_input_sample', false),
    dropout: r.number('dropout', 0),
  };
  r.ignore('add_attention', 'attn_norm_num_groups');
  r.finish(opts);
  return cfg;
}

export class UNet2DModel extends Module {
  conv_in: Conv2d;
  time_embedding: TimestepEmbedding;
  class_embedding: Embedding | null;
  down_blocks: ModuleList<DownBlock>;
  up_blocks: ModuleList<UpBlock>; // before mid_block: diffusers' state-dict order
  mid_block: MidBlock | null;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  private _shapeOnly: boolean;

  constructor(readonly config: UNet2DConfig, opts: CtxOptions = {}) {
    super();
    const ctx = new Ctx(opts);
    this._shapeOnly = ctx.meta;
    const c = config, bc = c.blockOutChannels, n = bc.length;
    const tembDim = c.timeEmbeddingDim ?? 4 * bc[0];
    const resnet = (outputScaleFactor = 1): ResnetSettings => ({
      groups: c.normNumGroups, eps: c.normEps, act: c.act, tembChannels: tembDim, timeScaleShift: c.resnetTimeScaleShift,
      dropout: c.dropout, outputScaleFactor,
    });

    this.conv_in = ctx.conv(c.inChannels, bc[0], 3, { padding: 1 });
    this.time_embedding = new TimestepEmbedding(ctx, bc[0], tembDim, c.act);
    this.class_embedding = c.numClassEmbeds === null ? null : ctx.embedding(c.numClassEmbeds, tembDim);

    this.down_blocks = new ModuleList(c.downBlocks.map((b, i) => makeDownBlock(ctx, b, {
      inChannels: i === 0 ? bc[0] : bc[i - 1], outChannels: bc[i], numLayers: c.layersPerBlock,
      downsamplePadding: i === n - 1 ? null : c.downsamplePadding, resnet: resnet(),
    })));
    const m = c.midBlock;
    // diffusers drops the mid attention's GroupNorm for scale_shift models unless attn_norm_num_groups is set.
    const attnGroups = m?.attnNormNumGroups ?? (c.resnetTimeScaleShift === 'default' ? c.normNumGroups : null);
    this.mid_block = m ? spatialMidBlock(ctx, bc[n - 1], resnet(c.midBlockScaleFactor),
      { addAttention: m.addAttention, headDim: m.attentionHeadDim, attnGroups }) : null;

    const rev = [...bc].reverse();
    this.up_blocks = new ModuleList(c.upBlocks.map((b, i) => makeUpBlock(ctx, b, {
      prevOutputChannels: rev[Math.max(i - 1, 0)], outChannels: rev[i], inChannels: rev[Math.min(i + 1, n - 1)],
      numLayers: c.layersPerBlock + 1, addUpsample: i < n - 1, resnet: resnet(),
    })));

    this.conv_norm_out = ctx.groupNorm(c.normNumGroups, bc[0], c.normEps);
    this.conv_out = ctx.conv(bc[0], c.outChannels, 3, { padding: 1 });
  }

  static fromDiffusersConfig(json: Record<string, unknown>, opts: CtxOptions & ConfigReadOptions = {}): UNet2DModel {
    return new UNet2DModel(parseUNet2DConfig(new ConfigReader(json, `${CLASS} config`), opts), opts);
  }

  /** Load a diffusers UNet2DModel folder (older checkpoints' query/key/value/proj_attn names are mapped). */
  static fromPretrained(folder: string, opts: PretrainedOptions = {}): UNet2DModel {
    return loadPretrained(folder, CLASS, opts, (file) =>
      new UNet2DModel(parseUNet2DConfig(ConfigReader.fromFile(file, CLASS), { strict: opts.strictConfig }), { meta: true }),
      renameLegacyAttention);
  }

  /**
   * sample [B, C, H, W] (H, W divisible by 2^(levels−1)), timestep (number or 1/B values), classLabels [B]
   * (integers < numClassEmbeds; required for class-conditional models) → [B, outChannels, H, W].
   */
  forward(sample: Tensor, timestep: number | readonly number[] | Tensor, classLabels?: Tensor | readonly number[] | null): Tensor {
    const c = this.config;
    this.checkReady(sample);
    const [B, , H, W] = sample.shape;
    const factor = 2 ** (c.blockOutChannels.length - 1);
    if (H % factor || W % factor) throw new Error(`${CLASS}: sample ${H}×${W} must be divisible by ${factor}`);

    const t = sinusoidalEmbedding(timestepList(timestep, B), c.blockOutChannels[0], { flipSinToCos: c.flipSinToCos, freqShift: c.freqShift });
    let temb = this.time_embedding.forward(t); // [B, tembDim]
    if (this.class_embedding) {
      if (classLabels === undefined || classLabels === null) throw new Error(`${CLASS}: class labels are required (num_class_embeds = ${c.numClassEmbeds})`);
      temb = temb.add(this.class_embedding.forward(this.labels(classLabels, B)));
    }

    let h = this.conv_in.forward(c.centerInputSample ? sample.mul(2).sub(1) : sample);
    const skips: Tensor[] = [h];
    for (const down of this.down_blocks) {
      const r = down.forward(h, temb, null);
      h = r.h;
      skips.push(...r.skips);
    }
    if (this.mid_block) h = this.mid_block.forward(h, temb, null);
    for (const up of this.up_blocks) h = up.forward(h, skips.splice(skips.length - up.numSkips), temb, null);
    return this.conv_out.forward(act(this.conv_norm_out.forward(h), c.act));
  }

  private labels(y: Tensor | readonly number[], B: number): Tensor {
    const ids = Array.isArray(y) ? fromTypedArray(Int32Array.from(y), [y.length], 'i32') : (y as Tensor);
    if (ids.numel !== B) throw new Error(`${CLASS}: ${ids.numel} class labels for a batch of ${B}`);
    const n = this.config.numClassEmbeds!;
    const values = ids.dtype === 'i64' ? Array.from(ids.contiguous().data as BigInt64Array, Number) : Array.from(ids.toFloat32Array());
    const bad = values.find((v) => !Number.isInteger(v) || v < 0 || v >= n);
    if (bad !== undefined) throw new Error(`${CLASS}: class label ${bad} is outside [0, ${n})`);
    return ids.reshape([B]);
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
