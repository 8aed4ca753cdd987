/**
 * GPT-2 (Radford et al. 2019) in the layout of transformers' `GPT2LMHeadModel`, with the optional
 * cross-attention that makes it the decoder of a VisionEncoderDecoderModel (`add_cross_attention`).
 *
 *   ids [B, T] → wte(ids) + wpe(past … past + T − 1) → dropout
 *     → L pre-norm blocks:  x + attn(ln_1(x))                   causal self-attention
 *                           x + crossattention(ln_cross_attn(x)) over the encoder states (when enabled)
 *                           x + mlp(ln_2(x))                    c_fc → activation → c_proj
 *     → ln_f → logits = h · wteᵀ (tied) or lm_head(h) → [B, T, vocab]
 *
 * Parameter names follow transformers: `transformer.wte`, `transformer.wpe`, `transformer.h.N.ln_1`,
 * `.attn.c_attn` (q, k, v in one), `.attn.c_proj`, `.ln_cross_attn`, `.crossattention.q_attn`,
 * `.crossattention.c_attn` (k, v), `.crossattention.c_proj`, `.ln_2`, `.mlp.c_fc`, `.mlp.c_proj`,
 * `transformer.ln_f`, and `lm_head` only when `tie_word_embeddings` is false (tied checkpoints do not store it).
 * The projections are transformers' Conv1D: weight stored [in, out], y = x·W + b — loaded and saved as is.
 *
 * Decoding one token at a time uses a `GPT2Cache`: per layer the self-attention keys/values grow by the new
 * tokens, and the cross-attention keys/values are computed from the encoder states once, so a step costs
 * O(length) instead of recomputing the whole prefix.
 *
 *   const dec = new GPT2LMHeadModel({ vocabSize: 100, nEmbd: 32, nHead: 4, nLayer: 2, addCrossAttention: true }, { rng });
 *   const full = dec.forward([[1, 5, 7]], { encoderHiddenStates: enc });           // logits [1, 3, 100]
 *   const cache = dec.newCache();
 *   dec.forward([[1]], { encoderHiddenStates: enc, cache });                       // then [[5]], [[7]]: same logits
 */
import { type Rng, Tensor, cat, embedding, fromTypedArray, getDefaultRng, indexSelect, linear, scaledDotProductAttention } from '../engine/index.js';
import { Dropout, Embedding, LayerNorm, Linear, Module, activate, type Activation, init as nnInit, isPlaceholder } from '../nn/index.js';
import { ConfigError, ConfigReader } from './config.js';

// ------------------------------------------------------------------ config

/** transformers' `activation_function` values we implement (ACT2FN names). */
const ACTIVATIONS: Record<string, Activation> = {
  gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', gelu: 'gelu', relu: 'relu', silu: 'silu', swish: 'silu',
  quick_gelu: 'quick_gelu', tanh: 'tanh', sigmoid: 'sigmoid',
};

export interface GPT2Config {
  vocabSize: number;
  /** Longest sequence (rows of wpe). */
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** MLP width; null = 4 · nEmbd. */
  nInner: number | null;
  /** transformers' name: 'gelu_new' (tanh approximation, GPT-2's), 'gelu', 'relu', … */
  activationFunction: string;
  residPdrop: number;
  embdPdrop: number;
  attnPdrop: number;
  layerNormEpsilon: number;
  /** Divide attention scores by √(head dim). */
  scaleAttnWeights: boolean;
  /** Also divide them by (layer index + 1) (Mistral-style stabilisation some GPT-2 variants use). */
  scaleAttnByInverseLayerIdx: boolean;
  /** Cross-attention blocks over encoder states (the decoder of an encoder-decoder model). */
  addCrossAttention: boolean;
  /** The output projection is wteᵀ (no lm_head weight). */
  tieWordEmbeddings: boolean;
  /** Std of the normal initialisation (GPT-2: 0.02); residual projections get std / √(2 · nLayer). */
  initializerRange: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
}

