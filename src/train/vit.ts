/**
 * Training a ViT classifier with the shared loop (src/train/loop.ts): the recipe, not the plumbing.
 *
 *   - augmentation on the batch, drawn from a seeded generator the loop checkpoints: random crop from the
 *     image padded with background, horizontal flip, random erasing (Zhong et al. 2017);
 *   - cross-entropy with label smoothing; AdamW with no weight decay on biases, norms, CLS and positions;
 *   - an EMA of the weights, used for evaluation and for the exported model;
 *   - export: config.json + model.safetensors (f16) in transformers' layout, + preprocessor_config.json.
 */
import { type Rng, type Tensor, crossEntropy, fromTypedArray, noGrad } from '../engine/index.js';
import type { Batch } from '../data/loader.js';
import type { EMA } from '../optim/ema.js';
import type { Module } from '../nn/module.js';
import { readF32 } from '../nn/storage.js';
import type { ViTConfig, ViTForImageClassification } from '../models/vit.js';

export interface AugmentOptions {
  /** Pad each side by this many pixels of background, then crop back to the original size at random (0: off). */
  cropPadding: number;
  /** Fraction of images that get the random crop (the rest stay centred: a ViT learns shifts slowly). */
  cropProb: number;
  /** Flip left-right with probability 1/2. */
  flip: boolean;
  /** Probability of erasing one random rectangle (area 2–25 % of the image, aspect 0.3–3.3) to 0. */
  erasing: number;
  /** The background value the padding uses (Fashion-MNIST in [-1, 1]: -1). */
  background: number;
}

export const DEFAULT_AUGMENT: AugmentOptions = { cropPadding: 2, cropProb: 0.5, flip: true, erasing: 0.1, background: -1 };

/**
 * Augment a batch [B, C, H, W] (a new tensor; the input is not changed). Every random number comes from
 * `rng`, a fixed number per image, so the result is a function of the generator's state.
 */
export function augmentBatch(images: Tensor, rng: Rng, opts: AugmentOptions = DEFAULT_AUGMENT): Tensor {
  const [B, C, H, W] = images.shape;
  const src = images.contiguous().toFloat32Array();
  const out = new Float32Array(src.length);
  const plane = H * W, P = opts.cropPadding;
  const u = rng.uniform(B * 9); // per image: dx, dy, flip, erase?, area, aspect, ex, ey, crop?
  for (let b = 0; b < B; b++) {
    const r = u.subarray(b * 9, b * 9 + 9);
    const crop = P > 0 && r[8] < opts.cropProb;
    const dx = crop ? Math.min(2 * P, Math.floor(r[0] * (2 * P + 1))) - P : 0;
    const dy = crop ? Math.min(2 * P, Math.floor(r[1] * (2 * P + 1))) - P : 0;
    const flip = opts.flip && r[2] < 0.5;
    for (let c = 0; c < C; c++) {
      const s = src.subarray((b * C + c) * plane, (b * C + c + 1) * plane);
      const d = out.subarray((b * C + c) * plane, (b * C + c + 1) * plane);
      for (let y = 0; y < H; y++) {
        const sy = y + dy;
        for (let x = 0; x < W; x++) {
          const sx = (flip ? W - 1 - x : x) + dx;
          d[y * W + x] = sy >= 0 && sy < H && sx >= 0 && sx < W ? s[sy * W + sx] : opts.background;
        }
      }
    }
    if (r[3] < opts.erasing) {
      const area = (0.02 + r[4] * 0.23) * plane;
      const aspect = Math.exp(Math.log(0.3) + r[5] * (Math.log(3.3) - Math.log(0.3)));
      const eh = Math.max(1, Math.min(H, Math.round(Math.sqrt(area * aspect))));
      const ew = Math.max(1, Math.min(W, Math.round(Math.sqrt(area / aspect))));
      const ey = Math.floor(r[7] * (H - eh + 1)), ex = Math.floor(r[6] * (W - ew + 1));
      for (let c = 0; c < C; c++) {
        const d = out.subarray((b * C + c) * plane, (b * C + c + 1) * plane);
        for (let y = ey; y < ey + eh; y++) d.fill(0, y * W + ex, y * W + ex + ew);
      }
    }
  }
  return fromTypedArray(out, [B, C, H, W]);
}

