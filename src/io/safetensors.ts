/**
 * safetensors: read and write the Hugging Face tensor file format.
 *
 * Layout: u64 little-endian header length N | N bytes of UTF-8 JSON | data section.
 * The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data
 * section) and may hold "__metadata__": {string: string}.
 *
 * Reading is lazy: `SafetensorsFile.open` parses and validates only the header; `get(name)` reads that one
 * tensor's bytes straight into a fresh typed array, so a multi-GB file is never held in memory twice.
 *
 * Dtype mapping (file → engine):
 *   F32 → f32, F16 → f16, BF16 → bf16, I64 → i64, I32 → i32, BOOL → bool     (exact)
 *   F64 → f32                                                               (narrowed: the engine has no f64)
 *   I8, I16, U8, U16 → i32                                                  (widened, values preserved)
 * U8 is widened to i32 rather than read as bool because U8 tensors hold numbers (pixels, token bytes), not
 * truth values. Anything else (U32, U64, F8_*) is rejected with an error that names the tensor.
 * Writing always uses the tensor's own dtype (f32 → F32, …, bool → BOOL).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromTypedArray, type Tensor } from '../engine/index.js';
import { mapFile, releaseMappedPages } from '../engine/backend/native.js';
import { denseBytes } from '../nn/storage.js';

export type EngineDtype = Tensor['dtype'];

/** Bytes per element and the engine dtype each on-disk dtype is read as. */
const FILE_DTYPES = {
  F64: { itemsize: 8, engine: 'f32' },
  F32: { itemsize: 4, engine: 'f32' },
  F16: { itemsize: 2, engine: 'f16' },
  BF16: { itemsize: 2, engine: 'bf16' },
  I64: { itemsize: 8, engine: 'i64' },
  I32: { itemsize: 4, engine: 'i32' },
  I16: { itemsize: 2, engine: 'i32' },
  I8: { itemsize: 1, engine: 'i32' },
  U16: { itemsize: 2, engine: 'i32' },
  U8: { itemsize: 1, engine: 'i32' },
  BOOL: { itemsize: 1, engine: 'bool' },
} as const satisfies Record<string, { itemsize: number; engine: EngineDtype }>;

export type FileDtype = keyof typeof FILE_DTYPES;

const ENGINE_TO_FILE: Record<EngineDtype, FileDtype> = {
  f32: 'F32', f16: 'F16', bf16: 'BF16', i64: 'I64', i32: 'I32', bool: 'BOOL',
};

/** Largest header we accept; real headers are a few hundred KB at most. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** fs.readSync / writeSync move at most ~2 GiB per call; stay well under. */
const IO_CHUNK_BYTES = 1 << 30;

export interface TensorInfo {
  /** The dtype as stored in the file. */
  fileDtype: FileDtype;
  /** The engine dtype `get` returns. */
  dtype: EngineDtype;
  shape: number[];
  byteLength: number;
}

interface Entry extends TensorInfo {
  begin: number; // offset within the data section
}

