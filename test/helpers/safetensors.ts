/**
 * A minimal safetensors reader for test fixtures (F32 / I64 / I32 / BOOL only), used when the engine's own
 * reader (src/io/safetensors.ts) cannot be loaded. Layout: u64 LE header length N | N bytes of JSON | data.
 */
import * as fs from 'node:fs';

export type RawDtype = 'f32' | 'i64' | 'i32' | 'bool';
export interface RawTensor {
  dtype: RawDtype;
  shape: number[];
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array;
}

const FILE_DTYPES: Record<string, { dtype: RawDtype; size: number }> = {
  F32: { dtype: 'f32', size: 4 }, I64: { dtype: 'i64', size: 8 }, I32: { dtype: 'i32', size: 4 },
  BOOL: { dtype: 'bool', size: 1 },
};

export function readSafetensorsRaw(path: string): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const buf = fs.readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, any>;
  const dataStart = 8 + n;
  const tensors = new Map<string, RawTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') { metadata = info; continue; }
    const dt = FILE_DTYPES[info.dtype];
    if (!dt) throw new Error(`safetensors (test reader): ${name} has unsupported dtype ${info.dtype}`);
    const [b, e] = info.data_offsets as [number, number];
    const numel = (info.shape as number[]).reduce((a, d) => a * d, 1);
    if (e - b !== numel * dt.size) throw new Error(`safetensors (test reader): ${name} byte length mismatch`);
    // Copy into a fresh, aligned ArrayBuffer (file offsets need not be aligned to the item size).
    const bytes = new Uint8Array(e - b);
    bytes.set(buf.subarray(dataStart + b, dataStart + e));
    const ab = bytes.buffer;
    const data = dt.dtype === 'f32' ? new Float32Array(ab) : dt.dtype === 'i64' ? new BigInt64Array(ab)
      : dt.dtype === 'i32' ? new Int32Array(ab) : new Uint8Array(ab);
    tensors.set(name, { dtype: dt.dtype, shape: info.shape, data });
  }
  return { tensors, metadata };
}