export interface VitStepOptions {
  labelSmoothing: number;
  augment: AugmentOptions | null;
}

/** One training step's loss (label-smoothed cross-entropy on augmented images) and batch accuracy. */
export function vitStep(model: ViTForImageClassification, batch: Batch, augRng: Rng, opts: VitStepOptions): { loss: Tensor; metrics: { accuracy: number } } {
  const images = opts.augment ? augmentBatch(batch.images, augRng, opts.augment) : batch.images;
  const logits = model.forward(images).logits;
  const loss = crossEntropy(logits, batch.labels, { labelSmoothing: opts.labelSmoothing });
  const predicted = logits.detach().argmax(1).toArray() as number[];
  const truth = batch.labels.toArray() as number[];
  const correct = predicted.reduce((n, p, i) => n + (p === truth[i] ? 1 : 0), 0);
  return { loss, metrics: { accuracy: correct / truth.length } };
}

/**
 * AdamW parameter groups: weight decay on the matrices and conv kernels only, none on biases, norms, the
 * CLS token and position embeddings (decaying those only pulls them towards zero).
 */
export function weightDecayGroups(model: ViTForImageClassification, weightDecay: number): Array<{ params: Tensor[]; weightDecay: number }> {
  const decay: Tensor[] = [], noDecay: Tensor[] = [];
  for (const [name, p] of model.namedParameters()) {
    const exempt = p.ndim <= 1 || name.endsWith('cls_token') || name.endsWith('position_embeddings');
    (exempt ? noDecay : decay).push(p);
  }
  return [{ params: decay, weightDecay }, { params: noDecay, weightDecay: 0 }];
}

/** Run `fn` with the EMA weights in the model, then put the trained weights back. */
export async function withEmaWeights<T>(model: Module, ema: EMA | undefined, fn: () => Promise<T> | T): Promise<T> {
  if (!ema) return fn();
  const params = model.parameters().filter((p) => p.dtype === 'f32');
  const saved = params.map((p) => readF32(p).slice());
  ema.copyTo(model);
  try {
    return await fn();
  } finally {
    params.forEach((p, i) => (p.data as Float32Array).set(saved[i]));
  }
}

/** Accuracy over everything `next()` yields, in eval mode without gradients; also the per-class counts. */
export async function evaluateVit(model: ViTForImageClassification, next: () => Promise<Batch | null>): Promise<{ accuracy: number; correct: number; total: number }> {
  const wasTraining = model.training;
  model.eval();
  let correct = 0, total = 0;
  try {
    for (let batch = await next(); batch; batch = await next()) {
      const b = batch;
      const predicted = noGrad(() => model.forward(b.images).logits.argmax(1)).toArray() as number[];
      const truth = b.labels.toArray() as number[];
      predicted.forEach((p, i) => { if (p === truth[i]) correct++; });
      total += truth.length;
    }
  } finally {
    model.train(wasTraining);
  }
  return { accuracy: total > 0 ? correct / total : 0, correct, total };
}

/** How images are normalised before the model: pixel/255 then (x − mean)/std, as transformers' ViTImageProcessor. */
export interface Preprocessing {
  mean: number[];
  std: number[];
  size: number;
}

/** transformers' preprocessor_config.json for images that were trained in [-1, 1] (mean 0.5, std 0.5). */
export function preprocessorConfig(cfg: ViTConfig, pre: Preprocessing): Record<string, unknown> {
  return {
    image_processor_type: 'ViTImageProcessor', do_resize: true, size: { height: pre.size, width: pre.size }, resample: 2,
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: pre.mean, image_std: pre.std,
    do_convert_rgb: cfg.numChannels === 3,
  };
}

/** Save the model (EMA weights when given) as an f16 transformers-layout folder that `vss classify` loads. */
export async function exportVit(model: ViTForImageClassification, ema: EMA | undefined, folder: string, pre: Preprocessing): Promise<void> {
  await withEmaWeights(model, ema, () => {
    model.savePretrained(folder, { dtype: 'f16', extra: { 'preprocessor_config.json': preprocessorConfig(model.config, pre) } });
  });
}
