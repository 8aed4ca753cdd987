/**
 * Image captioning: transformers' `VisionEncoderDecoderModel` with a ViT encoder and a GPT-2 decoder that
 * cross-attends to the image tokens.
 *
 *   pixels [B, C, H, W] → ViTModel → last_hidden_state [B, 1 + gh·gw, De] (CLS, then patches row-major)
 *     → enc_to_dec_proj (only when De ≠ n_embd) → [B, S, n_embd]
 *   decoder ids [B, T] (decoder_start_token_id first) → GPT-2 with cross-attention → logits [B, T, vocab]
 *
 * Weight names are transformers' (`encoder.embeddings…`, `encoder.encoder.layer.N…`, `encoder.layernorm`,
 * `encoder.pooler.dense`, `enc_to_dec_proj`, `decoder.transformer.h.N.crossattention.q_attn`, …; see vit.ts
 * and gpt2.ts), so a transformers checkpoint folder (config.json + model.safetensors) loads as is, and what
 * we save loads in transformers. The encoder keeps transformers' pooler (ViTModel's default) for that
 * reason; captions never use it (a file without pooler weights loads too).
 *
 * Public API (the training loop and the CLI build on this):
 *
 *   interface CaptionerConfig { encoder: ViTConfig; decoder: GPT2Config; decoderStartTokenId; eosTokenId; padTokenId;
 *                               encoderPoolerSize?: number | null }   // undefined = hidden size, null = no pooler
 *   captionerConfigFromJson(raw) / captionerConfigToJson(config)      // the VisionEncoderDecoder config.json
 *   class VisionEncoderDecoderModel extends Module {
 *     constructor(config, { rng })                   // from scratch, weights drawn from rng (transformers' inits)
 *     static fromPretrained(folder)                  // config.json + model.safetensors (f32/f16/bf16 → f32), strict
 *     savePretrained(folder, { dtype: 'f32'|'f16' }) // config.json, generation_config.json, model.safetensors
 *     encode(pixels) → [B, S, n_embd]                // S = 1 + gh·gw; encodeWithGrid also gives the patch grid
 *     forward(pixels, decoderInputIds, { outputCrossAttentions }) → { logits [B, T, V], crossAttentions? per layer [B, heads, T, S] }
 *     loss(pixels, decoderInputIds, labels, { ignoreIndex = -100, labelSmoothing = 0 }) → scalar
 *   }
 *   shiftTokensRight(labels, startId, padId)          // transformers' decoder inputs from labels (-100 → pad)
 *
 * Teacher forcing: labels[b][t] is the token position t must predict, i.e. decoderInputIds = [start, …labels
 * shifted right] (transformers' convention). Rows must have equal length: right-pad them, and mark padded
 * labels with ignoreIndex (the causal mask keeps padding from touching earlier positions).
 * Decoding (greedy, beam, sampling, KV cache, cross-attention maps) is in generation.ts: `generateCaptions`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Rng, Tensor, crossEntropy, fromTypedArray, getDefaultRng } from '../engine/index.js';
import { Linear, Module, withoutInit } from '../nn/index.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { ConfigError, ConfigReader } from './config.js';
import { adoptStateDict, findWeightFiles, loadWeights, WeightsError } from './blocks/weights.js';
import { ViTModel, vitConfigFromJson, vitConfigToJson, validateViTConfig, VIT_DEFAULTS, type ViTConfig } from './vit.js';
import { GPT2LMHeadModel, GPT2_DEFAULTS, gpt2ConfigFromJson, gpt2ConfigToJson, validateGPT2Config, type GPT2Config, type TokenIds } from './gpt2.js';

// ------------------------------------------------------------------ config

export interface CaptionerConfig {
  encoder: ViTConfig;
  decoder: GPT2Config;
  /** The first decoder input of every caption. */
  decoderStartTokenId: number;
  eosTokenId: number;
  /** Fills sequences that finished early. */
  padTokenId: number;
  /** Width of the encoder's (unused) pooler: undefined = the encoder hidden size (transformers' default), null = none. */
  encoderPoolerSize?: number | null;
}

