/**
 * PNG chunk handling and the A1111 "parameters" text, written by hand so that generation metadata does
 * not depend on what the image library chooses to keep.
 *
 * A PNG is the 8-byte signature followed by chunks: 4-byte big-endian data length, 4-byte type, data,
 * and a CRC-32 over type + data. Text lives in tEXt (Latin-1), zTXt (Latin-1, deflated) or iTXt (UTF-8).
 */
import { inflateSync } from 'node:zlib';

export const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

// ---------------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as PNG, zlib and gzip use it.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32 of `bytes[start, end)`. Pass the previous result as `crc` to continue a running checksum
 * over several pieces (the pre- and post-inversion are handled here).
 */
export function crc32(bytes: Uint8Array, crc = 0, start = 0, end = bytes.length): number {
  let c = ~crc >>> 0;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Chunks

export interface PngChunk {
  type: string;
  data: Uint8Array;
  /** Byte offset of the chunk's length field in the file. */
  offset: number;
}

function chunkTypeAt(buf: Uint8Array, pos: number): string {
  return String.fromCharCode(buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]);
}

export function isPng(buf: Uint8Array): boolean {
  if (buf.length < PNG_SIGNATURE.length) return false;
  for (let i = 0; i < PNG_SIGNATURE.length; i++) if (buf[i] !== PNG_SIGNATURE[i]) return false;
  return true;
}

/**
 * Split a PNG into its chunks, checking the signature, every length and every CRC.
 * `name` (a file name) is put into error messages.
 */
