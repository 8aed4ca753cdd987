/** `vss data preview` (a labelled grid of samples) and `vss data stats` (what a dataset holds). */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { Rng } from '../engine/rng.js';
import {
  type Dataset, DATASET_NAMES, FASHION_MNIST_CLASSES, FashionMnist, ImageFolder, SHAPE_NAMES, ShapesDataset,
  datasetFromName,
} from '../data/index.js';
import { floatToPixels, makeGrid, saveImage } from '../image/index.js';
import { UserError } from './errors.js';
import { intOption } from './options.js';

const FASHION_ALIASES = ['fashion-mnist', 'fashion_mnist', 'fmnist'];

export interface OpenDatasetOptions {
  split?: string;
  /** Folder of the Fashion-MNIST files (--data). */
  data?: string;
  size?: number;
  seed?: number;
  /** Number of samples of a procedural dataset (shapes). */
  length?: number;
  /** Shapes: most objects per scene (1..3). */
  maxObjects?: number;
}

/** The datasets a user can name, for messages. */
export const DATASET_CHOICES = `${DATASET_NAMES.join(', ')}, or the path of a folder of images`;

/**
 * Open a dataset by name or folder path, turning the usual mistakes (unknown name, missing folder,
 * wrong split, empty folder) into one-line errors with a hint.
 */
export async function openDataset(name: string, o: OpenDatasetOptions = {}): Promise<Dataset> {
  const isFashion = FASHION_ALIASES.includes(name);
  if (!isFashion && name !== 'shapes') {
    if (!existsSync(name)) {
      throw new UserError(`no dataset '${name}': it is neither a dataset name nor an existing folder`,
        `use ${DATASET_CHOICES} (captions in captions.jsonl or a .txt file beside each image)`);
    }
    if (!statSync(name).isDirectory()) {
      throw new UserError(`${name} is a file, not a folder of images`, 'pass the folder that holds the images');
    }
  }
  const splits = isFashion ? ['train', 'test'] : name === 'shapes' ? ['train', 'test', 'heldout'] : [];
  if (o.split !== undefined && splits.length > 0 && !splits.includes(o.split)) {
    throw new UserError(`unknown split '${o.split}' for ${name}`, `use --split ${splits.join(' or ')}`);
  }
  if (o.split === 'heldout') {
    throw new UserError('the heldout split needs held-out attribute combinations, which the command line does not set yet',
      'use --split train or test');
  }
  const options: Record<string, unknown> = {};
  if (o.split !== undefined && splits.length > 0) options.split = o.split;
  if (o.data !== undefined && isFashion) options.dir = o.data;
  if (o.size !== undefined) options.size = o.size;
  if (o.seed !== undefined && name === 'shapes') options.seed = o.seed;
  if (o.length !== undefined && name === 'shapes') options.length = o.length;
  if (o.maxObjects !== undefined && name === 'shapes') options.maxObjects = o.maxObjects;
  let dataset: Dataset;
  try {
    dataset = await datasetFromName(name, options);
  } catch (err) {
    if ((err as { hint?: unknown }).hint !== undefined) throw err; // already says what to do
    throw new UserError(`cannot open ${name}: ${(err as Error).message}`, 'check --size and --split');
  }
  if (dataset.length === 0) {
    const report = dataset instanceof ImageFolder ? dataset.report() : `${name} has no samples`;
    throw new UserError(`no readable images in ${name}`, report);
  }
  return dataset;
}

/** Class names of a dataset whose labels mean something, else null. */
export function classNames(dataset: Dataset): readonly string[] | null {
  if (dataset instanceof FashionMnist) return FASHION_MNIST_CLASSES;
  if (dataset instanceof ShapesDataset) return SHAPE_NAMES; // the label is the first object's shape
  return null;
}

function displayName(name: string, dataset: Dataset): string {
  if (dataset instanceof FashionMnist) return `Fashion-MNIST ${dataset.split}`;
  if (dataset instanceof ShapesDataset) return `Shapes ${dataset.split}`;
  return resolve(name).split(/[\\/]/).pop() || name;
}

/** `count` distinct indices in [0, n), seeded; all of them (shuffled) when count ≥ n. */
export function pickIndices(n: number, count: number, seed: number): number[] {
  const rng = new Rng(seed);
  if (count >= n) {
    const all = Array.from({ length: n }, (_, i) => i);
    const words = rng.uint32(Math.max(1, n));
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor((words[i] / 4294967296) * (i + 1));
      [all[i], all[j]] = [all[j], all[i]];
    }
    return all;
  }
  const chosen = new Set<number>();
  while (chosen.size < count) {
    for (const i of rng.integers(count - chosen.size, 0, n)) if (chosen.size < count) chosen.add(i);
  }
  return [...chosen];
}

interface PreviewOptions {
  out?: string;
  count: number;
  seed: number;
  data?: string;
  split?: string;
  size?: number;
  columns?: number;
}

