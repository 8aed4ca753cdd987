/**
 * Training an image captioner (ViT encoder + GPT-2 decoder, src/models/captioner.ts) with the shared loop
 * (src/train/loop.ts): the recipe, not the plumbing.
 *
 *   - teacher forcing: decoder inputs `<s> w1 … wn`, labels `w1 … wn </s>`, padding ignored by the loss,
 *     cross-entropy with label smoothing; no image augmentation (flips and shifts would falsify
 *     "left of" and "in the top right");
 *   - AdamW without weight decay on biases, norms, embeddings of positions and the CLS token;
 *   - an EMA of the weights, used for evaluation and for the exported model;
 *   - evaluation: captions decoded (greedy or beam) for a fixed set of images, scored with corpus BLEU-4
 *     and exact match against every caption the dataset could have given the image (src/data/shapes_captions.ts,
 *     src/data/fashion_captions.ts); BLEU-4 against the one sampled caption is reported too;
 *   - export: the model folder (config.json, model.safetensors f16) plus vocab.json, tokenizer_config.json,
 *     preprocessor_config.json, generation_config.json and training_data.json (how to rebuild the splits).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Tensor, fromTypedArray, noGrad } from '../engine/index.js';
import type { Batch } from '../data/loader.js';
import type { Module } from '../nn/module.js';
import type { EMA } from '../optim/ema.js';
import { withEmaWeights } from './vit.js';
import type { VisionEncoderDecoderModel } from '../models/captioner.js';
import { type GenerateOptions, generateCaptions } from '../models/generation.js';
import type { WordTokenizer } from '../tokenizers/word.js';
import { corpusBleu, exactMatchRate } from '../eval/bleu.js';

export const IGNORE_INDEX = -100;

export interface CaptionStepOptions {
  /** Most decoder positions (`</s>` included); longer captions are cut. */
  maxLength: number;
  labelSmoothing: number;
}

/** One training step's loss: label-smoothed cross-entropy of the next word, padding ignored. */
export function captionStep(model: VisionEncoderDecoderModel, batch: Batch, tokenizer: WordTokenizer, opts: CaptionStepOptions): { loss: Tensor; metrics: { words: number } } {
  const tf = tokenizer.teacherForcing(batch.captions, { maxLength: opts.maxLength, ignoreIndex: IGNORE_INDEX });
  const loss = model.loss(batch.images, tf.inputIds, tf.labels, { ignoreIndex: IGNORE_INDEX, labelSmoothing: opts.labelSmoothing });
  const words = tf.lengths.reduce((s, n) => s + n, 0) / tf.lengths.length;
  return { loss, metrics: { words } };
}

/**
 * AdamW parameter groups: weight decay on matrices only; none on biases, norms, embeddings of positions
 * and the CLS token (decaying those only pulls them towards zero). Token embeddings are matrices and decay.
 */
export function captionerDecayGroups(model: Module, weightDecay: number): Array<{ params: Tensor[]; weightDecay: number }> {
  const decay: Tensor[] = [], noDecay: Tensor[] = [];
  for (const [name, p] of model.namedParameters()) {
    const exempt = p.ndim <= 1 || name.endsWith('cls_token') || name.endsWith('position_embeddings') || name.endsWith('.wpe.weight');
    (exempt ? noDecay : decay).push(p);
  }
  return [{ params: decay, weightDecay }, { params: noDecay, weightDecay: 0 }];
}


/** Images with every caption they could have had: an evaluation set. */
export interface CaptionEvalSet {
  name: string;
  /** [N, C, H, W], normalised as in training. */
  pixels: Tensor;
  /** Per image, the caption the dataset gave it. */
  captions: string[];
  /** Per image, every valid caption (the first is `captions[i]`). */
  references: string[][];
}

/** Stack images of shape [C, H, W] into one tensor. */
export function stackImages(images: readonly Float32Array[], shape: readonly [number, number, number]): Tensor {
  const per = shape[0] * shape[1] * shape[2];
  const data = new Float32Array(images.length * per);
  images.forEach((img, i) => data.set(img, i * per));
  return fromTypedArray(data, [images.length, ...shape]);
}

export interface DecodeSettings extends Pick<GenerateOptions, 'method' | 'numBeams' | 'lengthPenalty' | 'earlyStopping' | 'temperature' | 'topK' | 'topP' | 'rng'> {
  maxNewTokens: number;
  /** Images decoded at once (default 32). */
  batchSize?: number;
}