/** transformers' GPT2Config defaults (the 124 M model). */
export const GPT2_DEFAULTS: GPT2Config = {
  vocabSize: 50257, nPositions: 1024, nEmbd: 768, nLayer: 12, nHead: 12, nInner: null, activationFunction: 'gelu_new',
  residPdrop: 0.1, embdPdrop: 0.1, attnPdrop: 0.1, layerNormEpsilon: 1e-5, scaleAttnWeights: true,
  scaleAttnByInverseLayerIdx: false, addCrossAttention: false, tieWordEmbeddings: true, initializerRange: 0.02,
  bosTokenId: 50256, eosTokenId: 50256, padTokenId: null,
};

export function validateGPT2Config(c: GPT2Config, where = 'GPT2'): void {
  for (const k of ['vocabSize', 'nPositions', 'nEmbd', 'nLayer', 'nHead'] as const) {
    if (!(Number.isInteger(c[k]) && c[k] > 0)) throw new ConfigError(`${where}: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.nInner !== null && !(Number.isInteger(c.nInner) && c.nInner > 0)) throw new ConfigError(`${where}: nInner must be a positive integer or null, got ${c.nInner}`);
  if (c.nEmbd % c.nHead) throw new ConfigError(`${where}: n_embd ${c.nEmbd} is not divisible by n_head ${c.nHead}`);
  if (!ACTIVATIONS[c.activationFunction]) {
    throw new ConfigError(`${where}: activation_function ${JSON.stringify(c.activationFunction)} is not supported (${Object.keys(ACTIVATIONS).join(', ')})`);
  }
  for (const k of ['residPdrop', 'embdPdrop', 'attnPdrop'] as const) {
    if (!(c[k] >= 0 && c[k] < 1)) throw new ConfigError(`${where}: ${k} must be in [0, 1), got ${c[k]}`);
  }
  if (!(c.layerNormEpsilon > 0)) throw new ConfigError(`${where}: layer_norm_epsilon must be positive, got ${c.layerNormEpsilon}`);
  if (!(c.initializerRange > 0)) throw new ConfigError(`${where}: initializer_range must be positive, got ${c.initializerRange}`);
  for (const k of ['bosTokenId', 'eosTokenId', 'padTokenId'] as const) {
    const v = c[k];
    // Not checked against vocabSize: a small vocabulary with the 50256 defaults is fine until a model uses them.
    if (v !== null && !(Number.isInteger(v) && v >= 0)) throw new ConfigError(`${where}: ${k} must be a non-negative integer or null, got ${v}`);
  }
}

/** Read a transformers GPT-2 config.json object (standalone, or the `decoder` of a VisionEncoderDecoder config). */
export function gpt2ConfigFromJson(raw: Record<string, unknown>, where = 'GPT2 config'): GPT2Config {
  const r = new ConfigReader(raw, where);
  if (r.has('model_type') && r.string('model_type') !== 'gpt2') r.fail('model_type', `is ${JSON.stringify(raw.model_type)}, expected "gpt2"`);
  const tokenId = (key: string, dflt: number | null) => (r.value(key) === undefined ? dflt : r.optionalInt(key));
  const cfg: GPT2Config = {
    vocabSize: r.size('vocab_size', GPT2_DEFAULTS.vocabSize),
    nPositions: r.size('n_positions', GPT2_DEFAULTS.nPositions),
    nEmbd: r.size('n_embd', GPT2_DEFAULTS.nEmbd),
    nLayer: r.size('n_layer', GPT2_DEFAULTS.nLayer),
    nHead: r.size('n_head', GPT2_DEFAULTS.nHead),
    nInner: r.optionalInt('n_inner'),
    activationFunction: r.string('activation_function', GPT2_DEFAULTS.activationFunction),
    residPdrop: r.number('resid_pdrop', GPT2_DEFAULTS.residPdrop),
    embdPdrop: r.number('embd_pdrop', GPT2_DEFAULTS.embdPdrop),
    attnPdrop: r.number('attn_pdrop', GPT2_DEFAULTS.attnPdrop),
    layerNormEpsilon: r.number('layer_norm_epsilon', GPT2_DEFAULTS.layerNormEpsilon),
    scaleAttnWeights: r.bool('scale_attn_weights', true),
    scaleAttnByInverseLayerIdx: r.bool('scale_attn_by_inverse_layer_idx', false),
    addCrossAttention: r.bool('add_cross_attention', false),
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
    initializerRange: r.number('initializer_range', GPT2_DEFAULTS.initializerRange),
    bosTokenId: tokenId('bos_token_id', GPT2_DEFAULTS.bosTokenId),
    eosTokenId: tokenId('eos_token_id', GPT2_DEFAULTS.eosTokenId),
    padTokenId: tokenId('pad_token_id', null),
  };
  if (r.has('n_ctx') && r.int('n_ctx') !== cfg.nPositions) r.fail('n_ctx', `(${raw.n_ctx}) differs from n_positions (${cfg.nPositions}); only n_positions is used`);
  // Attention in float32 either way; the upcast only matters for 16-bit training in PyTorch.
  r.ignore('reorder_and_upcast_attn', 'n_ctx');
  // Generic PretrainedConfig keys and the sequence-summary head (GPT2DoubleHeadsModel): no effect on this model.
  r.ignore('architectures', 'is_decoder', 'is_encoder_decoder', 'id2label', 'label2id', 'num_labels', 'problem_type',
    'return_dict', 'output_attentions', 'output_hidden_states', 'use_cache', 'dtype', 'torch_dtype', 'transformers_version',
    'chunk_size_feed_forward', 'summary_type', 'summary_use_proj', 'summary_activation', 'summary_proj_to_labels',
    'summary_first_dropout', 'task_specific_params', 'tokenizer_class', 'prefix', 'decoder_start_token_id',
    'cross_attention_hidden_size', 'tie_encoder_decoder', 'pruned_heads', 'sep_token_id');
  r.finish();
  validateGPT2Config(cfg, where);
  return cfg;
}

/** The config.json object transformers writes for GPT2Config (keys that matter here). */
export function gpt2ConfigToJson(c: GPT2Config): Record<string, unknown> {
  return {
    model_type: 'gpt2', vocab_size: c.vocabSize, n_positions: c.nPositions, n_embd: c.nEmbd, n_layer: c.nLayer,
    n_head: c.nHead, n_inner: c.nInner, activation_function: c.activationFunction, resid_pdrop: c.residPdrop,
    embd_pdrop: c.embdPdrop, attn_pdrop: c.attnPdrop, layer_norm_epsilon: c.layerNormEpsilon,
    scale_attn_weights: c.scaleAttnWeights, scale_attn_by_inverse_layer_idx: c.scaleAttnByInverseLayerIdx,
    reorder_and_upcast_attn: false, add_cross_attention: c.addCrossAttention, is_decoder: c.addCrossAttention,
    tie_word_embeddings: c.tieWordEmbeddings, initializer_range: c.initializerRange,
    bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId, pad_token_id: c.padTokenId,
  };
}

// ------------------------------------------------------------------ cache

/** One layer's cached keys/values, [rows, heads, L, head dim]. */
export interface GPT2LayerCache {
  key: Tensor | null;
  value: Tensor | null;
  /** Cross-attention keys/values over the encoder states: computed on the first call, then reused. */
  crossKey: Tensor | null;
  crossValue: Tensor | null;
}

/** Keys/values of every layer for incremental decoding. `length` = tokens already fed (the next position id). */
export class GPT2Cache {
  readonly layers: GPT2LayerCache[];
  length = 0;

  constructor(nLayer: number) {
    this.layers = Array.from({ length: nLayer }, () => ({ key: null, value: null, crossKey: null, crossValue: null }));
  }

  /**
   * Beam search: row i of the cache becomes old row `rows[i]`. Cross-attention keys/values are left alone: the
   * caller only moves rows between beams of the same image, whose encoder states are equal.
   */
  reorder(rows: readonly number[]): void {
    const idx = fromTypedArray(Int32Array.from(rows), [rows.length], 'i32');
    for (const l of this.layers) {
      if (l.key) l.key = indexSelect(l.key, 0, idx);
      if (l.value) l.value = indexSelect(l.value, 0, idx);
    }
  }
}

// ------------------------------------------------------------------ layers

interface Init { rng: Rng }

/** transformers' Conv1D: y = x·W + b with W stored [in, out] (the transpose of Linear's). */
export class Conv1D extends Module {
  weight: Tensor;
  bias: Tensor;

  constructor(readonly inFeatures: number, readonly outFeatures: number, std: number, { rng }: Init) {
    super();
    this.weight = nnInit.normal([inFeatures, outFeatures], std, 0, rng);
    this.bias = nnInit.constant([outFeatures], 0);
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight.t(), this.bias); // the transposed view is read in place, no copy
  }
}

/** Causal mask for T new queries after `past` cached tokens: query i sees keys 0 … past + i. Additive [T, past + T]. */
function causalMask(T: number, past: number): Tensor {
  const Lk = past + T;
  const m = new Float32Array(T * Lk);
  for (let i = 0; i < T; i++) m.fill(-Infinity, i * Lk + past + i + 1, (i + 1) * Lk);
  return fromTypedArray(m, [T, Lk]);
}

interface AttentionResult { out: Tensor; probs: Tensor | null }

/**
 * GPT2Attention: self-attention (`c_attn` → q, k, v) or cross-attention (`q_attn` on the decoder states,
 * `c_attn` → k, v on the encoder states). Probabilities come from an explicit softmax when asked for (or for
 * attention dropout while training); otherwise the fused kernel runs.
 */
export class GPT2Attention extends Module {
  c_attn: Conv1D;
  q_attn: Conv1D | null;
  c_proj: Conv1D;
  attn_dropout: Dropout;
  resid_dropout: Dropout;
  readonly heads: number;
  readonly headDim: number;
  readonly scale: number;

  constructor(readonly cfg: GPT2Config, layerIdx: number, readonly isCross: boolean, init: Init) {
    super();
    const D = cfg.nEmbd, std = cfg.initializerRange;
    this.heads = cfg.nHead;
    this.headDim = D / cfg.nHead;
    this.scale = (cfg.scaleAttnWeights ? 1 / Math.sqrt(this.headDim) : 1) / (cfg.scaleAttnByInverseLayerIdx ? layerIdx + 1 : 1);
    this.c_attn = new Conv1D(D, (isCross ? 2 : 3) * D, std, init);
    this.q_attn = isCross ? new Conv1D(D, D, std, init) : null;
    this.c_proj = new Conv1D(D, D, std / Math.sqrt(2 * cfg.nLayer), init); // GPT-2's scaled residual init
    this.attn_dropout = new Dropout(cfg.attnPdrop, init);
    this.resid_dropout = new Dropout(cfg.residPdrop, init);
  }

  /** [B, L, D] → [B, heads, L, d]. */
  private split(t: Tensor): Tensor {
    const [B, L] = t.shape;
    return t.reshape([B, L, this.heads, this.headDim]).transpose(1, 2);
  }

  /**
   * x [B, T, D] → [B, T, D]. Self-attention appends this call's keys/values to `cache` (when given) and
   * attends causally over past + new tokens; cross-attention attends over `encoder` [B, S, D], or over the
   * keys/values the cache already holds for it.
   */
  forward(x: Tensor, opts: { encoder?: Tensor | null; cache?: GPT2LayerCache | null; past: number; wantProbs: boolean }): AttentionResult {
    const [B, T, D] = x.shape;
    const { cache, past } = opts;
    let q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null = null, causal = false;
    if (this.isCross) {
      q = this.split(this.q_attn!.forward(x));
      if (cache?.crossKey && cache.crossValue) {
        k = cache.crossKey; v = cache.crossValue;
      } else {
        if (!opts.encoder) throw new Error('GPT2 cross-attention: no encoder hidden states given');
        const kv = this.c_attn.forward(opts.encoder);
        k = this.split(kv.narrow(2, 0, D)); v = this.split(kv.narrow(2, D, D));
        if (cache) { cache.crossKey = k.contiguous(); cache.crossValue = v.contiguous(); }
      }
    } else {
      const qkv = this.c_attn.forward(x);
      q = this.split(qkv.narrow(2, 0, D)); k = this.split(qkv.narrow(2, D, D)); v = this.split(qkv.narrow(2, 2 * D, D));
      if (cache) {
        if (cache.key && cache.value) { k = cat([cache.key, k], 2); v = cat([cache.value, v], 2); }
        else { k = k.contiguous(); v = v.contiguous(); }
        cache.key = k; cache.value = v;
      }
      if (T > 1) {
        if (past === 0) causal = true;
        else mask = causalMask(T, past);
      }
    }

    const dropping = this.training && this.cfg.attnPdrop > 0;
    let out: Tensor, probs: Tensor | null = null;
    if (opts.wantProbs || dropping) {
      let scores = q.matmul(k.transpose(2, 3)).mul(this.scale); // [B, h, T, Lk]
      if (causal) mask = causalMask(T, 0);
      if (mask) scores = scores.add(mask);
      probs = scores.softmax(-1);
      out = this.attn_dropout.forward(probs).matmul(v);
    } else {
      out = scaledDotProductAttention(q, k, v, { causal, mask, scale: this.scale });
    }
    const merged = out.transpose(1, 2).reshape([B, T, D]);
    return { out: this.resid_dropout.forward(this.c_proj.forward(merged)), probs: opts.wantProbs ? probs : null };
  }
}

export class GPT2MLP extends Module {
  c_fc: Conv1D;
  c_proj: Conv1D;
  dropout: Dropout;
  private readonly _act: Activation;

  constructor(cfg: GPT2Config, init: Init) {
    super();
    const inner = cfg.nInner ?? 4 * cfg.nEmbd;
    this.c_fc = new Conv1D(cfg.nEmbd, inner, cfg.initializerRange, init);
    this.c_proj = new Conv1D(inner, cfg.nEmbd, cfg.initializerRange / Math.sqrt(2 * cfg.nLayer), init);
    this.dropout = new Dropout(cfg.residPdrop, init);
    this._act = ACTIVATIONS[cfg.activationFunction];
  }

  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.c_proj.forward(activate(this.c_fc.forward(x), this._act)));
  }
}

export interface BlockOutputs { hidden: Tensor; selfProbs: Tensor | null; crossProbs: Tensor | null }

export class GPT2Block extends Module {
  ln_1: LayerNorm;
  attn: GPT2Attention;
  ln_cross_attn: LayerNorm | null;
  crossattention: GPT2Attention | null;
  ln_2: LayerNorm;
  mlp: GPT2MLP;

  constructor(cfg: GPT2Config, layerIdx: number, init: Init) {
    super();
    const eps = cfg.layerNormEpsilon;
    this.ln_1 = new LayerNorm(cfg.nEmbd, { eps });
    this.attn = new GPT2Attention(cfg, layerIdx, false, init);
    this.ln_cross_attn = cfg.addCrossAttention ? new LayerNorm(cfg.nEmbd, { eps }) : null;
    this.crossattention = cfg.addCrossAttention ? new GPT2Attention(cfg, layerIdx, true, init) : null;
    this.ln_2 = new LayerNorm(cfg.nEmbd, { eps });
    this.mlp = new GPT2MLP(cfg, init);
  }

  forward(x: Tensor, o: { encoder: Tensor | null; cache: GPT2LayerCache | null; past: number; selfProbs: boolean; crossProbs: boolean }): BlockOutputs {
    const a = this.attn.forward(this.ln_1.forward(x), { cache: o.cache, past: o.past, wantProbs: o.selfProbs });
    x = x.add(a.out);
    let crossProbs: Tensor | null = null;
    if (this.crossattention) {
      const c = this.crossattention.forward(this.ln_cross_attn!.forward(x), { encoder: o.encoder, cache: o.cache, past: o.past, wantProbs: o.crossProbs });
      x = x.add(c.out);
      crossProbs = c.probs;
    }
    x = x.add(this.mlp.forward(this.ln_2.forward(x)));
    return { hidden: x, selfProbs: a.probs, crossProbs };
  }
}

/** transformers' GPT2Model: embeddings, blocks, final LayerNorm. */
export class GPT2Model extends Module {
  wte: Embedding;
  wpe: Embedding;
  drop: Dropout;
  h: GPT2Block[];
  ln_f: LayerNorm;

  constructor(cfg: GPT2Config, init: Init) {
    super();
    this.wte = new Embedding(cfg.vocabSize, cfg.nEmbd, { rng: init.rng });
    this.wpe = new Embedding(cfg.nPositions, cfg.nEmbd, { rng: init.rng });
    for (const e of [this.wte, this.wpe]) if (!isPlaceholder(e.weight)) e.weight = nnInit.normal([...e.weight.shape], cfg.initializerRange, 0, init.rng);
    this.drop = new Dropout(cfg.embdPdrop, init);
    this.h = Array.from({ length: cfg.nLayer }, (_, i) => new GPT2Block(cfg, i, init));
    this.ln_f = new LayerNorm(cfg.nEmbd, { eps: cfg.layerNormEpsilon });
  }
}

// ------------------------------------------------------------------ model

export interface GPT2ForwardOptions {
  /** [B, S, nEmbd]: what cross-attention attends over. Needed with addCrossAttention unless the cache holds it. */
  encoderHiddenStates?: Tensor | null;
  /**
   * Incremental decoding: `ids` are the tokens after the `cache.length` already fed; the cache is extended in
   * place. Without a cache the whole sequence is computed (teacher forcing, training).
   */
  cache?: GPT2Cache | null;
  /** Per layer self-attention probabilities [B, heads, T, past + T]. */
  outputAttentions?: boolean;
  /** Per layer cross-attention probabilities [B, heads, T, S]. */
  outputCrossAttentions?: boolean;
  /** Project only the last position to the vocabulary: logits [B, 1, V] (decoding needs no more). */
  lastOnly?: boolean;
}

export interface GPT2Outputs {
  /** [B, T, V] (or [B, 1, V] with lastOnly). */
  logits: Tensor;
  /** After ln_f: [B, T, nEmbd]. */
  lastHiddenState: Tensor;
  attentions: Tensor[] | null;
  crossAttentions: Tensor[] | null;
}

/** Token ids as a rectangular number[][] (rows of equal length) or an integer tensor [B, T]. */
export type TokenIds = readonly (readonly number[])[] | Tensor;

export function idsToTensor(ids: TokenIds, vocabSize: number, where = 'GPT2'): Tensor {
  if (ids instanceof Tensor) {
    if (ids.ndim !== 2) throw new Error(`${where}: token ids must be [B, T], got [${ids.shape}]`);
    return ids;
  }
  const B = ids.length, T = B ? ids[0].length : 0;
  if (!B || !T) throw new Error(`${where}: token ids must be a non-empty [B, T] list`);
  const out = new Int32Array(B * T);
  ids.forEach((row, b) => {
    if (row.length !== T) throw new Error(`${where}: token id rows have different lengths (${T} and ${row.length}); pad them`);
    row.forEach((id, t) => {
      if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) throw new Error(`${where}: token id ${id} (row ${b}, position ${t}) is outside the vocabulary [0, ${vocabSize})`);
      out[b * T + t] = id;
    });
  });
  return fromTypedArray(out, [B, T], 'i32');
}

export class GPT2LMHeadModel extends Module {
  transformer: GPT2Model;
  /** Only when the embeddings are not tied; tied logits use transformer.wte.weight directly. */
  lm_head: Linear | null;
  readonly config: GPT2Config;

  /** `rng` draws the initial weights and, while training, dropout. */
  constructor(config: Partial<GPT2Config> = {}, opts: { rng?: Rng } = {}) {
    super();
    this.config = { ...GPT2_DEFAULTS, ...config };
    validateGPT2Config(this.config);
    const init = { rng: opts.rng ?? getDefaultRng() };
    this.transformer = new GPT2Model(this.config, init);
    this.lm_head = null;
    if (!this.config.tieWordEmbeddings) {
      const head = new Linear(this.config.nEmbd, this.config.vocabSize, { bias: false, rng: init.rng });
      if (!isPlaceholder(head.weight)) head.weight = nnInit.normal([...head.weight.shape], this.config.initializerRange, 0, init.rng);
      this.lm_head = head;
    }
  }

  newCache(): GPT2Cache {
    return new GPT2Cache(this.config.nLayer);
  }

  forward(ids: TokenIds, opts: GPT2ForwardOptions = {}): GPT2Outputs {
    const c = this.config;
    const idT = idsToTensor(ids, c.vocabSize);
    const [B, T] = idT.shape;
    const cache = opts.cache ?? null;
    const past = cache ? cache.length : 0;
    if (past + T > c.nPositions) throw new Error(`GPT2: ${past + T} tokens exceed n_positions = ${c.nPositions}`);
    const enc = opts.encoderHiddenStates ?? null;
    if (c.addCrossAttention) {
      const cached = cache?.layers[0].crossKey;
      if (!enc && !cached) throw new Error('GPT2: this decoder has cross-attention: pass encoderHiddenStates [B, S, n_embd]');
      if (enc && (enc.ndim !== 3 || enc.shape[0] !== B || enc.shape[2] !== c.nEmbd)) {
        throw new Error(`GPT2: encoder hidden states must be [${B}, S, ${c.nEmbd}], got [${enc.shape}]`);
      }
    }
    const wte = this.transformer.wte.weight, wpe = this.transformer.wpe.weight;
    const positions = fromTypedArray(Int32Array.from({ length: T }, (_, i) => past + i), [T], 'i32');
    let x = this.transformer.drop.forward(embedding(idT, wte).add(embedding(positions, wpe))); // [B, T, D]
    const attentions: Tensor[] = [], crossAttentions: Tensor[] = [];
    this.transformer.h.forEach((block, i) => {
      const r = block.forward(x, {
        encoder: enc, cache: cache ? cache.layers[i] : null, past,
        selfProbs: opts.outputAttentions ?? false, crossProbs: opts.outputCrossAttentions ?? false,
      });
      x = r.hidden;
      if (r.selfProbs) attentions.push(r.selfProbs);
      if (r.crossProbs) crossAttentions.push(r.crossProbs);
    });
    if (cache) cache.length = past + T;
    const h = this.transformer.ln_f.forward(x);
    const last = opts.lastOnly ? h.narrow(1, T - 1, 1) : h;
    const logits = this.lm_head ? this.lm_head.forward(last) : linear(last, wte);
    return {
      logits, lastHiddenState: h,
      attentions: opts.outputAttentions ? attentions : null,
      crossAttentions: opts.outputCrossAttentions && c.addCrossAttention ? crossAttentions : null,
    };
  }
}