async function preview(name: string, o: PreviewOptions): Promise<void> {
  const dataset = await openDataset(name, o);
  if (dataset instanceof ImageFolder && dataset.skipped.length > 0) console.error(`note: ${dataset.report()}`);
  const names = classNames(dataset);
  const indices = pickIndices(dataset.length, o.count, o.seed);
  const images = [];
  const captions: string[] = [];
  for (const index of indices) {
    const s = await dataset.get(index);
    images.push(floatToPixels(s.image, s.shape[0], s.shape[1], s.shape[2], 'signed'));
    // Fashion-MNIST's captions only repeat the class, so show the class; others show their caption.
    const label = dataset instanceof FashionMnist ? names![s.label] : s.caption || (dataset instanceof ImageFolder ? dataset.file(index) : '');
    captions.push(label);
  }
  const columns = o.columns ?? (images.length >= 16 ? 8 : Math.ceil(Math.sqrt(images.length)));
  const grid = makeGrid(images, {
    columns, captions, captionLines: dataset instanceof FashionMnist ? 1 : 5,
    title: `${displayName(name, dataset)}: ${images.length} of ${dataset.length} (seed ${o.seed})`,
  });
  const out = o.out ?? `preview-${dataset instanceof FashionMnist ? 'fashion-mnist' : dataset instanceof ShapesDataset ? 'shapes' : 'folder'}.png`;
  try {
    await saveImage(out, grid);
  } catch (err) {
    throw new UserError((err as Error).message, 'check the --out path (.png, .jpg or .webp)');
  }
  console.log(`wrote ${out} (${grid.width}x${grid.height}, ${images.length} samples)`);
}

interface StatsOptions {
  data?: string;
  split?: string;
  size?: number;
  limit: number;
  json?: boolean;
}

export interface DatasetStats {
  dataset: string;
  split?: string;
  samples: number;
  imageShape: [number, number, number];
  range: string;
  classes?: Record<string, number>;
  objectsPerImage?: Record<string, number>;
  captions: { count: number; unique: number; words: { min: number; mean: number; max: number }; vocabulary: number; examples: string[] };
  pixels: { samples: number; mean: number[]; std: number[] };
  skipped?: number;
  uncaptioned?: number;
}

/** Labels and captions cheaply: procedural scenes need not be drawn for this. */
async function labelAndCaption(dataset: Dataset, index: number): Promise<{ label: number; caption: string; objects?: number }> {
  if (dataset instanceof ShapesDataset) {
    const scene = dataset.scene(index);
    return { label: SHAPE_NAMES.indexOf(scene.objects[0].shape), caption: scene.caption, objects: scene.objects.length };
  }
  const s = await dataset.get(index);
  return { label: s.label, caption: s.caption };
}

export async function datasetStats(name: string, o: Omit<StatsOptions, 'json'>): Promise<DatasetStats> {
  const dataset = await openDataset(name, o);
  const names = classNames(dataset);
  const first = await dataset.get(0);
  const shape: [number, number, number] = [first.shape[0], first.shape[1], first.shape[2]];

  const classCounts = names ? new Array<number>(names.length).fill(0) : null;
  const objectCounts = new Map<number, number>();
  const unique = new Set<string>();
  const vocabulary = new Set<string>();
  let captioned = 0, wordSum = 0, wordMin = Infinity, wordMax = 0;
  for (let i = 0; i < dataset.length; i++) {
    const { label, caption, objects } = await labelAndCaption(dataset, i);
    if (classCounts && label >= 0) classCounts[label]++;
    if (objects !== undefined) objectCounts.set(objects, (objectCounts.get(objects) ?? 0) + 1);
    if (caption === '') continue;
    captioned++;
    unique.add(caption);
    const words = caption.toLowerCase().split(/[^a-z0-9'/-]+/).filter((w) => w !== '');
    for (const w of words) vocabulary.add(w);
    wordSum += words.length;
    wordMin = Math.min(wordMin, words.length);
    wordMax = Math.max(wordMax, words.length);
  }

  // Pixel statistics per channel over the first `limit` samples (drawing every procedural image is slow).
  const pixelSamples = o.limit === 0 ? dataset.length : Math.min(o.limit, dataset.length);
  const [c, h, w] = shape;
  const plane = h * w;
  const sum = new Float64Array(c), sumSq = new Float64Array(c);
  for (let i = 0; i < pixelSamples; i++) {
    const image = (await dataset.get(i)).image;
    for (let ch = 0; ch < c; ch++) {
      let s = 0, s2 = 0;
      for (let k = ch * plane; k < (ch + 1) * plane; k++) { const v = image[k]; s += v; s2 += v * v; }
      sum[ch] += s; sumSq[ch] += s2;
    }
  }
  const n = pixelSamples * plane;
  const round = (v: number) => Number(v.toFixed(4));
  const mean = Array.from(sum, (s) => round(s / n));
  const std = Array.from(sum, (s, ch) => round(Math.sqrt(Math.max(0, sumSq[ch] / n - (s / n) ** 2))));

  const stats: DatasetStats = {
    dataset: displayName(name, dataset),
    samples: dataset.length,
    imageShape: shape,
    range: '[-1, 1]',
    captions: {
      count: captioned, unique: unique.size, vocabulary: vocabulary.size,
      words: { min: captioned ? wordMin : 0, mean: captioned ? Number((wordSum / captioned).toFixed(2)) : 0, max: wordMax },
      examples: [...unique].slice(0, 3),
    },
    pixels: { samples: pixelSamples, mean, std },
  };
  if (dataset instanceof FashionMnist || dataset instanceof ShapesDataset) stats.split = dataset.split;
  if (classCounts && names) stats.classes = Object.fromEntries(names.map((k, i) => [k, classCounts[i]]));
  if (objectCounts.size) stats.objectsPerImage = Object.fromEntries([...objectCounts].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v]));
  if (dataset instanceof ImageFolder) { stats.skipped = dataset.skipped.length; stats.uncaptioned = dataset.uncaptioned; }
  return stats;
}