function validateCaptionerConfig(c: CaptionerConfig, where = 'VisionEncoderDecoder'): void {
  validateViTConfig(c.encoder, `${where} encoder`);
  validateGPT2Config(c.decoder, `${where} decoder`);
  if (!c.decoder.addCrossAttention) throw new ConfigError(`${where}: the decoder needs add_cross_attention = true to see the image`);
  for (const k of ['decoderStartTokenId', 'eosTokenId', 'padTokenId'] as const) {
    const v = c[k];
    if (!(Number.isInteger(v) && v >= 0 && v < c.decoder.vocabSize)) throw new ConfigError(`${where}: ${k} ${v} is outside the decoder vocabulary [0, ${c.decoder.vocabSize})`);
  }
  const p = c.encoderPoolerSize;
  if (p !== undefined && p !== null && !(Number.isInteger(p) && p > 0)) throw new ConfigError(`${where}: encoderPoolerSize must be a positive integer or null, got ${p}`);
}

/** Read a transformers VisionEncoderDecoder config.json object (encoder: vit, decoder: gpt2). */
export function captionerConfigFromJson(raw: Record<string, unknown>, where = 'VisionEncoderDecoder config'): CaptionerConfig {
  const r = new ConfigReader(raw, where);
  if (r.has('model_type') && r.string('model_type') !== 'vision-encoder-decoder') r.fail('model_type', `is ${JSON.stringify(raw.model_type)}, expected "vision-encoder-decoder"`);
  if (r.has('architectures')) {
    const other = r.stringList('architectures').filter((a) => a !== 'VisionEncoderDecoderModel');
    if (other.length) r.fail('architectures', `${JSON.stringify(other)} is not supported (VisionEncoderDecoderModel)`);
  }
  const sub = (key: string): Record<string, unknown> => {
    const v = r.value(key);
    if (!v || typeof v !== 'object' || Array.isArray(v)) r.fail(key, 'must be an object (the sub-model config)');
    return v as Record<string, unknown>;
  };
  const encRaw = sub('encoder'), decRaw = sub('decoder');
  if (encRaw.model_type !== undefined && encRaw.model_type !== 'vit') r.fail('encoder', `model_type ${JSON.stringify(encRaw.model_type)} is not supported (vit)`);
  if (decRaw.model_type !== undefined && decRaw.model_type !== 'gpt2') r.fail('decoder', `model_type ${JSON.stringify(decRaw.model_type)} is not supported (gpt2)`);
  // transformers writes `architectures: null` in sub-configs; the ViT reader only accepts a list there.
  const { architectures: encArch, ...encRest } = encRaw;
  const encoder = vitConfigFromJson(encArch === null ? encRest : encRaw, `${where} → encoder`);
  const decoder = gpt2ConfigFromJson(decRaw, `${where} → decoder`);
  const crossHidden = decRaw.cross_attention_hidden_size;
  if (crossHidden !== undefined && crossHidden !== null && crossHidden !== decoder.nEmbd) {
    r.fail('decoder', `cross_attention_hidden_size ${JSON.stringify(crossHidden)} is not supported: GPT-2 cross-attention reads n_embd (${decoder.nEmbd}) channels`);
  }
  const poolerSize = encRaw.pooler_output_size;
  if (poolerSize !== undefined && poolerSize !== null && !(Number.isInteger(poolerSize) && (poolerSize as number) > 0)) {
    r.fail('encoder', `pooler_output_size must be a positive integer, got ${JSON.stringify(poolerSize)}`);
  }
  // Token ids: the top level first, then the decoder's (transformers falls back the same way).
  const id = (key: string, fallback: number | null): number | null => r.optionalInt(key) ?? fallback;
  const eos = id('eos_token_id', decoder.eosTokenId);
  const start = id('decoder_start_token_id', (decRaw.decoder_start_token_id as number | undefined) ?? decoder.bosTokenId);
  const pad = id('pad_token_id', decoder.padTokenId ?? eos);
  if (start === null) return r.fail('decoder_start_token_id', 'is required (no decoder bos_token_id to fall back on)');
  if (eos === null) return r.fail('eos_token_id', 'is required (the decoder has none either)');
  if (r.has('tie_word_embeddings') && r.bool('tie_word_embeddings')) r.fail('tie_word_embeddings', 'true (tying encoder and decoder weights) is not supported');
  r.ignore('is_encoder_decoder', 'dtype', 'torch_dtype', 'transformers_version', 'tie_word_embeddings', 'use_cache',
    'output_attentions', 'output_hidden_states', 'return_dict', 'bos_token_id', 'vocab_size', 'max_length', 'early_stopping',
    'num_beams', 'length_penalty', 'no_repeat_ngram_size');
  r.finish();
  const cfg: CaptionerConfig = {
    encoder, decoder, decoderStartTokenId: start, eosTokenId: eos, padTokenId: pad ?? eos,
    encoderPoolerSize: typeof poolerSize === 'number' ? poolerSize : undefined,
  };
  validateCaptionerConfig(cfg, where);
  return cfg;
}

