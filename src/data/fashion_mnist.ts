/**
 * Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60 000 training and 10 000 test greyscale 28×28 images of
 * clothing in 10 classes, stored as four IDX files. Each sample also gets a templated caption so the
 * text-conditioned models have something to read.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
// rng.js directly, not the engine index: worker threads load this module and need no kernels.
import { Rng } from '../engine/rng.js';
import { fashionMnistDescription } from './fashion_captions.js';
import { readIdx } from './idx.js';
import {
  type Dataset, type DatasetSpec, type PixelRange, type Sample, type SampleContext,
  derivedSeed, rangeMapper, withArticle,
} from './types.js';

/** Where the Debian package `dataset-fashion-mnist` installs the files. */
export const FASHION_MNIST_SYSTEM_DIR = '/usr/share/datasets/fashion-mnist';

/** Class names in label order, as the dataset's authors give them. */
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
] as const;

/** The same classes as nouns that read well in a sentence. */
export const FASHION_MNIST_NOUNS = [
  't-shirt', 'pair of trousers', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot',
] as const;

/** Caption templates; `{}` is the noun with its article ("a sneaker", "an ankle boot"). */
export const FASHION_MNIST_TEMPLATES = [
  'a photo of {}', '{}', 'a picture of {}', 'a black and white photo of {}', 'a grayscale photo of {}',
  'a small photo of {}', 'a product photo of {}',
] as const;

export type FashionMnistSplit = 'train' | 'test';

export interface FashionMnistOptions {
  split?: FashionMnistSplit;
  /** Folder holding the IDX files (plain or .gz); default the system folder. */
  dir?: string;
  range?: PixelRange;
  /** Output side in pixels (default 28). */
  size?: number;
  /** How to reach `size` when it is not 28: pad with background (default), or bilinear resize. */
  fit?: 'pad' | 'resize';
  /** Seed of the caption template choice. */
  captionSeed?: number;
  /**
   * 'prompt' (default): "a photo of a sneaker" and the like, for text-conditioned generation;
   * 'describe': a per-class description ("a running shoe", see fashion_captions.ts), for captioning.
   */
  captions?: 'prompt' | 'describe';
  /** Use only the first `limit` samples (quick experiments). */
  limit?: number;
  /** Already-parsed files shared with a worker thread by `spec()` (not for users). */
  preloaded?: RawSplit;
}

/** A dataset that is not on disk: the message says what was looked for, `hint` how to get it. */
export class DatasetNotFoundError extends Error {
  constructor(message: string, readonly hint: string) {
    super(`${message}\n${hint}`);
    this.name = 'DatasetNotFoundError';
  }
}

const SIDE = 28;
const CAPTION_STREAM = 0xfa5;

/** Caption for a label: template picked by `rng`, article chosen by the noun's first sound. */
export function fashionMnistCaption(label: number, rng: Rng): string {
  const noun = FASHION_MNIST_NOUNS[label];
  if (noun === undefined) throw new Error(`Fashion-MNIST label must be 0..9, got ${label}`);
  const template = FASHION_MNIST_TEMPLATES[rng.integers(1, 0, FASHION_MNIST_TEMPLATES.length)[0]];
  return template.replace('{}', withArticle(noun));
}

/** The parsed files, in SharedArrayBuffers so loader workers read them without a copy or a second gunzip. */
export interface RawSplit { images: Uint8Array; labels: Uint8Array; count: number }

function shared(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(Math.max(1, bytes.length)), 0, bytes.length);
  out.set(bytes);
  return out;
}
/** Parsed files by path: a second dataset object over the same files (e.g. in a CLI) costs nothing. */
const rawCache = new Map<string, RawSplit>();

/** The first existing file among the usual spellings (dash or dot before idx, with or without .gz). */
function findFile(dir: string, prefix: string, kind: 'images' | 'labels'): string | undefined {
  const idx = kind === 'images' ? 'idx3-ubyte' : 'idx1-ubyte';
  for (const name of [`${prefix}-${kind}-${idx}`, `${prefix}-${kind}.${idx}`]) {
    for (const ext of ['.gz', '']) {
      const path = join(dir, name + ext);
      if (existsSync(path)) return path;
    }
  }
  return undefined;
}

function loadSplit(dir: string, split: FashionMnistSplit): RawSplit {
  const prefix = split === 'train' ? 'train' : 't10k';
  const imagesPath = findFile(dir, prefix, 'images');
  const labelsPath = findFile(dir, prefix, 'labels');
  if (!imagesPath || !labelsPath) {
    const missing = [!imagesPath && `${prefix}-images-idx3-ubyte[.gz]`, !labelsPath && `${prefix}-labels-idx1-ubyte[.gz]`]
      .filter(Boolean).join(' and ');
    throw new DatasetNotFoundError(
      `Fashion-MNIST ${split} split not found: no ${missing} in ${dir}`,
      `hint: install it with \`sudo apt-get install dataset-fashion-mnist\` (files go to ${FASHION_MNIST_SYSTEM_DIR}), ` +
      'or pass --data <dir> pointing at a folder with the four IDX files from github.com/zalandoresearch/fashion-mnist',
    );
  }
  const key = `${imagesPath}\0${labelsPath}`;
  const cached = rawCache.get(key);
  if (cached) return cached;
  const images = readIdx(imagesPath);
  const labels = readIdx(labelsPath);
  if (images.dtype !== 'u8' || images.shape.length !== 3 || images.shape[1] !== SIDE || images.shape[2] !== SIDE) {
    throw new Error(`${imagesPath}: expected u8 images of shape [N, 28, 28], found ${images.dtype} [${images.shape}]`);
  }
  if (labels.dtype !== 'u8' || labels.shape.length !== 1) {
    throw new Error(`${labelsPath}: expected u8 labels of shape [N], found ${labels.dtype} [${labels.shape}]`);
  }
  if (labels.shape[0] !== images.shape[0]) {
    throw new Error(`${labelsPath}: ${labels.shape[0]} labels for ${images.shape[0]} images in ${imagesPath}`);
  }
  const bad = (labels.data as Uint8Array).findIndex((l) => l >= FASHION_MNIST_CLASSES.length);
  if (bad >= 0) throw new Error(`${labelsPath}: label ${labels.data[bad]} at index ${bad} is not a class 0..9`);
  const raw = { images: shared(images.data as Uint8Array), labels: shared(labels.data as Uint8Array), count: images.shape[0] };
  rawCache.set(key, raw);
  return raw;
}

