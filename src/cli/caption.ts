/**
 * The captioning commands:
 *   vss train captioner   train a ViT + GPT-2 captioner on Shapes or Fashion-MNIST with the shared loop, export it (f16)
 *   vss eval captioner    BLEU-4 and exact match of greedy and beam-search captions on a split (Shapes: held-out combinations)
 *   vss caption           captions of image files (the bundled models/captioner-shapes unless --model)
 *   vss explain caption   for each generated word, its cross-attention over the image, in one strip
 *
 * The model is src/models/captioner.ts (VisionEncoderDecoderModel, transformers layout), decoding is
 * src/models/generation.ts, the word tokenizer src/tokenizers/word.ts, the recipe src/train/captioner.ts.
 */
import { existsSync, statSync } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Command, Option } from 'commander';
import { Rng, type Tensor, backendName, noGrad } from '../engine/index.js';
import {
  COLOUR_NAMES, DataLoader, type AttributeCombo, type Batch, type Dataset, FashionMnist, POSITION_NAMES, SHAPE_NAMES, SIZE_NAMES,
  ShapesDataset, fashionMnistDescriptions, shapesCaptionVariants,
} from '../data/index.js';
import { AdamW, CosineSchedule, EMA } from '../optim/index.js';
import { VisionEncoderDecoderModel, type CaptionerConfig, captionerConfig } from '../models/captioner.js';
import { stemSide } from '../models/vit.js';
import { generateCaptions } from '../models/generation.js';
import { BOS_ID, EOS_ID, PAD_ID, WordTokenizer } from '../tokenizers/word.js';
import { normaliseCaption } from '../eval/bleu.js';
import {
  type CaptionEvalSet, type CaptionPreprocessing, type CaptionStyle, type DecodeSettings, type TrainingDataInfo, TRAINING_DATA_FILE,
  captionStep, captionerDecayGroups, evaluateCaptioner, exportCaptioner, stackImages,
} from '../train/captioner.js';
import { Trainer } from '../train/loop.js';
import { type Pixels, makeGrid, overlayHeatmap, saveImage } from '../image/index.js';
import { DatasetNotFoundError } from '../data/fashion_mnist.js';
import { UserError } from './errors.js';
import { intListOption, intOption, numberOption } from './options.js';
import { addTrainingLoopOptions, flagName, givenOnCommandLine, locateRun, mergeWithSaved, refuseExistingRun, runTraining, savedRunConfig } from './run_config.js';
import { packageRoot, preprocessImage } from './vit.js';
import { withEmaWeights } from '../train/vit.js';

/** The captioner that ships with VSS (trained by `vss train captioner`, see models/captioner-shapes). */
export function bundledCaptionerFolder(): string {
  return path.join(packageRoot(), 'models', 'captioner-shapes');
}

export const CAPTION_DATASETS = ['shapes', 'fashion-mnist'] as const;
export type CaptionDataset = (typeof CAPTION_DATASETS)[number];

/** Colour+shape pairs kept out of Shapes training, to measure whether captions compose (default). */
export const DEFAULT_HOLD_OUT = ['purple star', 'green circle', 'orange hexagon'];
/** Default Shapes encoder stem: 48 px → 24 → 12 → 6. */
const SHAPES_STEM = [32, 64, 128] as const;

// ------------------------------------------------------------------ hold-out combinations

/** "purple star" / "large red circle" / "blue square centre" → an attribute combination, or a UserError. */
export function parseHoldOut(item: string): AttributeCombo {
  let rest = ` ${item.trim().toLowerCase().replace(/\s+/g, ' ')} `;
  const combo: AttributeCombo = {};
  // Positions first: some are two words ("top left"), and "left" alone is one too.
  for (const p of [...POSITION_NAMES].sort((a, b) => b.length - a.length)) {
    if (rest.includes(` ${p} `)) { combo.position = p; rest = rest.replace(` ${p} `, ' '); break; }
  }
  for (const w of rest.trim().split(' ').filter(Boolean)) {
    if ((COLOUR_NAMES as readonly string[]).includes(w) && combo.colour === undefined) combo.colour = w as AttributeCombo['colour'];
    else if ((SHAPE_NAMES as readonly string[]).includes(w) && combo.shape === undefined) combo.shape = w as AttributeCombo['shape'];
    else if ((SIZE_NAMES as readonly string[]).includes(w) && combo.size === undefined) combo.size = w as AttributeCombo['size'];
    else {
      throw new UserError(`--hold-out: cannot read '${item}' ('${w}' is not a colour, shape, size or position, or is repeated)`,
        `write combinations like 'purple star,green circle,large red square' (colours: ${COLOUR_NAMES.join(', ')}; shapes: ${SHAPE_NAMES.join(', ')})`);
    }
  }
  if (Object.keys(combo).length === 0) throw new UserError('--hold-out: an empty combination would hold out everything', "use e.g. 'purple star'");
  return combo;
}

function holdOutList(value: string): string[] {
  const t = value.trim();
  if (t === '' || t === 'none') return [];
  const items = t.split(',').map((s) => s.trim()).filter(Boolean);
  items.forEach(parseHoldOut); // reject mistakes while parsing the command line
  return items;
}

// ------------------------------------------------------------------ vss train captioner

