/**
 * Image files in and out: decode PNG/JPEG/WebP (via sharp) into float arrays or tensors, encode pixel
 * buffers and tensors to PNG/JPEG/WebP, with generation parameters written into PNG text chunks by
 * our own chunk code. Every write goes to a temporary file first and is renamed into place.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { type Tensor, fromTypedArray } from '../engine/index.js';
import { type Pixels, checkPixels } from './raster.js';
import { makeGrid, type GridOptions } from './grid.js';
import {
  PARAMETERS_KEYWORD, type GenerationParameters, type ParsedGenerationParameters, formatA1111Parameters,
  insertPngText, isPng, parseA1111Parameters, readPngText,
} from './png.js';

/** 'unit' = values in [0, 1]; 'signed' = values in [-1, 1] (what diffusion models work in). */
export type PixelRange = 'unit' | 'signed';
/** 'chw' = planar [C, H, W] (what the models take); 'hwc' = interleaved [H, W, C]. */
export type PixelLayout = 'chw' | 'hwc';

export interface DecodeOptions {
  layout?: PixelLayout;
  range?: PixelRange;
  /** Channels wanted: 1 (grey), 3 (RGB, default) or 4 (RGBA). */
  channels?: 1 | 3 | 4;
  /** A name for error messages when decoding a buffer. */
  name?: string;
}

export interface DecodedImage {
  data: Float32Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  layout: PixelLayout;
}

function describe(source: string | Uint8Array, name?: string): string {
  return typeof source === 'string' ? source : name ?? 'image buffer';
}

/** Decode any image sharp reads into 8-bit interleaved pixels (EXIF orientation applied). */
export async function decodePixels(source: string | Uint8Array, opts: { channels?: 1 | 3 | 4; name?: string } = {}): Promise<Pixels> {
  const what = describe(source, opts.name);
  const channels = opts.channels ?? 3;
  if (typeof source === 'string' && !fs.existsSync(source)) throw new Error(`image not found: ${source}`);
  try {
    let img = sharp(source).autoOrient();
    if (channels === 1) img = img.greyscale().removeAlpha().toColourspace('b-w');
    else if (channels === 3) img = img.removeAlpha().toColourspace('srgb');
    else img = img.ensureAlpha().toColourspace('srgb');
    const { data, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== channels) throw new Error(`decoded ${info.channels} channels, wanted ${channels}`);
    return { width: info.width, height: info.height, channels, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    throw new Error(`cannot decode image ${what}: ${(err as Error).message}`);
  }
}

/** 8-bit interleaved pixels → floats in the given layout and range. */
export function pixelsToFloat(p: Pixels, layout: PixelLayout = 'chw', range: PixelRange = 'unit'): Float32Array {
  checkPixels(p);
  const { width, height, channels, data } = p;
  const plane = width * height;
  const out = new Float32Array(plane * channels);
  const scale = range === 'signed' ? 2 / 255 : 1 / 255, shift = range === 'signed' ? -1 : 0;
  if (layout === 'hwc') {
    for (let i = 0; i < out.length; i++) out[i] = data[i] * scale + shift;
  } else {
    for (let i = 0; i < plane; i++) for (let c = 0; c < channels; c++) out[c * plane + i] = data[i * channels + c] * scale + shift;
  }
  return out;
}

/** Decode PNG/JPEG/WebP (file path or bytes) into floats. */
export async function decodeImage(source: string | Uint8Array, opts: DecodeOptions = {}): Promise<DecodedImage> {
  const channels = opts.channels ?? 3;
  const layout = opts.layout ?? 'chw';
  const p = await decodePixels(source, { channels, name: opts.name });
  return { data: pixelsToFloat(p, layout, opts.range ?? 'unit'), width: p.width, height: p.height, channels, layout };
}

/** Decode an image into an f32 tensor, [C, H, W] (default) or [H, W, C]. */
export async function loadImageTensor(source: string | Uint8Array, opts: DecodeOptions = {}): Promise<Tensor> {
  const img = await decodeImage(source, opts);
  const shape = img.layout === 'chw' ? [img.channels, img.height, img.width] : [img.height, img.width, img.channels];
  return fromTypedArray(img.data, shape);
}

// ---------------------------------------------------------------------------------------------------
// Tensors → pixels

function toByte(v: number): number {
  // NaN becomes 0 rather than poisoning the picture.
  return v > 0 ? (v < 1 ? Math.round(v * 255) : 255) : 0;
}

export interface TensorImageOptions {
  /** The value range the tensor is in; values outside are clamped. Default 'signed' ([-1, 1]). */
  range?: PixelRange;
}

/** One [C, H, W] float array (C = 1, 3 or 4) → 8-bit interleaved pixels. */
export function floatToPixels(data: Float32Array, channels: number, height: number, width: number, range: PixelRange = 'signed'): Pixels {
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new Error(`an image needs 1, 3 or 4 channels, got ${channels}`);
  const plane = width * height;
  if (data.length !== plane * channels) throw new Error(`${data.length} values do not make [${channels}, ${height}, ${width}]`);
  const out = new Uint8Array(plane * channels);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < plane; i++) {
      const v = data[c * plane + i];
      out[i * channels + c] = toByte(range === 'signed' ? (v + 1) / 2 : v);
    }
  }
  return { width, height, channels, data: out };
}

