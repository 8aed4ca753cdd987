/**
 * Layer construction for the diffusion models, real or shape-only.
 *
 * Every block builds its layers through a `Ctx` instead of calling `new Linear(...)` directly. A normal Ctx
 * makes ordinary initialised layers. A `meta` Ctx makes the same modules with *shape-only* weights: tensors
 * whose every stride is 0 over one stored element, so a 860 M-parameter U-Net costs a few kB. The module tree,
 * the state-dict names and the shapes are exactly those of the real model because the same construction code
 * ran; only the storage is missing. That gives:
 *   - exact parameter counts of real configs without allocating them (`numParameters()` reads shapes), and
 *   - cheap loading: `fromPretrained` builds a meta model, checks the file's keys and shapes against it, then
 *     adopts the file's tensors (in their own dtype) in place of the shape-only ones — no init, no copy.
 * A meta model must never run: the top-level models refuse `forward` until their weights are loaded.
 */
import { Tensor, type Rng } from '../../engine/index.js';
import {
  Attention, Conv2d, Dropout, Embedding, GroupNorm, LayerNorm, Linear, type AttentionConfig, type Module,
} from '../../nn/index.js';

const metaTensors = new WeakSet<Tensor>();

/** A tensor with a shape and no storage to speak of (stride 0 everywhere). Never compute with it. */
export function shapeOnly(shape: readonly number[]): Tensor {
  const t = new Tensor(new Float32Array(1), shape, 'f32', shape.map(() => 0));
  metaTensors.add(t);
  return t;
}

export function isShapeOnly(t: Tensor): boolean {
  return metaTensors.has(t);
}

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

  /** y = x Wᵀ + b, W [out, in]. */
  linear(inF: number, outF: number, bias = true): Linear {
    if (!this.meta) return new Linear(inF, outF, { bias, rng: this.rng });
    const l = new Linear(1, 1, { bias });
    return Object.assign(l, {
      inFeatures: inF, outFeatures: outF, weight: shapeOnly([outF, inF]), bias: bias ? shapeOnly([outF]) : null,
    });
  }

  /** NCHW convolution, W [out, in, k, k]. */
  conv(inC: number, outC: number, k: number, opts: { stride?: Pair; padding?: Pair; bias?: boolean } = {}): Conv2d {
    const bias = opts.bias ?? true;
    if (!this.meta) return new Conv2d(inC, outC, k, { ...opts, bias, rng: this.rng });
    const c = new Conv2d(1, 1, 1, { ...opts, bias });
    return Object.assign(c, {
      inChannels: inC, outChannels: outC, weight: shapeOnly([outC, inC, k, k]), bias: bias ? shapeOnly([outC]) : null,
    });
  }

  // Norms allocate one float per channel, so they are built for real even in meta mode.
  groupNorm(groups: number, channels: number, eps: number): GroupNorm {
    return new GroupNorm(groups, channels, { eps });
  }

  layerNorm(dim: number, eps: number): LayerNorm {
    return new LayerNorm(dim, { eps });
  }

  embedding(num: number, dim: number): Embedding {
    if (!this.meta) return new Embedding(num, dim, { rng: this.rng });
    return Object.assign(new Embedding(1, 1), { numEmbeddings: num, embeddingDim: dim, weight: shapeOnly([num, dim]) });
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
