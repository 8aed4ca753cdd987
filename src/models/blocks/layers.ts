/**
 * Layer construction for the diffusion models, real or shape-only.
 *
 * Every block builds its layers through a `Ctx` instead of calling `new Linear(...)` directly. A normal Ctx
 * makes ordinary initialised layers. A `meta` Ctx makes the same modules under nn's `withoutInit`, so their
 * weights are *shape-only* placeholders with no storage: a 860 M-parameter U-Net costs a few kB. The module tree,
 * the state-dict names and the shapes are exactly those of the real model because the same construction code
 * ran; only the storage is missing. That gives:
 *   - exact parameter counts of real configs without allocating them (`numParameters()` reads shapes), and
 *   - cheap loading: `fromPretrained` builds a meta model, checks the file's keys and shapes against it, then
 *     adopts the file's tensors (in their own dtype) in place of the shape-only ones — no init, no copy.
 * A meta model must never run: the top-level models refuse `forward` until their weights are loaded.
 */
import { Tensor, type Rng } from '../../engine/index.js';
import {
  Attention, Conv2d, Dropout, Embedding, GroupNorm, LayerNorm, Linear, isPlaceholder, withoutInit,
  type AttentionConfig, type Module,
} from '../../nn/index.js';

/** A tensor with a shape and no storage (nn's withoutInit placeholder). Never compute with it. */
export function shapeOnly(shape: readonly number[]): Tensor {
  return new Tensor(new Float32Array(0), shape, 'f32');
}

export const isShapeOnly = (t: Tensor): boolean => isPlaceholder(t);

/** True when any parameter of the module is still shape-only. */
export function hasShapeOnly(m: Module): boolean {
  return m.parameters().some(isShapeOnly);
}

export interface CtxOptions {
  /** Shape-only weights (for counting, or before loading a checkpoint). */
  meta?: boolean;
  /** Generator for the initial weights (default: the engine's default generator). */
  rng?: Rng;
}

type Pair = number | [number, number];

export class Ctx {
  readonly meta: boolean;
  readonly rng: Rng | undefined;

  constructor(opts: CtxOptions = {}) {
    this.meta = opts.meta ?? false;
    this.rng = opts.rng;
  }

  /** Run a layer constructor: as is, or (meta) with shape-only weights. */
  private build<T>(make: () => T): T {
    return this.meta ? withoutInit(make) : make();
  }

  /** y = x Wᵀ + b, W [out, in]. */
  linear(inF: number, outF: number, bias = true): Linear {
    return this.build(() => new Linear(inF, outF, { bias, rng: this.rng }));
  }

  /** NCHW convolution, W [out, in, k, k]. */
  conv(inC: number, outC: number, k: number, opts: { stride?: Pair; padding?: Pair; bias?: boolean } = {}): Conv2d {
    const bias = opts.bias ?? true;
    return this.build(() => new Conv2d(inC, outC, k, { ...opts, bias, rng: this.rng }));
  }

  // Norms allocate one float per channel, so they are built for real even in meta mode.
  groupNorm(groups: number, channels: number, eps: number): GroupNorm {
    return new GroupNorm(groups, channels, { eps });
  }

  layerNorm(dim: number, eps: number): LayerNorm {
    return new LayerNorm(dim, { eps });
  }

  embedding(num: number, dim: number): Embedding {
    return this.build(() => new Embedding(num, dim, { rng: this.rng }));
  }

  dropout(p: number): Dropout {
    return new Dropout(p, { rng: this.rng });
  }

  /** diffusers-named multi-head attention (to_q / to_k / to_v / to_out.0). */
  attention(cfg: AttentionConfig): Attention {
    return this.finishAttention(new Attention(this.attentionInit(cfg)), cfg);
  }

  /**
   * The config to hand to Attention's constructor: the real one, or (meta) a 1-wide one whose projections
   * `finishAttention` then swaps for shape-only layers. Split in two so subclasses of Attention can use it.
   */
  attentionInit(cfg: AttentionConfig): AttentionConfig {
    if (!this.meta) return { ...cfg, rng: this.rng };
    return { ...cfg, queryDim: 1, crossAttentionDim: 1, dimHead: 1, rng: undefined };
  }

  finishAttention<A extends Attention>(a: A, cfg: AttentionConfig): A {
    if (!this.meta) return a;
    const heads = cfg.heads ?? 8, dimHead = cfg.dimHead ?? 64, inner = heads * dimHead;
    const contextDim = cfg.crossAttentionDim ?? cfg.queryDim;
    const qkvBias = cfg.bias ?? false;
    a.to_q = this.linear(cfg.queryDim, inner, qkvBias);
    a.to_k = this.linear(contextDim, inner, qkvBias);
    a.to_v = this.linear(contextDim, inner, qkvBias);
    a.to_out.items[0] = this.linear(inner, cfg.queryDim, cfg.outBias ?? true);
    return Object.assign(a, { dimHead });
  }
}

/** diffusers' `act_fn` names. */
export type ActFn = 'silu' | 'swish' | 'gelu' | 'relu';
export const ACT_FNS: readonly ActFn[] = ['silu', 'swish', 'gelu', 'relu'];

export function act(x: Tensor, fn: ActFn): Tensor {
  switch (fn) {
    case 'silu': case 'swish': return x.silu();
    case 'gelu': return x.gelu('none');
    case 'relu': return x.relu();
  }
}
