/**
 * Pictures of a sampling run: a denoising strip (frames side by side, each captioned) and an animated
 * GIF or WebP. The animation is handed to sharp as one tall image with `pageHeight` set to the frame
 * height, which libvips writes as an animation with one page per frame.
 */
import sharp from 'sharp';
import { makeGrid, type GridOptions } from './grid.js';
import { writeFileAtomic } from './io.js';
import { type Pixels, type Rgb, WHITE, scaleNearest, toRgb, upscaleFactor } from './raster.js';

/** `count` items spread evenly over `items`, always keeping the first and the last. */
export function pickEvenly<T>(items: readonly T[], count: number): T[] {
  if (count >= items.length) return [...items];
  if (count <= 1) return items.length > 0 ? [items[items.length - 1]] : [];
  const out: T[] = [];
  for (let i = 0; i < count; i++) out.push(items[Math.round((i * (items.length - 1)) / (count - 1))]);
  return out;
}

export interface StripOptions extends Omit<GridOptions, 'columns' | 'captions'> {
  /** One label per frame (e.g. "t=999"). */
  labels?: string[];
  /** Keep at most this many frames, spread evenly (first and last kept). */
  maxFrames?: number;
}

/** A row of frames, left to right, each with its label underneath. */
export function denoisingStrip(frames: readonly Pixels[], opts: StripOptions = {}): Pixels {
  if (frames.length === 0) throw new Error('denoisingStrip: no frames');
  const indices = pickEvenly(frames.map((_, i) => i), opts.maxFrames ?? frames.length);
  const chosen = indices.map((i) => frames[i]);
  const labels = opts.labels ? indices.map((i) => opts.labels![i] ?? '') : undefined;
  return makeGrid(chosen, { ...opts, columns: chosen.length, captions: labels, captionLines: 1 });
}

export type AnimationFormat = 'gif' | 'webp';

export interface AnimationOptions {
  /** Milliseconds per frame, one number for all or one per frame (default 100). */
  delayMs?: number | number[];
  /** Extra time on the last frame, so the result can be seen before the loop restarts (default 1000). */
  holdLastMs?: number;
  /** Number of plays; 0 (default) loops for ever. */
  loop?: number;
  /** Enlarge small frames (nearest) until the larger side is at least this (default 128; 0 = off). */
  minSize?: number;
  /** Colour behind transparent pixels. */
  background?: Rgb;
}

/** Encode equal-sized frames as an animated GIF or WebP. */
export async function encodeAnimation(frames: readonly Pixels[], format: AnimationFormat, opts: AnimationOptions = {}): Promise<Buffer> {
  if (frames.length === 0) throw new Error('encodeAnimation: no frames');
  const { width, height } = frames[0];
  for (const [i, f] of frames.entries()) {
    if (f.width !== width || f.height !== height) {
      throw new Error(`animation frames must share one size: frame 0 is ${width}x${height}, frame ${i} is ${f.width}x${f.height}`);
    }
  }
  const factor = opts.minSize === 0 ? 1 : upscaleFactor(width, height, opts.minSize ?? 128);
  const fw = width * factor, fh = height * factor;
  const stacked = new Uint8Array(fw * fh * 3 * frames.length);
  frames.forEach((f, i) => stacked.set(scaleNearest(toRgb(f, opts.background ?? WHITE), factor).data, i * fw * fh * 3));

  const base = opts.delayMs ?? 100;
  const delay = frames.map((_, i) => Math.round(Array.isArray(base) ? base[i] ?? base[base.length - 1] ?? 100 : base));
  delay[delay.length - 1] += Math.round(opts.holdLastMs ?? 1000);
  for (const d of delay) if (!(d >= 0 && d <= 65535)) throw new Error(`frame delays must be 0..65535 ms, got ${d}`);
  const anim = { delay, loop: opts.loop ?? 0 };

  const img = sharp(stacked, { raw: { width: fw, height: fh * frames.length, channels: 3, pageHeight: fh } });
  // keepDuplicateFrames: a sampling run may repeat a frame, and the frame count should stay as given.
  return format === 'gif'
    ? img.gif({ ...anim, keepDuplicateFrames: true }).toBuffer()
    : img.webp({ ...anim, lossless: true }).toBuffer();
}

/** Save an animation; the format follows the extension (.gif or .webp). */
export async function saveAnimation(file: string, frames: readonly Pixels[], opts: AnimationOptions = {}): Promise<void> {
  const ext = file.toLowerCase().split('.').pop();
  if (ext !== 'gif' && ext !== 'webp') throw new Error(`an animation is saved as .gif or .webp, not ${file}`);
  writeFileAtomic(file, await encodeAnimation(frames, ext, opts));
}