/** The config.json we write: transformers' VisionEncoderDecoderConfig layout. */
export function captionerConfigToJson(c: CaptionerConfig): Record<string, unknown> {
  const encoder = vitConfigToJson(c.encoder);
  delete encoder.architectures; // a sub-model: ViTModel, not the classifier
  if (c.encoderPoolerSize !== null) { encoder.pooler_output_size = c.encoderPoolerSize ?? c.encoder.hiddenSize; encoder.pooler_act = 'tanh'; }
  return {
    architectures: ['VisionEncoderDecoderModel'], model_type: 'vision-encoder-decoder', is_encoder_decoder: true,
    encoder,
    decoder: { ...gpt2ConfigToJson(c.decoder), is_decoder: true, add_cross_attention: true },
    decoder_start_token_id: c.decoderStartTokenId, eos_token_id: c.eosTokenId, pad_token_id: c.padTokenId,
    tie_word_embeddings: false,
  };
}

/** A small captioner config for training from scratch (any field may be overridden). */
export function captionerConfig(over: {
  encoder?: Partial<ViTConfig>; decoder?: Partial<GPT2Config>; decoderStartTokenId?: number; eosTokenId?: number; padTokenId?: number;
  encoderPoolerSize?: number | null;
} = {}): CaptionerConfig {
  const decoder: GPT2Config = { ...GPT2_DEFAULTS, addCrossAttention: true, ...over.decoder };
  return {
    encoder: { ...VIT_DEFAULTS, ...over.encoder },
    decoder,
    decoderStartTokenId: over.decoderStartTokenId ?? decoder.bosTokenId ?? 0,
    eosTokenId: over.eosTokenId ?? decoder.eosTokenId ?? 0,
    padTokenId: over.padTokenId ?? decoder.padTokenId ?? decoder.eosTokenId ?? 0,
    encoderPoolerSize: over.encoderPoolerSize,
  };
}

/** transformers' shift_tokens_right: decoder inputs [start, labels[0 … T−2]], with ignored labels (-100) read as pad. */
export function shiftTokensRight(labels: readonly (readonly number[])[], decoderStartTokenId: number, padTokenId: number, ignoreIndex = -100): number[][] {
  return labels.map((row) => [decoderStartTokenId, ...row.slice(0, -1)].map((t) => (t === ignoreIndex ? padTokenId : t)));
}

// ------------------------------------------------------------------ model

export interface CaptionerForwardOptions {
  /** Per decoder layer [B, heads, T, S]: how much each position reads each image token (S = 1 + gh·gw, CLS first). */
  outputCrossAttentions?: boolean;
}

export interface CaptionerLossOptions {
  /** Label value that contributes nothing (default -100, transformers'). */
  ignoreIndex?: number;
  /** Target (1 − ε)·onehot + ε/V. */
  labelSmoothing?: number;
}