/** What a captioner run is, stored in its checkpoint so `--resume` needs only `--out`. */
export interface CaptionerRunConfig {
  model: 'captioner';
  dataset: CaptionDataset;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  imageSize: number;
  patch: number;
  /** Hybrid encoder: output channels of the stride-2 3×3 convs before the patch embedding ([]: plain ViT). */
  encStem: number[];
  /** Shapes: which caption of a scene training shows ('canonical': one fixed form; 'random': any true one). */
  captions: CaptionStyle;
  encDim: number;
  encDepth: number;
  encHeads: number;
  encMlp: number;
  decDim: number;
  decDepth: number;
  decHeads: number;
  maxLength: number;
  dropout: number;
  labelSmoothing: number;
  emaDecay: number;
  /** Shapes: colour/shape/size/position combinations never shown in training ("purple star"). */
  holdOut: string[];
  maxObjects: number;
  /** Shapes: distinct training scenes (more are free: they are drawn on demand). */
  trainSize: number;
  minCount: number;
  seed: number;
  data?: string;
  export: string;
  evalSamples: number;
  checkpointEvery: number;
  evalEvery: number;
  logEvery: number;
}

interface CaptionerFlags extends Omit<CaptionerRunConfig, 'model' | 'dataset' | 'export' | 'imageSize' | 'patch' | 'captions' | 'encStem'> {
  dataset: string;
  imageSize?: number;
  patch?: number;
  encStem?: number[];
  captions?: CaptionStyle;
  out?: string;
  resume?: boolean | string;
  export?: string;
  workers: number;
  progress?: boolean;
}

/** Settings the saved state depends on: a resumed run must not change them. */
const FIXED_ON_RESUME = ['dataset', 'batch', 'imageSize', 'patch', 'encStem', 'captions', 'encDim', 'encDepth', 'encHeads', 'encMlp', 'decDim', 'decDepth',
  'decHeads', 'maxLength', 'holdOut', 'maxObjects', 'trainSize', 'minCount', 'seed'] as const;

function resolveCaptionerConfig(flags: CaptionerFlags, cmd: Command): { config: CaptionerRunConfig; out: string; resumeFrom: string | null } {
  if (!(CAPTION_DATASETS as readonly string[]).includes(flags.dataset)) {
    throw new UserError(`vss train captioner cannot train on '${flags.dataset}'`, `use --dataset ${CAPTION_DATASETS.join(' or ')}`);
  }
  const dataset = flags.dataset as CaptionDataset;
  const { out, resumeFrom } = locateRun(flags, `runs/captioner-${dataset}`);
  const { out: _o, resume: _r, workers: _w, progress: _p, ...rest } = flags;
  // Shapes at 48 px (at 32 a small hexagon looks like a circle) through a conv stem down to a 6×6 grid of
  // 36 tokens: convolutions see shape outlines sooner than a transformer learns to from raw patches.
  const imageSize = flags.imageSize ?? (dataset === 'shapes' ? 48 : 28);
  const encStem = flags.encStem ?? (dataset === 'shapes' ? [...SHAPES_STEM] : []);
  const patch = flags.patch ?? (encStem.length ? 1 : dataset === 'shapes' && imageSize % 8 === 0 ? imageSize / 8 : 4);
  let config: CaptionerRunConfig = {
    ...rest, model: 'captioner', dataset, imageSize, patch, encStem, captions: flags.captions ?? 'canonical',
    export: flags.export ?? path.join(out, 'model'),
  };
  if (dataset !== 'shapes') {
    for (const option of ['holdOut', 'captions'] as const) {
      if (givenOnCommandLine(cmd)(option)) throw new UserError(`${flagName(option)} is for --dataset shapes`, 'leave it out for fashion-mnist');
    }
    config.holdOut = [];
  }
  if (resumeFrom) {
    const saved = savedRunConfig<CaptionerRunConfig>(resumeFrom, 'captioner', 'a captioner run');
    saved.captions ??= 'random'; // runs from before these options: random captions, plain ViT
    saved.encStem ??= [];
    config = mergeWithSaved(config, saved, { given: givenOnCommandLine(cmd), fixed: FIXED_ON_RESUME });
  }
  checkSizes(config);
  return { config, out, resumeFrom };
}

/** Impossible model and image sizes, as errors that say what would work. */
function checkSizes(c: CaptionerRunConfig): void {
  if (c.dataset === 'shapes' && c.imageSize < 24) throw new UserError(`--image-size ${c.imageSize} is too small for shapes`, 'use 24 or more (32 is the default)');
  if (c.dataset === 'fashion-mnist' && c.imageSize < 28) {
    throw new UserError(`--image-size ${c.imageSize} is smaller than Fashion-MNIST's 28×28 images`, 'use 28 (the default) or more: larger sizes pad with black');
  }
  const side = stemSide(c.imageSize, c.encStem.map(() => 2));
  if (side % c.patch) {
    const divisors = Array.from({ length: side }, (_, i) => i + 1).filter((d) => side % d === 0 && d < side && (d > 1 || c.encStem.length > 0));
    throw new UserError(`--patch ${c.patch} does not divide the ${side}-pixel ${c.encStem.length ? 'output of the conv stem' : 'images'}`,
      `${c.encStem.length ? `a stem of ${c.encStem.length} layers leaves ${side}×${side}: ` : ''}use a --patch that divides ${side}: ${divisors.join(', ')}`);
  }
  if (c.encDim % c.encHeads) throw new UserError(`--enc-dim ${c.encDim} is not divisible by --enc-heads ${c.encHeads}`);
  if (c.decDim % c.decHeads) throw new UserError(`--dec-dim ${c.decDim} is not divisible by --dec-heads ${c.decHeads}`);
  if (c.maxLength < 2) throw new UserError(`--max-length ${c.maxLength} leaves no room for a word and </s>`, 'use 32 or so');
}

