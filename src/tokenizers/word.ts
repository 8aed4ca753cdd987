/**
 * A word-level tokenizer for captions: lower-case, split into words and punctuation marks, one id per
 * word seen in the training captions (at least `minCount` times), everything else `<unk>`.
 *
 * Ids 0..3 are the special tokens, matching the captioner's config (pad_token_id 0,
 * decoder_start_token_id = bos 1, eos_token_id 2) so that neither needs to be told the other's numbers:
 *
 *   <pad> 0   <s> 1 (bos / decoder start)   </s> 2 (eos)   <unk> 3
 *
 * Saved as transformers' WordLevel tokenizers are: `vocab.json` ({token: id}) and `tokenizer_config.json`
 * (special tokens, lower-casing), in the model folder.
 *
 * Words: runs of letters and digits, with inner hyphens and apostrophes kept ("t-shirt", "don't"); every
 * other non-space character is a token of its own (",", "."). `decode` joins words with spaces and glues
 * closing punctuation to the word before it, so a caption in this normal form round-trips exactly.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const PAD_TOKEN = '<pad>';
export const BOS_TOKEN = '<s>';
export const EOS_TOKEN = '</s>';
export const UNK_TOKEN = '<unk>';
export const SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN] as const;
export const PAD_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;
export const UNK_ID = 3;

export const VOCAB_FILE = 'vocab.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
const TOKENIZER_CLASS = 'VssWordTokenizer';

const WORD = /[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*|[^\s\p{L}\p{N}]/gu;
/** Punctuation that attaches to the word before it when decoding. */
const CLOSING = new Set([',', '.', ';', ':', '!', '?', ')', ']', '}', '%']);
const OPENING = new Set(['(', '[', '{']);

/** Lower-cased words and punctuation marks of a text: what the vocabulary holds. */
export function splitWords(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(WORD) ?? [];
}

/** Words back to text: single spaces, no space before closing or after opening punctuation. */
export function joinWords(words: readonly string[]): string {
  let out = '';
  for (const w of words) {
    if (out === '' || CLOSING.has(w) || OPENING.has(out[out.length - 1])) out += w;
    else out += ` ${w}`;
  }
  return out;
}

export interface FromCaptionsOptions {
  /** Words seen fewer times become `<unk>` (default 1: keep every word). */
  minCount?: number;
  /** Keep at most this many words besides the special tokens (the most frequent; default all). */
  maxWords?: number;
}

export interface WordEncodeOptions {
  /** Put `<s>` first (default false). */
  addBos?: boolean;
  /** Put `</s>` last (default false). */
  addEos?: boolean;
  /** Cut to at most this many ids (after adding the special tokens; an eos stays last). */
  maxLength?: number;
}

export interface WordDecodeOptions {
  /** Drop `<pad>`, `<s>` and `</s>` (default true); `<unk>` is always shown. */
  skipSpecialTokens?: boolean;
  /** Stop at the first `</s>` (default true). */
  stopAtEos?: boolean;
}

/** Teacher-forcing rows for a batch: decoder inputs `<s> w1 … wn` and labels `w1 … wn </s>`, padded. */
export interface TeacherForcingBatch {
  /** [B][T]: `<s>` then the words, padded with `<pad>`. */
  inputIds: number[][];
  /** [B][T]: the words then `</s>`, padded with `ignoreIndex`. */
  labels: number[][];
  /** Real (non-padding) label positions per row. */
  lengths: number[];
}

export class WordTokenizer {
  readonly vocab: ReadonlyMap<string, number>;
  readonly idToToken: readonly string[];
  readonly padTokenId = PAD_ID;
  readonly bosTokenId = BOS_ID;
  readonly eosTokenId = EOS_ID;
  readonly unkTokenId = UNK_ID;

  /** `tokens` in id order; the first four must be the special tokens. */
  constructor(tokens: readonly string[]) {
    SPECIAL_TOKENS.forEach((t, i) => {
      if (tokens[i] !== t) throw new Error(`WordTokenizer: id ${i} must be ${t}, found ${JSON.stringify(tokens[i])}`);
    });
    const vocab = new Map<string, number>();
    tokens.forEach((t, i) => {
      if (typeof t !== 'string' || t === '') throw new Error(`WordTokenizer: token ${i} is not a non-empty string`);
      if (vocab.has(t)) throw new Error(`WordTokenizer: token ${JSON.stringify(t)} appears twice (ids ${vocab.get(t)} and ${i})`);
      vocab.set(t, i);
    });
    this.vocab = vocab;
    this.idToToken = [...tokens];
  }

