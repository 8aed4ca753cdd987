/**
 * CLIP's text encoder (transformers' `CLIPTextModel`), the conditioning model of Stable Diffusion 1.x / 2.x.
 *
 *   ids [B, L] → token + position embeddings → N pre-norm transformer layers with a causal mask
 *             → final_layer_norm → last_hidden_state [B, L, D]; pooled [B, D] = the row at the end token.
 *
 * Parameter names follow transformers (`text_model.embeddings.token_embedding.weight`,
 * `text_model.encoder.layers.N.self_attn.q_proj.weight`, …) so `model.safetensors` loads as is; files
 * saved without the `text_model.` prefix (transformers 5) load too. SD 1.x uses OpenAI's ViT-L/14 text
 * tower (quick_gelu, 12 layers, D 768); SD 2.x uses OpenCLIP ViT-H with its last layer already dropped
 * (gelu, 23 layers, D 1024).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, cat, embedding, fromTypedArray, scaledDotProductAttention } from '../engine/index.js';
import { Embedding, LayerNorm, Linear, Module, activate, type Activation } from '../nn/index.js';
import { SafetensorsFile } from '../io/safetensors.js';

export interface CLIPTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: 'quick_gelu' | 'gelu' | 'gelu_tanh';
  layerNormEps: number;
  /** 2 in old OpenAI configs: pool at argmax(ids); otherwise at the first eosTokenId (transformers' rule). */
  eosTokenId: number;
  bosTokenId: number;
  padTokenId: number;
  /** Only used by CLIPTextModelWithProjection; kept for reference. */
  projectionDim: number;
}

/** transformers' CLIPTextConfig defaults. */
export const CLIP_TEXT_DEFAULTS: CLIPTextConfig = {
  vocabSize: 49408, hiddenSize: 512, intermediateSize: 2048, numHiddenLayers: 12, numAttentionHeads: 8,
  maxPositionEmbeddings: 77, hiddenAct: 'quick_gelu', layerNormEps: 1e-5, eosTokenId: 49407, bosTokenId: 49406,
  padTokenId: 1, projectionDim: 512,
};

const ACTIVATIONS: Record<string, CLIPTextConfig['hiddenAct']> = {
  quick_gelu: 'quick_gelu', gelu: 'gelu', gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh',
};
const ACT_TO_NN: Record<CLIPTextConfig['hiddenAct'], Activation> = { quick_gelu: 'quick_gelu', gelu: 'gelu', gelu_tanh: 'gelu_tanh' };

/** config.json keys and the fields they fill. Keys not listed here (dropout, initializer_*, dtype, …) do not change inference. */
const CONFIG_KEYS: [string, keyof CLIPTextConfig][] = [
  ['vocab_size', 'vocabSize'], ['hidden_size', 'hiddenSize'], ['intermediate_size', 'intermediateSize'],
  ['num_hidden_layers', 'numHiddenLayers'], ['num_attention_heads', 'numAttentionHeads'],
  ['max_position_embeddings', 'maxPositionEmbeddings'], ['layer_norm_eps', 'layerNormEps'],
  ['eos_token_id', 'eosTokenId'], ['bos_token_id', 'bosTokenId'], ['pad_token_id', 'padTokenId'],
  ['projection_dim', 'projectionDim'],
];
const SUPPORTED_ARCHITECTURES = new Set(['CLIPTextModel']);