/** The model a run config describes. */
export function captionerModelConfig(c: Pick<CaptionerRunConfig, 'dataset' | 'imageSize' | 'patch' | 'encStem' | 'encDim' | 'encDepth' | 'encHeads' | 'encMlp' |
  'decDim' | 'decDepth' | 'decHeads' | 'maxLength' | 'dropout'>, vocabSize: number): CaptionerConfig {
  // No encoder pooler: captions never read it (transformers loads such a file too, with a warning).
  return captionerConfig({
    encoder: {
      imageSize: c.imageSize, patchSize: c.patch, numChannels: c.dataset === 'shapes' ? 3 : 1, hiddenSize: c.encDim,
      numHiddenLayers: c.encDepth, numAttentionHeads: c.encHeads, intermediateSize: c.encMlp, hiddenAct: 'gelu',
      hiddenDropoutProb: c.dropout, attentionProbsDropoutProb: 0, layerNormEps: 1e-6, labels: ['LABEL_0'], convStem: c.encStem,
    },
    decoder: {
      vocabSize, nPositions: c.maxLength, nEmbd: c.decDim, nLayer: c.decDepth, nHead: c.decHeads, nInner: null,
      residPdrop: c.dropout, embdPdrop: c.dropout, attnPdrop: 0, addCrossAttention: true,
      bosTokenId: BOS_ID, eosTokenId: EOS_ID, padTokenId: PAD_ID,
    },
    decoderStartTokenId: BOS_ID, eosTokenId: EOS_ID, padTokenId: PAD_ID, encoderPoolerSize: null,
  });
}

/** Shapes splits of a run: the same seed, size and held-out combinations for train, test and heldout. */
function shapesSplit(info: TrainingDataInfo, split: 'train' | 'test' | 'heldout', length: number): ShapesDataset {
  const holdOut = (info.holdOut ?? []) as AttributeCombo[];
  if (split === 'heldout' && holdOut.length === 0) {
    throw new UserError('this captioner was trained without held-out combinations: there is no heldout split', 'use --split test');
  }
  try {
    return new ShapesDataset({
      seed: info.seed ?? 0, size: info.size ?? 32, split, holdOut, maxObjects: info.maxObjects ?? 3, length, captions: info.captions ?? 'random',
    });
  } catch (err) {
    throw new UserError(`cannot build the shapes ${split} split: ${(err as Error).message}`, 'hold out fewer combinations with --hold-out');
  }
}

function fashionSplit(info: TrainingDataInfo, split: 'train' | 'test', size: number, limit?: number): FashionMnist {
  try {
    return new FashionMnist({ split, dir: info.data, size, captions: 'describe', limit });
  } catch (err) {
    if (err instanceof DatasetNotFoundError) throw err; // says how to install it
    throw new UserError(`cannot open Fashion-MNIST: ${(err as Error).message}`, 'check --data and --image-size');
  }
}

/** The first `n` images of a split with all their valid captions. */
export async function captionEvalSet(info: TrainingDataInfo, split: string, n: number, imageSize: number): Promise<CaptionEvalSet> {
  if (info.dataset === 'shapes') {
    if (split !== 'test' && split !== 'heldout' && split !== 'train') throw new UserError(`unknown split '${split}' for shapes`, 'use --split heldout, test or train');
    const ds = shapesSplit(info, split, n);
    const samples = Array.from({ length: n }, (_, i) => ds.get(i));
    return {
      name: split, pixels: stackImages(samples.map((s) => s.image), samples[0].shape),
      captions: samples.map((s) => s.caption), references: samples.map((s) => shapesCaptionVariants(s.scene)),
    };
  }
  if (split === 'heldout') throw new UserError('Fashion-MNIST has no heldout split', 'use --split test');
  if (split !== 'test' && split !== 'train') throw new UserError(`unknown split '${split}' for fashion-mnist`, 'use --split test or train');
  const ds = fashionSplit(info, split, imageSize);
  const count = Math.min(n, ds.length);
  const samples = Array.from({ length: count }, (_, i) => ds.get(i));
  return {
    name: split, pixels: stackImages(samples.map((s) => s.image), samples[0].shape),
    captions: samples.map((s) => s.caption), references: samples.map((s) => [...fashionMnistDescriptions(s.label)]),
  };
}

/** Captions of the first `n` samples (Shapes: from the scenes, without drawing them). */
async function trainingCaptions(ds: Dataset, n: number): Promise<string[]> {
  const count = Math.min(n, ds.length);
  if (ds instanceof ShapesDataset) return Array.from({ length: count }, (_, i) => ds.scene(i).caption);
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push((await ds.get(i)).caption);
  return out;
}

function trainingDataInfo(c: CaptionerRunConfig): TrainingDataInfo {
  if (c.dataset === 'shapes') {
    return {
      dataset: 'shapes', size: c.imageSize, seed: c.seed, maxObjects: c.maxObjects, captions: c.captions,
      holdOut: c.holdOut.map((h) => ({ ...parseHoldOut(h) }) as Record<string, string>),
    };
  }
  return { dataset: 'fashion-mnist', ...(c.data !== undefined ? { data: path.resolve(c.data) } : {}) };
}