/** Captions of images [N, C, H, W], in eval mode without gradients, decoded in batches. */
export function captionPixels(model: VisionEncoderDecoderModel, tokenizer: WordTokenizer, pixels: Tensor, settings: DecodeSettings): string[] {
  const wasTraining = model.training;
  model.eval();
  const N = pixels.shape[0], B = settings.batchSize ?? 32;
  const { batchSize: _b, ...opts } = settings;
  const out: string[] = [];
  try {
    for (let start = 0; start < N; start += B) {
      const chunk = pixels.narrow(0, start, Math.min(B, N - start));
      const r = noGrad(() => generateCaptions(model, chunk, { ...opts, useCache: true }));
      for (const ids of r.ids) out.push(tokenizer.decode(ids));
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
}

export interface CaptionScores {
  /** Corpus BLEU-4 against every valid caption of each image. */
  bleu4: number;
  /** Fraction of captions equal to one of the image's valid captions. */
  exact: number;
  /** Corpus BLEU-4 against the single caption the dataset drew (the usual, stricter number). */
  bleu4Single: number;
}

export function scoreCaptions(hypotheses: readonly string[], set: Pick<CaptionEvalSet, 'captions' | 'references'>): CaptionScores {
  return {
    bleu4: corpusBleu(hypotheses, set.references).bleu,
    exact: exactMatchRate(hypotheses, set.references),
    bleu4Single: corpusBleu(hypotheses, set.captions).bleu,
  };
}

/** Decode an evaluation set and score it. */
export function evaluateCaptioner(model: VisionEncoderDecoderModel, tokenizer: WordTokenizer, set: CaptionEvalSet, settings: DecodeSettings): CaptionScores & { hypotheses: string[] } {
  const hypotheses = captionPixels(model, tokenizer, set.pixels, settings);
  return { ...scoreCaptions(hypotheses, set), hypotheses };
}

// ------------------------------------------------------------------ export

/** How images are normalised before the model: pixel/255 then (x − mean)/std, at size × size. */
export interface CaptionPreprocessing {
  mean: number[];
  std: number[];
  size: number;
  channels: number;
}

/** Which caption of a Shapes scene training shows (see ShapesOptions.captions). */
export type CaptionStyle = 'random' | 'canonical';

/** What `vss eval captioner` needs to rebuild the evaluation splits of the training data. */
export interface TrainingDataInfo {
  dataset: 'shapes' | 'fashion-mnist';
  /** Shapes: image side, seed, held-out combinations, most objects per scene. */
  size?: number;
  seed?: number;
  holdOut?: Record<string, string>[];
  maxObjects?: number;
  /** Shapes: the caption style trained on (absent: 'random', as before the option existed). */
  captions?: CaptionStyle;
  /** Fashion-MNIST: folder of the files when not the system one. */
  data?: string;
}

export const TRAINING_DATA_FILE = 'training_data.json';

export function preprocessorConfigJson(pre: CaptionPreprocessing): Record<string, unknown> {
  return {
    image_processor_type: 'ViTImageProcessor', do_resize: true, size: { height: pre.size, width: pre.size }, resample: 2,
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: pre.mean, image_std: pre.std,
    do_convert_rgb: pre.channels === 3,
  };
}

export function generationConfigJson(tokenizer: WordTokenizer, maxLength: number, numBeams = 1): Record<string, unknown> {
  return {
    decoder_start_token_id: tokenizer.bosTokenId, bos_token_id: tokenizer.bosTokenId, eos_token_id: tokenizer.eosTokenId,
    pad_token_id: tokenizer.padTokenId, max_length: maxLength, max_new_tokens: maxLength - 1, num_beams: numBeams,
    early_stopping: true, length_penalty: 1.0,
  };
}

/** Save the model (EMA weights when given, f16) with its tokenizer and the files that describe its use. */
export async function exportCaptioner(model: VisionEncoderDecoderModel, ema: EMA | undefined, tokenizer: WordTokenizer, folder: string,
  info: { pre: CaptionPreprocessing; maxLength: number; data: TrainingDataInfo }): Promise<void> {
  await withEmaWeights(model, ema, () => model.savePretrained(folder, { dtype: 'f16' }));
  tokenizer.save(folder);
  const write = (file: string, value: unknown) => fs.writeFileSync(path.join(folder, file), `${JSON.stringify(value, null, 2)}\n`);
  write('preprocessor_config.json', preprocessorConfigJson(info.pre));
  write('generation_config.json', generationConfigJson(tokenizer, info.maxLength));
  write(TRAINING_DATA_FILE, info.data);
}
