/**
 * Vision Transformer (Dosovitskiy et al. 2020), in the layout of transformers' `ViTForImageClassification`.
 *
 *   pixels [B, C, H, W] → (hybrid: conv stem of 3×3 convs, stride 2 unless configured 1) → patch embedding: conv,
 *     kernel = stride = patch → [B, N, D]
 *     → prepend the CLS token, add position embeddings (learned, or fixed 2-D sine-cosine; resampled over
 *       the patch grid when the image size differs from the config's) → [B, T = N + 1, D]
 *     → L pre-norm blocks: x + drop_path(attn(ln(x))), x + drop_path(mlp(ln(x)))
 *     → final LayerNorm → last_hidden_state [B, T, D] → classifier on the CLS row → logits [B, classes]
 *
 * Parameter names follow transformers (`vit.embeddings.cls_token`, `vit.encoder.layer.N.attention.attention.query`,
 * `…intermediate.dense`, `…output.dense`, `vit.layernorm`, `classifier`), so an official checkpoint folder
 * (config.json + model.safetensors) loads as is, and the checkpoints we train save in the same layout.
 *
 * Our extensions are config keys transformers does not have (it would warn about them and refuse the weights):
 * `vss_position_embedding: "sincos"` (a fixed table, not in the state dict), `vss_pooling: "mean"`, `vss_conv_stem: [channels…]` (the
 * hybrid stem, weights under `vit.embeddings.patch_embeddings.stem.N.{conv,norm}`), `vss_conv_stem_strides`,
 * `vss_drop_path_rate` and
 * `vss_interpolation`. Attention probabilities (`outputAttentions`) come from an explicit softmax(QKᵀ/√d)
 * path — T×T per head, fine for the small token counts here; without them the fused kernel runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Rng, Tensor, cat, fromTypedArray, getDefaultRng, scaledDotProductAttention } from '../engine/index.js';
import { Conv2d, Dropout, GroupNorm, LayerNorm, Linear, Module, activate, type Activation, init as nnInit, isPlaceholder, withoutInit } from '../nn/index.js';
import { writeSafetensors } from '../io/safetensors.js';
import { ConfigReader } from './config.js';
import { findWeightFiles, loadWeights } from './blocks/weights.js';

// ------------------------------------------------------------------ config

export type PositionEmbeddingKind = 'learned' | 'sincos';
export type PosInterpolation = 'bicubic' | 'bilinear';

export interface ViTConfig {
  /** Side of the square training images; the position grid is stemSide(imageSize) / patchSize on a side. */
  imageSize: number;
  patchSize: number;
  numChannels: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  hiddenAct: Activation;
  /** Dropout after the embeddings, the attention output and the MLP output. */
  hiddenDropoutProb: number;
  /** Dropout on the attention probabilities (forces the explicit attention path while training). */
  attentionProbsDropoutProb: number;
  layerNormEps: number;
  qkvBias: boolean;
  /** Class names in label order; their count is the classifier's width. */
  labels: string[];
  positionEmbedding: PositionEmbeddingKind;
  /** Stochastic depth: the drop probability grows linearly from 0 (first block) to this (last block). */
  dropPathRate: number;
  /**
   * Hybrid stem (Xiao et al. 2021, "Early convolutions help transformers see better"): output channels of
   * 3×3 stride-2 conv → GroupNorm → GELU layers run before the patch embedding, each halving the image
   * (rounding up); [] = plain ViT. With [16, 32, 64] and patch 1, 28 px → 14 → 7 → a 4×4 token grid.
   */
  convStem: number[];
  /**
   * Stride (1 or 2) of each stem layer, 2 where the list is shorter than `convStem`: a stride-1 first layer
   * sees the image at full resolution before the first halving (as a small CNN's first conv does).
   */
  convStemStrides: number[];
  /** How position embeddings are resampled for another image size (transformers uses bicubic). */
  interpolation: PosInterpolation;
  /**
   * What the classifier reads: the CLS row (transformers) or the mean of the patch rows (a GAP head, as in
   * Beyer et al. 2022; the CLS token then only takes part in attention).
   */
  pooling: 'cls' | 'mean';
}

export const VIT_DEFAULTS: ViTConfig = {
  imageSize: 224, patchSize: 16, numChannels: 3, hiddenSize: 768, numHiddenLayers: 12, numAttentionHeads: 12,
  intermediateSize: 3072, hiddenAct: 'gelu', hiddenDropoutProb: 0, attentionProbsDropoutProb: 0, layerNormEps: 1e-12,
  qkvBias: true, labels: Array.from({ length: 2 }, (_, i) => `LABEL_${i}`), positionEmbedding: 'learned',
  dropPathRate: 0, convStem: [], convStemStrides: [], interpolation: 'bicubic', pooling: 'cls',
};