/** Build a config from a transformers `config.json` object; anything that would change the maths and is not supported throws. */
export function clipTextConfigFromJson(raw: Record<string, unknown>, where = 'config.json'): CLIPTextConfig {
  const cfg: CLIPTextConfig = { ...CLIP_TEXT_DEFAULTS };
  if (raw.model_type !== undefined && raw.model_type !== 'clip_text_model') {
    const hint = raw.model_type === 'clip' ? ' (a full CLIPModel config: load its text_config / text_model part instead)' : '';
    throw new Error(`${where}: model_type ${JSON.stringify(raw.model_type)} is not "clip_text_model"${hint}`);
  }
  if (Array.isArray(raw.architectures)) {
    const other = raw.architectures.filter((a) => !SUPPORTED_ARCHITECTURES.has(a as string));
    if (other.length) throw new Error(`${where}: architectures ${JSON.stringify(other)} not supported (only CLIPTextModel)`);
  }
  for (const [key, field] of CONFIG_KEYS) {
    const v = raw[key];
    if (v === undefined || v === null) continue;
    const isFloat = field === 'layerNormEps';
    if (typeof v !== 'number' || !Number.isFinite(v) || (!isFloat && !Number.isInteger(v)) || (isFloat ? v <= 0 : v < 0)) {
      throw new Error(`${where}: ${key} must be a ${isFloat ? 'positive number' : 'non-negative integer'}, got ${JSON.stringify(v)}`);
    }
    (cfg as unknown as Record<string, number>)[field] = v;
  }
  if (raw.hidden_act !== undefined) {
    const act = ACTIVATIONS[raw.hidden_act as string];
    if (!act) throw new Error(`${where}: hidden_act ${JSON.stringify(raw.hidden_act)} not supported (${Object.keys(ACTIVATIONS).join(', ')})`);
    cfg.hiddenAct = act;
  }
  validateConfig(cfg, where);
  return cfg;
}

function validateConfig(cfg: CLIPTextConfig, where: string): void {
  for (const k of ['vocabSize', 'hiddenSize', 'intermediateSize', 'numAttentionHeads', 'maxPositionEmbeddings'] as const) {
    if (!(Number.isInteger(cfg[k]) && cfg[k] > 0)) throw new Error(`${where}: ${k} must be a positive integer, got ${cfg[k]}`);
  }
  if (cfg.hiddenSize % cfg.numAttentionHeads) {
    throw new Error(`${where}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numAttentionHeads}`);
  }
}

/**
 * Parameters a CLIPTextModel of this config holds, without building it. Mirrors the constructor below:
 * token + position tables, per layer 4 biased projections D×D, two LayerNorms, fc1 D→I and fc2 I→D, then
 * the final LayerNorm.
 */
export function clipTextParamCount(cfg: CLIPTextConfig): number {
  const D = cfg.hiddenSize, I = cfg.intermediateSize;
  const embeddings = cfg.vocabSize * D + cfg.maxPositionEmbeddings * D;
  const layer = 4 * (D * D + D) + 2 * (2 * D) + (D * I + I) + (I * D + D);
  return embeddings + cfg.numHiddenLayers * layer + 2 * D;
}

// ------------------------------------------------------------------ layers

class CLIPTextEmbeddings extends Module {
  token_embedding: Embedding;
  position_embedding: Embedding;

  constructor(cfg: CLIPTextConfig) {
    super();
    this.token_embedding = new Embedding(cfg.vocabSize, cfg.hiddenSize);
    this.position_embedding = new Embedding(cfg.maxPositionEmbeddings, cfg.hiddenSize);
  }

  /** ids [B, L] (flat, row-major) → [B, L, D]. */
  forward(ids: Int32Array, B: number, L: number): Tensor {
    const D = this.token_embedding.embeddingDim;
    const table = this.token_embedding.weight;
    let tok: Tensor;
    if (table.dtype === 'f32') {
      tok = embedding(fromTypedArray(ids, [B, L], 'i32'), table);
    } else {
      // 16-bit table: widen only the rows used, never the whole 49408×D table.
      tok = cat(Array.from(ids, (id) => table.narrow(0, id, 1)), 0).reshape([B, L, D]);
    }
    const pos = this.position_embedding.weight.narrow(0, 0, L); // [L, D], positions 0…L−1 broadcast over B
    return tok.add(pos);
  }
}

class CLIPAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  out_proj: Linear;

  constructor(readonly dim: number, readonly heads: number) {
    super();
    this.q_proj = new Linear(dim, dim);
    this.k_proj = new Linear(dim, dim);
    this.v_proj = new Linear(dim, dim);
    this.out_proj = new Linear(dim, dim);
  }

  /** x [B, L, D] → [B, L, D], each token attending to itself and earlier tokens. */
  forward(x: Tensor): Tensor {
    const [B, L, D] = x.shape;
    const split = (t: Tensor) => t.reshape([B, L, this.heads, D / this.heads]).transpose(1, 2); // [B, h, L, d]
    const out = scaledDotProductAttention(split(this.q_proj.forward(x)), split(this.k_proj.forward(x)),
      split(this.v_proj.forward(x)), { causal: true }); // scale 1/√d as CLIP
    return this.out_proj.forward(out.transpose(1, 2).reshape([B, L, D]));
  }
}

