/**
 * IDX files (the MNIST/Fashion-MNIST container): a 4-byte magic `00 00 <type> <ndim>`, then ndim
 * big-endian u32 dimensions, then the values in row-major order, big-endian. Files may be gzipped.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';

export type IdxDType = 'u8' | 'i8' | 'i16' | 'i32' | 'f32' | 'f64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  dtype: IdxDType;
  shape: number[];
  /** Values in native byte order, row-major. */
  data: IdxData;
}

/** Type byte ↔ dtype, and each type's width in bytes. */
const TYPE_CODES: Record<number, IdxDType> = { 0x08: 'u8', 0x09: 'i8', 0x0b: 'i16', 0x0c: 'i32', 0x0d: 'f32', 0x0e: 'f64' };
const CODE_OF: Record<IdxDType, number> = { u8: 0x08, i8: 0x09, i16: 0x0b, i32: 0x0c, f32: 0x0d, f64: 0x0e };
const WIDTH: Record<IdxDType, number> = { u8: 1, i8: 1, i16: 2, i32: 4, f32: 4, f64: 8 };

/** Largest payload we agree to allocate; anything larger is a corrupt header, not a real dataset. */
const MAX_PAYLOAD_BYTES = 2 ** 32;

export class IdxFormatError extends Error {
  constructor(readonly file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'IdxFormatError';
  }
}

const isGzip = (buf: Uint8Array) => buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;

/** Parses an IDX file already in memory (plain or gzip). `name` appears in error messages. */
export function parseIdx(bytes: Uint8Array, name = '<buffer>'): IdxArray {
  let buf = bytes;
  if (isGzip(buf)) {
    try {
      buf = gunzipSync(buf);
    } catch (err) {
      throw new IdxFormatError(name, `gzip stream is corrupt or truncated (${(err as Error).message})`);
    }
  }
  if (buf.length < 4) throw new IdxFormatError(name, `too short for an IDX header (${buf.length} bytes)`);
  if (buf[0] !== 0 || buf[1] !== 0) {
    const magic = [...buf.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new IdxFormatError(name, `bad magic number ${magic}: an IDX file starts with 00 00 <type> <ndim>`);
  }
  const dtype = TYPE_CODES[buf[2]];
  if (!dtype) {
    throw new IdxFormatError(name, `unsupported IDX type code 0x${buf[2].toString(16).padStart(2, '0')} ` +
      `(known: 08 u8, 09 i8, 0b i16, 0c i32, 0d f32, 0e f64)`);
  }
  const ndim = buf[3];
  const headerBytes = 4 + 4 * ndim;
  if (buf.length < headerBytes) {
    throw new IdxFormatError(name, `header declares ${ndim} dimensions but the file ends after ${buf.length} bytes`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const shape: number[] = [];
  let count = 1;
  for (let d = 0; d < ndim; d++) {
    shape.push(view.getUint32(4 + 4 * d, false));
    count *= shape[d];
  }
  const width = WIDTH[dtype];
  const payloadBytes = count * width;
  if (!Number.isSafeInteger(payloadBytes) || payloadBytes > MAX_PAYLOAD_BYTES) {
    throw new IdxFormatError(name, `dimensions [${shape.join(', ')}] overflow: ${shape.join('×')} ${dtype} values ` +
      `would take more than ${MAX_PAYLOAD_BYTES} bytes (corrupt header?)`);
  }
  const found = buf.length - headerBytes;
  const what = ndim >= 3 ? 'image data' : ndim === 1 ? 'label data' : 'data';
  if (found < payloadBytes) {
    throw new IdxFormatError(name, `truncated: expected ${payloadBytes} bytes of ${what} after the header, found ${found}`);
  }
  if (found > payloadBytes) {
    throw new IdxFormatError(name, `${found - payloadBytes} unexpected bytes after the ${payloadBytes} bytes of ${what}`);
  }
  return { dtype, shape, data: decodePayload(view, headerBytes, count, dtype) };
}

/** Big-endian payload → native typed array (always a fresh, aligned copy). */
function decodePayload(view: DataView, start: number, count: number, dtype: IdxDType): IdxData {
  switch (dtype) {
    case 'u8': return new Uint8Array(view.buffer.slice(view.byteOffset + start, view.byteOffset + start + count));
    case 'i8': return new Int8Array(view.buffer.slice(view.byteOffset + start, view.byteOffset + start + count));
    case 'i16': { const a = new Int16Array(count); for (let i = 0; i < count; i++) a[i] = view.getInt16(start + 2 * i, false); return a; }
    case 'i32': { const a = new Int32Array(count); for (let i = 0; i < count; i++) a[i] = view.getInt32(start + 4 * i, false); return a; }
    case 'f32': { const a = new Float32Array(count); for (let i = 0; i < count; i++) a[i] = view.getFloat32(start + 4 * i, false); return a; }
    case 'f64': { const a = new Float64Array(count); for (let i = 0; i < count; i++) a[i] = view.getFloat64(start + 8 * i, false); return a; }
  }
}

/** Reads an IDX file from disk (plain or gzip, detected by content, not by name). */
export function readIdx(path: string): IdxArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read IDX file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseIdx(bytes, path);
}

/** Serialises an array as IDX (for fixtures and exports); `gzip` compresses it. */
export function encodeIdx(arr: IdxArray, opts: { gzip?: boolean } = {}): Uint8Array {
  const { dtype, shape, data } = arr;
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`encodeIdx: ${data.length} values for shape [${shape}]`);
  if (shape.length > 255) throw new Error(`encodeIdx: at most 255 dimensions, got ${shape.length}`);
  const header = 4 + 4 * shape.length;
  const out = new Uint8Array(header + count * WIDTH[dtype]);
  const view = new DataView(out.buffer);
  out[2] = CODE_OF[dtype];
  out[3] = shape.length;
  shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < count; i++) {
    const o = header + i * WIDTH[dtype];
    switch (dtype) {
      case 'u8': view.setUint8(o, data[i]); break;
      case 'i8': view.setInt8(o, data[i]); break;
      case 'i16': view.setInt16(o, data[i], false); break;
      case 'i32': view.setInt32(o, data[i], false); break;
      case 'f32': view.setFloat32(o, data[i], false); break;
      case 'f64': view.setFloat64(o, data[i], false); break;
    }
  }
  return opts.gzip ? new Uint8Array(gzipSync(out)) : out;
}