if (os.endianness() !== 'LE') {
  // Typed arrays use host byte order; safetensors is little-endian.
  throw new Error('safetensors: big-endian hosts are not supported');
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.join(', ')}]`;
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Read exactly `into.byteLength` bytes at `position`, in chunks; throws on a short read. */
function readFully(fd: number, into: Uint8Array, position: number, label: string): void {
  let done = 0;
  while (done < into.byteLength) {
    const want = Math.min(IO_CHUNK_BYTES, into.byteLength - done);
    const got = fs.readSync(fd, into, done, want, position + done);
    if (got === 0) throw new Error(`${label}: unexpected end of file (read ${done} of ${into.byteLength} bytes)`);
    done += got;
  }
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const want = Math.min(IO_CHUNK_BYTES, bytes.byteLength - done);
    done += fs.writeSync(fd, bytes, done, want);
  }
}

/** Buffers made by `mapFile` for SafetensorsFile: the only memory `releaseMappedWeights` may release. */
const mappedBuffers = new WeakSet<ArrayBuffer>();

export interface OpenOptions {
  /**
   * Memory-map the file: `get` returns f32 / f16 / bf16 / i32 / i64 tensors as views on the mapping (no
   * copy; pages are read on first use and belong to the page cache, so `releaseMappedWeights` can give
   * them back between uses). For read-only weights: writes stay private but a release reverts them.
   * Falls back to reading when the native addon is not built. Default false.
   */
  map?: boolean;
}

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** Bytes from the file start to the data section (8 + header length). */
  readonly dataStart: number;
  private readonly entries: Map<string, Entry>;
  private fd: number | null;
  /** The whole file, mapped (with `map: true` and the native addon), else null. */
  private mapped: ArrayBuffer | null;

  private constructor(filePath: string, fd: number, dataStart: number, entries: Map<string, Entry>,
                      metadata: Record<string, string>, mapped: ArrayBuffer | null) {
    this.path = filePath;
    this.fd = fd;
    this.dataStart = dataStart;
    this.entries = entries;
    this.metadata = metadata;
    this.mapped = mapped;
  }

  /** Open a file and validate its header; tensor data is read (or mapped) later by `get`. */
  static open(filePath: string, opts: OpenOptions = {}): SafetensorsFile {
    const fd = fs.openSync(filePath, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const { dataStart, entries, metadata } = parseHeader(fd, size, path.basename(filePath));
      // Mapped only after the header checks (a truncated file fails above, not with SIGBUS later).
      const mapped = opts.map && size > 0 ? mapFile(filePath) : null;
      if (mapped) {
        if (mapped.byteLength !== size) throw new Error(`${path.basename(filePath)}: the file changed while it was opened`);
        mappedBuffers.add(mapped);
      }
      return new SafetensorsFile(filePath, fd, dataStart, entries, metadata, mapped);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** True when `get` returns views on a memory mapping of the file. */
  get isMapped(): boolean {
    return this.mapped !== null;
  }

  /** Tensor names in file (header) order. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { fileDtype: e.fileDtype, dtype: e.dtype, shape: [...e.shape], byteLength: e.byteLength };
  }

  /** Read one tensor into fresh (aligned) storage, or (mapped file) a view on the mapping where it is aligned. */
  get(name: string): Tensor {
    const e = this.entry(name);
    if (this.fd === null) throw new Error(`${path.basename(this.path)}: file is closed`);
    const numel = product(e.shape);
    const view = this.mappedView(e, numel);
    if (view) return fromTypedArray(view as never, e.shape, e.dtype);
    const label = `${path.basename(this.path)}: tensor "${name}"`;
    const read = (bytes: Uint8Array) => readFully(this.fd!, bytes, this.dataStart + e.begin, label);
    const asBytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

    switch (e.fileDtype) {
      case 'F32': { const a = new Float32Array(numel); read(asBytes(a)); return fromTypedArray(a, e.shape, 'f32'); }
      case 'F16': { const a = new Uint16Array(numel); read(asBytes(a)); return fromTypedArray(a, e.shape, 'f16'); }
      case 'BF16': { const a = new Uint16Array(numel); read(asBytes(a)); return fromTypedArray(a, e.shape, 'bf16'); }
      case 'I64': { const a = new BigInt64Array(numel); read(asBytes(a)); return fromTypedArray(a, e.shape, 'i64'); }
      case 'I32': { const a = new Int32Array(numel); read(asBytes(a)); return fromTypedArray(a, e.shape, 'i32'); }
      case 'BOOL': {
        const a = new Uint8Array(numel);
        read(a);
        for (let i = 0; i < numel; i++) if (a[i] > 1) a[i] = 1; // any non-zero byte is true
        return fromTypedArray(a, e.shape, 'bool');
      }
      case 'F64': {
        const raw = new Float64Array(numel); read(asBytes(raw));
        return fromTypedArray(Float32Array.from(raw), e.shape, 'f32');
      }
      case 'I16': { const raw = new Int16Array(numel); read(asBytes(raw)); return fromTypedArray(Int32Array.from(raw), e.shape, 'i32'); }
      case 'U16': { const raw = new Uint16Array(numel); read(asBytes(raw)); return fromTypedArray(Int32Array.from(raw), e.shape, 'i32'); }
      case 'I8': { const raw = new Int8Array(numel); read(asBytes(raw)); return fromTypedArray(Int32Array.from(raw), e.shape, 'i32'); }
      case 'U8': { const raw = new Uint8Array(numel); read(raw); return fromTypedArray(Int32Array.from(raw), e.shape, 'i32'); }
    }
  }

  /** Close the file. Tensors already returned from a mapping stay valid (the mapping lives while they do). */
  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
    this.mapped = null;
  }

  /** The tensor's bytes as a typed array on the mapping, when the file is mapped, stored as the engine keeps it, and aligned. */
  private mappedView(e: Entry, numel: number): ArrayBufferView | null {
    if (!this.mapped || numel === 0) return null;
    const at = this.dataStart + e.begin;
    switch (e.fileDtype) {
      case 'F32': return at % 4 === 0 ? new Float32Array(this.mapped, at, numel) : null;
      case 'F16': case 'BF16': return at % 2 === 0 ? new Uint16Array(this.mapped, at, numel) : null;
      case 'I32': return at % 4 === 0 ? new Int32Array(this.mapped, at, numel) : null;
      case 'I64': return at % 8 === 0 ? new BigInt64Array(this.mapped, at, numel) : null;
      default: return null; // converted on read
    }
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${path.basename(this.path)}: no tensor named "${name}"`);
    return e;
  }
}