async function trainCaptioner(flags: CaptionerFlags, cmd: Command): Promise<void> {
  const { config, out, resumeFrom } = resolveCaptionerConfig(flags, cmd);
  const info = trainingDataInfo(config);
  const trainSet: Dataset = config.dataset === 'shapes' ? shapesSplit(info, 'train', config.trainSize) : fashionSplit(info, 'train', config.imageSize);
  if (trainSet instanceof ShapesDataset) {
    // Fail now, not after an hour, when the held-out combinations exclude whole cells.
    try { trainSet.scene(0); } catch (err) { throw new UserError((err as Error).message, 'hold out fewer combinations with --hold-out'); }
  }
  const resumeHint = `vss train captioner --out ${out} --resume`;
  refuseExistingRun(out, resumeFrom, resumeHint);

  // The vocabulary: the run's own copy when resuming (so a resumed run reads the same ids), else built from
  // the training captions.
  let tokenizer: WordTokenizer;
  if (resumeFrom && existsSync(path.join(out, 'vocab.json'))) {
    tokenizer = WordTokenizer.fromPretrained(out);
  } else {
    const captions = await trainingCaptions(trainSet, 20_000);
    tokenizer = WordTokenizer.fromCaptions(captions, { minCount: config.minCount });
    const longest = Math.max(...captions.map((c) => tokenizer.encode(c).length + 1));
    if (longest > config.maxLength) {
      console.error(`warning: the longest training caption has ${longest} tokens with </s>, more than --max-length ${config.maxLength}: long captions are cut`);
    }
    tokenizer.save(out);
  }

  const evalSets: CaptionEvalSet[] = [];
  if (config.evalSamples > 0) {
    evalSets.push(await captionEvalSet(info, 'test', config.evalSamples, config.imageSize));
    if (config.dataset === 'shapes' && config.holdOut.length > 0) evalSets.push(await captionEvalSet(info, 'heldout', config.evalSamples, config.imageSize));
  }

  const rng = new Rng(config.seed);
  let model: VisionEncoderDecoderModel;
  try {
    model = new VisionEncoderDecoderModel(captionerModelConfig(config, tokenizer.size), { rng });
  } catch (err) {
    throw new UserError(`cannot build the captioner: ${(err as Error).message}`, 'check the --enc-*, --dec-*, --patch and --image-size settings');
  }
  const optimizer = new AdamW(captionerDecayGroups(model, config.weightDecay), { lr: config.lr });
  const schedule = new CosineSchedule({ lr: config.lr, warmupSteps: Math.min(config.warmup, Math.floor(config.steps / 5)), totalSteps: config.steps, minLr: config.lr / 100 });
  const ema = new EMA(model, { decay: config.emaDecay, warmup: true });
  const loader = new DataLoader(trainSet, { batchSize: config.batch, shuffle: true, seed: config.seed, dropLast: true, epochs: Infinity, workers: flags.workers });
  const decode: DecodeSettings = { method: 'greedy', maxNewTokens: config.maxLength - 1 };

  if (!resumeFrom) {
    const tokens = (stemSide(config.imageSize, config.encStem.map(() => 2)) / config.patch) ** 2;
    const stem = config.encStem.length ? `conv stem [${config.encStem}], ` : '';
    console.error(`training a ${model.numParameters().toLocaleString('en')}-parameter captioner (ViT ${stem}patch ${config.patch}: ${tokens} image tokens, ` +
      `dim ${config.encDim}, depth ${config.encDepth}; GPT-2 dim ${config.decDim}, depth ${config.decDepth}, heads ${config.decHeads}; ` +
      `${tokenizer.size} words) on ${config.dataset}${config.dataset === 'shapes' ? ` ${config.imageSize}×${config.imageSize}` : ''}` +
      `${config.dataset === 'shapes' && config.holdOut.length ? ` holding out ${config.holdOut.join(', ')}` : ''} ` +
      `(batch ${config.batch}, ${config.steps} steps, ${backendName()} kernels) → ${out}`);
  }
  const trainer = new Trainer<Batch>({
    model, optimizer, loader, totalSteps: config.steps, lrSchedule: schedule, clipGradNorm: 1.0, ema,
    outDir: out, checkpointEvery: config.checkpointEvery, logEvery: config.logEvery, seed: config.seed,
    rng: { model: rng }, resume: resumeFrom ?? false, config, resumeHint,
    step: (batch) => captionStep(model, batch, tokenizer, { maxLength: config.maxLength, labelSmoothing: config.labelSmoothing }),
    evalEvery: config.evalEvery,
    evaluate: evalSets.length === 0 ? undefined : async () => {
      const values: Record<string, number> = {};
      await withEmaWeights(model, ema, () => {
        for (const set of evalSets) {
          const s = evaluateCaptioner(model, tokenizer, set, decode);
          values[`${set.name}_bleu4`] = s.bleu4;
          values[`${set.name}_exact`] = s.exact;
        }
      });
      return values;
    },
    progress: flags.progress === false ? false : undefined,
  });
  const result = await runTraining(trainer, loader);
  if (!result.completed) {
    process.exitCode = 130; // stopped by Ctrl-C: ends like an interrupted program, after saving
    return;
  }
  const channels = config.dataset === 'shapes' ? 3 : 1;
  const pre: CaptionPreprocessing = { mean: new Array(channels).fill(0.5), std: new Array(channels).fill(0.5), size: config.imageSize, channels };
  await exportCaptioner(model, ema, tokenizer, config.export, { pre, maxLength: config.maxLength, data: info });
  const rate = result.elapsed > 0 ? (result.step * config.batch) / result.elapsed : 0;
  if (result.lastEval) {
    const parts = evalSets.map((s) => `${s.name}: BLEU-4 ${(100 * result.lastEval![`${s.name}_bleu4`]).toFixed(1)}, ` +
      `exact ${(100 * result.lastEval![`${s.name}_exact`]).toFixed(1)}%`);
    console.log(`greedy captions with EMA weights (${config.evalSamples} images per split) — ${parts.join('; ')} — after ${result.step} steps ` +
      `in ${(result.elapsed / 60).toFixed(1)} min, ${rate.toFixed(0)} images/s`);
  }
  console.log(`exported ${config.export} (config.json, model.safetensors f16, vocab.json, preprocessor_config.json, generation_config.json): ` +
    `vss caption --model ${config.export} <images>`);
}