export class FashionMnist implements Dataset {
  readonly length: number;
  readonly split: FashionMnistSplit;
  readonly dir: string;
  readonly size: number;
  readonly classes = FASHION_MNIST_CLASSES;
  private readonly raw: RawSplit;
  private readonly map: { scale: number; shift: number };

  constructor(private readonly options: FashionMnistOptions = {}) {
    this.split = options.split ?? 'train';
    if (this.split !== 'train' && this.split !== 'test') throw new Error(`Fashion-MNIST split must be 'train' or 'test', got '${this.split}'`);
    this.dir = resolve(options.dir ?? FASHION_MNIST_SYSTEM_DIR);
    this.size = options.size ?? SIDE;
    const fit = options.fit ?? 'pad';
    if (!Number.isInteger(this.size) || this.size < 1) throw new Error(`Fashion-MNIST size must be a positive integer, got ${this.size}`);
    if (fit === 'pad' && this.size < SIDE) throw new Error(`cannot pad 28×28 images to ${this.size}: use fit 'resize' to shrink`);
    this.map = rangeMapper(options.range);
    if (options.captions !== undefined && options.captions !== 'prompt' && options.captions !== 'describe') {
      throw new Error(`Fashion-MNIST captions must be 'prompt' or 'describe', got '${String(options.captions)}'`);
    }
    this.raw = options.preloaded ?? loadSplit(this.dir, this.split);
    const limit = options.limit ?? this.raw.count;
    this.length = Math.max(0, Math.min(limit, this.raw.count));
  }

  label(index: number): number {
    this.check(index);
    return this.raw.labels[index];
  }

  /** The raw 28×28 u8 pixels of one image (a view, do not modify). */
  pixels(index: number): Uint8Array {
    this.check(index);
    return this.raw.images.subarray(index * SIDE * SIDE, (index + 1) * SIDE * SIDE);
  }

  get(index: number, ctx?: SampleContext): Sample {
    const label = this.label(index);
    const src = this.pixels(index);
    const { scale, shift } = this.map;
    const size = this.size;
    const image = new Float32Array(size * size);
    if (size === SIDE) {
      for (let i = 0; i < image.length; i++) image[i] = (src[i] / 255) * scale + shift;
    } else if ((this.options.fit ?? 'pad') === 'pad') {
      image.fill(shift); // background is black, i.e. 0 before mapping
      const off = (size - SIDE) >> 1;
      for (let y = 0; y < SIDE; y++) {
        for (let x = 0; x < SIDE; x++) image[(y + off) * size + x + off] = (src[y * SIDE + x] / 255) * scale + shift;
      }
    } else {
      const resized = resizeBilinear(src, SIDE, SIDE, size, size);
      for (let i = 0; i < image.length; i++) image[i] = (resized[i] / 255) * scale + shift;
    }
    const rng = new Rng(derivedSeed(this.options.captionSeed ?? 0, CAPTION_STREAM + (ctx?.epoch ?? 0), index));
    const caption = this.options.captions === 'describe' ? fashionMnistDescription(label, rng) : fashionMnistCaption(label, rng);
    return { image, shape: [1, size, size], label, caption };
  }

  spec(): DatasetSpec {
    return { kind: 'fashion-mnist', options: { ...this.options, dir: this.dir, preloaded: this.raw } as Record<string, unknown> };
  }

  /** Number of samples of each class. */
  histogram(): number[] {
    const counts = new Array<number>(FASHION_MNIST_CLASSES.length).fill(0);
    for (let i = 0; i < this.length; i++) counts[this.raw.labels[i]]++;
    return counts;
  }

  private check(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new RangeError(`Fashion-MNIST ${this.split}: index ${index} outside [0, ${this.length})`);
    }
  }
}

/** Bilinear resize of one plane (pixel centres aligned, edges clamped), values kept as floats. */
export function resizeBilinear(src: ArrayLike<number>, srcH: number, srcW: number, dstH: number, dstW: number): Float32Array {
  const out = new Float32Array(dstH * dstW);
  const sy = srcH / dstH, sx = srcW / dstW;
  for (let y = 0; y < dstH; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), srcH - 1);
    const y0 = Math.floor(fy), y1 = Math.min(y0 + 1, srcH - 1), wy = fy - y0;
    for (let x = 0; x < dstW; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), srcW - 1);
      const x0 = Math.floor(fx), x1 = Math.min(x0 + 1, srcW - 1), wx = fx - x0;
      const top = src[y0 * srcW + x0] * (1 - wx) + src[y0 * srcW + x1] * wx;
      const bottom = src[y1 * srcW + x0] * (1 - wx) + src[y1 * srcW + x1] * wx;
      out[y * dstW + x] = top * (1 - wy) + bottom * wy;
    }
  }
  return out;
}
