/**
 * CLIP's byte-level BPE tokenizer, as Stable Diffusion folders ship it (`tokenizer/`).
 *
 * Files read (either layout):
 *   vocab.json + merges.txt          the classic layout (token → id, and merge rules by rank)
 *   tokenizer.json                   Hugging Face `tokenizers` format: model.vocab + model.merges + added_tokens
 *   tokenizer_config.json, special_tokens_map.json    bos / eos / unk / pad tokens, model_max_length
 *
 * Pipeline, matching transformers' CLIPTokenizer(Fast), which the golden ids come from:
 *   1. special tokens (bos, eos, unk, pad and any added tokens) are cut out of the raw text first and map
 *      straight to their ids. So with SD 2.x's pad token `!`, every "!" in a prompt becomes id 0, as it
 *      does in transformers.
 *   2. the rest is normalised: NFC, whitespace runs → one space, lower-cased (per code point, like the
 *      Rust normaliser: no final-sigma rule). No HTML unescaping by default: transformers does none, so
 *      `&amp;` stays three tokens; `{ htmlUnescape: true }` gives the original OpenAI CLIP clean-up
 *      (minus ftfy).
 *   3. pre-tokenised with CLIP's regex (letters runs, single digits, punctuation runs, contractions),
 *      each piece's UTF-8 bytes mapped to printable characters (GPT-2's byte↔unicode table),
 *   4. BPE: `</w>` is appended to a piece's last symbol, then adjacent pairs merge by lowest rank.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** CLIP's pre-tokenisation pattern (case-insensitive, as OpenAI's `re.IGNORECASE`). */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}]+/giu;
/**
 * The ByteLevel pre-tokenizer in CLIP's tokenizer.json runs GPT-2's pattern over each CLIP piece. It only
 * changes anything for a literal "<|endoftext|>" that did not match as a special token (e.g. upper case).
 */
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const WHITESPACE_RUN = /\p{White_Space}+/gu;
const END_OF_WORD = '</w>';
const MAX_CACHE = 50_000;

/** GPT-2's reversible byte → printable-character table (printable Latin-1 maps to itself). */
function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : next++);
  }
  return table;
}
const BYTE_TO_CHAR = bytesToUnicode();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const HTML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/** Basic HTML unescaping (named entities above, decimal and hex character references). */
export function htmlUnescape(text: string): string {
  return text.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);/g, (whole, body: string) => {
    if (body[0] === '#') {
      const cp = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : whole;
    }
    return HTML_ENTITIES[body.toLowerCase()] ?? whole;
  });
}

export interface CLIPTokenizerOptions {
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  /** `<|endoftext|>` for SD 1.x, `!` for SD 2.x. Defaults to the eos token. */
  padToken?: string;
  /** Window length, 77 for every CLIP text encoder. */
  modelMaxLength?: number;
  /** Extra atomic tokens (content → id), e.g. tokenizer.json's added_tokens. */
  addedTokens?: Map<string, number>;
  /** Unescape HTML entities before tokenising (OpenAI CLIP does, transformers does not). Default false. */
  htmlUnescape?: boolean;
}

export interface EncodeOptions {
  /** Wrap with bos … eos (default true). */
  addSpecialTokens?: boolean;
}

export interface EncodePaddedOptions {
  /** Default: the tokenizer's modelMaxLength (77). */
  maxLength?: number;
  /** Pad token (string, e.g. '!') or id; default the tokenizer's pad token. Only the padding changes. */
  pad?: string | number;
  /** Cut to maxLength keeping bos first and eos last (default true). Without it a long prompt throws. */
  truncation?: boolean;
}

export class CLIPTokenizer {
  readonly vocab: ReadonlyMap<string, number>;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly padId: number;
  readonly modelMaxLength: number;
  readonly htmlUnescape: boolean;

  private readonly merges: ReadonlyArray<readonly [string, string]>;
  /** "a b" → rank (lower merges first). */
  private readonly ranks: Map<string, number>;
  private readonly idToToken: Map<number, string>;
  /** Atomic tokens matched in the raw text (content → id) and the ids that count as special for decode. */
  private readonly specials: Map<string, number>;
  private readonly specialIds: Set<number>;
  private readonly specialPattern: RegExp | null;
  private readonly addedTokens: Map<string, number>;
  private readonly cache = new Map<string, number[]>();