/** Parse and validate the header. Every error names the file (and the tensor when there is one). */
function parseHeader(fd: number, fileSize: number, file: string):
    { dataStart: number; entries: Map<string, Entry>; metadata: Record<string, string> } {
  if (fileSize < 8) throw new Error(`${file}: not a safetensors file: ${fileSize} bytes is shorter than the 8-byte header length`);
  const lenBytes = new Uint8Array(8);
  readFully(fd, lenBytes, 0, file);
  const headerLen64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${file}: header length ${headerLen64} is larger than the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  const headerLen = Number(headerLen64);
  if (headerLen > fileSize - 8) {
    throw new Error(`${file}: header length ${headerLen} is larger than the rest of the file (${fileSize - 8} bytes)`);
  }
  const headerBytes = new Uint8Array(headerLen);
  readFully(fd, headerBytes, 8, file);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw new Error(`${file}: header is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new Error(`${file}: header must be a JSON object`);
  }

  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  let furthestEnd = 0;
  let furthestName = '';

  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, file);
      continue;
    }
    const where = `${file}: tensor "${name}"`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${where}: entry must be an object`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;

    if (typeof dtype !== 'string' || !Object.hasOwn(FILE_DTYPES, dtype)) {
      throw new Error(`${where}: unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(FILE_DTYPES).join(', ')})`);
    }
    const fileDtype = dtype as FileDtype;
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new Error(`${where}: shape ${JSON.stringify(shape)} must be a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      throw new Error(`${where}: data_offsets ${JSON.stringify(offsets)} must be two non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw new Error(`${where}: data_offsets ${fmtShape(offsets)} end before they begin`);
    const expected = product(shape) * FILE_DTYPES[fileDtype].itemsize;
    if (end - begin !== expected) {
      throw new Error(`${where}: data_offsets ${fmtShape(offsets)} do not match shape ${fmtShape(shape)} × ${fileDtype} (${expected} bytes)`);
    }
    if (end > furthestEnd) { furthestEnd = end; furthestName = name; }
    entries.set(name, { fileDtype, dtype: FILE_DTYPES[fileDtype].engine, shape: shape as number[], byteLength: expected, begin });
  }

  if (furthestEnd > dataSize) {
    throw new Error(`${file} is truncated: header says ${furthestEnd} bytes of data (tensor "${furthestName}" ends there), file has ${dataSize}`);
  }

  // Ranges may come in any order, but no two may share a byte (empty tensors occupy none).
  const ranges = [...entries].filter(([, e]) => e.byteLength > 0).sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < ranges.length; i++) {
    const [prevName, prev] = ranges[i - 1];
    const [name, cur] = ranges[i];
    if (cur.begin < prev.begin + prev.byteLength) {
      throw new Error(`${file}: tensor "${name}" bytes [${cur.begin}, ${cur.begin + cur.byteLength}] overlap tensor "${prevName}" [${prev.begin}, ${prev.begin + prev.byteLength}]`);
    }
  }
  return { dataStart, entries, metadata };
}

