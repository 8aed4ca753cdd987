/**
 * Prompt weighting and long prompts, the way AUTOMATIC1111's web UI does them.
 *
 * Syntax:  (word) ×1.1   ((word)) ×1.21   [word] ÷1.1   (word:1.3) ×1.3   \( \) \[ \] literal brackets
 *          BREAK (upper case, a word of its own) ends the current 75-token chunk.
 * Unclosed brackets apply to the end of the prompt; a stray ) or ] is plain text.
 *
 * Encoding:
 *   1. the parsed fragments are tokenised one by one (no bos/eos), each token carrying its weight;
 *   2. tokens fill chunks of 75 (77 − bos − eos). When a chunk fills up and a comma sits within the last
 *      `commaBacktrack` (20) tokens, the chunk is cut after that comma and the rest moves on (A1111's
 *      "comma padding backtrack"). Each chunk becomes [bos, …tokens, eos, pad…] (77 ids, weight 1 on the
 *      specials and padding);
 *   3. every chunk goes through the text encoder; its hidden states z [77, D] are multiplied by the token
 *      weights and rescaled so the mean of z is unchanged ("Original" emphasis):
 *          z' = z · w[:, None] · (mean(z) / mean(z · w[:, None]));
 *   4. the chunks are concatenated: [1, 77·k, D]. The U-Net's cross-attention takes any length.
 */
import { type Tensor, fromTypedArray, noGrad } from '../engine/index.js';
import type { CLIPTokenizer } from '../tokenizers/clip_bpe.js';
import type { CLIPTextModel } from '../models/clip_text.js';

const ROUND_MULTIPLIER = 1.1;
const SQUARE_MULTIPLIER = 1 / 1.1;

export interface PromptFragment {
  text: string;
  weight: number;
  /** A BREAK marker (text 'BREAK', no tokens): start a new chunk here. */
  isBreak?: boolean;
}

/**
 * One lexical piece of a prompt: escapes, brackets, ":number)" closers, runs of ordinary text, a lone ':'.
 * A lone backslash is its own piece (and, as in A1111, vanishes).
 */
const PIECE = /\\[()[\]\\]|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()[\]:]+|:/g;
const BREAK = /\s*\bBREAK\b\s*/;

/** Split a prompt into fragments with weights; adjacent fragments of equal weight are merged. */
export function parsePromptAttention(text: string, opts: { breaks?: boolean } = {}): PromptFragment[] {
  const useBreak = opts.breaks ?? true;
  const out: PromptFragment[] = [];
  const round: number[] = []; // start index in `out` of each open "(" / "["
  const square: number[] = [];
  const scaleFrom = (start: number, by: number) => {
    for (let i = start; i < out.length; i++) if (!out[i].isBreak) out[i].weight *= by;
  };
  const addText = (s: string) => {
    const parts = useBreak ? s.split(BREAK) : [s];
    parts.forEach((part, i) => {
      if (i > 0) out.push({ text: 'BREAK', weight: -1, isBreak: true });
      out.push({ text: part, weight: 1 });
    });
  };

  for (const m of text.matchAll(PIECE)) {
    const piece = m[0];
    const number = m[1];
    if (piece.startsWith('\\')) out.push({ text: piece.slice(1), weight: 1 });
    else if (piece === '(') round.push(out.length);
    else if (piece === '[') square.push(out.length);
    else if (number !== undefined && round.length && Number.isFinite(Number(number))) scaleFrom(round.pop()!, Number(number));
    else if (piece === ')' && round.length) scaleFrom(round.pop()!, ROUND_MULTIPLIER);
    else if (piece === ']' && square.length) scaleFrom(square.pop()!, SQUARE_MULTIPLIER);
    else addText(piece);
  }
  // Unclosed brackets reach to the end, applied in the order they were opened.
  for (const start of round) scaleFrom(start, ROUND_MULTIPLIER);
  for (const start of square) scaleFrom(start, SQUARE_MULTIPLIER);

  if (out.length === 0) return [{ text: '', weight: 1 }];
  const merged: PromptFragment[] = [out[0]];
  for (let i = 1; i < out.length; i++) {
    const prev = merged[merged.length - 1], cur = out[i];
    if (!prev.isBreak && !cur.isBreak && prev.weight === cur.weight) prev.text += cur.text;
    else merged.push(cur);
  }
  return merged;
}

/** How weights act on the hidden states (A1111's "emphasis" setting). */
export type Emphasis =
  | 'original' // multiply, then restore the chunk's mean (A1111 default)
  | 'no_norm' // multiply only
  | 'none'; // no weighting syntax at all: brackets are ordinary text, BREAK too

export interface WeightedChunk {
  /** [bos, tokens…, eos, pad…], length 77. */
  ids: Int32Array;
  /** Per-position weight, 1 on bos / eos / padding. */
  weights: Float32Array;
}

export interface TokenizeWeightedOptions {
  emphasis?: Emphasis;
  /** Look back this many tokens for a comma to cut a full chunk at (A1111 default 20; 0 turns it off). */
  commaBacktrack?: number;
}

