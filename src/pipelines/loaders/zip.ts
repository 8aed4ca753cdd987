/**
 * A small ZIP reader for PyTorch checkpoints (`torch.save` writes a zip of `data.pkl` + `data/<n>` storages).
 *
 * Reads the central directory (with ZIP64 records, since SD checkpoints pass 4 GB), then single entries on
 * demand. Stored entries (what torch writes) are read straight from the file at any offset, so a 4 GB
 * checkpoint is never held in memory at once; deflated entries (a re-zipped file) are inflated whole with
 * node:zlib. Format: PKWARE APPNOTE 6.3 §4.3 (local headers, central directory, end records, ZIP64 extra).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inflateRawSync } from 'node:zlib';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

export class ZipError extends Error {
  override name = 'ZipError';
}

export class ZipReader {
  private fd: number | null;
  private readonly byName: Map<string, ZipEntry>;
  private readonly dataOffsets = new Map<string, number>();

  private constructor(readonly path: string, fd: number, readonly fileSize: number, readonly entries: readonly ZipEntry[]) {
    this.fd = fd;
    this.byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** True when the file starts like a zip archive (local header or an empty archive's end record). */
  static isZip(file: string): boolean {
    const head = Buffer.alloc(4);
    const fd = fs.openSync(file, 'r');
    try {
      if (fs.readSync(fd, head, 0, 4, 0) < 4) return false;
    } finally {
      fs.closeSync(fd);
    }
    const sig = head.readUInt32LE(0);
    return sig === SIG_LOCAL || sig === SIG_EOCD;
  }

  static open(file: string): ZipReader {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      return new ZipReader(file, fd, size, readCentralDirectory(fd, size, path.basename(file)));
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** The whole (decompressed) contents of an entry. */
  read(name: string): Uint8Array {
    const e = this.entry(name);
    const raw = new Uint8Array(e.compressedSize);
    this.readAt(raw, this.dataOffset(e), `${name}`);
    if (e.method === 0) return raw;
    let out: Buffer;
    try {
      out = inflateRawSync(raw);
    } catch (err) {
      throw new ZipError(`${this.label}: entry ${name} is corrupt (deflate: ${(err as Error).message})`);
    }
    if (out.length !== e.size) throw new ZipError(`${this.label}: entry ${name} inflates to ${out.length} bytes, the directory says ${e.size}`);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }

  /** Bytes [offset, offset + into.length) of an entry's contents (stored entries read in place). */
  readRange(name: string, offset: number, into: Uint8Array): void {
    const e = this.entry(name);
    if (offset < 0 || offset + into.length > e.size) {
      throw new ZipError(`${this.label}: entry ${name} has ${e.size} bytes, asked for [${offset}, ${offset + into.length})`);
    }
    if (e.method === 0) this.readAt(into, this.dataOffset(e) + offset, name);
    else into.set(this.read(name).subarray(offset, offset + into.length));
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private get label(): string {
    return path.basename(this.path);
  }

  private entry(name: string): ZipEntry {
    const e = this.byName.get(name);
    if (!e) throw new ZipError(`${this.label}: no entry ${name}`);
    return e;
  }

  /** Where an entry's data starts: after its local header, whose name/extra lengths may differ from the directory's. */
  private dataOffset(e: ZipEntry): number {
    const known = this.dataOffsets.get(e.name);
    if (known !== undefined) return known;
    const head = new Uint8Array(30);
    this.readAt(head, e.localHeaderOffset, `${e.name} (local header)`);
    const v = new DataView(head.buffer);
    if (v.getUint32(0, true) !== SIG_LOCAL) throw new ZipError(`${this.label}: entry ${e.name}: no local header at offset ${e.localHeaderOffset}`);
    const start = e.localHeaderOffset + 30 + v.getUint16(26, true) + v.getUint16(28, true);
    if (start + e.compressedSize > this.fileSize) {
      throw new ZipError(`${this.label} is truncated: entry ${e.name} needs bytes up to ${start + e.compressedSize}, the file has ${this.fileSize}`);
    }
    this.dataOffsets.set(e.name, start);
    return start;
  }

  private readAt(into: Uint8Array, position: number, what: string): void {
    if (this.fd === null) throw new ZipError(`${this.label}: archive is closed`);
    let done = 0;
    while (done < into.length) {
      const n = fs.readSync(this.fd, into, done, Math.min(into.length - done, 1 << 30), position + done);
      if (n === 0) throw new ZipError(`${this.label} is truncated: reading ${what} stopped at ${done} of ${into.length} bytes`);
      done += n;
    }
  }
}

function readBytes(fd: number, position: number, length: number): DataView {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return new DataView(buf.buffer, 0, done);
}

const u64 = (v: DataView, at: number): number => {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError(`zip field ${n} is too large`);
  return Number(n);
};

function readCentralDirectory(fd: number, size: number, label: string): ZipEntry[] {
  // The end record is the last 22 bytes plus a comment of at most 64 KiB: search backwards for it.
  const tailLen = Math.min(size, 22 + U16_MAX);
  const tail = readBytes(fd, size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tail.byteLength - 22; i >= 0; i--) {
    if (tail.getUint32(i, true) === SIG_EOCD) { eocd = i; break; }
  }
  if (eocd < 0) throw new ZipError(`${label}: not a zip archive, or truncated (no end-of-central-directory record)`);
  let count = tail.getUint16(eocd + 10, true);
  let cdSize = tail.getUint32(eocd + 12, true);
  let cdOffset = tail.getUint32(eocd + 16, true);

  if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
    // ZIP64: a locator just before the end record points at the 64-bit end record.
    const loc = eocd - 20;
    if (loc < 0 || tail.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) throw new ZipError(`${label}: ZIP64 end-of-directory locator missing`);
    const recOffset = u64(tail, loc + 8);
    const rec = readBytes(fd, recOffset, 56);
    if (rec.byteLength < 56 || rec.getUint32(0, true) !== SIG_ZIP64_EOCD) throw new ZipError(`${label}: ZIP64 end-of-directory record missing`);
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
  }
  if (cdOffset + cdSize > size) throw new ZipError(`${label} is truncated: the central directory ends at ${cdOffset + cdSize}, the file has ${size} bytes`);

  const cd = readBytes(fd, cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  const utf8 = new TextDecoder('utf-8');
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.byteLength || cd.getUint32(p, true) !== SIG_CENTRAL) throw new ZipError(`${label}: central directory entry ${i} is damaged`);
    const flags = cd.getUint16(p + 8, true);
    const method = cd.getUint16(p + 10, true);
    const crc = cd.getUint32(p + 16, true);
    let compressedSize = cd.getUint32(p + 20, true);
    let uncompressed = cd.getUint32(p + 24, true);
    const nameLen = cd.getUint16(p + 28, true), extraLen = cd.getUint16(p + 30, true), commentLen = cd.getUint16(p + 32, true);
    let offset = cd.getUint32(p + 42, true);
    const name = utf8.decode(new Uint8Array(cd.buffer, cd.byteOffset + p + 46, nameLen));
    // ZIP64 extra field (id 1): the 64-bit values, in this order, for the fields that hold 0xFFFFFFFF.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = cd.getUint16(e, true), len = cd.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        if (uncompressed === U32_MAX) { uncompressed = u64(cd, q); q += 8; }
        if (compressedSize === U32_MAX) { compressedSize = u64(cd, q); q += 8; }
        if (offset === U32_MAX) { offset = u64(cd, q); q += 8; }
      }
      e += 4 + len;
    }
    if (flags & 1) throw new ZipError(`${label}: entry ${name} is encrypted`);
    if (method !== 0 && method !== 8) throw new ZipError(`${label}: entry ${name} uses compression method ${method} (only stored and deflate are read)`);
    if (method === 0 && compressedSize !== uncompressed) throw new ZipError(`${label}: stored entry ${name} has different sizes`);
    entries.push({ name, method, compressedSize, size: uncompressed, crc32: crc, localHeaderOffset: offset });
    p = extraEnd + commentLen;
  }
  return entries;
}
