/**
 * Attention blocks of the diffusion U-Nets and the VAE, with diffusers' weight names.
 *
 * - SpatialAttention: self-attention over the pixels of a feature map with its own GroupNorm and residual
 *   (`attentions.N.{group_norm,to_q,to_k,to_v,to_out.0}`): the VAE mid block and UNet2DModel's Attn blocks.
 * - Transformer2DModel: GroupNorm → proj_in → BasicTransformerBlocks → proj_out, plus residual; each block is
 *   self-attention, cross-attention over the text tokens and a GEGLU feed-forward, pre-LayerNorm
 *   (Vaswani et al. 2017; Rombach et al. 2022 §3.3). proj_in/out are 1×1 convs (SD 1.x) or linear (SD 2.x).
 * All of them run the engine's fused attention: no [tokens × tokens] matrix is ever built, and softmax is
 * computed in f32 whatever the weights' dtype (so `upcast_attention` needs no code).
 */
import { type Tensor } from '../../engine/index.js';
import {
  Attention, Module, ModuleList, type AttentionCallOptions, type Conv2d, type Dropout, type GroupNorm,
  type LayerNorm, type Linear,
} from '../../nn/index.js';
import type { Ctx } from './layers.js';

export interface SpatialAttentionOptions {
  channels: number;
  /** Channels per head; heads = channels / headDim. */
  headDim: number;
  /** GroupNorm groups before attention; null for none (diffusers' scale_shift mid blocks). */
  groups: number | null;
  eps: number;
  /** The output (after the residual) is divided by this. */
  rescaleOutputFactor: number;
}

/** out = (attention(norm(x)) + x) / rescale on [B, C, H, W], the H·W pixels as tokens. */
export class SpatialAttention extends Attention {
  group_norm: GroupNorm | null;
  readonly rescale: number;

  constructor(ctx: Ctx, o: SpatialAttentionOptions) {
    if (o.channels % o.headDim) throw new Error(`SpatialAttention: ${o.channels} channels are not a multiple of head dim ${o.headDim}`);
    const cfg = { queryDim: o.channels, heads: o.channels / o.headDim, dimHead: o.headDim, bias: true, outBias: true };
    super(ctx.attentionInit(cfg));
    ctx.finishAttention(this, cfg);
    this.group_norm = o.groups === null ? null : ctx.groupNorm(o.groups, o.channels, o.eps);
    this.rescale = o.rescaleOutputFactor;
  }

  /** x [B, C, H, W] → [B, C, H, W]. */
  override forward(x: Tensor, opts: AttentionCallOptions = {}): Tensor {
    const [B, C, H, W] = x.shape;
    const normed = this.group_norm ? this.group_norm.forward(x) : x;
    // Flatten here rather than through Attention's own 4-D path, which would re-enter this override.
    const tokens = normed.reshape([B, C, H * W]).transpose(1, 2);                  // [B, HW, C]
    const h = super.forward(tokens, opts).transpose(1, 2).reshape([B, C, H, W]);   // [B, C, H, W]
    const out = h.add(x);
    return this.rescale === 1 ? out : out.div(this.rescale);
  }
}

/** GELU-gated linear unit (Shazeer 2020): proj to 2·inner, value · gelu(gate). */
export class GEGLU extends Module {
  proj: Linear;

  constructor(ctx: Ctx, dim: number, inner: number) {
    super();
    this.proj = ctx.linear(dim, 2 * inner);
  }

  /** [..., dim] → [..., inner]. */
  forward(x: Tensor): Tensor {
    const [value, gate] = this.proj.forward(x).chunk(2, -1);
    return value.mul(gate.gelu('none'));
  }
}

/** `ff.net.0` = GEGLU, `ff.net.1` = dropout, `ff.net.2` = Linear(inner, dim). */
export class FeedForward extends Module {
  net: ModuleList;

  constructor(ctx: Ctx, dim: number, mult = 4, dropout = 0) {
    super();
    const inner = dim * mult;
    this.net = new ModuleList([new GEGLU(ctx, dim, inner), ctx.dropout(dropout), ctx.linear(inner, dim)]);
  }