// ------------------------------------------------------------------ loading a captioner folder

export interface LoadedCaptioner {
  model: VisionEncoderDecoderModel;
  tokenizer: WordTokenizer;
  pre: CaptionPreprocessing;
  maxNewTokens: number;
  data: TrainingDataInfo | null;
  folder: string;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new UserError(`cannot read ${file}: ${(err as Error).message}`, 'the model folder is damaged: export it again');
  }
}

export function loadCaptioner(folder: string | undefined): LoadedCaptioner {
  const dir = folder ?? bundledCaptionerFolder();
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UserError(folder ? `no model folder at ${dir}` : `the bundled captioner is missing (${dir})`,
      folder ? 'pass a folder written by `vss train captioner` (config.json, model.safetensors, vocab.json)'
        : 'train one with `vss train captioner --export models/captioner-shapes`, or pass --model <folder>');
  }
  let tokenizer: WordTokenizer;
  try {
    tokenizer = WordTokenizer.fromPretrained(dir);
  } catch (err) {
    throw new UserError(`cannot load the vocabulary in ${dir}: ${(err as Error).message}`, 'a captioner folder holds vocab.json beside config.json');
  }
  let model: VisionEncoderDecoderModel;
  try {
    model = VisionEncoderDecoderModel.fromPretrained(dir);
  } catch (err) {
    throw new UserError(`cannot load the captioner in ${dir}: ${(err as Error).message}`,
      'the folder needs a vision-encoder-decoder config.json and model.safetensors, as `vss train captioner` exports');
  }
  const channels = model.config.encoder.numChannels;
  let pre: CaptionPreprocessing = { mean: new Array(channels).fill(0.5), std: new Array(channels).fill(0.5), size: model.config.encoder.imageSize, channels };
  const preFile = path.join(dir, 'preprocessor_config.json');
  if (existsSync(preFile)) {
    const raw = readJson(preFile) as { image_mean?: number[]; image_std?: number[]; size?: { height?: number } | number; do_normalize?: boolean };
    const s = typeof raw.size === 'number' ? raw.size : raw.size?.height ?? pre.size;
    pre = raw.do_normalize === false
      ? { mean: pre.mean.map(() => 0), std: pre.std.map(() => 1), size: s, channels }
      : { mean: raw.image_mean ?? pre.mean, std: raw.image_std ?? pre.std, size: s, channels };
  }
  let maxNewTokens = 31;
  const genFile = path.join(dir, 'generation_config.json');
  if (existsSync(genFile)) {
    const g = readJson(genFile);
    if (typeof g.max_new_tokens === 'number') maxNewTokens = g.max_new_tokens;
    else if (typeof g.max_length === 'number') maxNewTokens = g.max_length - 1;
  }
  const dataFile = path.join(dir, TRAINING_DATA_FILE);
  const data = existsSync(dataFile) ? readJson(dataFile) as unknown as TrainingDataInfo : null;
  return { model, tokenizer, pre, maxNewTokens, data, folder: dir };
}

/** --max-tokens within what the decoder's positions allow. */
function checkMaxTokens(c: LoadedCaptioner, maxTokens: number | undefined): number {
  const limit = c.model.config.decoder.nPositions - 1;
  if (maxTokens !== undefined && maxTokens > limit) {
    throw new UserError(`--max-tokens ${maxTokens} is more than this captioner can write (${limit}: n_positions ${limit + 1} minus the start token)`,
      `use --max-tokens ${limit} or less`);
  }
  return Math.min(maxTokens ?? c.maxNewTokens, limit);
}

async function loadImage(file: string, c: LoadedCaptioner): Promise<{ input: Tensor; picture: Pixels }> {
  return preprocessImage(file, c.pre.channels, { mean: c.pre.mean, std: c.pre.std, size: c.pre.size });
}

// ------------------------------------------------------------------ vss caption

export interface CaptionFlags {
  model?: string;
  beams: number;
  sample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed: number;
  maxTokens?: number;
  json?: boolean;
}

/** Greedy unless --beams > 1 (beam search) or a sampling option is given (sampling). */
export function decodeSettings(flags: Omit<CaptionFlags, 'model' | 'json'>, maxNewTokens: number): DecodeSettings {
  const sampling = flags.sample || flags.temperature !== undefined || flags.topK !== undefined || flags.topP !== undefined;
  if (sampling && flags.beams > 1) {
    throw new UserError('--beams cannot be combined with sampling (--sample, --temperature, --top-k, --top-p)', 'choose beam search or sampling');
  }
  const max = flags.maxTokens ?? maxNewTokens;
  if (sampling) {
    return { method: 'sample', maxNewTokens: max, temperature: flags.temperature ?? 1, topK: flags.topK, topP: flags.topP, rng: new Rng(flags.seed) };
  }
  if (flags.beams > 1) return { method: 'beam', numBeams: flags.beams, maxNewTokens: max, earlyStopping: true, lengthPenalty: 1 };
  return { method: 'greedy', maxNewTokens: max };
}

