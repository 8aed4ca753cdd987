/**
 * A user's folder of captioned images. Captions come from `captions.jsonl` in the folder
 * (lines `{"file": "relative/path.png", "caption": "..."}`) or else from a `.txt` file beside each image.
 *
 * Opening decodes every image once (sharp), scales it so its shorter side is `size` and keeps the pixels
 * in memory; a file that cannot be read is reported in `skipped` and left out, never a crash. Samples
 * are then a size×size crop (centre or seeded random), optionally flipped, normalised.
 *
 * The pixels live in one SharedArrayBuffer, so loader workers get them through `spec()` without a copy
 * and without decoding again (sharp then never loads in a worker, where an early terminate is unsafe).
 */
import { readdir, readFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { extname, join, relative, resolve, sep } from 'node:path';
import { Rng } from '../engine/rng.js';
import { type Dataset, type DatasetSpec, type PixelRange, type Sample, type SampleContext, derivedSeed, rangeMapper } from './types.js';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif'];

export interface ImageFolderOptions {
  dir: string;
  /** Output side in pixels (default 64). */
  size?: number;
  /** Which size×size window of the scaled image to take (default 'centre'). */
  crop?: 'centre' | 'random';
  /** Mirror horizontally with probability 1/2, seeded (default false: captions may say "left"). */
  flip?: boolean;
  /** Seed of the random crops and flips (they also change with the epoch). */
  seed?: number;
  range?: PixelRange;
  /** Look into subfolders too (default true). */
  recursive?: boolean;
  /** Images decoded at once while opening (default 4). */
  concurrency?: number;
}

export interface SkippedFile {
  file: string;
  reason: string;
}

interface StoredImage {
  file: string;
  caption: string;
  width: number;
  height: number;
  /** Height×width×3 RGB bytes, shorter side = size. */
  rgb: Uint8Array;
}

/** Decoded images packed for sharing with workers: entry k's bytes start at offsets[k] in `pixels`. */
interface PackedImages {
  pixels: SharedArrayBuffer;
  entries: Array<{ file: string; caption: string; width: number; height: number; offset: number }>;
  skipped: SkippedFile[];
}

function pack(images: StoredImage[], skipped: SkippedFile[]): PackedImages {
  const total = images.reduce((n, im) => n + im.rgb.length, 0);
  const pixels = new SharedArrayBuffer(Math.max(1, total));
  const bytes = new Uint8Array(pixels);
  let offset = 0;
  const entries = images.map((im) => {
    bytes.set(im.rgb, offset);
    const entry = { file: im.file, caption: im.caption, width: im.width, height: im.height, offset };
    offset += im.rgb.length;
    return entry;
  });
  return { pixels, entries, skipped };
}

function unpack(packed: PackedImages): StoredImage[] {
  return packed.entries.map((e) => ({ ...e, rgb: new Uint8Array(packed.pixels, e.offset, e.width * e.height * 3) }));
}

const AUGMENT_STREAM = 0x1f0;

type SharpModule = typeof import('sharp');

async function loadSharp(): Promise<SharpModule> {
  try {
    return (await import('sharp')).default as unknown as SharpModule;
  } catch (err) {
    throw new Error(`image folders need the 'sharp' package, which did not load (${(err as Error).message}); ` +
      'run `npm install` in the vss folder');
  }
}

async function listImages(dir: string, recursive: boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    for (const e of entries) {
      const path = join(d, e.name);
      if (e.isDirectory()) { if (recursive && !e.name.startsWith('.')) await walk(path); }
      else if (IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase())) out.push(path);
    }
  };
  await walk(dir);
  // Sorted by relative path so the index of an image never depends on the file system's order.
  return out.map((p) => relative(dir, p).split(sep).join('/')).sort();
}

