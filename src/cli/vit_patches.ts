/**
 * `vss eval vit-patches`: plain ViTs (no conv stem) with patch sizes 4, 7 and 14 trained on Fashion-MNIST
 * with the `vss train vit` recipe, compared in test accuracy, training and inference speed, and how far
 * their attention reaches (mean attention distance per layer, src/eval/vit_patches.ts).
 *
 * Each row trains a model in its own run folder (<runs>/patch-<p>: checkpoint, metrics.jsonl, loss.png, the
 * exported model for `vss explain vit`), so an interrupted row resumes. Finished rows are kept in
 * <out>/vit-patches.json and not measured again unless --fresh.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { backendName, type Tensor } from '../engine/index.js';
import { getNumThreads } from '../engine/backend/native.js';
import { DataLoader } from '../data/index.js';
import { saveLinePlot, writeFileAtomic } from '../image/index.js';
import { CHECKPOINT_FILE, readCheckpointInfo } from '../train/loop.js';
import { exportVit, withEmaWeights } from '../train/vit.js';
import { inferenceRate, measureAttentionDistances } from '../eval/vit_patches.js';
import { openDataset } from './data.js';
import { UserError } from './errors.js';
import { intListOption, intOption } from './options.js';
import { VIT_PREPROCESSING, VIT_RECIPE, type VitRunConfig, runVitTraining } from './vit.js';

const IMAGE_SIDE = 28;

export interface VitPatchesFlags {
  patches: number[];
  steps: number;
  batch: number;
  dim: number;
  depth: number;
  heads: number;
  mlp: number;
  evalLimit: number;
  attentionImages: number;
  inferBatch: number;
  out: string;
  runs: string;
  data?: string;
  seed: number;
  fresh?: boolean;
  workers: number;
  progress?: boolean;
}

/** One patch size's numbers, as stored in vit-patches.json. */
export interface PatchRow {
  patch: number;
  /** Patch tokens + CLS. */
  tokens: number;
  params: number;
  steps: number;
  batch: number;
  dim: number;
  depth: number;
  heads: number;
  mlp: number;
  seed: number;
  eval_limit: number;
  /** Test accuracy with the EMA weights (what `vss train vit` reports and exports), and with the trained ones. */
  test_accuracy: number;
  test_accuracy_raw: number;
  eval_images: number;
  train_images_per_s: number;
  train_seconds: number;
  infer_images_per_s: number;
  infer_batch: number;
  /** Mean attention distance in pixels, per layer (mean over heads) and per layer and head. */
  attention_distance: number[];
  attention_distance_heads: number[][];
  attention_images: number;
  threads: number;
  model: string;
}

interface PatchesFile {
  environment: Record<string, unknown>;
  rows: PatchRow[];
}

/** The settings a row's numbers depend on: a kept row must match all of them. */
function rowKey(r: Pick<PatchRow, 'patch' | 'steps' | 'batch' | 'dim' | 'depth' | 'heads' | 'mlp' | 'seed' | 'eval_limit' | 'attention_images' | 'infer_batch'>): string {
  return JSON.stringify([r.patch, r.steps, r.batch, r.dim, r.depth, r.heads, r.mlp, r.seed, r.eval_limit, r.attention_images, r.infer_batch]);
}

/** Refuse settings that cannot give a plain ViT on 28×28 images, before any data is read. */
export function checkPatchSizes(patches: readonly number[], dim: number, heads: number): void {
  if (patches.length === 0) throw new UserError('--patches is empty', 'give patch sizes such as 4,7,14');
  const bad = patches.filter((p) => IMAGE_SIDE % p !== 0);
  if (bad.length > 0) {
    throw new UserError(`--patches ${bad.join(',')}: ${bad.length > 1 ? 'these do' : `${bad[0]} does`} not divide the ${IMAGE_SIDE}-pixel Fashion-MNIST images`,
      `use patch sizes that divide ${IMAGE_SIDE}: 1, 2, 4, 7, 14 or 28 (e.g. --patches 4,7,14)`);
  }
  if (dim % heads) throw new UserError(`--dim ${dim} is not divisible by --heads ${heads}`);
}

/**
 * The augmentation the patch comparison was measured with (bench/vit-patches): the first `vss train vit`
 * recipe, kept here so that later changes to the classifier's recipe do not change what this table means.
 */
const PATCHES_AUGMENT = { cropPadding: 2, cropProb: 0.3, flip: true, erasing: 0.1, labelSmoothing: 0.1 } as const;