  /** The vocabulary of a set of captions: words by falling count (ties alphabetical), after the specials. */
  static fromCaptions(captions: Iterable<string>, opts: FromCaptionsOptions = {}): WordTokenizer {
    const minCount = opts.minCount ?? 1;
    if (!Number.isInteger(minCount) || minCount < 1) throw new Error(`WordTokenizer.fromCaptions: minCount must be a positive integer, got ${minCount}`);
    const counts = new Map<string, number>();
    for (const caption of captions) for (const w of splitWords(caption)) counts.set(w, (counts.get(w) ?? 0) + 1);
    const special = new Set<string>(SPECIAL_TOKENS);
    const words = [...counts].filter(([w, n]) => n >= minCount && !special.has(w))
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([w]) => w)
      .slice(0, opts.maxWords ?? Infinity);
    return new WordTokenizer([...SPECIAL_TOKENS, ...words]);
  }

  /** Read `vocab.json` (and check `tokenizer_config.json` when present) from a folder. */
  static fromPretrained(folder: string): WordTokenizer {
    const file = path.join(folder, VOCAB_FILE);
    if (!fs.existsSync(file)) throw new Error(`no ${VOCAB_FILE} in ${folder}`);
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: expected an object {token: id}`);
    const entries = Object.entries(raw as Record<string, unknown>);
    const tokens = new Array<string>(entries.length);
    for (const [token, id] of entries) {
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= entries.length) {
        throw new Error(`${file}: id of ${JSON.stringify(token)} must be an integer in [0, ${entries.length}), got ${JSON.stringify(id)}`);
      }
      if (tokens[id as number] !== undefined) throw new Error(`${file}: id ${id} is used twice`);
      tokens[id as number] = token;
    }
    const configFile = path.join(folder, TOKENIZER_CONFIG_FILE);
    if (fs.existsSync(configFile)) {
      const cfg = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
      if (cfg.tokenizer_class !== undefined && cfg.tokenizer_class !== TOKENIZER_CLASS) {
        throw new Error(`${configFile}: tokenizer_class ${JSON.stringify(cfg.tokenizer_class)} is not ${TOKENIZER_CLASS}`);
      }
    }
    try {
      return new WordTokenizer(tokens);
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
  }

  get size(): number {
    return this.idToToken.length;
  }

  /** Write `vocab.json` and `tokenizer_config.json` into `folder` (created if needed). */
  save(folder: string): void {
    fs.mkdirSync(folder, { recursive: true });
    const vocab: Record<string, number> = {};
    this.idToToken.forEach((t, i) => (vocab[t] = i));
    fs.writeFileSync(path.join(folder, VOCAB_FILE), `${JSON.stringify(vocab, null, 1)}\n`);
    fs.writeFileSync(path.join(folder, TOKENIZER_CONFIG_FILE), `${JSON.stringify(this.config(), null, 2)}\n`);
  }

  /** transformers-style tokenizer_config.json. */
  config(): Record<string, unknown> {
    return {
      tokenizer_class: TOKENIZER_CLASS, do_lower_case: true, vocab_size: this.size,
      pad_token: PAD_TOKEN, bos_token: BOS_TOKEN, eos_token: EOS_TOKEN, unk_token: UNK_TOKEN,
      pad_token_id: PAD_ID, bos_token_id: BOS_ID, eos_token_id: EOS_ID, unk_token_id: UNK_ID,
    };
  }

  /** Words → ids; unknown words → `<unk>`. */
  encode(text: string, opts: WordEncodeOptions = {}): number[] {
    let ids = splitWords(text).map((w) => this.vocab.get(w) ?? UNK_ID);
    if (opts.addBos) ids.unshift(BOS_ID);
    if (opts.maxLength !== undefined) {
      const room = opts.addEos ? opts.maxLength - 1 : opts.maxLength;
      if (room < 0) throw new Error(`WordTokenizer.encode: maxLength ${opts.maxLength} leaves no room for </s>`);
      ids = ids.slice(0, room);
    }
    if (opts.addEos) ids.push(EOS_ID);
    return ids;
  }

  /** Ids → text (see joinWords); ids outside the vocabulary are an error. */
  decode(ids: Iterable<number>, opts: WordDecodeOptions = {}): string {
    return joinWords(this.decodeWords(ids, opts));
  }

  /** Ids → words, one per kept id (what a per-word picture labels). */
  decodeWords(ids: Iterable<number>, opts: WordDecodeOptions = {}): string[] {
    const skip = opts.skipSpecialTokens ?? true, stop = opts.stopAtEos ?? true;
    const words: string[] = [];
    for (const id of ids) {
      if (stop && id === EOS_ID) break;
      if (skip && (id === PAD_ID || id === BOS_ID || id === EOS_ID)) continue;
      const t = this.idToToken[id];
      if (t === undefined) throw new Error(`WordTokenizer.decode: id ${id} is outside the vocabulary (size ${this.size})`);
      words.push(t);
    }
    return words;
  }

  /** Fraction of the words of `captions` that are out of the vocabulary. */
  unknownRate(captions: Iterable<string>): number {
    let unk = 0, total = 0;
    for (const c of captions) for (const w of splitWords(c)) { total++; if (!this.vocab.has(w)) unk++; }
    return total > 0 ? unk / total : 0;
  }

  /**
   * Inputs and labels for teacher forcing, padded to the batch's longest caption (each caption cut to
   * `maxLength` positions, `</s>` included): position t predicts label t from inputs 0..t.
   */
  teacherForcing(captions: readonly string[], opts: { maxLength: number; ignoreIndex?: number }): TeacherForcingBatch {
    const ignore = opts.ignoreIndex ?? -100;
    const rows = captions.map((c) => this.encode(c, { addEos: true, maxLength: opts.maxLength }));
    const T = Math.max(1, ...rows.map((r) => r.length));
    const inputIds: number[][] = [], labels: number[][] = [];
    for (const r of rows) {
      const input = [BOS_ID, ...r.slice(0, r.length - 1)];
      inputIds.push([...input, ...new Array<number>(T - input.length).fill(PAD_ID)]);
      labels.push([...r, ...new Array<number>(T - r.length).fill(ignore)]);
    }
    return { inputIds, labels, lengths: rows.map((r) => r.length) };
  }
}