class CLIPMLP extends Module {
  fc1: Linear;
  fc2: Linear;

  constructor(dim: number, hidden: number, readonly act: Activation) {
    super();
    this.fc1 = new Linear(dim, hidden);
    this.fc2 = new Linear(hidden, dim);
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(activate(this.fc1.forward(x), this.act));
  }
}

/** Pre-norm block: x + attn(ln1(x)), then x + mlp(ln2(x)). */
class CLIPEncoderLayer extends Module {
  self_attn: CLIPAttention;
  layer_norm1: LayerNorm;
  mlp: CLIPMLP;
  layer_norm2: LayerNorm;

  constructor(cfg: CLIPTextConfig) {
    super();
    this.self_attn = new CLIPAttention(cfg.hiddenSize, cfg.numAttentionHeads);
    this.layer_norm1 = new LayerNorm(cfg.hiddenSize, { eps: cfg.layerNormEps });
    this.mlp = new CLIPMLP(cfg.hiddenSize, cfg.intermediateSize, ACT_TO_NN[cfg.hiddenAct]);
    this.layer_norm2 = new LayerNorm(cfg.hiddenSize, { eps: cfg.layerNormEps });
  }

  forward(x: Tensor): Tensor {
    x = x.add(this.self_attn.forward(this.layer_norm1.forward(x)));
    return x.add(this.mlp.forward(this.layer_norm2.forward(x)));
  }
}

class CLIPEncoder extends Module {
  layers: CLIPEncoderLayer[];

  constructor(cfg: CLIPTextConfig) {
    super();
    this.layers = Array.from({ length: cfg.numHiddenLayers }, () => new CLIPEncoderLayer(cfg));
  }
}

class CLIPTextTransformer extends Module {
  embeddings: CLIPTextEmbeddings;
  encoder: CLIPEncoder;
  final_layer_norm: LayerNorm;

  constructor(cfg: CLIPTextConfig) {
    super();
    this.embeddings = new CLIPTextEmbeddings(cfg);
    this.encoder = new CLIPEncoder(cfg);
    this.final_layer_norm = new LayerNorm(cfg.hiddenSize, { eps: cfg.layerNormEps });
  }
}

// ------------------------------------------------------------------ model

export type TokenIds = Tensor | Int32Array | readonly number[] | readonly (readonly number[])[];

export interface CLIPTextForwardOptions {
  /**
   * Layers to skip at the end, diffusers' `clip_skip`: 0 (default) is the normal output, 1 the penultimate
   * layer's hidden state, … — always followed by final_layer_norm. A1111's "Clip skip" N is clipSkip N − 1.
   */
  clipSkip?: number;
  /** Compute `pooled` (default true). With false and clipSkip > 0 the skipped layers are not run. */
  pooled?: boolean;
}

export interface CLIPTextOutput {
  /** [B, L, D]: final_layer_norm of the last layer, or of the layer clipSkip selects. */
  lastHiddenState: Tensor;
  /** [B, D]: the final output at each sequence's end token (null when not asked for). */
  pooled: Tensor | null;
  /** Embedding output then every layer's output, before final_layer_norm (transformers' hidden_states). */
  hiddenStates: Tensor[];
}

export interface CLIPTextLoadOptions {
  /**
   * Weight storage: 'f32' (default) widens everything; 'keep' keeps the file's f16/bf16 tensors as they
   * are (half the memory); 'f16' / 'bf16' convert to that after loading.
   */
  dtype?: 'f32' | 'keep' | 'f16' | 'bf16';
  /** Weight file variant, e.g. 'fp16' for model.fp16.safetensors. */
  variant?: string;
}

export class CLIPTextModel extends Module {
  text_model: CLIPTextTransformer;
  readonly config: CLIPTextConfig;

