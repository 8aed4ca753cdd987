/**
 * AutoencoderKL: the Stable Diffusion VAE (Rombach et al. 2022 §3.1; Kingma & Welling 2014), with
 * diffusers' weight names.
 *
 *   image [B, 3, H, W] ─encoder─▶ [B, 2·lc, H/f, W/f] ─quant_conv─▶ mean ‖ logvar   (posterior q(z|x))
 *   z [B, lc, H/f, W/f] ─post_quant_conv─▶ decoder ─▶ image [B, 3, H, W]
 * with f = 2^(levels−1) (8 for SD) and lc latent channels (4). The encoder is resnets + stride-2 convs, a mid
 * block with one self-attention over all pixels, then norm/SiLU/conv; the decoder mirrors it with nearest ×2
 * upsampling. Latents go to the U-Net multiplied by `scalingFactor` (0.18215 for SD 1.x/2.x); `decode`
 * takes unscaled latents, as diffusers' does.
 *
 * Large images: `encodeTiled` / `decodeTiled` run overlapping tiles and feather the seams (blocks/tiling.ts).
 */
import { type Tensor } from '../engine/index.js';
import { Module, ModuleList, type Conv2d, type GroupNorm } from '../nn/index.js';
import { ConfigReader, checkClassName, type ConfigReadOptions } from './config.js';
import { ACT_FNS, Ctx, act, hasShapeOnly, type ActFn, type CtxOptions } from './blocks/layers.js';
import type { ResnetSettings } from './blocks/resnet.js';
import { tiledApply } from './blocks/tiling.js';
import {
  DownBlock, MidBlock, UpBlock, makeDownBlock, makeUpBlock, parseBlockTypes, spatialMidBlock,
} from './blocks/unet_blocks.js';
import { loadPretrained, renameLegacyAttention, type PretrainedOptions } from './blocks/weights.js';

export interface AutoencoderKLConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  /** Channels per level, top to bottom (the decoder runs them in reverse). */
  blockOutChannels: number[];
  layersPerBlock: number;
  act: ActFn;
  normNumGroups: number;
  /** Image size the VAE was trained at (diffusers' default tile size). */
  sampleSize: number;
  /** Multiply posterior samples by this before the U-Net; divide before decoding. */
  scalingFactor: number;
  /** Subtracted before scaling (SD3 / Flux VAEs); null when unused. */
  shiftFactor: number | null;
  latentsMean: number[] | null;
  latentsStd: number[] | null;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
}

const CLASS = 'AutoencoderKL';

export function parseAutoencoderKLConfig(r: ConfigReader, opts: ConfigReadOptions = {}): AutoencoderKLConfig {
  checkClassName(r, [CLASS]);
  const down = parseBlockTypes(r, 'down_block_types', ['DownEncoderBlock2D'] as const, ['DownEncoderBlock2D']);
  const up = parseBlockTypes(r, 'up_block_types', ['UpDecoderBlock2D'] as const, ['UpDecoderBlock2D']);
  const blockOutChannels = r.intList('block_out_channels', [64]);
  if (down.length !== blockOutChannels.length || up.length !== blockOutChannels.length) {
    r.fail('block_out_channels', `has ${blockOutChannels.length} entries but there are ${down.length} down and ${up.length} up blocks`);
  }
  const floatList = (key: string): number[] | null => {
    const v = r.value(key);
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) r.fail(key, 'must be a list of numbers or null');
    return [...(v as number[])];
  };
  r.ignore('force_upcast'); // f16 overflow workaround in diffusers; we decode in f32 activations anyway
  r.unsupported('norm_type', ['group'], 'spatial norm');
  const cfg: AutoencoderKLConfig = {
    inChannels: r.size('in_channels', 3),
    outChannels: r.size('out_channels', 3),
    latentChannels: r.size('latent_channels', 4),
    blockOutChannels,
    layersPerBlock: r.size('layers_per_block', 1),
    act: r.oneOf('act_fn', ACT_FNS, 'silu'),
    normNumGroups: r.size('norm_num_groups', 32),
    sampleSize: r.size('sample_size', 32),
    scalingFactor: r.number('scaling_factor', 0.18215),
    shiftFactor: r.optionalNumber('shift_factor'),
    latentsMean: floatList('latents_mean'),
    latentsStd: floatList('latents_std'),
    useQuantConv: r.bool('use_quant_conv', true),
    usePostQuantConv: r.bool('use_post_quant_conv', true),
    midBlockAddAttention: r.bool('mid_block_add_attention', true),
  };
  r.finish(opts);
  return cfg;
}

