/**
 * Multi-head attention with the diffusers naming (`to_q`, `to_k`, `to_v`, `to_out.0`), so UNet / VAE /
 * transformer checkpoints load without renaming. Self-attention when no context is given, cross-attention
 * over `context` (dim `crossAttentionDim`) otherwise. The core is the engine's fused
 * scaledDotProductAttention (online softmax, no Lq×Lk matrix).
 */
import { type Tensor, type Rng, scaledDotProductAttention } from '../engine/index.js';
import { Module, ModuleList } from './module.js';
import { Dropout, Linear } from './layers.js';

export interface AttentionConfig {
  /** Channels of the query input (and of the output). */
  queryDim: number;
  /** Channels of the context for cross-attention; defaults to queryDim (self-attention). */
  crossAttentionDim?: number;
  heads?: number;
  dimHead?: number;
  /** Bias on to_q / to_k / to_v (diffusers default false). */
  bias?: boolean;
  /** Bias on to_out.0 (diffusers default true). */
  outBias?: boolean;
  dropout?: number;
  rng?: Rng;
}

export interface AttentionCallOptions {
  /** Keys to attend over; self-attention when omitted. [B, Lk, crossAttentionDim]. */
  context?: Tensor | null;
  /**
   * Key-padding mask [B, Lk] (bool: true = attend, or additive f32), or any mask broadcastable to
   * [B, heads, Lq, Lk].
   */
  mask?: Tensor | null;
  causal?: boolean;
}

export class Attention extends Module {
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  to_out: ModuleList;
  readonly heads: number;
  readonly dimHead: number;

  constructor(cfg: AttentionConfig) {
    super();
    this.heads = cfg.heads ?? 8;
    this.dimHead = cfg.dimHead ?? 64;
    const inner = this.heads * this.dimHead;
    const contextDim = cfg.crossAttentionDim ?? cfg.queryDim;
    const qkvBias = cfg.bias ?? false;
    this.to_q = new Linear(cfg.queryDim, inner, { bias: qkvBias, rng: cfg.rng });
    this.to_k = new Linear(contextDim, inner, { bias: qkvBias, rng: cfg.rng });
    this.to_v = new Linear(contextDim, inner, { bias: qkvBias, rng: cfg.rng });
    this.to_out = new ModuleList([
      new Linear(inner, cfg.queryDim, { bias: cfg.outBias ?? true, rng: cfg.rng }),
      new Dropout(cfg.dropout ?? 0, { rng: cfg.rng }),
    ]);
  }

  /**
   * x: tokens [B, L, C], or a feature map [B, C, H, W] (flattened to H·W tokens and restored afterwards, as
   * diffusers' Attention does for VAE / UNet mid-blocks; no norm or residual here).
   */
  forward(x: Tensor, opts: AttentionCallOptions = {}): Tensor {
    if (x.ndim === 4) {
      const [B, C, H, W] = x.shape;
      const tokens = x.reshape([B, C, H * W]).transpose(1, 2);
      const y = this.forward(tokens, opts);
      return y.transpose(1, 2).reshape([B, C, H, W]);
    }
    if (x.ndim !== 3) throw new Error(`Attention: expected [B, L, C] or [B, C, H, W], got [${x.shape}]`);
    const [B, Lq] = x.shape;
    const context = opts.context ?? x;
    const Lk = context.shape[1];
    const heads = (t: Tensor, L: number) => t.reshape([B, L, this.heads, this.dimHead]).transpose(1, 2); // [B, h, L, d]
    const q = heads(this.to_q.forward(x), Lq);
    const k = heads(this.to_k.forward(context), Lk);
    const v = heads(this.to_v.forward(context), Lk);

    let mask = opts.mask ?? null;
    if (mask && mask.ndim === 2) mask = mask.reshape([B, 1, 1, Lk]); // key padding
    const out = scaledDotProductAttention(q, k, v, { mask, causal: opts.causal ?? false });
    const merged = out.transpose(1, 2).reshape([B, Lq, this.heads * this.dimHead]);
    const [proj, drop] = this.to_out.items as [Linear, Dropout];
    return drop.forward(proj.forward(merged));
  }
}