  constructor(config: Partial<CLIPTextConfig> = {}) {
    super();
    this.config = { ...CLIP_TEXT_DEFAULTS, ...config };
    validateConfig(this.config, 'CLIPTextModel');
    this.text_model = new CLIPTextTransformer(this.config);
  }

  forward(ids: TokenIds, opts: CLIPTextForwardOptions = {}): CLIPTextOutput {
    const cfg = this.config;
    const { data, B, L } = flattenIds(ids);
    if (L > cfg.maxPositionEmbeddings) throw new Error(`CLIPTextModel: ${L} tokens exceed max_position_embeddings ${cfg.maxPositionEmbeddings}`);
    if (L === 0) throw new Error('CLIPTextModel: empty token sequence');
    for (const id of data) {
      if (!(id >= 0 && id < cfg.vocabSize)) throw new Error(`CLIPTextModel: token id ${id} is outside the vocabulary (0…${cfg.vocabSize - 1})`);
    }
    const skip = opts.clipSkip ?? 0;
    const layers = this.text_model.encoder.layers;
    if (!(Number.isInteger(skip) && skip >= 0 && skip <= layers.length)) {
      throw new Error(`CLIPTextModel: clipSkip must be an integer in 0…${layers.length}, got ${skip}`);
    }
    const wantPooled = opts.pooled ?? true;
    const runLayers = wantPooled ? layers.length : layers.length - skip;

    let x = this.text_model.embeddings.forward(data, B, L); // [B, L, D]
    const hiddenStates = [x];
    for (let i = 0; i < runLayers; i++) {
      x = layers[i].forward(x);
      hiddenStates.push(x);
    }
    const norm = this.text_model.final_layer_norm;
    const final = wantPooled ? norm.forward(hiddenStates[layers.length]) : null;
    const lastHiddenState = skip === 0 && final ? final : norm.forward(hiddenStates[layers.length - skip]);
    const pooled = final ? poolAtEnd(final, data, B, L, cfg.eosTokenId) : null;
    return { lastHiddenState, pooled, hiddenStates };
  }

  /** Build from a `text_encoder/` folder (or a pipeline folder holding one): config.json + safetensors weights. */
  static fromPretrained(folder: string, opts: CLIPTextLoadOptions = {}): CLIPTextModel {
    const dir = resolveDir(folder);
    const cfgFile = path.join(dir, 'config.json');
    if (!fs.existsSync(cfgFile)) throw new Error(`CLIPTextModel: ${dir} has no config.json`);
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(cfgFile, 'utf-8'));
    } catch (err) {
      throw new Error(`CLIPTextModel: ${cfgFile} is not valid JSON: ${(err as Error).message}`);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`CLIPTextModel: ${cfgFile} must hold a JSON object`);
    const model = new CLIPTextModel(clipTextConfigFromJson(raw as Record<string, unknown>, cfgFile));
    model.loadWeights(readWeights(dir, opts.variant), { dtype: opts.dtype, source: dir });
    return model.eval().requiresGrad_(false);
  }

  /**
   * Load a state dict in any of the layouts text encoders come in: `text_model.*` (transformers 4),
   * bare `embeddings.*` / `encoder.*` / `final_layer_norm.*` (transformers 5). The `position_ids` buffer
   * that older files hold is checked for shape and dropped (positions are always 0…L−1). Keys, shapes and
   * counts must match exactly; every problem is reported at once, with `source` in the message.
   */
  loadWeights(weights: Map<string, Tensor>, opts: { dtype?: CLIPTextLoadOptions['dtype']; source?: string } = {}): void {
    const sd = new Map<string, Tensor>();
    const where = opts.source ?? 'weights';
    for (const [key, t] of weights) {
      const name = key.startsWith('text_model.') ? key : `text_model.${key}`;
      if (name === 'text_model.embeddings.position_ids') {
        const n = this.config.maxPositionEmbeddings;
        const ok = (t.ndim === 2 && t.shape[0] === 1 && t.shape[1] === n) || (t.ndim === 1 && t.shape[0] === n);
        if (!ok) throw new Error(`${where}: ${key} expected [1, ${n}] found [${t.shape.join(', ')}]`);
        continue;
      }
      sd.set(name, t);
    }
    const dtype = opts.dtype ?? 'f32';
    try {
      this.loadStateDict(sd, { strict: true, keepDtype: dtype === 'keep' });
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
    if (dtype === 'f16' || dtype === 'bf16') this.to(dtype);
  }
}