/** The `vss train vit` run config of one row: the recipe's defaults, a plain ViT with patch p. */
function rowConfig(flags: VitPatchesFlags, patch: number, runDir: string): VitRunConfig {
  return {
    ...VIT_RECIPE, ...PATCHES_AUGMENT, stem: [], stemStrides: [], model: 'vit', dataset: 'fashion-mnist', patch, steps: flags.steps, batch: flags.batch,
    dim: flags.dim, depth: flags.depth, heads: flags.heads, mlp: flags.mlp, seed: flags.seed, data: flags.data,
    evalLimit: flags.evalLimit, evalEvery: 0, export: path.join(runDir, 'model'),
  };
}

/** The first n test images as one batch [n, 1, 28, 28] (normalised as for training). */
async function firstTestImages(data: string | undefined, n: number): Promise<Tensor> {
  const test = await openDataset('fashion-mnist', { split: 'test', data });
  const count = Math.min(n, test.length);
  const loader = new DataLoader({ length: count, get: (i: number) => test.get(i) }, { batchSize: count, shuffle: false });
  try {
    const batch = await loader.next();
    if (!batch) throw new UserError('the Fashion-MNIST test set is empty');
    return batch.images;
  } finally {
    await loader.close();
  }
}

/**
 * The run folder of a row: resumed when its checkpoint was written with the same settings, started anew
 * (its checkpoint removed) when not or with --fresh.
 */
function prepareRunFolder(runDir: string, config: VitRunConfig, fresh: boolean, log: (m: string) => void): string | null {
  const checkpoint = path.join(runDir, CHECKPOINT_FILE);
  if (!fs.existsSync(checkpoint)) return null;
  let same = false;
  try {
    same = JSON.stringify(readCheckpointInfo(checkpoint).config) === JSON.stringify(config);
  } catch {
    same = false; // unreadable: train again
  }
  if (same && !fresh) {
    log(`    continuing the run in ${runDir}`);
    return checkpoint;
  }
  log(`    ${fresh ? '--fresh' : 'the checkpoint there has other settings'}: training again in ${runDir}`);
  fs.rmSync(checkpoint);
  return null;
}

/** Train one patch size and measure it; null when training was interrupted. */
async function measurePatch(flags: VitPatchesFlags, patch: number, log: (m: string) => void): Promise<PatchRow | null> {
  const runDir = path.join(flags.runs, `patch-${patch}`);
  const config = rowConfig(flags, patch, runDir);
  const resumeFrom = prepareRunFolder(runDir, config, flags.fresh ?? false, log);
  const run = await runVitTraining(config, {
    out: runDir, resumeFrom, resumeHint: `vss eval vit-patches --patches ${patch} (same settings) continues it`,
    workers: flags.workers, progress: flags.progress, evaluateInLoop: false,
  });
  if (!run.result.completed) return null;
  const { model, ema, result } = run;
  // Training time alone: the loop's clock covers the steps and checkpoints; the accuracy is measured after.
  const trainRate = result.elapsed > 0 ? (result.step * config.batch) / result.elapsed : 0;
  const accuracy = await run.evaluate(true);
  const raw = await run.evaluate(false);
  const images = await firstTestImages(flags.data, Math.max(flags.attentionImages, flags.inferBatch));
  const { distances, infer } = await withEmaWeights(model, ema, () => ({
    distances: measureAttentionDistances(model, images.narrow(0, 0, Math.min(flags.attentionImages, images.shape[0])), 64),
    infer: inferenceRate(model, images.narrow(0, 0, Math.min(flags.inferBatch, images.shape[0]))),
  }));
  await exportVit(model, ema, config.export, VIT_PREPROCESSING);
  const side = IMAGE_SIDE / patch;
  return {
    patch, tokens: side * side + 1, params: model.numParameters(), steps: config.steps, batch: config.batch,
    dim: config.dim, depth: config.depth, heads: config.heads, mlp: config.mlp, seed: config.seed, eval_limit: flags.evalLimit,
    test_accuracy: accuracy.accuracy, test_accuracy_raw: raw.accuracy, eval_images: accuracy.total,
    train_images_per_s: trainRate, train_seconds: result.elapsed, infer_images_per_s: infer.imagesPerSecond,
    infer_batch: Math.min(flags.inferBatch, images.shape[0]),
    attention_distance: distances.perLayer, attention_distance_heads: distances.perHead, attention_images: distances.images,
    threads: getNumThreads(), model: config.export,
  };
}

