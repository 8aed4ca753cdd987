/**
 * Checkpoint files as maps of lazy tensors: every tensor's name, shape and dtype are known from the header
 * (safetensors) or the pickle (torch .ckpt) before a byte of weight data is read, so a whole checkpoint can be
 * checked against a model first and then read one tensor at a time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DType, Tensor } from '../../engine/index.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import { readTorchCheckpoint } from './ckpt.js';
import { ZipReader } from './zip.js';

export interface LazyTensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Read the values (a fresh tensor each call). */
  read(): Tensor;
}

export interface CheckpointFile {
  readonly path: string;
  readonly format: 'safetensors' | 'ckpt';
  readonly tensors: ReadonlyMap<string, LazyTensor>;
  /** Keys that held something other than a tensor (torch: global_step, epoch, …), for messages. */
  readonly otherKeys: readonly string[];
  close(): void;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/**
 * Open a single-file checkpoint: `.safetensors`, or a torch zip pickle (`.ckpt`, `.pt`, `.pth`, `.bin`).
 * `map`: memory-map a safetensors file (see SafetensorsFile's option); pickles are always read.
 */
export function openCheckpoint(file: string, opts: { map?: boolean } = {}): CheckpointFile {
  if (!fs.existsSync(file)) throw new CheckpointError(`${file}: no such file`);
  if (fs.statSync(file).isDirectory()) throw new CheckpointError(`${file} is a folder, not a checkpoint file`);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.safetensors' || looksLikeSafetensors(file)) {
    const st = SafetensorsFile.open(file, { map: opts.map });
    const tensors = new Map<string, LazyTensor>();
    for (const key of st.keys()) {
      const info = st.info(key);
      tensors.set(key, { shape: info.shape, dtype: info.dtype, read: () => st.get(key) });
    }
    return { path: file, format: 'safetensors', tensors, otherKeys: [], close: () => st.close() };
  }
  if (ZipReader.isZip(file)) {
    const ckpt = readTorchCheckpoint(file);
    return { path: file, format: 'ckpt', tensors: ckpt.tensors, otherKeys: ckpt.otherKeys, close: () => ckpt.close() };
  }
  throw new CheckpointError(`${file}: not a safetensors file nor a PyTorch zip checkpoint` +
    (ext === '.ckpt' || ext === '.pt' || ext === '.pth' ? ' (checkpoints from PyTorch before 1.6 use a legacy format that is not read; re-save or convert it to safetensors)' : ''));
}

/** A safetensors file starts with a little-endian u64 header length followed by '{'. */
function looksLikeSafetensors(file: string): boolean {
  const head = Buffer.alloc(9);
  const fd = fs.openSync(file, 'r');
  try {
    if (fs.readSync(fd, head, 0, 9, 0) < 9) return false;
  } finally {
    fs.closeSync(fd);
  }
  return head[8] === 0x7b && head.readBigUInt64LE(0) < BigInt(fs.statSync(file).size);
}