/** The VAE's resnets: GroupNorm eps 1e-6, no time embedding. */
const vaeResnet = (c: AutoencoderKLConfig): ResnetSettings => ({
  groups: c.normNumGroups, eps: 1e-6, act: c.act, tembChannels: null, timeScaleShift: 'default', dropout: 0, outputScaleFactor: 1,
});

const vaeMid = (ctx: Ctx, c: AutoencoderKLConfig): MidBlock => {
  const ch = c.blockOutChannels[c.blockOutChannels.length - 1];
  return spatialMidBlock(ctx, ch, vaeResnet(c), { addAttention: c.midBlockAddAttention, headDim: ch, attnGroups: c.normNumGroups });
};

/** image [B, in, H, W] → moments [B, 2·lc, H/f, W/f]. */
export class Encoder extends Module {
  conv_in: Conv2d;
  down_blocks: ModuleList<DownBlock>;
  mid_block: MidBlock;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;

  constructor(ctx: Ctx, readonly c: AutoencoderKLConfig) {
    super();
    const bc = c.blockOutChannels, n = bc.length, top = bc[n - 1];
    this.conv_in = ctx.conv(c.inChannels, bc[0], 3, { padding: 1 });
    this.down_blocks = new ModuleList(bc.map((ch, i) => makeDownBlock(ctx, { type: 'DownEncoderBlock2D' }, {
      inChannels: i === 0 ? bc[0] : bc[i - 1], outChannels: ch, numLayers: c.layersPerBlock,
      downsamplePadding: i === n - 1 ? null : 0, resnet: vaeResnet(c),
    })));
    this.mid_block = vaeMid(ctx, c);
    this.conv_norm_out = ctx.groupNorm(c.normNumGroups, top, 1e-6);
    this.conv_out = ctx.conv(top, 2 * c.latentChannels, 3, { padding: 1 });
  }

  forward(x: Tensor): Tensor {
    let h = this.conv_in.forward(x);
    for (const down of this.down_blocks) h = down.forward(h, null, null).h;
    h = this.mid_block.forward(h, null, null);
    return this.conv_out.forward(act(this.conv_norm_out.forward(h), this.c.act));
  }
}

/** z [B, lc, h, w] → image [B, out, h·f, w·f]. */
export class Decoder extends Module {
  conv_in: Conv2d;
  up_blocks: ModuleList<UpBlock>;
  mid_block: MidBlock;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;

  constructor(ctx: Ctx, readonly c: AutoencoderKLConfig) {
    super();
    const rev = [...c.blockOutChannels].reverse(), n = rev.length;
    this.conv_in = ctx.conv(c.latentChannels, rev[0], 3, { padding: 1 });
    this.mid_block = vaeMid(ctx, c);
    this.up_blocks = new ModuleList(rev.map((ch, i) => makeUpBlock(ctx, { type: 'UpDecoderBlock2D' }, {
      inChannels: rev[Math.max(i - 1, 0)], outChannels: ch, prevOutputChannels: null,
      numLayers: c.layersPerBlock + 1, addUpsample: i < n - 1, resnet: vaeResnet(c),
    })));
    this.conv_norm_out = ctx.groupNorm(c.normNumGroups, rev[n - 1], 1e-6);
    this.conv_out = ctx.conv(rev[n - 1], c.outChannels, 3, { padding: 1 });
  }

  forward(z: Tensor): Tensor {
    let h = this.mid_block.forward(this.conv_in.forward(z), null, null);
    for (const up of this.up_blocks) h = up.forward(h, [], null, null);
    return this.conv_out.forward(act(this.conv_norm_out.forward(h), this.c.act));
  }
}

/** The diagonal Gaussian posterior q(z | x). */
export interface Posterior {
  mean: Tensor;   // [B, lc, h, w]
  logvar: Tensor; // [B, lc, h, w], clamped to [−30, 20]
}

/** Tile sizes in IMAGE pixels for both directions (multiples of the downscale factor). */
export interface VaeTileOptions {
  /** Default: the config's sample_size (512 for SD). */
  tileSize?: number;
  /** Default: a quarter of the tile. */
  overlap?: number;
}

export class AutoencoderKL extends Module {
  encoder: Encoder;
  decoder: Decoder;
  quant_conv: Conv2d | null;
  post_quant_conv: Conv2d | null;
  private _shapeOnly: boolean;

