/**
 * The down, mid and up blocks of diffusers' U-Nets and VAE, built from typed block configs.
 *
 * Every down/up block is the same shape — `resnets`, optional `attentions` (one per resnet), optional
 * `downsamplers`/`upsamplers` — so one DownBlock and one UpBlock class serve all of diffusers' types. What a
 * type adds is its attention kind, and that is what the discriminated union `DownBlockConfig` /
 * `UpBlockConfig` carries: `{type: 'CrossAttnDownBlock2D', heads, crossAttentionDim, …}` has the fields a
 * cross-attention block needs and `{type: 'DownBlock2D'}` has none. `DOWN_BLOCKS` / `UP_BLOCKS` map each type
 * to its factory (no if/elif ladder); the geometry (channels, layers, samplers) comes from the model.
 */
import { type Tensor, cat } from '../../engine/index.js';
import { Module, ModuleList } from '../../nn/index.js';
import { ConfigError, type ConfigReader } from '../config.js';
import { SpatialAttention, Transformer2DModel, type TransformerOptions } from './attention.js';
import type { Ctx } from './layers.js';
import { Downsample2D, ResnetBlock2D, Upsample2D, type ResnetSettings } from './resnet.js';

// ------------------------------------------------------------------ configs

/** Cross-attention settings of one block (per-block in diffusers' lists). */
export interface CrossAttnSettings {
  heads: number;
  crossAttentionDim: number;
  transformerLayers: number;
  useLinearProjection: boolean;
  upcastAttention: boolean;
}

export type DownBlockConfig =
  | { type: 'DownBlock2D' }
  | { type: 'DownEncoderBlock2D' }
  | { type: 'AttnDownBlock2D'; attentionHeadDim: number }
  | ({ type: 'CrossAttnDownBlock2D' } & CrossAttnSettings);

export type UpBlockConfig =
  | { type: 'UpBlock2D' }
  | { type: 'UpDecoderBlock2D' }
  | { type: 'AttnUpBlock2D'; attentionHeadDim: number }
  | ({ type: 'CrossAttnUpBlock2D' } & CrossAttnSettings);

export type DownBlockType = DownBlockConfig['type'];
export type UpBlockType = UpBlockConfig['type'];

/** Channels and layout of one block, worked out by the model from block_out_channels. */
export interface DownGeometry {
  inChannels: number;
  outChannels: number;
  numLayers: number;
  /** Padding of the stride-2 conv, or null for the last block (no downsampler). */
  downsamplePadding: number | null;
  resnet: ResnetSettings;
}

export interface UpGeometry {
  /** U-Nets: width of this block's last skip (the down block one level up). Decoder: the input width. */
  inChannels: number;
  outChannels: number;
  /** Channels coming from the block below; null for the VAE decoder (no skip connections). */
  prevOutputChannels: number | null;
  numLayers: number;
  addUpsample: boolean;
  resnet: ResnetSettings;
}

// ------------------------------------------------------------------ blocks

type BlockAttention = SpatialAttention | Transformer2DModel;

function attend(a: BlockAttention, h: Tensor, context: Tensor | null): Tensor {
  return a instanceof Transformer2DModel ? a.forward(h, context) : a.forward(h);
}

function transformerOptions(c: CrossAttnSettings, channels: number, r: ResnetSettings): TransformerOptions {
  if (channels % c.heads) throw new ConfigError(`${channels} channels cannot be split into ${c.heads} attention heads`);
  return {
    heads: c.heads, headDim: channels / c.heads, crossAttentionDim: c.crossAttentionDim, layers: c.transformerLayers,
    useLinearProjection: c.useLinearProjection, upcastAttention: c.upcastAttention, groups: r.groups,
    dropout: 0, // diffusers' cross-attention blocks build their transformers without dropout
  };
}

function spatialAttention(ctx: Ctx, channels: number, headDim: number, r: ResnetSettings): SpatialAttention {
  return new SpatialAttention(ctx, { channels, headDim, groups: r.groups, eps: r.eps, rescaleOutputFactor: r.outputScaleFactor });
}

/** Attention layer factory for a block config, or null for plain resnet blocks. */
type AttnFactory = ((ctx: Ctx, channels: number, r: ResnetSettings) => BlockAttention) | null;

// Field order is state-dict order: attentions before resnets, as diffusers declares them.
export class DownBlock extends Module {
  attentions: ModuleList<BlockAttention>;
  resnets: ModuleList<ResnetBlock2D>;
  downsamplers: ModuleList<Downsample2D>;