const ACTIVATIONS: Record<string, Activation> = {
  gelu: 'gelu', gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', relu: 'relu', silu: 'silu', swish: 'silu', quick_gelu: 'quick_gelu',
};
const ACT_TO_JSON: Record<Activation, string> = {
  gelu: 'gelu', gelu_tanh: 'gelu_pytorch_tanh', relu: 'relu', silu: 'silu', quick_gelu: 'quick_gelu', tanh: 'tanh', sigmoid: 'sigmoid',
};

export function validateViTConfig(c: ViTConfig, where = 'ViT'): void {
  for (const k of ['imageSize', 'patchSize', 'numChannels', 'hiddenSize', 'numHiddenLayers', 'numAttentionHeads', 'intermediateSize'] as const) {
    if (!(Number.isInteger(c[k]) && c[k] > 0)) throw new Error(`${where}: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.hiddenSize % c.numAttentionHeads) throw new Error(`${where}: hidden size ${c.hiddenSize} is not divisible by ${c.numAttentionHeads} heads`);
  if (c.convStemStrides.length > c.convStem.length || !c.convStemStrides.every((s) => s === 1 || s === 2)) {
    throw new Error(`${where}: conv stem strides must be 1 or 2, one per stem layer (${c.convStem.length}), got [${c.convStemStrides}]`);
  }
  const side = stemSide(c.imageSize, stemStrides(c));
  if (side % c.patchSize) {
    throw new Error(`${where}: image size ${c.imageSize}${c.convStem.length ? ` (${side} after the conv stem)` : ''} is not a multiple of the patch size ${c.patchSize}`);
  }
  if (c.labels.length < 1) throw new Error(`${where}: at least one label is needed`);
  if (c.positionEmbedding === 'sincos' && c.hiddenSize % 4) throw new Error(`${where}: sine-cosine position embeddings need a hidden size divisible by 4, got ${c.hiddenSize}`);
  for (const [k, v] of [['hiddenDropoutProb', c.hiddenDropoutProb], ['attentionProbsDropoutProb', c.attentionProbsDropoutProb], ['dropPathRate', c.dropPathRate]] as const) {
    if (!(v >= 0 && v < 1)) throw new Error(`${where}: ${k} must be in [0, 1), got ${v}`);
  }
  if (!c.convStem.every((n) => Number.isInteger(n) && n > 0)) throw new Error(`${where}: conv stem channels must be positive integers, got [${c.convStem}]`);
}

/** Read a transformers ViT config.json object (plus our `vss_*` keys). */
export function vitConfigFromJson(raw: Record<string, unknown>, where = 'ViT config'): ViTConfig {
  const r = new ConfigReader(raw, where);
  if (r.has('model_type') && r.string('model_type') !== 'vit') r.fail('model_type', `is ${JSON.stringify(raw.model_type)}, expected "vit"`);
  if (r.has('architectures')) {
    const arch = r.stringList('architectures');
    const other = arch.filter((a) => a !== 'ViTForImageClassification' && a !== 'ViTModel');
    if (other.length) r.fail('architectures', `${JSON.stringify(other)} is not supported (ViTForImageClassification)`);
  }
  const act = r.string('hidden_act', 'gelu');
  if (!ACTIVATIONS[act]) r.fail('hidden_act', `= ${JSON.stringify(act)} is not supported (${Object.keys(ACTIVATIONS).join(', ')})`);
  const id2label = r.value('id2label') as Record<string, string> | undefined;
  let labels: string[];
  if (id2label && typeof id2label === 'object') {
    const n = Object.keys(id2label).length;
    labels = Array.from({ length: n }, (_, i) => {
      const name = id2label[String(i)];
      if (typeof name !== 'string') r.fail('id2label', `has no name for label ${i}`);
      return name;
    });
  } else {
    labels = Array.from({ length: r.size('num_labels', 2) }, (_, i) => `LABEL_${i}`);
  }
  const cfg: ViTConfig = {
    imageSize: r.size('image_size', 224),
    patchSize: r.size('patch_size', 16),
    numChannels: r.size('num_channels', 3),
    hiddenSize: r.size('hidden_size', 768),
    numHiddenLayers: r.size('num_hidden_layers', 12),
    numAttentionHeads: r.size('num_attention_heads', 12),
    intermediateSize: r.size('intermediate_size', 3072),
    hiddenAct: ACTIVATIONS[act],
    hiddenDropoutProb: r.number('hidden_dropout_prob', 0),
    attentionProbsDropoutProb: r.number('attention_probs_dropout_prob', 0),
    layerNormEps: r.number('layer_norm_eps', 1e-12),
    qkvBias: r.bool('qkv_bias', true),
    labels,
    positionEmbedding: r.oneOf('vss_position_embedding', ['learned', 'sincos'] as const, 'learned'),
    dropPathRate: r.number('vss_drop_path_rate', 0),
    convStem: r.intList('vss_conv_stem', []),
    convStemStrides: r.intList('vss_conv_stem_strides', []),
    interpolation: r.oneOf('vss_interpolation', ['bicubic', 'bilinear'] as const, 'bicubic'),
    pooling: r.oneOf('vss_pooling', ['cls', 'mean'] as const, 'cls'),
  };
  // Settings that do not change the classifier's computation (the pooler is not part of it).
  r.ignore('label2id', 'num_labels', 'initializer_range', 'encoder_stride', 'pooler_act', 'pooler_output_size', 'dtype',
    'torch_dtype', 'transformers_version', 'problem_type', 'use_mask_token', 'add_pooling_layer', 'return_dict',
    'output_attentions', 'output_hidden_states', 'use_cache', 'is_encoder_decoder', 'chunk_size_feed_forward');
  r.finish();
  validateViTConfig(cfg, where);
  return cfg;
}

/** The config.json we write: transformers' keys, and ours only where they differ from plain ViT. */
export function vitConfigToJson(c: ViTConfig): Record<string, unknown> {
  const json: Record<string, unknown> = {
    architectures: ['ViTForImageClassification'], model_type: 'vit',
    image_size: c.imageSize, patch_size: c.patchSize, num_channels: c.numChannels, hidden_size: c.hiddenSize,
    num_hidden_layers: c.numHiddenLayers, num_attention_heads: c.numAttentionHeads, intermediate_size: c.intermediateSize,
    hidden_act: ACT_TO_JSON[c.hiddenAct], hidden_dropout_prob: c.hiddenDropoutProb,
    attention_probs_dropout_prob: c.attentionProbsDropoutProb, layer_norm_eps: c.layerNormEps, qkv_bias: c.qkvBias,
    id2label: Object.fromEntries(c.labels.map((l, i) => [String(i), l])),
    label2id: Object.fromEntries(c.labels.map((l, i) => [l, i])),
  };
  if (c.positionEmbedding !== 'learned') json.vss_position_embedding = c.positionEmbedding;
  if (c.dropPathRate) json.vss_drop_path_rate = c.dropPathRate;
  if (c.convStem.length) json.vss_conv_stem = c.convStem;
  if (stemStrides(c).some((s) => s !== 2)) json.vss_conv_stem_strides = stemStrides(c);
  if (c.interpolation !== 'bicubic') json.vss_interpolation = c.interpolation;
  if (c.pooling !== 'cls') json.vss_pooling = c.pooling;
  return json;
}

// ------------------------------------------------------------------ helpers

/**
 * Truncated normal N(0, std²) cut at ±2·std (transformers' ViT init), as a trainable parameter; shape-only
 * under `withoutInit` (the values come from a checkpoint).
 */
function truncNormal(shape: number[], std: number, rng: Rng): Tensor {
  const t = nnInit.normal(shape, 1, 0, rng);
  if (isPlaceholder(t)) return t;
  const v = t.data as Float32Array;
  for (let i = 0; i < v.length; i++) {
    while (Math.abs(v[i]) > 2) v[i] = rng.normal(1)[0]; // redraw the ~5 % beyond 2σ
    v[i] *= std;
  }
  return t;
}

/**
 * 2-D sine-cosine position table for a gh×gw grid → [gh·gw, D] (row-major patches): the first D/2 channels
 * encode the row, the last D/2 the column, each as [sin(p·ω_k), cos(p·ω_k)] with ω_k = 10000^(−k/(D/4)) (MAE).
 */
export function sincosPositionTable(gh: number, gw: number, dim: number): Float32Array {
  const quarter = dim / 4;
  const out = new Float32Array(gh * gw * dim);
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < gw; x++) {
      const row = out.subarray((y * gw + x) * dim, (y * gw + x + 1) * dim);
      for (let k = 0; k < quarter; k++) {
        const omega = 1 / 10000 ** (k / quarter);
        row[k] = Math.sin(y * omega);
        row[quarter + k] = Math.cos(y * omega);
        row[2 * quarter + k] = Math.sin(x * omega);
        row[3 * quarter + k] = Math.cos(x * omega);
      }
    }
  }
  return out;
}

/**
 * The [outSize, inSize] matrix of 1-D resampling as torch's `interpolate(…, align_corners=False)` computes it:
 * bicubic uses Keys' kernel with a = −0.75 and clamps taps at the edges; bilinear clamps the source
 * coordinate at 0. Equal sizes give the identity.
 */
export function resampleMatrix(inSize: number, outSize: number, mode: PosInterpolation): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  const clampIdx = (i: number) => Math.min(inSize - 1, Math.max(0, i));
  for (let o = 0; o < outSize; o++) {
    let src = (o + 0.5) * scale - 0.5;
    if (mode === 'bilinear') {
      src = Math.max(0, src);
      const i0 = Math.floor(src), f = src - i0;
      m[o * inSize + clampIdx(i0)] += 1 - f;
      m[o * inSize + clampIdx(i0 + 1)] += f;
    } else {
      const i0 = Math.floor(src), t = src - i0, A = -0.75;
      const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;          // |x| ≤ 1
      const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;      // 1 < |x| < 2
      const w = [far(t + 1), near(t), near(1 - t), far(2 - t)];
      for (let k = 0; k < 4; k++) m[o * inSize + clampIdx(i0 - 1 + k)] += w[k];
    }
  }
  return m;
}

/**
 * Resample position embeddings [1, 1 + gh·gw, D] to a gh2×gw2 grid; the CLS row is kept as is. The
 * resampling is linear, so it is one matmul with kron(rows, cols) [gh2·gw2, gh·gw] — differentiable, so a
 * model can be fine-tuned at another resolution.
 */
export function interpolatePositionEmbeddings(pos: Tensor, gh: number, gw: number, gh2: number, gw2: number,
                                              mode: PosInterpolation = 'bicubic'): Tensor {
  const [one, T, D] = pos.shape;
  if (one !== 1 || T !== 1 + gh * gw) throw new Error(`position embeddings [${pos.shape}] do not hold CLS + a ${gh}×${gw} grid`);
  if (gh === gh2 && gw === gw2) return pos;
  const ry = resampleMatrix(gh, gh2, mode), rx = resampleMatrix(gw, gw2, mode);
  const k = new Float32Array(gh2 * gw2 * gh * gw);
  for (let oy = 0; oy < gh2; oy++) for (let ox = 0; ox < gw2; ox++) {
    const row = (oy * gw2 + ox) * gh * gw;
    for (let iy = 0; iy < gh; iy++) {
      const wy = ry[oy * gh + iy];
      if (wy === 0) continue;
      for (let ix = 0; ix < gw; ix++) k[row + iy * gw + ix] = wy * rx[ox * gw + ix];
    }
  }
  const p = pos.to('f32');
  const grid = p.narrow(1, 1, gh * gw).reshape([gh * gw, D]);
  const resampled = fromTypedArray(k, [gh2 * gw2, gh * gw]).matmul(grid).reshape([1, gh2 * gw2, D]);
  return cat([p.narrow(1, 0, 1), resampled], 1);
}

/**
 * Stochastic depth (Huang et al. 2016): while training, zero a whole sample's residual branch with
 * probability p and scale the survivors by 1/(1 − p). x [B, …].
 */
export function dropPath(x: Tensor, p: number, training: boolean, rng: Rng): Tensor {
  if (!training || p === 0) return x;
  const B = x.shape[0];
  const u = rng.uniform(B);
  const keep = new Float32Array(B);
  for (let i = 0; i < B; i++) keep[i] = u[i] >= p ? 1 / (1 - p) : 0;
  return x.mul(fromTypedArray(keep, [B, ...x.shape.slice(1).map(() => 1)]));
}

// ------------------------------------------------------------------ layers

interface Init { rng: Rng }

/** transformers' Linear init: weight trunc-normal(0.02), bias zero (PyTorch's default is far too wide for ViTs). */
function initLinear(l: Linear, rng: Rng): Linear {
  if (isPlaceholder(l.weight)) return l;
  l.weight = truncNormal([...l.weight.shape], 0.02, rng);
  if (l.bias) (l.bias.data as Float32Array).fill(0);
  return l;
}

/** The stride of each conv stem layer (`convStemStrides`, 2 where it is shorter than `convStem`). */
export function stemStrides(c: Pick<ViTConfig, 'convStem' | 'convStemStrides'>): number[] {
  return c.convStem.map((_, i) => c.convStemStrides[i] ?? 2);
}

/** Side of an image after 3×3 convs with padding 1 and these strides: ⌈side / stride⌉ each. */
export function stemSide(side: number, strides: readonly number[]): number {
  for (const s of strides) side = Math.floor((side - 1) / s) + 1;
  return side;
}

/** One stem layer: 3×3 conv (stride 2 or 1), padding 1 → GroupNorm → GELU; stride 2 halves the image (rounding up). */
class ConvStemLayer extends Module {
  conv: Conv2d;
  norm: GroupNorm;

  constructor(inC: number, outC: number, stride: number, rng: Rng) {
    super();
    this.conv = new Conv2d(inC, outC, 3, { stride, padding: 1, rng });
    this.norm = new GroupNorm(outC % 8 === 0 ? 8 : 1, outC);
  }

  forward(x: Tensor): Tensor {
    return this.norm.forward(this.conv.forward(x)).gelu();
  }
}

class ViTPatchEmbeddings extends Module {
  stem: ConvStemLayer[];
  projection: Conv2d;

  constructor(readonly cfg: ViTConfig, { rng }: Init) {
    super();
    let c = cfg.numChannels;
    const strides = stemStrides(cfg);
    this.stem = cfg.convStem.map((out, i) => { const l = new ConvStemLayer(c, out, strides[i], rng); c = out; return l; });
    this.projection = new Conv2d(c, cfg.hiddenSize, cfg.patchSize, { stride: cfg.patchSize, rng });
  }

  /** [B, C, H, W] → tokens [B, N = gh·gw, D] (patches row-major) and the grid gh×gw. */
  forward(x: Tensor): { tokens: Tensor; grid: [number, number] } {
    const [B, C, H, W] = x.shape;
    const p = this.cfg.patchSize;
    if (C !== this.cfg.numChannels) throw new Error(`ViT: expected ${this.cfg.numChannels}-channel images, got ${C} channels`);
    const strides = stemStrides(this.cfg);
    const h = stemSide(H, strides), w = stemSide(W, strides);
    if (h % p || w % p) {
      throw new Error(`ViT: image ${H}×${W}${this.stem.length ? ` (${h}×${w} after the conv stem)` : ''} is not a multiple of the patch size ${p}`);
    }
    for (const l of this.stem) x = l.forward(x);
    const y = this.projection.forward(x); // [B, D, h/p, w/p]
    return { tokens: y.reshape([B, this.cfg.hiddenSize, (h / p) * (w / p)]).transpose(1, 2), grid: [h / p, w / p] };
  }
}

class ViTEmbeddings extends Module {
  cls_token: Tensor;
  position_embeddings: Tensor | null;
  patch_embeddings: ViTPatchEmbeddings;
  dropout: Dropout;
  /** The fixed sine-cosine table [1, 1 + N, D] (CLS row zero) when the config asks for it; not saved. */
  sincos_table: Tensor | null = null;
  readonly grid: number;

  constructor(readonly cfg: ViTConfig, init: Init) {
    super();
    const D = cfg.hiddenSize;
    this.grid = stemSide(cfg.imageSize, stemStrides(cfg)) / cfg.patchSize;
    const T = 1 + this.grid * this.grid;
    this.cls_token = truncNormal([1, 1, D], 0.02, init.rng);
    if (cfg.positionEmbedding === 'learned') {
      this.position_embeddings = truncNormal([1, T, D], 0.02, init.rng);
    } else {
      this.position_embeddings = null;
      const table = new Float32Array(T * D);
      table.set(sincosPositionTable(this.grid, this.grid, D), D);
      this.registerBuffer('sincos_table', fromTypedArray(table, [1, T, D]), false);
    }
    this.patch_embeddings = new ViTPatchEmbeddings(cfg, init);
    this.dropout = new Dropout(cfg.hiddenDropoutProb, { rng: init.rng });
  }

  /** Position embeddings for a gh×gw patch grid: [1, 1 + gh·gw, D]. */
  positions(gh: number, gw: number): Tensor {
    const table = this.position_embeddings ?? this.sincos_table!;
    return interpolatePositionEmbeddings(table, this.grid, this.grid, gh, gw, this.cfg.interpolation);
  }

  /** [B, C, H, W] → tokens [B, T, D] and the patch grid. */
  forward(x: Tensor): { tokens: Tensor; grid: [number, number] } {
    const B = x.shape[0];
    const { tokens: patches, grid } = this.patch_embeddings.forward(x);
    const cls = this.cls_token.to('f32').expand([B, 1, this.cfg.hiddenSize]);
    const tokens = cat([cls, patches], 1).add(this.positions(grid[0], grid[1]));
    return { tokens: this.dropout.forward(tokens), grid };
  }
}

class ViTSelfAttention extends Module {
  query: Linear;
  key: Linear;
  value: Linear;
  private readonly _dropoutP: number;
  private readonly _rng: Rng;

  constructor(readonly cfg: ViTConfig, { rng }: Init) {
    super();
    const D = cfg.hiddenSize;
    this.query = initLinear(new Linear(D, D, { bias: cfg.qkvBias, rng }), rng);
    this.key = initLinear(new Linear(D, D, { bias: cfg.qkvBias, rng }), rng);
    this.value = initLinear(new Linear(D, D, { bias: cfg.qkvBias, rng }), rng);
    this._dropoutP = cfg.attentionProbsDropoutProb;
    this._rng = rng;
  }

  /**
   * x [B, T, D] → context [B, T, D], and the attention probabilities [B, heads, T, T] when asked for.
   * The fused kernel never forms the T×T matrix; the explicit path does (visualisation, attention dropout).
   */
  forward(x: Tensor, wantProbs: boolean): { context: Tensor; probs: Tensor | null } {
    const [B, T, D] = x.shape;
    const h = this.cfg.numAttentionHeads, d = D / h;
    const split = (t: Tensor) => t.reshape([B, T, h, d]).transpose(1, 2); // [B, h, T, d]
    const q = split(this.query.forward(x)), k = split(this.key.forward(x)), v = split(this.value.forward(x));
    const dropping = this.training && this._dropoutP > 0;
    let out: Tensor, probs: Tensor | null = null;
    if (wantProbs || dropping) {
      probs = q.matmul(k.transpose(2, 3)).mul(1 / Math.sqrt(d)).softmax(-1); // [B, h, T, T]
      const used = dropping ? new Dropout(this._dropoutP, { rng: this._rng }).forward(probs) : probs;
      out = used.matmul(v);
    } else {
      out = scaledDotProductAttention(q, k, v);
    }
    return { context: out.transpose(1, 2).reshape([B, T, D]), probs: wantProbs ? probs : null };
  }
}

/** transformers' ViTSelfOutput: the projection after attention (its residual is added by the layer). */
class ViTSelfOutput extends Module {
  dense: Linear;
  dropout: Dropout;

  constructor(cfg: ViTConfig, { rng }: Init) {
    super();
    this.dense = initLinear(new Linear(cfg.hiddenSize, cfg.hiddenSize, { rng }), rng);
    this.dropout = new Dropout(cfg.hiddenDropoutProb, { rng });
  }

  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.dense.forward(x));
  }
}

class ViTAttention extends Module {
  attention: ViTSelfAttention;
  output: ViTSelfOutput;

  constructor(cfg: ViTConfig, init: Init) {
    super();
    this.attention = new ViTSelfAttention(cfg, init);
    this.output = new ViTSelfOutput(cfg, init);
  }
}

class ViTIntermediate extends Module {
  dense: Linear;

  constructor(readonly cfg: ViTConfig, { rng }: Init) {
    super();
    this.dense = initLinear(new Linear(cfg.hiddenSize, cfg.intermediateSize, { rng }), rng);
  }

  forward(x: Tensor): Tensor {
    return activate(this.dense.forward(x), this.cfg.hiddenAct);
  }
}

class ViTOutput extends Module {
  dense: Linear;
  dropout: Dropout;

  constructor(cfg: ViTConfig, { rng }: Init) {
    super();
    this.dense = initLinear(new Linear(cfg.intermediateSize, cfg.hiddenSize, { rng }), rng);
    this.dropout = new Dropout(cfg.hiddenDropoutProb, { rng });
  }

  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.dense.forward(x));
  }
}

/** Pre-norm block: x + drop_path(attn(ln_before(x))), then x + drop_path(mlp(ln_after(x))). */
class ViTLayer extends Module {
  attention: ViTAttention;
  intermediate: ViTIntermediate;
  output: ViTOutput;
  layernorm_before: LayerNorm;
  layernorm_after: LayerNorm;
  private readonly _rng: Rng;

  constructor(cfg: ViTConfig, init: Init, readonly dropPathP: number) {
    super();
    this.attention = new ViTAttention(cfg, init);
    this.intermediate = new ViTIntermediate(cfg, init);
    this.output = new ViTOutput(cfg, init);
    this.layernorm_before = new LayerNorm(cfg.hiddenSize, { eps: cfg.layerNormEps });
    this.layernorm_after = new LayerNorm(cfg.hiddenSize, { eps: cfg.layerNormEps });
    this._rng = init.rng;
  }

  forward(x: Tensor, wantProbs: boolean): { hidden: Tensor; probs: Tensor | null } {
    const { context, probs } = this.attention.attention.forward(this.layernorm_before.forward(x), wantProbs);
    x = x.add(dropPath(this.attention.output.forward(context), this.dropPathP, this.training, this._rng));
    const mlp = this.output.forward(this.intermediate.forward(this.layernorm_after.forward(x)));
    return { hidden: x.add(dropPath(mlp, this.dropPathP, this.training, this._rng)), probs };
  }
}

class ViTEncoder extends Module {
  layer: ViTLayer[];

  constructor(cfg: ViTConfig, init: Init) {
    super();
    const L = cfg.numHiddenLayers;
    this.layer = Array.from({ length: L }, (_, i) => new ViTLayer(cfg, init, L > 1 ? (cfg.dropPathRate * i) / (L - 1) : cfg.dropPathRate));
  }
}

/** transformers' ViTPooler: tanh(dense(CLS row)). Kept for the weight layout of `ViTModel(add_pooling_layer=True)`. */
export class ViTPooler extends Module {
  dense: Linear;

  constructor(hiddenSize: number, outputSize: number, { rng }: Init) {
    super();
    this.dense = initLinear(new Linear(hiddenSize, outputSize, { rng }), rng);
  }

  /** lastHiddenState [B, T, D] → [B, outputSize]. */
  forward(lastHiddenState: Tensor): Tensor {
    return this.dense.forward(lastHiddenState.narrow(1, 0, 1).squeeze(1)).tanh();
  }
}

/**
 * The bare encoder (transformers' `ViTModel`): embeddings → blocks → final LayerNorm. `poolerOutputSize`
 * adds the pooler, as `ViTModel(add_pooling_layer=True)` has it (e.g. the encoder of a
 * VisionEncoderDecoderModel); the classifier model has none.
 */
export class ViTModel extends Module {
  embeddings: ViTEmbeddings;
  encoder: ViTEncoder;
  layernorm: LayerNorm;
  pooler: ViTPooler | null;
  readonly config: ViTConfig;

  constructor(cfg: ViTConfig, init: Init, opts: { poolerOutputSize?: number | null } = {}) {
    super();
    validateViTConfig(cfg);
    this.config = cfg;
    this.embeddings = new ViTEmbeddings(cfg, init);
    this.encoder = new ViTEncoder(cfg, init);
    this.layernorm = new LayerNorm(cfg.hiddenSize, { eps: cfg.layerNormEps });
    this.pooler = opts.poolerOutputSize ? new ViTPooler(cfg.hiddenSize, opts.poolerOutputSize, init) : null;
  }

  /** pixels [B, C, H, W] → lastHiddenState [B, 1 + gh·gw, D] (after the final LayerNorm; row 0 is CLS). */
  forward(pixels: Tensor, opts: ViTForwardOptions = {}): Omit<ViTOutputs, 'logits'> {
    if (pixels.ndim !== 4) throw new Error(`ViT: expected images [B, C, H, W], got [${pixels.shape}]`);
    const want = opts.outputAttentions ?? false;
    const { tokens, grid } = this.embeddings.forward(pixels.to('f32'));
    let x = tokens;
    const hiddenStates = [x];
    const attentions: Tensor[] = [];
    for (const layer of this.encoder.layer) {
      const r = layer.forward(x, want);
      x = r.hidden;
      hiddenStates.push(x);
      if (r.probs) attentions.push(r.probs);
    }
    return { lastHiddenState: this.layernorm.forward(x), hiddenStates, attentions: want ? attentions : null, grid };
  }
}

// ------------------------------------------------------------------ model

export interface ViTForwardOptions {
  /** Return every layer's attention probabilities [B, heads, T, T] (explicit attention: for small T). */
  outputAttentions?: boolean;
}

export interface ViTOutputs {
  /** [B, classes]: the classifier applied to the CLS row of lastHiddenState (or the patch rows' mean). */
  logits: Tensor;
  /** [B, T, D]: the final LayerNorm of the last block's output; row 0 is CLS, then patches row-major. */
  lastHiddenState: Tensor;
  /** The embeddings, then every block's output (before the final LayerNorm): L + 1 tensors [B, T, D]. */
  hiddenStates: Tensor[];
  /** Per layer [B, heads, T, T] (rows sum to 1), when `outputAttentions`. */
  attentions: Tensor[] | null;
  /** The patch grid the image was cut into. */
  grid: [number, number];
}

export interface ViTLoadOptions {
  /** Weight dtype after loading (default f32: ViTs here are small, and f32 weights train). */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** Weight file variant: 'fp16' reads model.fp16.safetensors. */
  variant?: string;
}

export class ViTForImageClassification extends Module {
  vit: ViTModel;
  classifier: Linear;
  readonly config: ViTConfig;

  /** `rng` draws the initial weights and, while training, dropout and stochastic depth. */
  constructor(config: Partial<ViTConfig> = {}, opts: { rng?: Rng } = {}) {
    super();
    this.config = { ...VIT_DEFAULTS, ...config };
    validateViTConfig(this.config);
    const init = { rng: opts.rng ?? getDefaultRng() };
    this.vit = new ViTModel(this.config, init);
    this.classifier = initLinear(new Linear(this.config.hiddenSize, this.config.labels.length, { rng: init.rng }), init.rng);
  }

  get labels(): string[] {
    return this.config.labels;
  }

  /** pixels [B, C, H, W] (H, W multiples of the patch size; any size, the positions are resampled). */
  forward(pixels: Tensor, opts: ViTForwardOptions = {}): ViTOutputs {
    if (pixels.ndim !== 4) throw new Error(`ViT: expected images [B, C, H, W], got [${pixels.shape}]`);
    const want = opts.outputAttentions ?? false;
    const { tokens, grid } = this.vit.embeddings.forward(pixels.to('f32'));
    let x = tokens;
    const hiddenStates = [x];
    const attentions: Tensor[] = [];
    for (const layer of this.vit.encoder.layer) {
      const r = layer.forward(x, want);
      x = r.hidden;
      hiddenStates.push(x);
      if (r.probs) attentions.push(r.probs);
    }
    const lastHiddenState = this.vit.layernorm.forward(x);
    const T = lastHiddenState.shape[1];
    const pooled = this.config.pooling === 'cls' ? lastHiddenState.narrow(1, 0, 1).squeeze(1) : lastHiddenState.narrow(1, 1, T - 1).mean(1);
    const logits = this.classifier.forward(pooled);
    return { logits, lastHiddenState, hiddenStates, attentions: want ? attentions : null, grid };
  }

  /** Build from a folder holding config.json and model.safetensors (transformers layout); strict keys and shapes. */
  static fromPretrained(folder: string, opts: ViTLoadOptions = {}): ViTForImageClassification {
    const label = `ViTForImageClassification.fromPretrained(${folder})`;
    if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) throw new Error(`${label}: not a folder`);
    const cfgFile = path.join(folder, 'config.json');
    if (!fs.existsSync(cfgFile)) throw new Error(`${label}: no config.json in the folder`);
    const reader = ConfigReader.fromFile(cfgFile, 'ViTForImageClassification');
    const config = vitConfigFromJson(reader.raw as Record<string, unknown>, reader.where);
    const model = withoutInit(() => new ViTForImageClassification(config, { rng: getDefaultRng() }));
    loadWeights(model, findWeightFiles(folder, opts.variant, 'model'), { label, dtype: opts.dtype ?? 'f32' });
    return model.eval();
  }

  /**
   * Write config.json + model.safetensors (transformers layout) into `folder`; `dtype` f16 halves the file.
   * `extra` files (e.g. preprocessor_config.json) are written beside them as JSON.
   */
  savePretrained(folder: string, opts: { dtype?: 'f32' | 'f16'; extra?: Record<string, unknown> } = {}): void {
    fs.mkdirSync(folder, { recursive: true });
    const dtype = opts.dtype ?? 'f32';
    const tensors = new Map<string, Tensor>();
    for (const [name, t] of this.stateDict()) tensors.set(name, t.detach().to(dtype).contiguous());
    writeSafetensors(path.join(folder, 'model.safetensors'), tensors, { format: 'pt' });
    fs.writeFileSync(path.join(folder, 'config.json'), `${JSON.stringify({ ...vitConfigToJson(this.config), dtype: dtype === 'f16' ? 'float16' : 'float32' }, null, 2)}\n`);
    for (const [file, value] of Object.entries(opts.extra ?? {})) fs.writeFileSync(path.join(folder, file), `${JSON.stringify(value, null, 2)}\n`);
  }
}

/**
 * Attention rollout (Abnar & Zuidema 2020): average the heads, add the identity for the residual path,
 * renormalise rows, multiply across layers. attentions: per layer [B, heads, T, T] → [B, T, T]; row 0 is
 * how much the CLS output draws on each input token.
 */
export function attentionRollout(attentions: Tensor[]): Tensor {
  if (attentions.length === 0) throw new Error('attentionRollout: no attention maps');
  const [B, , T] = attentions[0].shape;
  let acc: Float32Array | null = null;
  for (const a of attentions) {
    const mean = a.to('f32').mean(1).contiguous().toFloat32Array(); // [B, T, T]
    const m = new Float32Array(B * T * T);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < T; i++) {
        const base = (b * T + i) * T;
        let s = 0;
        for (let j = 0; j < T; j++) { m[base + j] = mean[base + j] + (i === j ? 1 : 0); s += m[base + j]; }
        for (let j = 0; j < T; j++) m[base + j] /= s;
      }
    }
    if (!acc) { acc = m; continue; }
    // Later layers act on the result of earlier ones: rollout_l = A_l · rollout_{l−1}.
    const next = new Float32Array(B * T * T);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < T; i++) {
        for (let k = 0; k < T; k++) {
          const w = m[(b * T + i) * T + k];
          if (w === 0) continue;
          const src = (b * T + k) * T, dst = (b * T + i) * T;
          for (let j = 0; j < T; j++) next[dst + j] += w * acc[src + j];
        }
      }
    }
    acc = next;
  }
  return fromTypedArray(acc!, [B, T, T]);
}