export function parsePngChunks(buf: Uint8Array, name = 'PNG data'): PngChunk[] {
  if (!isPng(buf)) throw new Error(`${name} is not a PNG file (bad signature)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const chunks: PngChunk[] = [];
  let pos = PNG_SIGNATURE.length;
  while (pos < buf.length) {
    if (pos + 12 > buf.length) throw new Error(`${name} is truncated: incomplete chunk header at byte ${pos}`);
    const length = view.getUint32(pos);
    const type = chunkTypeAt(buf, pos + 4);
    if (!/^[A-Za-z]{4}$/.test(type)) throw new Error(`${name} is corrupt: invalid chunk type at byte ${pos}`);
    const dataEnd = pos + 8 + length;
    if (length > 0x7fffffff || dataEnd + 4 > buf.length) {
      throw new Error(`${name} is truncated: chunk ${type} at byte ${pos} claims ${length} bytes`);
    }
    const stored = view.getUint32(dataEnd);
    const actual = crc32(buf, 0, pos + 4, dataEnd);
    if (stored !== actual) throw new Error(`${name} is corrupt: CRC mismatch in chunk ${type} at byte ${pos}`);
    chunks.push({ type, data: buf.subarray(pos + 8, dataEnd), offset: pos });
    pos = dataEnd + 4;
    if (type === 'IEND') break;
  }
  if (chunks.length === 0 || chunks[0].type !== 'IHDR') throw new Error(`${name} is corrupt: first chunk is not IHDR`);
  if (chunks[chunks.length - 1].type !== 'IEND') throw new Error(`${name} is truncated: no IEND chunk`);
  return chunks;
}

/** Serialise one chunk: length, type, data, CRC-32 over type + data. */
export function encodePngChunk(type: string, data: Uint8Array): Uint8Array {
  if (!/^[A-Za-z]{4}$/.test(type)) throw new Error(`invalid PNG chunk type ${JSON.stringify(type)}`);
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out, 0, 4, 8 + data.length));
  return out;
}

/** Width and height from the IHDR chunk. */
export function readPngSize(buf: Uint8Array, name?: string): { width: number; height: number } {
  const ihdr = parsePngChunks(buf, name)[0].data;
  if (ihdr.length < 8) throw new Error(`${name ?? 'PNG data'} is corrupt: short IHDR`);
  const view = new DataView(ihdr.buffer, ihdr.byteOffset, ihdr.byteLength);
  return { width: view.getUint32(0), height: view.getUint32(4) };
}

// ---------------------------------------------------------------------------------------------------
// Text chunks

const latin1Decoder = new TextDecoder('latin1');
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Decoder = new TextDecoder('utf-8');

function isLatin1(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false;
  return true;
}

function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function checkKeyword(keyword: string): void {
  // The spec: 1-79 Latin-1 printable characters, no leading/trailing/double spaces.
  if (keyword.length < 1 || keyword.length > 79 || !/^[\x20-\x7e\xa1-\xff]+$/.test(keyword) ||
      /^ | $| {2}/.test(keyword)) {
    throw new Error(`invalid PNG text keyword ${JSON.stringify(keyword)}`);
  }
}

/**
 * A text chunk for keyword/text. Latin-1 text goes into tEXt (what every reader knows); anything else
 * into an uncompressed iTXt, since tEXt cannot hold UTF-8 and non-Latin-1 prompts must survive.
 */
export function encodeTextChunk(keyword: string, text: string): Uint8Array {
  checkKeyword(keyword);
  const key = latin1Bytes(keyword);
  if (isLatin1(text)) {
    const body = latin1Bytes(text);
    const data = new Uint8Array(key.length + 1 + body.length);
    data.set(key, 0);
    data.set(body, key.length + 1);
    return encodePngChunk('tEXt', data);
  }
  // iTXt: keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL.
  const body = new TextEncoder().encode(text);
  const data = new Uint8Array(key.length + 5 + body.length);
  data.set(key, 0);
  data.set(body, key.length + 5);
  return encodePngChunk('iTXt', data);
}

/** tEXt should be Latin-1, but some writers put UTF-8 there: take valid UTF-8 as such. */
function decodeLooseLatin1(bytes: Uint8Array): string {
  if (bytes.every((b) => b < 0x80)) return latin1Decoder.decode(bytes);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return latin1Decoder.decode(bytes);
  }
}

/** Decode a tEXt / zTXt / iTXt chunk's data into [keyword, text]; null for a malformed one. */
function decodeTextChunk(chunk: PngChunk): [string, string] | null {
  const d = chunk.data;
  const nul = d.indexOf(0);
  if (nul <= 0) return null;
  const keyword = latin1Decoder.decode(d.subarray(0, nul));
  if (chunk.type === 'tEXt') return [keyword, decodeLooseLatin1(d.subarray(nul + 1))];
  if (chunk.type === 'zTXt') {
    if (d[nul + 1] !== 0) return null;
    return [keyword, decodeLooseLatin1(inflateSync(d.subarray(nul + 2)))];
  }
  // iTXt
  const compressed = d[nul + 1] === 1;
  const langEnd = d.indexOf(0, nul + 3);
  if (langEnd < 0) return null;
  const translatedEnd = d.indexOf(0, langEnd + 1);
  if (translatedEnd < 0) return null;
  const body = d.subarray(translatedEnd + 1);
  return [keyword, utf8Decoder.decode(compressed ? inflateSync(body) : body)];
}

const TEXT_CHUNK_TYPES = new Set(['tEXt', 'zTXt', 'iTXt']);

/** Every text chunk of a PNG as keyword → text (a later chunk with the same keyword wins). */
export function readPngText(buf: Uint8Array, name?: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const chunk of parsePngChunks(buf, name)) {
    if (!TEXT_CHUNK_TYPES.has(chunk.type)) continue;
    let entry: [string, string] | null;
    try {
      entry = decodeTextChunk(chunk);
    } catch (err) {
      throw new Error(`${name ?? 'PNG data'}: cannot inflate ${chunk.type} chunk: ${(err as Error).message}`);
    }
    if (entry) out[entry[0]] = entry[1];
  }
  return out;
}

/**
 * Put text chunks right after IHDR (so readers that stop at the pixel data still find them), replacing
 * any existing text chunks with the same keywords. Returns a new buffer.
 */
export function insertPngText(png: Uint8Array, entries: Record<string, string>, name?: string): Buffer {
  const chunks = parsePngChunks(png, name);
  const keywords = new Set(Object.keys(entries));
  const pieces: Uint8Array[] = [PNG_SIGNATURE];
  for (const chunk of chunks) {
    const end = chunk.offset + 12 + chunk.data.length;
    if (TEXT_CHUNK_TYPES.has(chunk.type)) {
      const nul = chunk.data.indexOf(0);
      const keyword = latin1Decoder.decode(chunk.data.subarray(0, nul < 0 ? chunk.data.length : nul));
      if (keywords.has(keyword)) continue;
    }
    pieces.push(png.subarray(chunk.offset, end));
    if (chunk.type === 'IHDR') for (const [k, v] of Object.entries(entries)) pieces.push(encodeTextChunk(k, v));
  }
  return Buffer.concat(pieces);
}

// ---------------------------------------------------------------------------------------------------
// The A1111 "parameters" text:
//   <prompt, possibly several lines>
//   Negative prompt: <negative prompt, possibly several lines>
//   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: name, <Key>: <value>, ...
// Values holding a comma, colon, newline or a leading quote are written as JSON strings.

export const PARAMETERS_KEYWORD = 'parameters';

export interface GenerationParameters {
  prompt: string;
  negativePrompt?: string;
  steps?: number;
  sampler?: string;
  cfgScale?: number;
  seed?: number;
  width?: number;
  height?: number;
  model?: string;
  /** Further `Key: value` pairs, in order. */
  extra?: Record<string, string>;
}

export interface ParsedGenerationParameters extends GenerationParameters {
  negativePrompt: string;
  extra: Record<string, string>;
}

const NEGATIVE_PREFIX = 'Negative prompt:';

function quoteValue(value: string): string {
  return /[,:\n\r]|^"|^\s|\s$/.test(value) ? JSON.stringify(value) : value;
}

function formatNumber(n: number, what: string): string {
  if (!Number.isFinite(n)) throw new Error(`generation parameter ${what} must be a finite number, got ${n}`);
  return String(n);
}

/** The inverse of parseA1111Parameters. */
export function formatA1111Parameters(p: GenerationParameters): string {
  const pairs: [string, string][] = [];
  if (p.steps !== undefined) pairs.push(['Steps', formatNumber(p.steps, 'steps')]);
  if (p.sampler !== undefined) pairs.push(['Sampler', p.sampler]);
  if (p.cfgScale !== undefined) pairs.push(['CFG scale', formatNumber(p.cfgScale, 'cfgScale')]);
  if (p.seed !== undefined) pairs.push(['Seed', formatNumber(p.seed, 'seed')]);
  if (p.width !== undefined || p.height !== undefined) {
    if (p.width === undefined || p.height === undefined) throw new Error('generation parameters need both width and height');
    pairs.push(['Size', `${formatNumber(p.width, 'width')}x${formatNumber(p.height, 'height')}`]);
  }
  if (p.model !== undefined) pairs.push(['Model', p.model]);
  for (const [k, v] of Object.entries(p.extra ?? {})) {
    if (!/^\w[\w \-/.()]*$/.test(k) || /\s$/.test(k)) throw new Error(`generation parameter key ${JSON.stringify(k)} cannot be written`);
    if (KNOWN_KEYS.has(k)) throw new Error(`generation parameter key ${k} is a named field, not an extra`);
    pairs.push([k, String(v)]);
  }
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`${NEGATIVE_PREFIX} ${p.negativePrompt}`);
  if (pairs.length > 0) lines.push(pairs.map(([k, v]) => `${k}: ${quoteValue(v)}`).join(', '));
  return lines.join('\n');
}

const KNOWN_KEYS = new Set(['Steps', 'Sampler', 'CFG scale', 'Seed', 'Size', 'Model']);

/**
 * Parse a `Key: value, Key: "quoted, value", ...` line. Returns null when the line is not such a list
 * (so it belongs to the prompt instead).
 */
function parseParameterLine(line: string): [string, string][] | null {
  const pairs: [string, string][] = [];
  let pos = 0;
  const n = line.length;
  while (pos < n) {
    while (pos < n && line[pos] === ' ') pos++;
    if (pos >= n) break;
    const colon = line.indexOf(':', pos);
    if (colon < 0) return null;
    const key = line.slice(pos, colon).trim();
    if (!/^\w[\w \-/.()]*$/.test(key)) return null;
    pos = colon + 1;
    while (pos < n && line[pos] === ' ') pos++;
    let value: string;
    if (line[pos] === '"') {
      // A JSON string: find the closing quote that is not escaped.
      let end = pos + 1;
      while (end < n && line[end] !== '"') end += line[end] === '\\' ? 2 : 1;
      if (end >= n) return null;
      try {
        value = JSON.parse(line.slice(pos, end + 1)) as string;
      } catch {
        return null;
      }
      pos = end + 1;
      while (pos < n && line[pos] === ' ') pos++;
      if (pos < n && line[pos] !== ',') return null;
      pos++;
    } else {
      const comma = line.indexOf(',', pos);
      const end = comma < 0 ? n : comma;
      value = line.slice(pos, end).trim();
      pos = end + 1;
    }
    pairs.push([key, value]);
  }
  return pairs.length > 0 ? pairs : null;
}

function looksLikeParameterLine(pairs: [string, string][] | null): pairs is [string, string][] {
  // As A1111 does: a list with Steps in it, or at least three pairs, is the settings line.
  return pairs !== null && (pairs.some(([k]) => k === 'Steps') || pairs.length >= 3);
}

function parseInteger(value: string): number | undefined {
  return /^-?\d+$/.test(value) ? Number(value) : undefined;
}

/** Parse A1111-style generation parameters; unknown keys land in `extra`. */
export function parseA1111Parameters(text: string): ParsedGenerationParameters {
  const lines = text.replace(/\r\n?/g, '\n').replace(/\n+$/, '').split('\n');
  let pairs: [string, string][] = [];
  const lastPairs = parseParameterLine(lines[lines.length - 1] ?? '');
  if (lines.length > 0 && looksLikeParameterLine(lastPairs)) {
    pairs = lastPairs;
    lines.pop();
  }
  const promptLines: string[] = [];
  const negativeLines: string[] = [];
  let inNegative = false;
  for (const line of lines) {
    if (!inNegative && line.startsWith(NEGATIVE_PREFIX)) {
      inNegative = true;
      negativeLines.push(line.slice(NEGATIVE_PREFIX.length).replace(/^ /, ''));
    } else if (inNegative) {
      negativeLines.push(line);
    } else {
      promptLines.push(line);
    }
  }
  const out: ParsedGenerationParameters = { prompt: promptLines.join('\n'), negativePrompt: negativeLines.join('\n'), extra: {} };
  for (const [key, value] of pairs) {
    switch (key) {
      case 'Steps': {
        const steps = parseInteger(value);
        if (steps !== undefined) out.steps = steps; else out.extra[key] = value;
        break;
      }
      case 'Sampler': out.sampler = value; break;
      case 'CFG scale': {
        const cfg = Number(value);
        if (value !== '' && Number.isFinite(cfg)) out.cfgScale = cfg; else out.extra[key] = value;
        break;
      }
      case 'Seed': {
        const seed = parseInteger(value);
        if (seed !== undefined) out.seed = seed; else out.extra[key] = value;
        break;
      }
      case 'Size': {
        const m = /^(\d+)x(\d+)$/.exec(value);
        if (m) { out.width = Number(m[1]); out.height = Number(m[2]); } else out.extra[key] = value;
        break;
      }
      case 'Model': out.model = value; break;
      default: out.extra[key] = value;
    }
  }
  return out;
}
