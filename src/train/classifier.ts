/**
 * A small convolutional image classifier: three conv → GroupNorm → SiLU blocks with 2× max-pooling
 * between them, then one linear layer over the flattened feature map (it keeps where features are,
 * which global average pooling would throw away: a coat and a shirt differ mostly in layout). It exists to exercise the data, training
 * and checkpoint plumbing on a task whose success is easy to read (test accuracy).
 */
import { type Tensor, type Rng, crossEntropy, maxPool2d, noGrad } from '../engine/index.js';
import { Conv2d, GroupNorm, Linear, Module } from '../nn/index.js';
import type { Batch, DataLoader } from '../data/loader.js';
import { type Pixels, floatToPixels, makeGrid, saveImage } from '../image/index.js';

class ConvBlock extends Module {
  conv: Conv2d;
  norm: GroupNorm;

  constructor(inChannels: number, outChannels: number, rng: Rng) {
    super();
    this.conv = new Conv2d(inChannels, outChannels, 3, { padding: 1, rng });
    // Groups of 4 channels (at least one group): normalisation that does not depend on the batch.
    this.norm = new GroupNorm(Math.max(1, outChannels / 4), outChannels);
  }

  forward(x: Tensor): Tensor {
    return this.norm.forward(this.conv.forward(x)).silu();
  }
}

export interface ConvClassifierConfig {
  inChannels: number;
  /** Side of the (square) input images; a multiple of 4 (28 and 32 are). */
  imageSize: number;
  numClasses: number;
  /** Channels of the first block; the next two have 2× and 4× as many (default 16). */
  width?: number;
}

export class ConvClassifier extends Module {
  block1: ConvBlock;
  block2: ConvBlock;
  block3: ConvBlock;
  head: Linear;

  constructor(readonly config: ConvClassifierConfig, rng: Rng) {
    super();
    const w = config.width ?? 16;
    if (!Number.isInteger(w) || w < 4 || w % 4 !== 0) throw new Error(`ConvClassifier: width must be a multiple of 4, got ${w}`);
    if (config.imageSize % 4 !== 0) throw new Error(`ConvClassifier: image size must be a multiple of 4, got ${config.imageSize}`);
    const side = config.imageSize / 4;
    this.block1 = new ConvBlock(config.inChannels, w, rng);
    this.block2 = new ConvBlock(w, 2 * w, rng);
    this.block3 = new ConvBlock(2 * w, 4 * w, rng);
    this.head = new Linear(4 * w * side * side, config.numClasses, { rng });
  }

  /** [B, C, H, W] images → [B, classes] logits. */
  forward(x: Tensor): Tensor {
    let h = maxPool2d(this.block1.forward(x), 2);
    h = maxPool2d(this.block2.forward(h), 2);
    h = this.block3.forward(h);
    return this.head.forward(h.flatten(1));
  }
}

/** Cross-entropy loss and batch accuracy of one training batch. */
export function classifierStep(model: ConvClassifier, batch: Batch): { loss: Tensor; metrics: { accuracy: number } } {
  const logits = model.forward(batch.images);
  const loss = crossEntropy(logits, batch.labels);
  return { loss, metrics: { accuracy: accuracyOf(logits, batch.labels) } };
}

function accuracyOf(logits: Tensor, labels: Tensor): number {
  const predicted = logits.detach().argmax(1).toArray() as number[];
  const truth = labels.toArray() as number[];
  return predicted.reduce((n, p, i) => n + (p === truth[i] ? 1 : 0), 0) / truth.length;
}

/** Accuracy over everything a (non-shuffled, one-epoch) loader yields, in eval mode and without gradients. */
export async function evaluateAccuracy(model: ConvClassifier, loader: DataLoader): Promise<{ accuracy: number; correct: number; total: number }> {
  model.eval();
  let correct = 0, total = 0;
  for (let batch = await loader.next(); batch; batch = await loader.next()) {
    const b = batch;
    const predicted = noGrad(() => model.forward(b.images).argmax(1)).toArray() as number[];
    const truth = b.labels.toArray() as number[];
    predicted.forEach((p, i) => { if (p === truth[i]) correct++; });
    total += truth.length;
  }
  model.train();
  return { accuracy: total > 0 ? correct / total : 0, correct, total };
}

/** A grid of images captioned with the predicted class, and the true one in brackets when wrong. */
export async function savePredictionGrid(file: string, model: ConvClassifier, batch: Batch, classNames: readonly string[], title: string): Promise<void> {
  model.eval();
  const predicted = noGrad(() => model.forward(batch.images).argmax(1)).toArray() as number[];
  model.train();
  const truth = batch.labels.toArray() as number[];
  const [n, c, h, w] = batch.images.shape;
  const all = batch.images.contiguous().toFloat32Array();
  const images: Pixels[] = [];
  for (let i = 0; i < n; i++) images.push(floatToPixels(all.subarray(i * c * h * w, (i + 1) * c * h * w), c, h, w, 'signed'));
  const captions = predicted.map((p, i) => (p === truth[i] ? classNames[p] : `${classNames[p]} (${classNames[truth[i]]})`));
  await saveImage(file, makeGrid(images, { columns: Math.min(8, n), captions, title }));
}