  constructor(ctx: Ctx, readonly type: DownBlockType, g: DownGeometry, attn: AttnFactory) {
    super();
    this.resnets = new ModuleList();
    this.attentions = new ModuleList();
    for (let i = 0; i < g.numLayers; i++) {
      this.resnets.push(new ResnetBlock2D(ctx, i === 0 ? g.inChannels : g.outChannels, g.outChannels, g.resnet));
      if (attn) this.attentions.push(attn(ctx, g.outChannels, g.resnet));
    }
    this.downsamplers = new ModuleList(g.downsamplePadding === null ? [] : [
      new Downsample2D(ctx, g.outChannels, g.outChannels, g.downsamplePadding),
    ]);
  }

  /** h [B, Cin, H, W] → h [B, Cout, H/2, W/2], plus every intermediate state for the skip connections. */
  forward(h: Tensor, temb: Tensor | null, context: Tensor | null): { h: Tensor; skips: Tensor[] } {
    const skips: Tensor[] = [];
    this.resnets.items.forEach((resnet, i) => {
      h = resnet.forward(h, temb);
      if (this.attentions.length) h = attend(this.attentions.at(i), h, context);
      skips.push(h);
    });
    for (const down of this.downsamplers) {
      h = down.forward(h);
      skips.push(h);
    }
    return { h, skips };
  }
}

export class UpBlock extends Module {
  attentions: ModuleList<BlockAttention>;
  resnets: ModuleList<ResnetBlock2D>;
  upsamplers: ModuleList<Upsample2D>;

  constructor(ctx: Ctx, readonly type: UpBlockType, g: UpGeometry, attn: AttnFactory) {
    super();
    this.resnets = new ModuleList();
    this.attentions = new ModuleList();
    for (let i = 0; i < g.numLayers; i++) {
      let inC: number;
      if (g.prevOutputChannels === null) inC = i === 0 ? g.inChannels : g.outChannels;
      else {
        // The skip concatenated before resnet i comes from the down path in reverse; the last one is the
        // output of the down block one level up (inChannels wide).
        const skip = i === g.numLayers - 1 ? g.inChannels : g.outChannels;
        inC = (i === 0 ? g.prevOutputChannels : g.outChannels) + skip;
      }
      this.resnets.push(new ResnetBlock2D(ctx, inC, g.outChannels, g.resnet));
      if (attn) this.attentions.push(attn(ctx, g.outChannels, g.resnet));
    }
    this.upsamplers = new ModuleList(g.addUpsample ? [new Upsample2D(ctx, g.outChannels, g.outChannels)] : []);
  }

  /** How many skip tensors this block consumes (0 for the decoder). */
  get numSkips(): number {
    return this.resnets.length;
  }

  /**
   * h [B, C, H, W] → [B, Cout, 2H, 2W]. `skips` are this block's skip tensors in down-path order (the last one
   * is used first); empty for the VAE decoder. `upsampleSize` forces the upsampled size (odd inputs).
   */
  forward(h: Tensor, skips: readonly Tensor[], temb: Tensor | null, context: Tensor | null, upsampleSize?: [number, number]): Tensor {
    this.resnets.items.forEach((resnet, i) => {
      if (skips.length) h = cat([h, skips[skips.length - 1 - i]], 1);
      h = resnet.forward(h, temb);
      if (this.attentions.length) h = attend(this.attentions.at(i), h, context);
    });
    for (const up of this.upsamplers) h = up.forward(h, upsampleSize);
    return h;
  }
}

/**
 * resnets.0, then (attentions.i, resnets.i+1) per layer, all at one resolution. Used as
 * UNetMidBlock2DCrossAttn (transformer attention), UNetMidBlock2D (spatial attention, or none).
 */
export class MidBlock extends Module {
  attentions: ModuleList<BlockAttention>;
  resnets: ModuleList<ResnetBlock2D>;

  constructor(ctx: Ctx, channels: number, resnet: ResnetSettings, attn: AttnFactory, numLayers = 1) {
    super();
    this.resnets = new ModuleList([new ResnetBlock2D(ctx, channels, channels, resnet)]);
    this.attentions = new ModuleList();
    for (let i = 0; i < numLayers; i++) {
      if (attn) this.attentions.push(attn(ctx, channels, resnet));
      this.resnets.push(new ResnetBlock2D(ctx, channels, channels, resnet));
    }
  }