  constructor(vocab: Map<string, number> | Record<string, number>, merges: ReadonlyArray<readonly [string, string]>,
              opts: CLIPTokenizerOptions = {}) {
    const v = vocab instanceof Map ? vocab : new Map(Object.entries(vocab));
    this.vocab = v;
    this.merges = merges;
    this.ranks = new Map();
    merges.forEach(([a, b], i) => { if (!this.ranks.has(`${a} ${b}`)) this.ranks.set(`${a} ${b}`, i); });
    this.idToToken = new Map();
    for (const [tok, id] of v) this.idToToken.set(id, tok);
    this.addedTokens = new Map(opts.addedTokens ?? []);
    for (const [tok, id] of this.addedTokens) if (!this.idToToken.has(id)) this.idToToken.set(id, tok);

    this.bosToken = opts.bosToken ?? '<|startoftext|>';
    this.eosToken = opts.eosToken ?? '<|endoftext|>';
    this.unkToken = opts.unkToken ?? this.eosToken;
    this.padToken = opts.padToken ?? this.eosToken;
    this.modelMaxLength = opts.modelMaxLength ?? 77;
    this.htmlUnescape = opts.htmlUnescape ?? false;
    if (!(Number.isInteger(this.modelMaxLength) && this.modelMaxLength >= 2)) {
      throw new Error(`CLIPTokenizer: modelMaxLength must be an integer ≥ 2, got ${this.modelMaxLength}`);
    }

    const idOf = (role: string, tok: string): number => {
      const id = this.addedTokens.get(tok) ?? v.get(tok);
      if (id === undefined) throw new Error(`CLIPTokenizer: ${role} token ${JSON.stringify(tok)} is not in the vocabulary`);
      return id;
    };
    this.bosId = idOf('bos', this.bosToken);
    this.eosId = idOf('eos', this.eosToken);
    this.unkId = idOf('unk', this.unkToken);
    this.padId = idOf('pad', this.padToken);

    this.specials = new Map(this.addedTokens);
    for (const [tok, id] of [[this.bosToken, this.bosId], [this.eosToken, this.eosId], [this.unkToken, this.unkId],
      [this.padToken, this.padId]] as const) this.specials.set(tok, id);
    this.specialIds = new Set(this.specials.values());
    // Longest first, so a token that is a prefix of another never wins (leftmost-longest, as tokenizers does).
    const alternatives = [...this.specials.keys()].filter((s) => s.length > 0).sort((a, b) => b.length - a.length)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.specialPattern = alternatives.length ? new RegExp(alternatives.join('|'), 'gu') : null;
  }

  /** Load `folder` (a `tokenizer/` folder, or a pipeline folder that holds one). */
  static fromPretrained(folder: string, overrides: CLIPTokenizerOptions = {}): CLIPTokenizer {
    const dir = resolveTokenizerDir(folder);
    const file = (name: string) => path.join(dir, name);
    const has = (name: string) => fs.existsSync(file(name));

    // Special tokens: tokenizer_config.json, then special_tokens_map.json on top (as transformers does).
    const specials: Record<string, string | undefined> = {};
    const added = new Map<string, number>();
    let maxLength: number | undefined;
    for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
      if (!has(name)) continue;
      const cfg = readJson(file(name));
      for (const role of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
        const tok = tokenContent(cfg[role], `${file(name)}: ${role}`);
        if (tok !== undefined) specials[role] = tok;
      }
      const limit = cfg.model_max_length;
      // Configs without a real limit store 1e30; CLIP's position table fixes 77 anyway.
      if (typeof limit === 'number' && Number.isInteger(limit) && limit >= 2 && limit <= 1_000_000) maxLength = limit;
      const decoder = cfg.added_tokens_decoder;
      if (decoder && typeof decoder === 'object') {
        for (const [id, entry] of Object.entries(decoder as Record<string, unknown>)) {
          const tok = tokenContent(entry, `${file(name)}: added_tokens_decoder.${id}`);
          if (tok !== undefined && /^\d+$/.test(id)) added.set(tok, Number(id));
        }
      }
    }

