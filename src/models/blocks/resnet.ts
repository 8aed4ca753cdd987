/**
 * ResnetBlock2D, Downsample2D and Upsample2D with diffusers' field names (norm1, conv1, time_emb_proj, norm2,
 * conv2, conv_shortcut; downsamplers.0.conv; upsamplers.0.conv).
 */
import { type Tensor, groupNorm, interpolate, pad } from '../../engine/index.js';
import { Module, type Conv2d, type Dropout, type GroupNorm, type Linear } from '../../nn/index.js';
import { type ActFn, type Ctx, act } from './layers.js';

/** How the time embedding enters a resnet: added before norm2 ('default'), or as AdaGN scale and shift. */
export type TimeScaleShift = 'default' | 'scale_shift';

/** The settings every resnet of a model shares. */
export interface ResnetSettings {
  groups: number;
  eps: number;
  act: ActFn;
  /** Channels of the time embedding; null where there is none (the VAE). */
  tembChannels: number | null;
  timeScaleShift: TimeScaleShift;
  dropout: number;
  /** The residual sum is divided by this (1 everywhere except some mid blocks). */
  outputScaleFactor: number;
}

/**
 *   h = conv1(act(norm1(x)))
 *   default:     h = norm2(h + time_emb_proj(act(temb)))
 *   scale_shift: h = norm2(h) · (1 + scale) + shift,  [scale, shift] = time_emb_proj(act(temb))
 *   out = (shortcut(x) + conv2(dropout(act(h)))) / outputScaleFactor
 * shortcut is a 1×1 conv when the channel count changes, else the identity.
 */
export class ResnetBlock2D extends Module {
  norm1: GroupNorm;
  conv1: Conv2d;
  time_emb_proj: Linear | null;
  norm2: GroupNorm;
  dropout: Dropout;
  conv2: Conv2d;
  conv_shortcut: Conv2d | null;

  constructor(ctx: Ctx, readonly inChannels: number, readonly outChannels: number, readonly s: ResnetSettings) {
    super();
    this.norm1 = ctx.groupNorm(s.groups, inChannels, s.eps);
    this.conv1 = ctx.conv(inChannels, outChannels, 3, { padding: 1 });
    const tembOut = s.timeScaleShift === 'scale_shift' ? 2 * outChannels : outChannels;
    this.time_emb_proj = s.tembChannels === null ? null : ctx.linear(s.tembChannels, tembOut);
    this.norm2 = ctx.groupNorm(s.groups, outChannels, s.eps);
    this.dropout = ctx.dropout(s.dropout);
    this.conv2 = ctx.conv(outChannels, outChannels, 3, { padding: 1 });
    this.conv_shortcut = inChannels !== outChannels ? ctx.conv(inChannels, outChannels, 1) : null;
  }

  /** x [B, Cin, H, W], temb [B, T] or null → [B, Cout, H, W]. */
  forward(x: Tensor, temb: Tensor | null): Tensor {
    const s = this.s;
    let h = this.conv1.forward(normAct(this.norm1, x, s.act));
    let t: Tensor | null = null;
    if (this.time_emb_proj && temb) {
      const [B] = temb.shape;
      t = this.time_emb_proj.forward(act(temb, s.act)).reshape([B, -1, 1, 1]); // [B, C or 2C, 1, 1]
    }
    if (s.timeScaleShift === 'scale_shift') {
      h = this.norm2.forward(h);
      if (t) {
        const [scale, shift] = t.chunk(2, 1);
        h = h.mul(scale.add(1)).add(shift);
      }
      h = act(h, s.act);
    } else {
      if (t) h = h.add(t);
      h = normAct(this.norm2, h, s.act);
    }
    h = this.conv2.forward(this.dropout.forward(h));
    const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
    const out = skip.add(h);
    return s.outputScaleFactor === 1 ? out : out.div(s.outputScaleFactor);
  }
}

/** act(norm(x)); SiLU goes through the fused group-norm op (one pass over the output instead of two). */
function normAct(norm: GroupNorm, x: Tensor, fn: ActFn): Tensor {
  if (fn === 'silu' || fn === 'swish') return groupNorm(x, norm.numGroups, norm.weight, norm.bias, norm.eps, { act: 'silu' });
  return act(norm.forward(x), fn);
}

/**
 * Stride-2 3×3 conv. With padding 0 (the VAE encoder) the input is first padded by one on the right and
 * bottom only, as diffusers and the original LDM code do, so the grid is sampled at even positions.
 */
export class Downsample2D extends Module {
  conv: Conv2d;

  constructor(ctx: Ctx, channels: number, outChannels: number, readonly padding: number) {
    super();
    this.conv = ctx.conv(channels, outChannels, 3, { stride: 2, padding });
  }

  /** [B, C, H, W] → [B, Cout, ⌈H/2⌉, ⌈W/2⌉]. */
  forward(x: Tensor): Tensor {
    return this.conv.forward(this.padding === 0 ? pad(x, [0, 1, 0, 1]) : x);
  }
}

/** Nearest ×2 (or to an explicit size, for odd skip sizes), then a 3×3 conv. */
export class Upsample2D extends Module {
  conv: Conv2d;

  constructor(ctx: Ctx, channels: number, outChannels: number) {
    super();
    this.conv = ctx.conv(channels, outChannels, 3, { padding: 1 });
  }

  /** [B, C, H, W] → [B, Cout, 2H, 2W] (or `size`). */
  forward(x: Tensor, size?: [number, number]): Tensor {
    const up = size ? interpolate(x, { size, mode: 'nearest' }) : interpolate(x, { scaleFactor: 2, mode: 'nearest' });
    return this.conv.forward(up);
  }
}