/** Parse, tokenise and chunk a prompt. An empty prompt gives one chunk [bos, eos, pad…]. */
export function tokenizeWeighted(text: string, tokenizer: CLIPTokenizer, opts: TokenizeWeightedOptions = {}): {
  chunks: WeightedChunk[];
  /** Prompt tokens (without bos / eos / padding). */
  tokenCount: number;
} {
  const emphasis = opts.emphasis ?? 'original';
  const backtrack = opts.commaBacktrack ?? 20;
  const window = tokenizer.modelMaxLength;
  const chunkLength = window - 2;
  const comma = tokenizer.tokenToId(',</w>');
  const fragments = emphasis === 'none' ? [{ text, weight: 1 }] : parsePromptAttention(text);

  const chunks: WeightedChunk[] = [];
  let tokens: number[] = [];
  let weights: number[] = [];
  let lastComma = -1;
  let tokenCount = 0;

  const closeChunk = () => {
    const ids = new Int32Array(window).fill(tokenizer.padId);
    const w = new Float32Array(window).fill(1);
    ids[0] = tokenizer.bosId;
    ids.set(tokens, 1);
    w.set(weights, 1);
    ids[tokens.length + 1] = tokenizer.eosId;
    chunks.push({ ids, weights: w });
    tokenCount += tokens.length;
    tokens = [];
    weights = [];
    lastComma = -1;
  };

  for (const frag of fragments) {
    if (frag.isBreak) { closeChunk(); continue; }
    for (const token of tokenizer.encode(frag.text, { addSpecialTokens: false })) {
      if (token === comma) {
        lastComma = tokens.length;
      } else if (backtrack > 0 && tokens.length === chunkLength && lastComma !== -1 && tokens.length - lastComma <= backtrack) {
        // Cut after the last comma; the words after it start the next chunk.
        const movedTokens = tokens.slice(lastComma + 1), movedWeights = weights.slice(lastComma + 1);
        tokens = tokens.slice(0, lastComma + 1);
        weights = weights.slice(0, lastComma + 1);
        closeChunk();
        tokens = movedTokens;
        weights = movedWeights;
      }
      if (tokens.length === chunkLength) closeChunk();
      tokens.push(token);
      weights.push(frag.weight);
    }
  }
  if (tokens.length > 0 || chunks.length === 0) closeChunk();
  return { chunks, tokenCount };
}

export interface EncodePromptOptions extends TokenizeWeightedOptions {
  /** diffusers' clip_skip: 0 = last layer, 1 = penultimate (A1111 "Clip skip 2"), … */
  clipSkip?: number;
}

/** Encode a weighted, possibly long prompt → [1, 77·k, D]. */
export function encodePrompt(text: string, tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel,
                             opts: EncodePromptOptions = {}): Tensor {
  const { chunks } = tokenizeWeighted(text, tokenizer, opts);
  return encodeChunks(chunks, textEncoder, opts);
}

/**
 * Positive and negative prompts for classifier-free guidance, brought to the same length by appending
 * encodings of the empty prompt to the shorter one (A1111's pad_cond_uncond), so both batch together.
 */
export function encodePromptPair(prompt: string, negative: string, tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel,
                                 opts: EncodePromptOptions = {}): { cond: Tensor; uncond: Tensor } {
  const a = tokenizeWeighted(prompt, tokenizer, opts).chunks;
  const b = tokenizeWeighted(negative, tokenizer, opts).chunks;
  const empty = tokenizeWeighted('', tokenizer, opts).chunks[0];
  while (a.length < b.length) a.push(empty);
  while (b.length < a.length) b.push(empty);
  return { cond: encodeChunks(a, textEncoder, opts), uncond: encodeChunks(b, textEncoder, opts) };
}

/** Run the chunks through the encoder as one batch and apply the weights per chunk. */
export function encodeChunks(chunks: WeightedChunk[], textEncoder: CLIPTextModel, opts: EncodePromptOptions = {}): Tensor {
  const emphasis = opts.emphasis ?? 'original';
  const k = chunks.length, L = chunks[0].ids.length;
  const ids = new Int32Array(k * L);
  chunks.forEach((c, i) => ids.set(c.ids, i * L));
  const hidden = noGrad(() => textEncoder.forward(fromTypedArray(ids, [k, L], 'i32'),
    { clipSkip: opts.clipSkip ?? 0, pooled: false }).lastHiddenState); // [k, L, D]
  const D = hidden.shape[2];
  const z = Float32Array.from(hidden.toFloat32Array());

  if (emphasis !== 'none') {
    for (let c = 0; c < k; c++) {
      const w = chunks[c].weights;
      if (w.every((x) => x === 1)) continue; // exact no-op: keep plain encodings bit-identical
      const zc = z.subarray(c * L * D, (c + 1) * L * D);
      let before = 0, after = 0;
      for (let t = 0; t < L; t++) {
        for (let d = 0; d < D; d++) {
          const v = zc[t * D + d];
          before += v;
          zc[t * D + d] = v * w[t];
          after += zc[t * D + d];
        }
      }
      if (emphasis === 'original' && after !== 0) {
        const restore = Math.fround(before / after); // ratio of the means (same element count)
        for (let i = 0; i < zc.length; i++) zc[i] *= restore;
      }
    }
  }
  return fromTypedArray(z, [1, k * L, D], 'f32');
}