  constructor(readonly config: AutoencoderKLConfig, opts: CtxOptions = {}) {
    super();
    const ctx = new Ctx(opts);
    this._shapeOnly = ctx.meta;
    const lc = config.latentChannels;
    this.encoder = new Encoder(ctx, config);
    this.decoder = new Decoder(ctx, config);
    this.quant_conv = config.useQuantConv ? ctx.conv(2 * lc, 2 * lc, 1) : null;
    this.post_quant_conv = config.usePostQuantConv ? ctx.conv(lc, lc, 1) : null;
  }

  static fromDiffusersConfig(json: Record<string, unknown>, opts: CtxOptions & ConfigReadOptions = {}): AutoencoderKL {
    return new AutoencoderKL(parseAutoencoderKLConfig(new ConfigReader(json, `${CLASS} config`), opts), opts);
  }

  /** Load a diffusers `vae/` folder. Attention weights saved under the old names (query/key/value/proj_attn) are renamed. */
  static fromPretrained(folder: string, opts: PretrainedOptions = {}): AutoencoderKL {
    return loadPretrained(folder, CLASS, opts, (file) =>
      new AutoencoderKL(parseAutoencoderKLConfig(ConfigReader.fromFile(file, CLASS), { strict: opts.strictConfig }), { meta: true }),
      renameLegacyAttention);
  }

  get scalingFactor(): number {
    return this.config.scalingFactor;
  }

  /** Image pixels per latent pixel (8 for SD). */
  get downscaleFactor(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /** x [B, 3, H, W] in [−1, 1] (H, W multiples of the downscale factor) → posterior over [B, lc, H/f, W/f]. */
  encode(x: Tensor): Posterior {
    this.checkReady();
    return this.posterior(this.moments(x));
  }

  /** z [B, lc, h, w] (unscaled: divide by scalingFactor first) → image [B, 3, h·f, w·f], roughly in [−1, 1]. */
  decode(z: Tensor): Tensor {
    this.checkReady();
    return this.decoder.forward(this.post_quant_conv ? this.post_quant_conv.forward(z) : z);
  }

  /** encode, tile by tile; the posterior moments are blended across the seams. */
  encodeTiled(x: Tensor, opts: VaeTileOptions = {}): Posterior {
    this.checkReady();
    const f = this.downscaleFactor;
    const { tile, overlap } = this.tiles(opts);
    return this.posterior(tiledApply(x, (t) => this.moments(t), { tile, overlap, scale: 1 / f, align: f }));
  }

  /** decode, tile by tile; tile size and overlap in image pixels. */
  decodeTiled(z: Tensor, opts: VaeTileOptions = {}): Tensor {
    this.checkReady();
    const f = this.downscaleFactor;
    const { tile, overlap } = this.tiles(opts);
    return tiledApply(z, (t) => this.decode(t), { tile: tile / f, overlap: overlap / f, scale: f });
  }

  /** A draw from the posterior: mean + exp(logvar / 2) · noise (noise ~ N(0, 1), same shape). */
  static sample(p: Posterior, noise: Tensor): Tensor {
    return p.mean.add(p.logvar.mul(0.5).exp().mul(noise));
  }

  private moments(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.config.inChannels) {
      throw new Error(`${CLASS}: image must be [B, ${this.config.inChannels}, H, W], got [${x.shape}]`);
    }
    const h = this.encoder.forward(x);
    return this.quant_conv ? this.quant_conv.forward(h) : h; // [B, 2·lc, H/f, W/f]
  }

  private posterior(moments: Tensor): Posterior {
    const [mean, logvar] = moments.chunk(2, 1);
    return { mean: mean.contiguous(), logvar: logvar.clamp(-30, 20) };
  }

  private tiles(opts: VaeTileOptions): { tile: number; overlap: number } {
    const f = this.downscaleFactor;
    const tile = opts.tileSize ?? this.config.sampleSize;
    const overlap = opts.overlap ?? Math.floor(tile / 4 / f) * f;
    if (tile % f || overlap % f || tile <= 0 || overlap < 0 || overlap >= tile) {
      throw new Error(`${CLASS}: tileSize ${tile} and overlap ${overlap} must be multiples of ${f} with 0 ≤ overlap < tileSize`);
    }
    return { tile, overlap };
  }

  private checkReady(): void {
    if (!this._shapeOnly) return;
    if (hasShapeOnly(this)) throw new Error(`${CLASS}: this model was built shape-only; load weights before running it`);
    this._shapeOnly = false;
  }
}