/** Captions from captions.jsonl (bad lines are reported, not fatal). */
async function readCaptionsJsonl(dir: string, problems: SkippedFile[]): Promise<Map<string, string> | null> {
  const path = join(dir, 'captions.jsonl');
  if (!existsSync(path)) return null;
  const captions = new Map<string, string>();
  const lines = (await readFile(path, 'utf8')).split(/\r?\n/);
  lines.forEach((line, k) => {
    if (line.trim() === '') return;
    try {
      const entry = JSON.parse(line) as { file?: unknown; caption?: unknown };
      if (typeof entry.file !== 'string' || typeof entry.caption !== 'string') throw new Error('needs string "file" and "caption"');
      captions.set(entry.file.split(/[\\/]/).join('/').replace(/^\.\//, ''), entry.caption);
    } catch (err) {
      problems.push({ file: `captions.jsonl:${k + 1}`, reason: `unreadable caption line (${(err as Error).message})` });
    }
  });
  return captions;
}

export class ImageFolder implements Dataset {
  readonly dir: string;
  readonly size: number;
  /** Files left out, with why (undecodable images, bad caption lines, captions for missing files). */
  readonly skipped: SkippedFile[];
  /** Images kept that have no caption (their caption is ''). */
  readonly uncaptioned: number;
  private readonly map: { scale: number; shift: number };

  private readonly images: StoredImage[];

  private constructor(private readonly options: ImageFolderOptions, private readonly packed: PackedImages) {
    this.dir = resolve(options.dir);
    this.size = options.size ?? 64;
    this.images = unpack(packed);
    this.skipped = packed.skipped;
    this.uncaptioned = this.images.filter((im) => im.caption === '').length;
    this.map = rangeMapper(options.range);
  }

  /** Rebuilds a folder opened elsewhere (a worker thread) from its spec, sharing the decoded pixels. */
  static fromSpec(options: ImageFolderOptions & { packed: PackedImages }): ImageFolder {
    const { packed, ...rest } = options;
    return new ImageFolder(rest, packed);
  }

  static async open(options: ImageFolderOptions): Promise<ImageFolder> {
    const dir = resolve(options.dir);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`image folder not found: ${dir}`);
    const size = options.size ?? 64;
    if (!Number.isInteger(size) || size < 1) throw new Error(`image folder: size must be a positive integer, got ${size}`);
    const concurrency = Math.max(1, options.concurrency ?? 4);
    const sharp = await loadSharp();
    const skipped: SkippedFile[] = [];
    const files = await listImages(dir, options.recursive ?? true);
    const jsonl = await readCaptionsJsonl(dir, skipped);
    if (jsonl) {
      const present = new Set(files);
      for (const f of jsonl.keys()) if (!present.has(f)) skipped.push({ file: f, reason: 'listed in captions.jsonl but not found' });
    }

    const decoded: Array<StoredImage | null> = new Array(files.length).fill(null);
    let next = 0;
    const decodeOne = async (k: number): Promise<void> => {
      const file = files[k];
      try {
        // rotate() applies EXIF orientation; flatten() puts transparent pixels on white.
        const { data, info } = await sharp(join(dir, file))
          .rotate().flatten({ background: '#ffffff' })
          .resize({ width: size, height: size, fit: 'outside' })
          .raw().toBuffer({ resolveWithObject: true });
        const caption = jsonl?.get(file) ?? (await readSideCaption(dir, file));
        decoded[k] = { file, caption, width: info.width, height: info.height, rgb: toRgb(data, info.channels) };
      } catch (err) {
        skipped.push({ file, reason: (err as Error).message.split('\n')[0] });
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, async () => {
      while (next < files.length) await decodeOne(next++);
    }));
    skipped.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
    return new ImageFolder(options, pack(decoded.filter((im): im is StoredImage => im !== null), skipped));
  }

  get length(): number { return this.images.length; }

  /** One line for logs: how many images were kept and what was skipped. */
  report(): string {
    const parts = [`${this.length} images from ${this.dir}`];
    if (this.skipped.length) parts.push(`${this.skipped.length} skipped (${this.skipped.slice(0, 3).map((s) => `${s.file}: ${s.reason}`).join('; ')}${this.skipped.length > 3 ? '; …' : ''})`);
    if (this.uncaptioned) parts.push(`${this.uncaptioned} without a caption`);
    return parts.join(', ');
  }

  file(index: number): string { return this.stored(index).file; }

  get(index: number, ctx?: SampleContext): Sample {
    const im = this.stored(index);
    const S = this.size;
    const rng = new Rng(derivedSeed(this.options.seed ?? 0, AUGMENT_STREAM + (ctx?.epoch ?? 0), index));
    const [u, v, w] = rng.uniform(3);
    const random = this.options.crop === 'random';
    const left = random ? Math.floor(u * (im.width - S + 1)) : (im.width - S) >> 1;
    const top = random ? Math.floor(v * (im.height - S + 1)) : (im.height - S) >> 1;
    const flip = (this.options.flip ?? false) && w < 0.5;
    const { scale, shift } = this.map;
    const plane = S * S;
    const image = new Float32Array(3 * plane);
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        // Clamped reads cover a scaled side that rounding left a pixel short of S.
        const sx = Math.min(Math.max(left + (flip ? S - 1 - x : x), 0), im.width - 1);
        const sy = Math.min(Math.max(top + y, 0), im.height - 1);
        const from = (sy * im.width + sx) * 3;
        for (let c = 0; c < 3; c++) image[c * plane + y * S + x] = (im.rgb[from + c] / 255) * scale + shift;
      }
    }
    return { image, shape: [3, S, S], label: -1, caption: im.caption };
  }

  spec(): DatasetSpec {
    return { kind: 'image-folder', options: { ...this.options, dir: this.dir, packed: this.packed } as unknown as Record<string, unknown> };
  }

  private stored(index: number): StoredImage {
    const im = this.images[index];
    if (!Number.isInteger(index) || !im) throw new RangeError(`image folder: index ${index} outside [0, ${this.length})`);
    return im;
  }
}

async function readSideCaption(dir: string, file: string): Promise<string> {
  const txt = join(dir, file.slice(0, file.length - extname(file).length) + '.txt');
  return existsSync(txt) ? (await readFile(txt, 'utf8')).trim() : '';
}

/** sharp gives 1 (grey), 2, 3 or 4 channels after flatten; the dataset is always RGB. */
function toRgb(data: Uint8Array, channels: number): Uint8Array {
  if (channels === 3) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  const n = data.length / channels;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = data[i * channels + (channels < 3 ? 0 : c)];
  }
  return out;
}