function readPatchesFile(file: string): PatchesFile | null {
  if (!fs.existsSync(file)) return null;
  try {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as PatchesFile;
    return Array.isArray(saved.rows) ? saved : null;
  } catch {
    return null;
  }
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** The layers the table shows: first, middle, last (1-based). */
function shownLayers(depth: number): number[] {
  return [...new Set([1, Math.floor((depth - 1) / 2) + 1, depth])];
}

export function patchesMarkdown(rows: readonly PatchRow[], env: Record<string, unknown>): string {
  const depth = Math.max(1, ...rows.map((r) => r.attention_distance.length));
  const layers = shownLayers(depth);
  const px = (v: number | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(1) : '-');
  const lines = ['## ViT patch size on Fashion-MNIST: accuracy, speed, attention range', ''];
  lines.push(`| patch | tokens | params | test acc | train img/s | infer img/s | ${layers.map((l) => `attn dist L${l} (px)`).join(' | ')} |`);
  lines.push(`|---:|---:|---:|---:|---:|---:|${layers.map(() => '---:').join('|')}|`);
  for (const r of rows) {
    lines.push(`| ${r.patch}×${r.patch} | ${r.tokens} | ${r.params.toLocaleString('en')} | ${(100 * r.test_accuracy).toFixed(2)}% | ` +
      `${r.train_images_per_s.toFixed(1)} | ${r.infer_images_per_s.toFixed(1)} | ${layers.map((l) => px(r.attention_distance[l - 1])).join(' | ')} |`);
  }
  lines.push('', '### Mean attention distance per layer (pixels)', '');
  lines.push(`| patch | ${Array.from({ length: depth }, (_, l) => `L${l + 1}`).join(' | ')} |`);
  lines.push(`|---:|${Array.from({ length: depth }, () => '---:').join('|')}|`);
  for (const r of rows) lines.push(`| ${r.patch}×${r.patch} | ${Array.from({ length: depth }, (_, l) => px(r.attention_distance[l])).join(' | ')} |`);
  const r0 = rows[0];
  const threads = [...new Set(rows.map((r) => r.threads))].join('/');
  lines.push('', r0
    ? `Plain ViTs (no conv stem; dim ${r0.dim}, depth ${r0.depth}, heads ${r0.heads}, MLP ${r0.mlp}, mean pooling) trained with the ` +
      `\`vss train vit\` recipe for ${r0.steps} steps of ${r0.batch} images (seed ${r0.seed}). Test accuracy: EMA weights on the first ` +
      `${r0.eval_images} test images. Train img/s: optimiser steps (forward, backward, AdamW, EMA) per second × batch. Infer img/s: ` +
      `forward only, batches of ${r0.infer_batch}. Attention distance: for each head and query patch, the attention-weighted pixel ` +
      `distance between patch centres (CLS left out as query and key, attention renormalised over the patches; Dosovitskiy et al. 2021, ` +
      `Fig. 7), averaged over query patches, heads and ${r0.attention_images} test images; a patch attends at distance 0 to itself. ` +
      `${env.backend} backend, ${threads} thread(s), ${env.cpu}.`
    : 'No rows yet.', '');
  return lines.join('\n');
}

async function plotDistances(file: string, rows: readonly PatchRow[]): Promise<void> {
  await saveLinePlot(file, rows.map((r) => ({
    name: `patch ${r.patch} (${r.tokens - 1} patches)`,
    x: r.attention_distance.map((_, l) => l + 1),
    y: r.attention_distance,
  })), { title: 'mean attention distance per layer (Fashion-MNIST ViT)', xLabel: 'layer', yLabel: 'mean attention distance (pixels)' });
}

export async function runVitPatches(flags: VitPatchesFlags): Promise<void> {
  checkPatchSizes(flags.patches, flags.dim, flags.heads);
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const patches = [...new Set(flags.patches)];
  fs.mkdirSync(flags.out, { recursive: true });
  const jsonFile = path.join(flags.out, 'vit-patches.json');
  const env: Record<string, unknown> = {
    command: 'vss eval vit-patches', backend: backendName(), threads: getNumThreads(), cpu: os.cpus()[0]?.model ?? 'unknown',
    date: new Date().toISOString(), runs: flags.runs,
  };
  const previous = flags.fresh ? null : readPatchesFile(jsonFile);
  // Rows of patch sizes not asked for this time stay in the table (rows can be measured one run at a time).
  const carried = previous?.rows.filter((r) => !patches.includes(r.patch)) ?? [];
  const rows: PatchRow[] = [];
  const table = () => [...carried, ...rows];
  for (const [i, patch] of patches.entries()) {
    const planned = {
      patch, steps: flags.steps, batch: flags.batch, dim: flags.dim, depth: flags.depth, heads: flags.heads, mlp: flags.mlp,
      seed: flags.seed, eval_limit: flags.evalLimit, attention_images: flags.attentionImages, infer_batch: flags.inferBatch,
    };
    const old = previous?.rows.find((r) => rowKey(r) === rowKey(planned));
    if (old) {
      log(`[${i + 1}/${patches.length}] patch ${patch}: kept from ${jsonFile} (--fresh measures again)`);
      rows.push(old);
      continue;
    }
    log(`[${i + 1}/${patches.length}] patch ${patch}: ${(IMAGE_SIDE / patch) ** 2} patches + CLS, ${flags.steps} steps of ${flags.batch}`);
    const row = await measurePatch(flags, patch, log);
    if (!row) {
      process.exitCode = 130; // interrupted: the run folder holds a checkpoint, the rows so far are saved
      log(`stopped during patch ${patch}; run the same command again to continue`);
      break;
    }
    log(`    test accuracy ${(100 * row.test_accuracy).toFixed(2)}%, ${row.train_images_per_s.toFixed(1)} train img/s, ` +
      `${row.infer_images_per_s.toFixed(1)} infer img/s, attention distance ${row.attention_distance.map((d) => d.toFixed(1)).join(' → ')} px`);
    rows.push(row);
    // Saved after every row: a row costs tens of minutes.
    writeJson(jsonFile, { environment: env, rows: table() } satisfies PatchesFile);
  }
  writeJson(jsonFile, { environment: env, rows: table() } satisfies PatchesFile);
  const md = patchesMarkdown(table(), env);
  const mdFile = path.join(flags.out, 'vit-patches.md');
  writeFileAtomic(mdFile, md);
  const files = [jsonFile, mdFile];
  if (table().length > 0) {
    const plot = path.join(flags.out, 'attention-distance.png');
    await plotDistances(plot, table());
    files.push(plot);
  }
  console.log(md);
  console.log(`→ ${files.join(', ')}`);
}

/** `vss eval vit-patches`, added to the `eval` command group. */
export function registerVitPatchesCommand(evalCmd: Command): void {
  evalCmd
    .command('vit-patches')
    .description('plain ViTs with patch sizes 4, 7, 14 on Fashion-MNIST: test accuracy, train/inference speed, mean attention distance per layer')
    .option('--patches <list>', 'patch sizes (each must divide 28)', intListOption('--patches', 1), [4, 7, 14])
    .option('--steps <n>', 'optimiser steps per model', intOption('--steps', 1), 2000)
    .option('--batch <n>', 'images per step', intOption('--batch', 1), VIT_RECIPE.batch)
    .option('--dim <n>', 'hidden size', intOption('--dim', 4), VIT_RECIPE.dim)
    .option('--depth <n>', 'transformer blocks', intOption('--depth', 1), VIT_RECIPE.depth)
    .option('--heads <n>', 'attention heads', intOption('--heads', 1), VIT_RECIPE.heads)
    .option('--mlp <n>', 'MLP hidden size', intOption('--mlp', 1), VIT_RECIPE.mlp)
    .option('--eval-limit <n>', 'test images of the accuracy (EMA weights)', intOption('--eval-limit', 1), VIT_RECIPE.evalLimit)
    .option('--attention-images <n>', 'test images the attention distance is averaged over', intOption('--attention-images', 1), 256)
    .option('--infer-batch <n>', 'batch of the inference speed (forward only)', intOption('--infer-batch', 1), 256)
    .option('--seed <n>', 'seed of the weights, data order and augmentation', intOption('--seed', 0), VIT_RECIPE.seed)
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('-o, --out <dir>', 'where vit-patches.json, vit-patches.md and attention-distance.png go', 'bench/vit-patches')
    .option('--runs <dir>', 'run folders of the models (<runs>/patch-<p>: checkpoint, metrics, exported model)', 'runs/vit-patches')
    .option('--fresh', 'train and measure every patch size again (default: keep rows already in <out>/vit-patches.json)')
    .option('--workers <n>', 'threads preparing batches ahead of the training loop', intOption('--workers', 0), 0)
    .option('--no-progress', 'no progress lines')
    .addHelpText('after', '\nExamples:\n  VSS_NUM_THREADS=1 vss eval vit-patches                       # 4, 7, 14; 2000 steps each\n' +
      '  vss eval vit-patches --patches 7,14 --steps 300 --out bench/vit-patches-quick\n' +
      '  vss explain vit --model runs/vit-patches/patch-4/model shoe.png   # see one model\'s attention')
    .action((flags: VitPatchesFlags) => runVitPatches(flags));
}