/** A [C, H, W] or [B, C, H, W] tensor → one Pixels per image. */
export function tensorToPixels(t: Tensor, opts: TensorImageOptions = {}): Pixels[] {
  const shape = t.shape;
  if (shape.length !== 3 && shape.length !== 4) throw new Error(`expected an image tensor [C, H, W] or [B, C, H, W], got [${shape}]`);
  const [batch, c, h, w] = shape.length === 3 ? [1, ...shape] : shape;
  const all = t.to('f32').contiguous().toFloat32Array();
  const per = c * h * w;
  const out: Pixels[] = [];
  for (let b = 0; b < batch; b++) out.push(floatToPixels(all.subarray(b * per, (b + 1) * per), c, h, w, opts.range ?? 'signed'));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Encoding and writing

export type ImageFormat = 'png' | 'jpeg' | 'webp';

export interface EncodeOptions {
  /** Generation parameters for the PNG `parameters` chunk (A1111 text, or fields to format). */
  parameters?: string | GenerationParameters;
  /** Further PNG text chunks, keyword → text. */
  text?: Record<string, string>;
  /** JPEG/WebP quality 1–100 (default 90). */
  quality?: number;
}

function sharpFromPixels(p: Pixels): sharp.Sharp {
  checkPixels(p);
  const img = sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } });
  // Keep grey images grey: sharp otherwise widens raw input to sRGB on output.
  return p.channels <= 2 ? img.toColourspace('b-w') : img;
}

function textEntries(opts: EncodeOptions): Record<string, string> {
  const entries: Record<string, string> = { ...(opts.text ?? {}) };
  if (opts.parameters !== undefined) {
    entries[PARAMETERS_KEYWORD] = typeof opts.parameters === 'string' ? opts.parameters : formatA1111Parameters(opts.parameters);
  }
  return entries;
}

/** Encode pixels to PNG bytes, with the text chunks written in by hand. */
export async function encodePng(p: Pixels, opts: EncodeOptions = {}): Promise<Buffer> {
  const png = await sharpFromPixels(p).png({ compressionLevel: 6 }).toBuffer();
  const entries = textEntries(opts);
  return Object.keys(entries).length > 0 ? insertPngText(png, entries) : png;
}

export async function encodeImage(p: Pixels, format: ImageFormat, opts: EncodeOptions = {}): Promise<Buffer> {
  if (format === 'png') return encodePng(p, opts);
  const quality = opts.quality ?? 90;
  // JPEG has no alpha channel: flatten composites any alpha onto white.
  if (format === 'jpeg') return sharpFromPixels(p).flatten({ background: '#ffffff' }).jpeg({ quality }).toBuffer();
  return sharpFromPixels(p).webp({ quality }).toBuffer();
}

export function formatFromPath(file: string): ImageFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.png') return 'png';
  if (ext === '.jpg' || ext === '.jpeg') return 'jpeg';
  if (ext === '.webp') return 'webp';
  throw new Error(`cannot tell the image format of ${file}: use .png, .jpg or .webp`);
}

let tempCounter = 0;

/** Write a file atomically: a temporary file in the same folder, then a rename over the target. */
export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${tempCounter++}.tmp`);
  try {
    fs.writeFileSync(temp, data);
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw new Error(`cannot write ${file}: ${(err as Error).message}`);
  }
}

/** Save pixels; the format follows the extension (.png, .jpg/.jpeg, .webp). */
export async function saveImage(file: string, p: Pixels, opts: EncodeOptions = {}): Promise<void> {
  const format = formatFromPath(file);
  if (format !== 'png' && (opts.parameters !== undefined || opts.text !== undefined)) {
    throw new Error(`generation parameters can only be stored in PNG files, not ${file}`);
  }
  writeFileAtomic(file, await encodeImage(p, format, opts));
}

export interface SaveTensorOptions extends TensorImageOptions, EncodeOptions {
  /** For a batch: grid layout (columns, padding, labels…); default is a square-ish grid. */
  grid?: GridOptions;
}

/** Save a [C, H, W] tensor as one image, or a [B, C, H, W] batch as a grid. */
export async function saveTensorImage(file: string, t: Tensor, opts: SaveTensorOptions = {}): Promise<void> {
  const images = tensorToPixels(t, opts);
  const picture = images.length === 1 && t.shape.length === 3 ? images[0] : makeGrid(images, { minCellSize: 0, ...opts.grid });
  await saveImage(file, picture, opts);
}

/** The generation parameters of a PNG made by vss (or A1111), or null when it has none. */
export function readGenerationParameters(file: string): { raw: string; parsed: ParsedGenerationParameters } | null {
  const buf = fs.readFileSync(file);
  if (!isPng(buf)) throw new Error(`${file} is not a PNG file`);
  const raw = readPngText(buf, file)[PARAMETERS_KEYWORD];
  return raw === undefined ? null : { raw, parsed: parseA1111Parameters(raw) };
}