    let vocab: Map<string, number>;
    let merges: [string, string][];
    if (has('vocab.json') && has('merges.txt')) {
      vocab = parseVocab(readJson(file('vocab.json')), file('vocab.json'));
      merges = parseMergesText(readText(file('merges.txt')), file('merges.txt'));
    } else if (has('tokenizer.json')) {
      ({ vocab, merges } = parseTokenizerJson(readJson(file('tokenizer.json')), file('tokenizer.json'), added));
    } else {
      const missing = ['vocab.json', 'merges.txt'].filter((n) => !has(n));
      throw new Error(`CLIPTokenizer: ${dir} has no tokenizer.json and no vocab.json + merges.txt (missing ${missing.join(', ')})`);
    }
    validateMerges(vocab, merges, dir);

    return new CLIPTokenizer(vocab, merges, {
      bosToken: specials.bos_token, eosToken: specials.eos_token, unkToken: specials.unk_token,
      padToken: specials.pad_token, modelMaxLength: maxLength, addedTokens: added, ...overrides,
    });
  }

  /** The same vocabulary with another pad token (which, like transformers, also becomes an atomic token). */
  withPadToken(padToken: string): CLIPTokenizer {
    return new CLIPTokenizer(this.vocab as Map<string, number>, this.merges, {
      bosToken: this.bosToken, eosToken: this.eosToken, unkToken: this.unkToken, padToken,
      modelMaxLength: this.modelMaxLength, addedTokens: this.addedTokens, htmlUnescape: this.htmlUnescape,
    });
  }

  get vocabSize(): number {
    return this.idToToken.size;
  }

  /** The id of a token string (vocabulary or added), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.addedTokens.get(token) ?? this.vocab.get(token);
  }

  idToTokenString(id: number): string | undefined {
    return this.idToToken.get(id);
  }

  /** Token ids of `text`, untruncated; with bos/eos unless `addSpecialTokens: false`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (opts.addSpecialTokens ?? true) ids.push(this.bosId);
    for (const seg of this.splitSpecials(text)) {
      if (typeof seg === 'number') { ids.push(seg); continue; }
      for (const piece of this.preTokenize(seg)) for (const id of this.bpe(piece)) ids.push(id);
    }
    if (opts.addSpecialTokens ?? true) ids.push(this.eosId);
    return ids;
  }

  /** BPE token strings (byte-level characters, `</w>` suffixes), without bos/eos. */
  tokenize(text: string): string[] {
    return this.encode(text, { addSpecialTokens: false }).map((id) => this.idToToken.get(id) ?? this.unkToken);
  }

  /**
   * A fixed window as the text encoder takes it: [bos, …tokens, eos, pad, pad, …], length maxLength (77).
   * Too-long prompts keep bos, their first maxLength − 2 tokens and eos (transformers' truncation).
   */
  encodePadded(text: string, opts: EncodePaddedOptions = {}): Int32Array {
    const maxLength = opts.maxLength ?? this.modelMaxLength;
    if (!(Number.isInteger(maxLength) && maxLength >= 2)) throw new Error(`encodePadded: maxLength must be an integer ≥ 2, got ${maxLength}`);
    const padId = opts.pad === undefined ? this.padId
      : typeof opts.pad === 'number' ? opts.pad : this.tokenToId(opts.pad);
    if (padId === undefined) throw new Error(`encodePadded: pad token ${JSON.stringify(opts.pad)} is not in the vocabulary`);
    let body = this.encode(text, { addSpecialTokens: false });
    if (body.length > maxLength - 2) {
      if (opts.truncation === false) throw new Error(`encodePadded: ${body.length + 2} tokens do not fit in ${maxLength}`);
      body = body.slice(0, maxLength - 2);
    }
    const out = new Int32Array(maxLength).fill(padId);
    out[0] = this.bosId;
    out.set(body, 1);
    out[body.length + 1] = this.eosId;
    return out;
  }

  /** Text back from ids: `</w>` becomes a space; special tokens are dropped unless asked for. */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const skip = opts.skipSpecialTokens ?? true;
    let out = '';
    let run: number[] = []; // bytes of consecutive ordinary tokens, decoded together (tokens split UTF-8 sequences)
    const flush = () => {
      if (run.length) out += new TextDecoder('utf-8').decode(new Uint8Array(run));
      run = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const tok = this.idToToken.get(id);
      if (tok === undefined) throw new Error(`decode: id ${id} is not in the vocabulary`);
      if (this.specialIds.has(id) || this.addedTokens.has(tok)) {
        if (skip && this.specialIds.has(id)) continue;
        flush();
        out += tok;
        continue;
      }
      const word = tok.endsWith(END_OF_WORD) ? tok.slice(0, -END_OF_WORD.length) : tok;
      for (const ch of word) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b === undefined) throw new Error(`decode: token ${JSON.stringify(tok)} holds a character outside the byte map`);
        run.push(b);
      }
      if (word !== tok) run.push(0x20);
    }
    flush();
    return out.replace(/ +$/, '').replace(/^ +/, '');
  }

  // ------------------------------------------------------------------ internals

  /** Raw text → alternating text segments and special-token ids. */
  private splitSpecials(text: string): (string | number)[] {
    if (!this.specialPattern) return [text];
    const out: (string | number)[] = [];
    let last = 0;
    for (const m of text.matchAll(this.specialPattern)) {
      if (m.index! > last) out.push(text.slice(last, m.index));
      out.push(this.specials.get(m[0])!);
      last = m.index! + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  /** Normalise and cut into byte-level pieces. */
  private preTokenize(text: string): string[] {
    if (this.htmlUnescape) text = htmlUnescape(htmlUnescape(text)).trim();
    let norm = text.normalize('NFC').replace(WHITESPACE_RUN, ' ');
    let lower = '';
    for (const ch of norm) lower += ch.toLowerCase(); // per code point: no context-dependent final sigma
    norm = lower;
    const pieces: string[] = [];
    const encoder = new TextEncoder();
    for (const m of norm.matchAll(CLIP_PATTERN)) {
      for (const g of m[0].matchAll(GPT2_PATTERN)) {
        let mapped = '';
        for (const b of encoder.encode(g[0])) mapped += BYTE_TO_CHAR[b];
        pieces.push(mapped);
      }
    }
    return pieces;
  }

  /** Ids of one byte-level piece. */
  private bpe(piece: string): number[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    // Byte-level characters are all in the BMP, so string indices are characters.
    let symbols = piece.split('');
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let best = Infinity, bestAt = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < best) { best = r; bestAt = i; }
      }
      if (bestAt < 0) break;
      // Merge every occurrence of the winning pair, left to right.
      const a = symbols[bestAt], b = symbols[bestAt + 1];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) { merged.push(a + b); i++; }
        else merged.push(symbols[i]);
      }
      symbols = merged;
    }
    const ids = symbols.map((s) => this.vocab.get(s) ?? this.unkId);
    if (this.cache.size >= MAX_CACHE) this.cache.clear();
    this.cache.set(piece, ids);
    return ids;
  }
}