export async function captionFiles(files: string[], flags: CaptionFlags): Promise<{ file: string; caption: string }[]> {
  const c = loadCaptioner(flags.model);
  const settings = decodeSettings({ ...flags, maxTokens: checkMaxTokens(c, flags.maxTokens) }, c.maxNewTokens);
  const out: { file: string; caption: string }[] = [];
  for (const file of files) {
    const { input } = await loadImage(file, c);
    c.model.eval();
    const r = noGrad(() => generateCaptions(c.model, input, { ...settings, useCache: true }));
    out.push({ file, caption: c.tokenizer.decode(r.ids[0]) });
  }
  return out;
}

// ------------------------------------------------------------------ vss explain caption

/** A cross-attention map [gh, gw] (or [L, gh, gw]: averaged over layers) as weights over the patches, summing to 1. */
export function patchWeights(map: Tensor): { weights: Float32Array; grid: [number, number] } {
  const [gh, gw] = map.shape.slice(-2) as [number, number];
  const v = map.to('f32').contiguous().toFloat32Array();
  const plane = gh * gw, maps = v.length / plane;
  const weights = new Float32Array(plane);
  for (let m = 0; m < maps; m++) for (let j = 0; j < plane; j++) weights[j] += v[m * plane + j];
  let s = 0;
  for (const x of weights) s += x;
  if (s > 0) for (let j = 0; j < plane; j++) weights[j] /= s;
  return { weights, grid: [gh, gw] };
}

export interface ExplainCaptionResult {
  caption: string;
  words: string[];
  width: number;
  height: number;
  grid: [number, number];
}

/** The greedy caption of an image and, per word, where the decoder looked: one PNG strip. */
export async function explainCaption(file: string, outFile: string, opts: { model?: string; maxTokens?: number }): Promise<ExplainCaptionResult> {
  const c = loadCaptioner(opts.model);
  const { input, picture } = await loadImage(file, c);
  c.model.eval();
  const r = noGrad(() => generateCaptions(c.model, input, { method: 'greedy', maxNewTokens: checkMaxTokens(c, opts.maxTokens), useCache: true, outputCrossAttentions: true }));
  // ids[0] is the start token; maps[k] is where the decoder looked while producing ids[k + 1].
  const ids = r.ids[0];
  const maps = r.crossAttentions?.[0] ?? [];
  let grid: [number, number] = [0, 0];
  const cells: Pixels[] = [picture];
  const labels: string[] = ['input'];
  for (let k = 0; k < maps.length && k + 1 < ids.length; k++) {
    const id = ids[k + 1];
    if (id === c.tokenizer.padTokenId) break;
    const word = id === c.tokenizer.eosTokenId ? '</s>' : c.tokenizer.decodeWords([id], { skipSpecialTokens: false, stopAtEos: false })[0];
    const { weights, grid: g } = patchWeights(maps[k]);
    grid = g;
    cells.push(overlayHeatmap(picture, weights, g[1], g[0], { alpha: 0.6, smooth: true }));
    labels.push(word);
    if (id === c.tokenizer.eosTokenId) break;
  }
  const caption = c.tokenizer.decode(ids);
  const strip = makeGrid(cells, { columns: cells.length, captions: labels, title: caption || '(empty caption)', minCellSize: 96, captionLines: 1 });
  try {
    await saveImage(outFile, strip);
  } catch (err) {
    throw new UserError((err as Error).message, 'check the --out path (.png, .jpg or .webp)');
  }
  return { caption, words: labels.slice(1), width: strip.width, height: strip.height, grid };
}

// ------------------------------------------------------------------ vss eval captioner

export interface EvalCaptionerFlags {
  model?: string;
  split?: string;
  samples: number;
  beams: number;
  examples: number;
  batch: number;
  json?: boolean;
}

export interface EvalCaptionerResult {
  model: string;
  dataset: string;
  split: string;
  samples: number;
  greedy: { bleu4: number; exact: number; bleu4_single: number };
  beam: { beams: number; bleu4: number; exact: number; bleu4_single: number };
  examples: { reference: string; greedy: string; beam: string; greedy_ok: boolean; beam_ok: boolean }[];
  /** Shapes held-out split: the combinations held out of training. */
  held_out?: string[];
  seconds: number;
}

export async function evalCaptioner(flags: EvalCaptionerFlags): Promise<EvalCaptionerResult> {
  const c = loadCaptioner(flags.model);
  if (!c.data) {
    throw new UserError(`${c.folder} has no ${TRAINING_DATA_FILE}: which data it was trained on is unknown`,
      'evaluate a folder exported by `vss train captioner` (it writes that file)');
  }
  const split = flags.split ?? (c.data.dataset === 'shapes' && (c.data.holdOut?.length ?? 0) > 0 ? 'heldout' : 'test');
  const set = await captionEvalSet(c.data, split, flags.samples, c.pre.size);
  const t0 = performance.now();
  const greedy = evaluateCaptioner(c.model, c.tokenizer, set, { method: 'greedy', maxNewTokens: c.maxNewTokens, batchSize: flags.batch });
  const beam = evaluateCaptioner(c.model, c.tokenizer, set, {
    method: 'beam', numBeams: flags.beams, maxNewTokens: c.maxNewTokens, earlyStopping: true, lengthPenalty: 1, batchSize: flags.batch,
  });
  const seconds = (performance.now() - t0) / 1000;
  const ok = (h: string, i: number) => set.references[i].some((r) => normaliseCaption(r) === normaliseCaption(h));
  const result: EvalCaptionerResult = {
    model: c.folder, dataset: c.data.dataset, split, samples: set.captions.length,
    greedy: { bleu4: greedy.bleu4, exact: greedy.exact, bleu4_single: greedy.bleu4Single },
    beam: { beams: flags.beams, bleu4: beam.bleu4, exact: beam.exact, bleu4_single: beam.bleu4Single },
    examples: Array.from({ length: Math.min(flags.examples, set.captions.length) }, (_, i) => ({
      reference: set.captions[i], greedy: greedy.hypotheses[i], beam: beam.hypotheses[i], greedy_ok: ok(greedy.hypotheses[i], i), beam_ok: ok(beam.hypotheses[i], i),
    })),
    seconds: Number(seconds.toFixed(2)),
  };
  if (c.data.dataset === 'shapes' && split === 'heldout') {
    result.held_out = (c.data.holdOut ?? []).map((h) => [h.size, h.colour, h.shape, h.position].filter(Boolean).join(' '));
  }
  return result;
}