/** The row of `hidden` [B, L, D] at each sequence's end token → [B, D]. */
function poolAtEnd(hidden: Tensor, ids: Int32Array, B: number, L: number, eosTokenId: number): Tensor {
  const rows: Tensor[] = [];
  for (let b = 0; b < B; b++) {
    const seq = ids.subarray(b * L, (b + 1) * L);
    let at = 0;
    if (eosTokenId === 2) {
      // Legacy configs: eot is the largest id in CLIP's vocabulary, so take the (first) argmax.
      for (let i = 1; i < L; i++) if (seq[i] > seq[at]) at = i;
    } else {
      const i = seq.indexOf(eosTokenId);
      at = i < 0 ? 0 : i; // no end token: transformers' argmax over all-false picks position 0
    }
    rows.push(hidden.select(0, b).narrow(0, at, 1));
  }
  return cat(rows, 0);
}

/** Accept a [B, L] integer tensor, one sequence, or a list of equal-length sequences. */
function flattenIds(ids: TokenIds): { data: Int32Array; B: number; L: number } {
  if (ids instanceof Tensor) {
    if (ids.dtype !== 'i32' && ids.dtype !== 'i64') throw new Error(`CLIPTextModel: ids must be an integer tensor, got ${ids.dtype}`);
    const shape = ids.ndim === 1 ? [1, ids.shape[0]] : ids.shape;
    if (shape.length !== 2) throw new Error(`CLIPTextModel: ids must be [B, L], got [${ids.shape}]`);
    return { data: Int32Array.from(ids.toFloat32Array()), B: shape[0], L: shape[1] };
  }
  if (ids instanceof Int32Array) return { data: ids, B: 1, L: ids.length };
  if (ids.length > 0 && Array.isArray(ids[0])) {
    const rows = ids as readonly (readonly number[])[];
    const L = rows[0].length;
    if (rows.some((r) => r.length !== L)) throw new Error('CLIPTextModel: sequences in a batch must have the same length (pad them)');
    return { data: Int32Array.from(rows.flat()), B: rows.length, L };
  }
  return { data: Int32Array.from(ids as readonly number[]), B: 1, L: ids.length };
}

function resolveDir(folder: string): string {
  if (!fs.existsSync(folder)) throw new Error(`CLIPTextModel: ${folder} does not exist`);
  const sub = path.join(folder, 'text_encoder');
  return !fs.existsSync(path.join(folder, 'config.json')) && fs.existsSync(sub) ? sub : folder;
}

/** The folder's weights: model[.variant].safetensors, or a sharded index of them. */
function readWeights(dir: string, variant?: string): Map<string, Tensor> {
  const stem = variant ? `model.${variant}.safetensors` : 'model.safetensors';
  const single = path.join(dir, stem);
  const index = path.join(dir, `${stem}.index.json`);
  let files: string[];
  if (fs.existsSync(single)) files = [single];
  else if (fs.existsSync(index)) {
    const map = (JSON.parse(fs.readFileSync(index, 'utf-8')) as { weight_map?: Record<string, string> }).weight_map;
    if (!map) throw new Error(`CLIPTextModel: ${index} has no weight_map`);
    files = [...new Set(Object.values(map))].map((f) => path.join(dir, f));
  } else {
    const bin = ['pytorch_model.bin', 'model.ckpt'].find((f) => fs.existsSync(path.join(dir, f)));
    throw new Error(`CLIPTextModel: ${dir} has no ${stem}${bin ? ` (found ${bin}: pickled weights are not read here; convert to safetensors)` : ''}`);
  }
  const out = new Map<string, Tensor>();
  for (const f of files) {
    const file = SafetensorsFile.open(f);
    try {
      for (const k of file.keys()) out.set(k, file.get(k));
    } finally {
      file.close();
    }
  }
  return out;
}