function printStats(s: DatasetStats): void {
  const rows: [string, string][] = [
    ['dataset', s.dataset],
    ['samples', String(s.samples)],
    ['image', `${s.imageShape[0]}x${s.imageShape[1]}x${s.imageShape[2]} (channels x height x width), values in ${s.range}`],
  ];
  if (s.skipped !== undefined) rows.push(['skipped', `${s.skipped} unreadable file(s), ${s.uncaptioned} image(s) without a caption`]);
  if (s.classes) {
    const total = Object.values(s.classes).reduce((a, b) => a + b, 0);
    const widest = Math.max(...Object.keys(s.classes).map((k) => k.length));
    const most = Math.max(...Object.values(s.classes));
    rows.push(['classes', `${Object.keys(s.classes).length}${s.dataset.startsWith('Shapes') ? ' (shape of the first object)' : ''}`]);
    for (const [k, v] of Object.entries(s.classes)) {
      const bar = '#'.repeat(Math.round((24 * v) / Math.max(1, most)));
      rows.push(['', `${k.padEnd(widest)} ${String(v).padStart(String(most).length)} ${(100 * v / total).toFixed(1).padStart(5)}% ${bar}`]);
    }
  }
  if (s.objectsPerImage) rows.push(['objects', Object.entries(s.objectsPerImage).map(([k, v]) => `${k}: ${v}`).join(', ') + ' (per image)']);
  const cap = s.captions;
  if (cap.count > 0) {
    rows.push(['captions', `${cap.count} (${cap.unique} unique), ${cap.words.min}-${cap.words.max} words (mean ${cap.words.mean}), vocabulary ${cap.vocabulary} words`]);
    for (const e of cap.examples) rows.push(['', `"${e}"`]);
  } else {
    rows.push(['captions', 'none']);
  }
  const list = (v: number[]) => (v.length === 1 ? String(v[0]) : `[${v.join(', ')}]`);
  rows.push(['pixels', `mean ${list(s.pixels.mean)}, std ${list(s.pixels.std)} (over ${s.pixels.samples} of ${s.samples} samples${s.pixels.samples < s.samples ? '; --limit 0 for all' : ''})`]);
  for (const [k, v] of rows) console.log(`${k.padEnd(10)} ${v}`);
}

const datasetArgumentHelp = `${DATASET_NAMES.join(' | ')} | <folder of images>`;

export function registerDataCommand(program: Command): void {
  const data = program.command('data').description('look at the datasets: preview grids and statistics');

  data
    .command('preview')
    .description('write a grid of random samples, each labelled with its class or caption')
    .argument('<dataset>', datasetArgumentHelp)
    .option('-o, --out <file>', 'image to write (.png, .jpg or .webp; default preview-<dataset>.png)')
    .option('-n, --count <n>', 'number of samples', intOption('--count', 1, 1024), 32)
    .option('--seed <n>', 'which samples are picked', intOption('--seed', 0), 0)
    .option('--columns <n>', 'cells per row (default 8)', intOption('--columns', 1, 64))
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .addOption(new Option('--split <split>', 'train (default) | test'))
    .option('--size <px>', 'image side (shapes: 32 or 64; folders: default 64)', intOption('--size', 1, 1024))
    .addHelpText('after', '\nExamples:\n  vss data preview fashion-mnist --out fashion.png\n  vss data preview shapes --size 64 --count 16\n  vss data preview ./my-images')
    .action((name: string, o: PreviewOptions) => preview(name, o));

  data
    .command('stats')
    .description('print size, image shape, class histogram, caption statistics and pixel mean/std')
    .argument('<dataset>', datasetArgumentHelp)
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .addOption(new Option('--split <split>', 'train (default) | test'))
    .option('--size <px>', 'image side (shapes: 32 or 64; folders: default 64)', intOption('--size', 1, 1024))
    .option('--limit <n>', 'samples used for the pixel statistics (0: all)', intOption('--limit', 0), 2000)
    .option('--json', 'machine-readable output')
    .action(async (name: string, o: StatsOptions) => {
      const s = await datasetStats(name, o);
      if (o.json) console.log(JSON.stringify(s, null, 2));
      else printStats(s);
    });
}
