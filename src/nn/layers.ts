/**
 * Standard layers. Field names (weight, bias, fc1, …) match PyTorch so state-dict keys line up with
 * official checkpoints. Every constructor takes an optional `rng` for its initialisation.
 */
import {
  type Tensor, type Rng, linear, conv2d, convTranspose2d, groupNorm, layerNorm, embedding, dropout,
} from '../engine/index.js';
import { Module } from './module.js';
import { constant, defaultBias, fanIn, kaimingUniformDefault, normal } from './init.js';

type Pair = number | [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** y = x Wᵀ + b with W [out, in]. */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean; rng?: Rng } = {}) {
    super();
    this.weight = kaimingUniformDefault([outFeatures, inFeatures], opts.rng);
    this.bias = opts.bias ?? true ? defaultBias(outFeatures, inFeatures, opts.rng) : null;
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
  rng?: Rng;
}

/** NCHW convolution, weight [out, in/groups, kh, kw]. */
export class Conv2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair, opts: Conv2dOptions = {}) {
    super();
    const [kh, kw] = pair(kernelSize);
    this.stride = pair(opts.stride ?? 1);
    this.padding = pair(opts.padding ?? 0);
    this.dilation = pair(opts.dilation ?? 1);
    this.groups = opts.groups ?? 1;
    if (inChannels % this.groups || outChannels % this.groups) {
      throw new Error(`Conv2d: channels ${inChannels}→${outChannels} are not divisible by groups=${this.groups}`);
    }
    const shape = [outChannels, inChannels / this.groups, kh, kw];
    this.weight = kaimingUniformDefault(shape, opts.rng);
    this.bias = opts.bias ?? true ? defaultBias(outChannels, fanIn(shape), opts.rng) : null;
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, {
      stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups,
    });
  }
}

/** Transposed convolution, weight [in, out/groups, kh, kw] (PyTorch layout). */
export class ConvTranspose2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly outputPadding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair,
              opts: Conv2dOptions & { outputPadding?: Pair } = {}) {
    super();
    const [kh, kw] = pair(kernelSize);
    this.stride = pair(opts.stride ?? 1);
    this.padding = pair(opts.padding ?? 0);
    this.outputPadding = pair(opts.outputPadding ?? 0);
    this.dilation = pair(opts.dilation ?? 1);
    this.groups = opts.groups ?? 1;
    if (inChannels % this.groups || outChannels % this.groups) {
      throw new Error(`ConvTranspose2d: channels ${inChannels}→${outChannels} are not divisible by groups=${this.groups}`);
    }
    const shape = [inChannels, outChannels / this.groups, kh, kw];
    this.weight = kaimingUniformDefault(shape, opts.rng);
    this.bias = opts.bias ?? true ? defaultBias(outChannels, fanIn(shape), opts.rng) : null;
  }

  forward(x: Tensor): Tensor {
    return convTranspose2d(x, this.weight, this.bias, {
      stride: this.stride, padding: this.padding, outputPadding: this.outputPadding,
      dilation: this.dilation, groups: this.groups,
    });
  }
}

export class GroupNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  readonly eps: number;

  constructor(readonly numGroups: number, readonly numChannels: number, opts: { eps?: number; affine?: boolean } = {}) {
    super();
    if (numChannels % numGroups) throw new Error(`GroupNorm: ${numChannels} channels cannot be split into ${numGroups} groups`);
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.affine ?? true;
    this.weight = affine ? constant([numChannels], 1) : null;
    this.bias = affine ? constant([numChannels], 0) : null;
  }

  forward(x: Tensor): Tensor {
    return groupNorm(x, this.numGroups, this.weight, this.bias, this.eps);
  }
}

export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  readonly normalizedShape: number[];
  readonly eps: number;

  constructor(normalizedShape: number | number[], opts: { eps?: number; elementwiseAffine?: boolean; bias?: boolean } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? constant(this.normalizedShape, 1) : null;
    this.bias = affine && (opts.bias ?? true) ? constant(this.normalizedShape, 0) : null;
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}

/** Lookup table [num, dim], initialised N(0, 1); the `paddingIdx` row starts at zero. */
export class Embedding extends Module {
  weight: Tensor;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, opts: { paddingIdx?: number; rng?: Rng } = {}) {
    super();
    this.weight = normal([numEmbeddings, embeddingDim], 1, 0, opts.rng);
    if (opts.paddingIdx !== undefined) {
      const row = opts.paddingIdx < 0 ? numEmbeddings + opts.paddingIdx : opts.paddingIdx;
      (this.weight.data as Float32Array).fill(0, row * embeddingDim, (row + 1) * embeddingDim);
    }
  }

  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight);
  }
}

/** Inverted dropout; identity in eval mode. Draws from `rng` (default generator if none) while training. */
export class Dropout extends Module {
  private readonly _rng: Rng | undefined;

  constructor(readonly p = 0.5, opts: { rng?: Rng } = {}) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`Dropout: p must be in [0, 1], got ${p}`);
    this._rng = opts.rng;
  }

  forward(x: Tensor): Tensor {
    return dropout(x, this.p, { training: this.training, rng: this._rng });
  }
}

export type Activation = 'relu' | 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'silu' | 'tanh' | 'sigmoid';

export function activate(x: Tensor, kind: Activation): Tensor {
  switch (kind) {
    case 'relu': return x.relu();
    case 'gelu': return x.gelu('none');
    case 'gelu_tanh': return x.gelu('tanh');
    case 'quick_gelu': return x.quickGelu();
    case 'silu': return x.silu();
    case 'tanh': return x.tanh();
    case 'sigmoid': return x.sigmoid();
  }
}

/** An activation as a layer (for Sequential); no parameters. */
export class Act extends Module {
  constructor(readonly kind: Activation) { super(); }
  forward(x: Tensor): Tensor { return activate(x, this.kind); }
}
export class ReLU extends Act { constructor() { super('relu'); } }
export class GELU extends Act { constructor(approximate: 'none' | 'tanh' = 'none') { super(approximate === 'tanh' ? 'gelu_tanh' : 'gelu'); } }
export class SiLU extends Act { constructor() { super('silu'); } }
export class Tanh extends Act { constructor() { super('tanh'); } }
export class Sigmoid extends Act { constructor() { super('sigmoid'); } }

/** fc1 → activation → dropout → fc2 (the transformer feed-forward block). */
export class MLP extends Module {
  fc1: Linear;
  fc2: Linear;
  drop: Dropout;

  constructor(inFeatures: number, hiddenFeatures: number, outFeatures = inFeatures,
              readonly opts: { activation?: Activation; dropout?: number; bias?: boolean; rng?: Rng } = {}) {
    super();
    this.fc1 = new Linear(inFeatures, hiddenFeatures, { bias: opts.bias, rng: opts.rng });
    this.fc2 = new Linear(hiddenFeatures, outFeatures, { bias: opts.bias, rng: opts.rng });
    this.drop = new Dropout(opts.dropout ?? 0, { rng: opts.rng });
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.drop.forward(activate(this.fc1.forward(x), this.opts.activation ?? 'gelu')));
  }
}
