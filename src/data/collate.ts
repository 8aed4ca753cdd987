/**
 * Turning samples into one contiguous batch. Kept free of the tensor engine so worker threads can run it
 * without loading kernels; the loader wraps the buffers in tensors on the main thread.
 */
import type { Dataset, SampleContext } from './types.js';

/** A batch as plain buffers: what a worker posts back (the two buffers are transferred, not copied). */
export interface RawBatch {
  /** B×C×H×W, contiguous. */
  images: Float32Array;
  labels: Int32Array;
  /** [C, H, W] of each image. */
  sampleShape: [number, number, number];
  captions: string[];
  /** Structured scenes, when the dataset has them. */
  scenes?: unknown[];
}

export async function collate(dataset: Dataset, indices: readonly number[], ctx: SampleContext): Promise<RawBatch> {
  if (indices.length === 0) throw new Error('collate: empty batch');
  let images: Float32Array | undefined;
  let sampleShape: [number, number, number] = [0, 0, 0];
  let per = 0;
  const labels = new Int32Array(indices.length);
  const captions: string[] = [];
  const scenes: unknown[] = [];
  for (let b = 0; b < indices.length; b++) {
    const sample = await dataset.get(indices[b], ctx);
    if (!images) {
      sampleShape = [sample.shape[0], sample.shape[1], sample.shape[2]];
      per = sampleShape[0] * sampleShape[1] * sampleShape[2];
      images = new Float32Array(indices.length * per); // its own buffer, so it can be transferred
    } else if (sample.shape.some((d, k) => d !== sampleShape[k])) {
      throw new Error(`collate: sample ${indices[b]} has shape [${sample.shape}], the batch started with [${sampleShape}]`);
    }
    if (sample.image.length !== per) {
      throw new Error(`collate: sample ${indices[b]} holds ${sample.image.length} values for shape [${sample.shape}]`);
    }
    images.set(sample.image, b * per);
    labels[b] = sample.label;
    captions.push(sample.caption);
    if (sample.scene !== undefined) scenes.push(sample.scene);
  }
  const raw: RawBatch = { images: images!, labels, sampleShape, captions };
  if (scenes.length === indices.length) raw.scenes = scenes;
  return raw;
}