// ------------------------------------------------------------------ file parsing

function resolveTokenizerDir(folder: string): string {
  if (!fs.existsSync(folder)) throw new Error(`CLIPTokenizer: ${folder} does not exist`);
  if (!fs.statSync(folder).isDirectory()) throw new Error(`CLIPTokenizer: ${folder} is not a folder`);
  const sub = path.join(folder, 'tokenizer');
  const looksLikeTokenizer = ['vocab.json', 'tokenizer.json', 'merges.txt'].some((n) => fs.existsSync(path.join(folder, n)));
  return !looksLikeTokenizer && fs.existsSync(sub) && fs.statSync(sub).isDirectory() ? sub : folder;
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf-8');
  } catch (err) {
    throw new Error(`CLIPTokenizer: cannot read ${file}: ${(err as Error).message}`);
  }
}

function readJson(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readText(file));
  } catch (err) {
    if ((err as Error).message.startsWith('CLIPTokenizer:')) throw err;
    throw new Error(`CLIPTokenizer: ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`CLIPTokenizer: ${file} must hold a JSON object`);
  return parsed as Record<string, unknown>;
}

/** A token as configs write it: a string, or an AddedToken object {content: …}. */
function tokenContent(raw: unknown, where: string): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === 'string') return raw;
  if (typeof raw === 'object' && typeof (raw as { content?: unknown }).content === 'string') return (raw as { content: string }).content;
  throw new Error(`CLIPTokenizer: ${where} must be a string or {"content": …}, got ${JSON.stringify(raw)}`);
}

function parseVocab(raw: Record<string, unknown>, file: string): Map<string, number> {
  const vocab = new Map<string, number>();
  for (const [tok, id] of Object.entries(raw)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new Error(`CLIPTokenizer: ${file}: token ${JSON.stringify(tok)} has id ${JSON.stringify(id)}, expected a non-negative integer`);
    }
    vocab.set(tok, id);
  }
  if (vocab.size === 0) throw new Error(`CLIPTokenizer: ${file} holds no tokens`);
  return vocab;
}

/** merges.txt: an optional "#version" line, then one "a b" pair per line, highest priority first. */
export function parseMergesText(text: string, file = 'merges.txt'): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1]) {
      throw new Error(`CLIPTokenizer: ${file} line ${i + 1}: expected two symbols separated by one space, got ${JSON.stringify(line.slice(0, 80))}`);
    }
    merges.push([parts[0], parts[1]]);
  });
  if (merges.length === 0) throw new Error(`CLIPTokenizer: ${file} holds no merges`);
  return merges;
}

function parseTokenizerJson(raw: Record<string, unknown>, file: string, added: Map<string, number>):
    { vocab: Map<string, number>; merges: [string, string][] } {
  const model = raw.model as Record<string, unknown> | undefined;
  if (!model || typeof model !== 'object') throw new Error(`CLIPTokenizer: ${file} has no "model" object`);
  if (model.type !== undefined && model.type !== 'BPE') throw new Error(`CLIPTokenizer: ${file}: model type ${JSON.stringify(model.type)} is not BPE`);
  const suffix = model.end_of_word_suffix;
  if (suffix !== undefined && suffix !== null && suffix !== END_OF_WORD) {
    throw new Error(`CLIPTokenizer: ${file}: end_of_word_suffix ${JSON.stringify(suffix)} is not CLIP's "${END_OF_WORD}"`);
  }
  if (!model.vocab || typeof model.vocab !== 'object' || Array.isArray(model.vocab)) throw new Error(`CLIPTokenizer: ${file}: model.vocab must be an object`);
  const vocab = parseVocab(model.vocab as Record<string, unknown>, `${file} model.vocab`);
  if (!Array.isArray(model.merges)) throw new Error(`CLIPTokenizer: ${file}: model.merges must be a list`);
  const merges: [string, string][] = (model.merges as unknown[]).map((m, i) => {
    // Older files write "a b", newer ones ["a", "b"].
    const pair = typeof m === 'string' ? m.split(' ') : m;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
      throw new Error(`CLIPTokenizer: ${file}: model.merges[${i}] must be "a b" or ["a", "b"], got ${JSON.stringify(m)}`);
    }
    return [pair[0], pair[1]];
  });
  if (Array.isArray(raw.added_tokens)) {
    for (const t of raw.added_tokens as { id?: unknown; content?: unknown }[]) {
      if (typeof t?.content === 'string' && typeof t.id === 'number') added.set(t.content, t.id);
    }
  }
  return { vocab, merges };
}

/** Every merge must join two vocabulary symbols into a third (tokenizers refuses files where they do not). */
function validateMerges(vocab: Map<string, number>, merges: [string, string][], dir: string): void {
  for (let i = 0; i < merges.length; i++) {
    const [a, b] = merges[i];
    for (const s of [a, b, a + b]) {
      if (!vocab.has(s)) throw new Error(`CLIPTokenizer: ${dir}: merge ${i + 1} "${a} ${b}" uses ${JSON.stringify(s)}, which is not in the vocabulary`);
    }
  }
}