function printEval(r: EvalCaptionerResult): void {
  const pct = (x: number) => `${(100 * x).toFixed(1)}`;
  console.log(`${r.model} on ${r.dataset} ${r.split} (${r.samples} images${r.held_out ? `; held out of training: ${r.held_out.join(', ')}` : ''}):`);
  console.log(`  decoding        BLEU-4  exact%  BLEU-4 (1 ref)`);
  console.log(`  greedy          ${pct(r.greedy.bleu4).padStart(6)}  ${pct(r.greedy.exact).padStart(6)}  ${pct(r.greedy.bleu4_single).padStart(14)}`);
  console.log(`  beam ${String(r.beam.beams).padEnd(10)} ${pct(r.beam.bleu4).padStart(6)}  ${pct(r.beam.exact).padStart(6)}  ${pct(r.beam.bleu4_single).padStart(14)}`);
  console.log('  (BLEU-4 and exact match count any caption the dataset could have given the image; "1 ref": only the one it drew)');
  for (const e of r.examples) {
    console.log(`  reference: ${e.reference}`);
    console.log(`     greedy: ${e.greedy}${e.greedy_ok ? '' : '   ✗'}`);
    console.log(`       beam: ${e.beam}${e.beam_ok ? '' : '   ✗'}`);
  }
  console.log(`(${r.seconds} s)`);
}

// ------------------------------------------------------------------ registration