/** Matches the causal-mask buffers older GPT-2 checkpoints stored as weights; they are not parameters. */
const LEGACY_MASK_KEY = /^decoder\.transformer\.h\.\d+\.(attn|crossattention)\.(bias|masked_bias)$/;

export class VisionEncoderDecoderModel extends Module {
  encoder: ViTModel;
  enc_to_dec_proj: Linear | null;
  decoder: GPT2LMHeadModel;
  readonly config: CaptionerConfig;

  /** `rng` draws the initial weights and, while training, dropout. */
  constructor(config: CaptionerConfig, opts: { rng?: Rng } = {}) {
    super();
    validateCaptionerConfig(config);
    this.config = config;
    const rng = opts.rng ?? getDefaultRng();
    this.encoder = new ViTModel(config.encoder, { rng }, {
      poolerOutputSize: config.encoderPoolerSize === null ? null : config.encoderPoolerSize ?? config.encoder.hiddenSize,
    });
    // transformers adds the projection only when the widths differ (nn.Linear's default init).
    this.enc_to_dec_proj = config.encoder.hiddenSize !== config.decoder.nEmbd ? new Linear(config.encoder.hiddenSize, config.decoder.nEmbd, { rng }) : null;
    this.decoder = new GPT2LMHeadModel(config.decoder, { rng });
  }

  /** Image tokens for the decoder, and the patch grid: hidden [B, 1 + gh·gw, n_embd] (row 0 is CLS). */
  encodeWithGrid(pixels: Tensor): { hidden: Tensor; grid: [number, number] } {
    const { lastHiddenState, grid } = this.encoder.forward(pixels);
    return { hidden: this.enc_to_dec_proj ? this.enc_to_dec_proj.forward(lastHiddenState) : lastHiddenState, grid };
  }

  /** pixels [B, C, H, W] → [B, 1 + gh·gw, n_embd]. */
  encode(pixels: Tensor): Tensor {
    return this.encodeWithGrid(pixels).hidden;
  }

  /** Teacher forcing: logits [B, T, V] for decoderInputIds [B][T] (differentiable). */
  forward(pixels: Tensor, decoderInputIds: TokenIds, opts: CaptionerForwardOptions = {}): { logits: Tensor; crossAttentions?: Tensor[] } {
    const B = pixels.shape[0];
    const rows = decoderInputIds instanceof Tensor ? decoderInputIds.shape[0] : decoderInputIds.length;
    if (rows !== B) throw new Error(`VisionEncoderDecoderModel: ${B} images but ${rows} rows of decoder ids`);
    const out = this.decoder.forward(decoderInputIds, { encoderHiddenStates: this.encode(pixels), outputCrossAttentions: opts.outputCrossAttentions });
    return opts.outputCrossAttentions ? { logits: out.logits, crossAttentions: out.crossAttentions! } : { logits: out.logits };
  }

  /** Mean cross-entropy of the teacher-forced logits against labels [B][T] (same shape as decoderInputIds). */
  loss(pixels: Tensor, decoderInputIds: TokenIds, labels: readonly (readonly number[])[], opts: CaptionerLossOptions = {}): Tensor {
    const ignoreIndex = opts.ignoreIndex ?? -100;
    const { logits } = this.forward(pixels, decoderInputIds);
    const [B, T, V] = logits.shape;
    if (labels.length !== B || labels.some((r) => r.length !== T)) {
      throw new Error(`VisionEncoderDecoderModel.loss: labels must be [${B}][${T}] like the decoder inputs, got [${labels.length}][${labels.map((r) => r.length).join('|')}]`);
    }
    const target = new Int32Array(B * T);
    let counted = 0;
    labels.forEach((row, b) => row.forEach((t, i) => {
      if (t !== ignoreIndex) {
        if (!(Number.isInteger(t) && t >= 0 && t < V)) throw new Error(`VisionEncoderDecoderModel.loss: label ${t} (row ${b}, position ${i}) is outside the vocabulary [0, ${V})`);
        counted++;
      }
      target[b * T + i] = t;
    }));
    if (!counted) throw new Error('VisionEncoderDecoderModel.loss: every label is ignored; nothing to learn from');
    return crossEntropy(logits.reshape([B * T, V]), fromTypedArray(target, [B * T], 'i32'), { ignoreIndex, labelSmoothing: opts.labelSmoothing ?? 0 });
  }

