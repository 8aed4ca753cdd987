/** The shapes shared by every dataset and the loader. */
import { philoxBlock } from '../engine/rng.js';

/** One example: a CHW float image plus whatever text and label it carries. */
export interface Sample {
  /** Pixels in channel-major order (C×H×W), already normalised (see each dataset's `range`). */
  image: Float32Array;
  /** [channels, height, width] of `image`. */
  shape: readonly [number, number, number];
  /** Class index, or -1 when the dataset has no classes. */
  label: number;
  /** Text describing the image ('' when none is known). */
  caption: string;
  /** Structured description of what was drawn (procedural datasets only), JSON-serialisable. */
  scene?: unknown;
}

/** What the loader tells a dataset about the request, so augmentation can differ per epoch yet stay seeded. */
export interface SampleContext {
  epoch: number;
}

/**
 * A small recipe from which a worker thread rebuilds the same dataset (`kind` is a registry name,
 * `options` that dataset's constructor options). It must survive structured cloning; large pixel
 * stores travel as SharedArrayBuffer, which is shared rather than copied.
 */
export interface DatasetSpec {
  kind: string;
  options: Record<string, unknown>;
}

export interface Dataset<S extends Sample = Sample> {
  readonly length: number;
  /** Must be a pure function of (index, ctx): the loader relies on it to give identical batches anywhere. */
  get(index: number, ctx?: SampleContext): S | Promise<S>;
  /** Present when the dataset can be rebuilt in a worker thread. */
  spec?(): DatasetSpec;
}

/** Output value range of normalised images. */
export type PixelRange = '[-1,1]' | '[0,1]';

/** Maps a value in [0, 1] to the requested range. */
export function rangeMapper(range: PixelRange = '[-1,1]'): { scale: number; shift: number } {
  if (range === '[-1,1]') return { scale: 2, shift: -1 };
  if (range === '[0,1]') return { scale: 1, shift: 0 };
  throw new Error(`unknown pixel range '${String(range)}': use '[-1,1]' or '[0,1]'`);
}

/** Picks "a" or "an" for a noun phrase by its first sound (vowel letters, with the usual exceptions). */
export function withArticle(phrase: string): string {
  const word = phrase.trim().toLowerCase();
  const consonantSound = /^(uni|use|usu|eu|one|once)/.test(word);
  const vowelSound = /^(hour|honest|honou?r)/.test(word) || (/^[aeiou]/.test(word) && !consonantSound);
  return `${vowelSound ? 'an' : 'a'} ${phrase}`;
}

/** A fresh generator seed that depends only on (seed, stream, index): no shared state between samples. */
export function derivedSeed(seed: number, stream: number, index: number): number {
  // Philox is a good hash: the block at counter (index, stream) keyed by seed gives independent words.
  const words = new Uint32Array(4);
  philoxWords(index, stream, seed, words);
  return (words[0] & 0x1fffff) * 4294967296 + words[1];
}

function philoxWords(index: number, stream: number, seed: number, out: Uint32Array): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
  philoxBlock(index >>> 0, Math.floor(index / 4294967296) >>> 0, stream >>> 0, 0x5eed,
    seed >>> 0, Math.floor(seed / 4294967296) >>> 0, out, 0);
}