  forward(h: Tensor, temb: Tensor | null, context: Tensor | null): Tensor {
    h = this.resnets.at(0).forward(h, temb);
    for (let i = 1; i < this.resnets.length; i++) {
      if (this.attentions.length) h = attend(this.attentions.at(i - 1), h, context);
      h = this.resnets.at(i).forward(h, temb);
    }
    return h;
  }
}

// ------------------------------------------------------------------ factories

type Factories<C extends { type: string }, G, B> = { [K in C['type']]: (ctx: Ctx, cfg: Extract<C, { type: K }>, g: G) => B };

export const DOWN_BLOCKS: Factories<DownBlockConfig, DownGeometry, DownBlock> = {
  DownBlock2D: (ctx, c, g) => new DownBlock(ctx, c.type, g, null),
  DownEncoderBlock2D: (ctx, c, g) => new DownBlock(ctx, c.type, g, null),
  AttnDownBlock2D: (ctx, c, g) => new DownBlock(ctx, c.type, g, (cx, ch, r) => spatialAttention(cx, ch, c.attentionHeadDim, r)),
  CrossAttnDownBlock2D: (ctx, c, g) => new DownBlock(ctx, c.type, g, (cx, ch, r) => new Transformer2DModel(cx, ch, transformerOptions(c, ch, r))),
};

export const UP_BLOCKS: Factories<UpBlockConfig, UpGeometry, UpBlock> = {
  UpBlock2D: (ctx, c, g) => new UpBlock(ctx, c.type, g, null),
  UpDecoderBlock2D: (ctx, c, g) => new UpBlock(ctx, c.type, g, null),
  AttnUpBlock2D: (ctx, c, g) => new UpBlock(ctx, c.type, g, (cx, ch, r) => spatialAttention(cx, ch, c.attentionHeadDim, r)),
  CrossAttnUpBlock2D: (ctx, c, g) => new UpBlock(ctx, c.type, g, (cx, ch, r) => new Transformer2DModel(cx, ch, transformerOptions(c, ch, r))),
};

export function makeDownBlock(ctx: Ctx, cfg: DownBlockConfig, g: DownGeometry): DownBlock {
  return (DOWN_BLOCKS[cfg.type] as (ctx: Ctx, c: DownBlockConfig, g: DownGeometry) => DownBlock)(ctx, cfg, g);
}

export function makeUpBlock(ctx: Ctx, cfg: UpBlockConfig, g: UpGeometry): UpBlock {
  return (UP_BLOCKS[cfg.type] as (ctx: Ctx, c: UpBlockConfig, g: UpGeometry) => UpBlock)(ctx, cfg, g);
}

/** Mid block with transformer attention (UNetMidBlock2DCrossAttn). */
export function crossAttnMidBlock(ctx: Ctx, channels: number, resnet: ResnetSettings, c: CrossAttnSettings): MidBlock {
  return new MidBlock(ctx, channels, resnet, (cx, ch, r) => new Transformer2DModel(cx, ch, transformerOptions(c, ch, r)));
}

/**
 * UNetMidBlock2D: spatial attention (or none). `attnGroups` null drops the attention's GroupNorm, which is
 * what diffusers does for scale_shift models unless attn_norm_num_groups is given.
 */
export function spatialMidBlock(ctx: Ctx, channels: number, resnet: ResnetSettings,
                                o: { addAttention: boolean; headDim: number; attnGroups: number | null }): MidBlock {
  return new MidBlock(ctx, channels, resnet, o.addAttention
    ? (cx, ch, r) => new SpatialAttention(cx, { channels: ch, headDim: o.headDim, groups: o.attnGroups, eps: r.eps, rescaleOutputFactor: r.outputScaleFactor })
    : null);
}

// ------------------------------------------------------------------ config parsing

/**
 * Parse `down_block_types` / `up_block_types` into typed block configs. `allowed` is the set the model
 * supports; per-block attention settings come from the callbacks, which read the model's own keys.
 */
export function parseBlockTypes<T extends string>(r: ConfigReader, key: string, allowed: readonly T[], dflt?: T[]): T[] {
  const types = r.stringList(key, dflt);
  if (!types.length) r.fail(key, 'must list at least one block');
  types.forEach((t, i) => {
    if (!allowed.includes(t as T)) {
      throw new ConfigError(`${r.where}: ${key}[${i}] = "${t}" is not a supported block type (supported: ${allowed.join(', ')})`);
    }
  });
  return types as T[];
}