  forward(x: Tensor): Tensor {
    const [geglu, drop, out] = this.net.items as [GEGLU, Dropout, Linear];
    return out.forward(drop.forward(geglu.forward(x)));
  }
}

export interface TransformerOptions {
  heads: number;
  headDim: number;
  /** Channels of the context tokens (the text encoder's hidden size). */
  crossAttentionDim: number;
  /** Transformer blocks per Transformer2DModel. */
  layers: number;
  /** proj_in/proj_out as Linear on tokens (SD 2.x) instead of 1×1 convs (SD 1.x). */
  useLinearProjection: boolean;
  /** Accepted for config fidelity; attention is always computed in f32. */
  upcastAttention: boolean;
  groups: number;
  dropout: number;
}

/** x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)). Tokens [B, L, dim]. */
export class BasicTransformerBlock extends Module {
  norm1: LayerNorm;
  attn1: Attention;
  norm2: LayerNorm;
  attn2: Attention;
  norm3: LayerNorm;
  ff: FeedForward;

  constructor(ctx: Ctx, dim: number, o: TransformerOptions) {
    super();
    const heads = { heads: o.heads, dimHead: o.headDim, dropout: o.dropout, bias: false, outBias: true };
    this.norm1 = ctx.layerNorm(dim, 1e-5);
    this.attn1 = ctx.attention({ queryDim: dim, ...heads });
    this.norm2 = ctx.layerNorm(dim, 1e-5);
    this.attn2 = ctx.attention({ queryDim: dim, crossAttentionDim: o.crossAttentionDim, ...heads });
    this.norm3 = ctx.layerNorm(dim, 1e-5);
    this.ff = new FeedForward(ctx, dim, 4, o.dropout);
  }

  /** x [B, L, dim], context [B, Lc, crossAttentionDim] (self-attention twice when null). */
  forward(x: Tensor, context: Tensor | null): Tensor {
    x = this.attn1.forward(this.norm1.forward(x)).add(x);
    x = this.attn2.forward(this.norm2.forward(x), { context }).add(x);
    return this.ff.forward(this.norm3.forward(x)).add(x);
  }
}

export class Transformer2DModel extends Module {
  norm: GroupNorm;
  proj_in: Conv2d | Linear;
  transformer_blocks: ModuleList<BasicTransformerBlock>;
  proj_out: Conv2d | Linear;
  readonly linear: boolean;

  constructor(ctx: Ctx, readonly channels: number, o: TransformerOptions) {
    super();
    const inner = o.heads * o.headDim;
    this.linear = o.useLinearProjection;
    this.norm = ctx.groupNorm(o.groups, channels, 1e-6);
    this.proj_in = this.linear ? ctx.linear(channels, inner) : ctx.conv(channels, inner, 1);
    this.transformer_blocks = new ModuleList(Array.from({ length: o.layers }, () => new BasicTransformerBlock(ctx, inner, o)));
    this.proj_out = this.linear ? ctx.linear(inner, channels) : ctx.conv(inner, channels, 1);
  }

  /** x [B, C, H, W], context [B, Lc, D] → [B, C, H, W]. */
  forward(x: Tensor, context: Tensor | null): Tensor {
    const [B, C, H, W] = x.shape;
    const toTokens = (t: Tensor) => t.permute(0, 2, 3, 1).reshape([B, H * W, t.shape[1]]); // [B, HW, C']
    const toMap = (t: Tensor) => t.reshape([B, H, W, t.shape[2]]).permute(0, 3, 1, 2);     // [B, C', H, W]
    let h = this.norm.forward(x);
    h = this.linear ? this.proj_in.forward(toTokens(h)) : toTokens(this.proj_in.forward(h));
    for (const block of this.transformer_blocks) h = block.forward(h, context);
    h = this.linear ? toMap(this.proj_out.forward(h)) : this.proj_out.forward(toMap(h));
    if (h.shape[1] !== C) throw new Error(`Transformer2DModel: proj_out gave ${h.shape[1]} channels, expected ${C}`);
    return h.add(x);
  }
}