function subgroup(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

export function registerCaptionCommands(program: Command): void {
  const trainCmd = subgroup(program, 'train', 'train a model with the shared training loop (progress, metrics, checkpoints, --resume)')
    .command('captioner')
    .description('an image captioner (ViT encoder + GPT-2 decoder with cross-attention) on Shapes or Fashion-MNIST, exported as f16')
    .addOption(new Option('--dataset <name>', 'what to train on').choices([...CAPTION_DATASETS]).default('shapes'))
    .option('--steps <n>', 'optimiser steps', intOption('--steps', 1), 4000)
    .option('--batch <n>', 'images per step', intOption('--batch', 1), 64)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine decay to lr/100)', numberOption('--lr', 1e-7, 1), 1e-3)
    .option('--warmup <n>', 'warm-up steps (at most a fifth of the run)', intOption('--warmup', 0), 200)
    .option('--weight-decay <x>', 'AdamW weight decay (not on biases, norms, positions)', numberOption('--weight-decay', 0, 1), 0.05)
    .option('--image-size <n>', 'image side in pixels (default shapes 48, fashion-mnist 28)', intOption('--image-size', 1, 512))
    .option('--patch <n>', 'patch size over the stem\'s output (default 1 with a stem; plain ViT: shapes an 8×8 grid, fashion-mnist 4: 49 tokens)', intOption('--patch', 1))
    .option('--enc-stem <channels>', `hybrid encoder: channels of stride-2 3×3 convs before the patches ('none': plain ViT; default shapes ${SHAPES_STEM.join(',')}, fashion-mnist none)`,
      intListOption('--enc-stem', 1, { allowNone: true }))
    .addOption(new Option('--captions <style>', 'shapes: train on one fixed caption per scene (reading order, sizes stated) or on any true one, drawn at random; ' +
      'evaluation accepts every true caption either way').choices(['canonical', 'random']).default('canonical'))
    .option('--enc-dim <n>', 'ViT encoder hidden size', intOption('--enc-dim', 4), 128)
    .option('--enc-depth <n>', 'ViT encoder blocks', intOption('--enc-depth', 1), 4)
    .option('--enc-heads <n>', 'ViT encoder attention heads', intOption('--enc-heads', 1), 4)
    .option('--enc-mlp <n>', 'ViT encoder MLP hidden size', intOption('--enc-mlp', 1), 256)
    .option('--dec-dim <n>', 'GPT-2 decoder hidden size (n_embd)', intOption('--dec-dim', 4), 128)
    .option('--dec-depth <n>', 'GPT-2 decoder blocks (each with cross-attention)', intOption('--dec-depth', 1), 3)
    .option('--dec-heads <n>', 'GPT-2 decoder attention heads', intOption('--dec-heads', 1), 4)
    .option('--max-length <n>', 'decoder positions: most tokens per caption, </s> included', intOption('--max-length', 2, 1024), 32)
    .option('--dropout <p>', 'dropout in encoder and decoder', numberOption('--dropout', 0, 1, '[)'), 0)
    .option('--label-smoothing <x>', 'label smoothing of the next-word cross-entropy', numberOption('--label-smoothing', 0, 1, '[)'), 0.1)
    .option('--ema-decay <x>', 'decay of the weight EMA used for evaluation and export', numberOption('--ema-decay', 0, 1, '[)'), 0.999)
    .addOption(new Option('--hold-out <list>', "shapes: comma-separated combinations never shown in training ('none': hold out nothing)")
      .argParser(holdOutList).default(DEFAULT_HOLD_OUT, `'${DEFAULT_HOLD_OUT.join(',')}'`))
    .option('--max-objects <n>', 'shapes: most objects per scene', intOption('--max-objects', 1, 3), 3)
    .option('--train-size <n>', 'shapes: distinct training scenes', intOption('--train-size', 1), 200_000)
    .option('--min-count <n>', 'words seen fewer times in the training captions become <unk>', intOption('--min-count', 1), 1)
    .option('--seed <n>', 'seed of the weights, the data and the data order', intOption('--seed', 0), 0)
    .option('-o, --out <dir>', 'run folder: checkpoint, metrics.jsonl, loss.png, vocab.json (default runs/captioner-<dataset>)')
    .option('--export <dir>', 'where the final model goes (default <out>/model)')
    .option('--resume [checkpoint]', 'continue the run in --out (or from the given checkpoint) exactly where it stopped')
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--eval-every <n>', 'greedy BLEU-4 / exact match on test (and held-out) images every n steps (0: only at the end)', intOption('--eval-every', 0), 500)
    .option('--eval-samples <n>', 'images per evaluation split (0: no evaluation)', intOption('--eval-samples', 0), 100);
  addTrainingLoopOptions(trainCmd, { checkpointEvery: 500, logEvery: 20 })
    .addHelpText('after', '\nExamples:\n  vss train captioner --out runs/captioner                       # Shapes, holding out purple stars, green circles, orange hexagons\n' +
      '  vss train captioner --out runs/captioner --resume              # after Ctrl-C\n' +
      '  vss train captioner --dataset fashion-mnist --out runs/cap-fm  # per-class descriptions of clothes')
    .action((flags: CaptionerFlags, cmd: Command) => trainCaptioner(flags, cmd));

  const addDecodeOptions = (cmd: Command) => cmd
    .option('--beams <k>', 'beam search with k beams (1: greedy)', intOption('--beams', 1, 64), 1)
    .option('--sample', 'sample the words instead (temperature 1 unless given)')
    .option('--temperature <t>', 'sampling temperature (implies --sample)', numberOption('--temperature', 0, 100, '(]'))
    .option('--top-k <k>', 'sample among the k likeliest words (implies --sample)', intOption('--top-k', 1))
    .option('--top-p <p>', 'nucleus sampling: the likeliest words up to probability p (implies --sample)', numberOption('--top-p', 0, 1, '(]'))
    .option('--seed <n>', 'seed of the sampling', intOption('--seed', 0), 0)
    .option('--max-tokens <n>', 'most tokens per caption (default from generation_config.json)', intOption('--max-tokens', 1, 1024));

  addDecodeOptions(program
    .command('caption')
    .description('caption images with a ViT + GPT-2 captioner')
    .argument('<images...>', 'image files (PNG, JPEG, WebP); letterboxed with black and resized to the model\'s size')
    .option('--model <folder>', 'a captioner folder (config.json, model.safetensors, vocab.json); default the bundled Shapes captioner'))
    .option('--json', 'one JSON line per image: {"file", "caption"}')
    .action(async (images: string[], flags: CaptionFlags) => {
      for (const r of await captionFiles(images, flags)) {
        if (flags.json) console.log(JSON.stringify(r));
        else console.log(`${r.file}: ${r.caption}`);
      }
    });

  subgroup(program, 'explain', 'pictures of what a model looks at')
    .command('caption')
    .description('the greedy caption of an image, and for each word the cross-attention over the image (one strip)')
    .argument('<image>', 'the image to caption')
    .option('--model <folder>', 'a captioner folder; default the bundled Shapes captioner')
    .option('-o, --out <png>', 'where to write the picture', 'explain-caption.png')
    .option('--max-tokens <n>', 'most tokens in the caption', intOption('--max-tokens', 1, 1024))
    .action(async (image: string, opts: { model?: string; out: string; maxTokens?: number }) => {
      const r = await explainCaption(image, opts.out, opts);
      console.log(`wrote ${opts.out} (${r.width}x${r.height}: ${r.words.length} words over a ${r.grid[0]}x${r.grid[1]} patch grid): ${r.caption}`);
    });

  subgroup(program, 'eval', 'measure models')
    .command('captioner')
    .description('BLEU-4 and exact match of greedy and beam-search captions on a split of the training data (Shapes: held-out combinations)')
    .option('--model <folder>', 'a captioner folder exported by vss train captioner; default the bundled one')
    .option('--split <name>', 'heldout (shapes: scenes with a held-out combination; the default when there is one), test, or train')
    .option('--samples <n>', 'images to caption', intOption('--samples', 1), 200)
    .option('--beams <k>', 'beams of the beam search', intOption('--beams', 2, 64), 4)
    .option('--examples <n>', 'examples to print', intOption('--examples', 0), 5)
    .option('--batch <n>', 'images decoded at once', intOption('--batch', 1), 50)
    .option('--json', 'one JSON object with the scores and the examples')
    .action(async (flags: EvalCaptionerFlags) => {
      const r = await evalCaptioner(flags);
      if (flags.json) console.log(JSON.stringify(r));
      else printEval(r);
    });
}