function parseMetadata(raw: unknown, file: string): Record<string, string> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`${file}: "__metadata__" must be an object of strings`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new Error(`${file}: "__metadata__" key "${k}" must be a string, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return out;
}

/**
 * Give back the memory of tensors that are views on mapped files (`SafetensorsFile.open(f, { map: true })`):
 * their whole pages leave this process and are mapped again, from the page cache, when next read. Other
 * tensors are skipped. Returns the bytes released. Use it between the phases of a pipeline whose parts take
 * turns (text encoder, U-Net, VAE): only the part running needs to be resident.
 */
export function releaseMappedWeights(tensors: Iterable<Tensor>): number {
  let released = 0;
  for (const t of tensors) {
    const data = t.data as ArrayBufferView;
    if (!(data.buffer instanceof ArrayBuffer) || !mappedBuffers.has(data.buffer)) continue;
    released += releaseMappedPages(data.buffer, data.byteOffset, data.byteLength);
  }
  return released;
}

/** Read a whole file: every tensor plus the metadata. */
export function readSafetensors(filePath: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const file = SafetensorsFile.open(filePath);
  try {
    const tensors = new Map<string, Tensor>();
    for (const name of file.keys()) tensors.set(name, file.get(name));
    return { tensors, metadata: { ...file.metadata } };
  } finally {
    file.close();
  }
}

/**
 * Write tensors to `filePath` atomically (temp file + rename). Tensors are written in sorted-name order, one at
 * a time, each in its own dtype; the data section starts at a multiple of 8 (header padded with spaces).
 */
export function writeSafetensors(filePath: string, tensors: Map<string, Tensor> | Record<string, Tensor>,
                                 metadata?: Record<string, string>): void {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const names = [...map.keys()].sort();
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new Error('writeSafetensors: "__metadata__" is reserved and cannot name a tensor');
    const t = map.get(name)!;
    const fileDtype = ENGINE_TO_FILE[t.dtype];
    if (!fileDtype) throw new Error(`writeSafetensors: tensor "${name}" has unsupported dtype ${t.dtype}`);
    const bytes = product(t.shape) * FILE_DTYPES[fileDtype].itemsize;
    header[name] = { dtype: fileDtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }

  let json = JSON.stringify(header);
  let jsonBytes = new TextEncoder().encode(json);
  const pad = (8 - ((8 + jsonBytes.byteLength) % 8)) % 8;
  if (pad) jsonBytes = new TextEncoder().encode(json + ' '.repeat(pad));
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(jsonBytes.byteLength), true);

  const tmp = `${filePath}.tmp-${process.pid}`;
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'w');
    writeFully(fd, prefix);
    writeFully(fd, jsonBytes);
    for (const name of names) writeFully(fd, denseBytes(map.get(name)!));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, filePath);
  } catch (err) {
    if (fd !== null) { try { fs.closeSync(fd); } catch { /* already failing */ } }
    try { fs.rmSync(tmp, { force: true }); } catch { /* best effort */ }
    throw err;
  }
}