  /**
   * Build from a transformers folder: config.json + model.safetensors (f32, f16 or bf16; loaded as f32 so it
   * can be fine-tuned). Keys and shapes are checked against the config before any weight is read; missing,
   * unexpected and mis-shaped keys are all reported, by name, in one error.
   */
  static fromPretrained(folder: string): VisionEncoderDecoderModel {
    const label = `VisionEncoderDecoderModel.fromPretrained(${folder})`;
    if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) throw new WeightsError(`${label}: not a folder`);
    const cfgFile = path.join(folder, 'config.json');
    if (!fs.existsSync(cfgFile)) throw new WeightsError(`${label}: no config.json in the folder`);
    const reader = ConfigReader.fromFile(cfgFile, 'VisionEncoderDecoderModel');
    const config = captionerConfigFromJson(reader.raw as Record<string, unknown>, reader.where);
    const files = findWeightFiles(folder, undefined, 'model');
    const keys = new Set<string>();
    for (const f of files) {
      let h: SafetensorsFile;
      try { h = SafetensorsFile.open(f); } catch (err) { throw new WeightsError(`${label}: ${(err as Error).message}`); }
      for (const k of h.keys()) keys.add(k);
      h.close();
    }
    // A file without the (unused) pooler loads, as transformers would load it (with a warning there).
    if (!keys.has('encoder.pooler.dense.weight') && !keys.has('encoder.pooler.dense.bias')) config.encoderPoolerSize = null;
    const model = withoutInit(() => new VisionEncoderDecoderModel(config, { rng: getDefaultRng() }));
    try {
      if ([...keys].some((k) => LEGACY_MASK_KEY.test(k))) {
        const sd = new Map<string, Tensor>();
        for (const f of files) {
          const h = SafetensorsFile.open(f);
          try { for (const k of h.keys()) if (!LEGACY_MASK_KEY.test(k)) sd.set(k, h.get(k)); } finally { h.close(); }
        }
        adoptStateDict(model, sd, { label: `${label}: ${files.map((f) => path.basename(f)).join(', ')}`, dtype: 'f32' });
      } else {
        loadWeights(model, files, { label, dtype: 'f32' });
      }
    } catch (err) {
      if (err instanceof WeightsError) throw err;
      throw new WeightsError(`${label}: ${(err as Error).message}`);
    }
    return model.eval();
  }

  /**
   * Write config.json, generation_config.json and model.safetensors (transformers layout) into `folder`; each
   * file goes to a temporary name first and is renamed into place, so a crash never leaves half a checkpoint
   * under the real name. `dtype` f16 halves the weights file.
   */
  savePretrained(folder: string, opts: { dtype?: 'f32' | 'f16' } = {}): void {
    const dtype = opts.dtype ?? 'f32';
    fs.mkdirSync(folder, { recursive: true });
    const tensors = new Map<string, Tensor>();
    for (const [name, t] of this.stateDict()) tensors.set(name, t.detach().to(dtype).contiguous());
    writeSafetensors(path.join(folder, 'model.safetensors'), tensors, { format: 'pt' });
    const c = this.config;
    writeJsonAtomic(path.join(folder, 'config.json'), { ...captionerConfigToJson(c), dtype: dtype === 'f16' ? 'float16' : 'float32' });
    writeJsonAtomic(path.join(folder, 'generation_config.json'), {
      decoder_start_token_id: c.decoderStartTokenId, bos_token_id: c.decoder.bosTokenId, eos_token_id: c.eosTokenId, pad_token_id: c.padTokenId,
    });
  }
}

function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  fs.renameSync(tmp, file);
}
