/**
 * `vss train <model>`: training runs with the shared loop. For now one model, `classifier`, a small
 * conv net on Fashion-MNIST or Shapes that shows the plumbing works end to end (it must learn).
 */
import { type Command, Option } from 'commander';
import { Rng, backendName } from '../engine/index.js';
import { DataLoader, type Batch, FASHION_MNIST_CLASSES, SHAPE_NAMES } from '../data/index.js';
import { AdamW, CosineSchedule } from '../optim/index.js';
import { ConvClassifier, classifierStep, evaluateAccuracy, savePredictionGrid } from '../train/classifier.js';
import { Trainer } from '../train/loop.js';
import { openDataset } from './data.js';
import { UserError } from './errors.js';
import { intOption, positiveNumberOption } from './options.js';
import { addTrainingLoopOptions, givenOnCommandLine, locateRun, mergeWithSaved, refuseExistingRun, runTraining, savedRunConfig } from './run_config.js';
import { registerDdpmTrainCommand } from './ddpm.js';
import { registerNoisyClassifierTrainCommand } from './noisy_classifier.js';

/** What a classifier run is, stored in its checkpoint so `--resume` needs only `--out`. */
interface ClassifierConfig {
  model: 'classifier';
  dataset: 'fashion-mnist' | 'shapes';
  steps: number;
  batch: number;
  lr: number;
  width: number;
  seed: number;
  data?: string;
  evalLimit: number;
  /** Shapes: scenes hold 1..maxObjects objects. */
  maxObjects: number;
  checkpointEvery: number;
  sampleEvery: number;
  evalEvery: number;
  logEvery: number;
}

interface ClassifierFlags {
  dataset: string;
  steps: number;
  batch: number;
  lr: number;
  width: number;
  seed: number;
  out?: string;
  resume?: boolean | string;
  data?: string;
  checkpointEvery: number;
  sampleEvery: number;
  evalEvery: number;
  evalLimit: number;
  logEvery: number;
  maxObjects: number;
  workers: number;
  progress?: boolean;
}

/** Settings that must match the checkpoint being resumed (anything else may change). */
const FIXED_ON_RESUME = ['dataset', 'batch', 'width', 'seed', 'maxObjects'] as const;

/**
 * Merge the command line with a checkpoint's settings: the checkpoint fills in what was not given;
 * what was given must agree where the saved state depends on it.
 */
function resolveConfig(flags: ClassifierFlags, cmd: Command): { config: ClassifierConfig; out: string; resumeFrom: string | null } {
  const { out, resumeFrom } = locateRun(flags, `runs/classifier-${flags.dataset}`);
  let config: ClassifierConfig = {
    model: 'classifier', dataset: flags.dataset as ClassifierConfig['dataset'], steps: flags.steps, batch: flags.batch,
    lr: flags.lr, width: flags.width, seed: flags.seed, data: flags.data, evalLimit: flags.evalLimit,
    maxObjects: flags.maxObjects, checkpointEvery: flags.checkpointEvery, sampleEvery: flags.sampleEvery,
    evalEvery: flags.evalEvery, logEvery: flags.logEvery,
  };
  if (resumeFrom) {
    const saved = savedRunConfig<ClassifierConfig>(resumeFrom, 'classifier', 'a classifier run');
    config = mergeWithSaved(config, saved, { given: givenOnCommandLine(cmd), fixed: FIXED_ON_RESUME });
  }
  if (config.dataset !== 'fashion-mnist' && config.dataset !== 'shapes') {
    throw new UserError(`the classifier trains on fashion-mnist or shapes, not '${config.dataset}'`, 'use --dataset fashion-mnist or --dataset shapes');
  }
  return { config, out, resumeFrom };
}

async function trainClassifier(flags: ClassifierFlags, cmd: Command): Promise<void> {
  const { config, out, resumeFrom } = resolveConfig(flags, cmd);
  const isShapes = config.dataset === 'shapes';
  const classNames: readonly string[] = isShapes ? SHAPE_NAMES : FASHION_MNIST_CLASSES;
  // Shapes: the label is the first object's shape; 20 000 training scenes are plenty for that.
  const shapesOptions = isShapes ? { seed: config.seed, maxObjects: config.maxObjects } : {};
  const trainSet = await openDataset(config.dataset, { split: 'train', data: config.data, length: isShapes ? 20_000 : undefined, ...shapesOptions });
  const testSet = await openDataset(config.dataset, { split: 'test', data: config.data, length: isShapes ? config.evalLimit : undefined, ...shapesOptions });
  const evalCount = Math.min(testSet.length, config.evalLimit);
  const first = await trainSet.get(0);

  const rng = new Rng(config.seed);
  const model = new ConvClassifier({ inChannels: first.shape[0], imageSize: first.shape[1], numClasses: classNames.length, width: config.width }, rng);
  const optimizer = new AdamW(model.parameters(), { lr: config.lr, weightDecay: 1e-4 });
  const schedule = new CosineSchedule({ lr: config.lr, warmupSteps: Math.min(100, Math.floor(config.steps / 10)), totalSteps: config.steps, minLr: config.lr / 50 });
  const loader = new DataLoader(trainSet, { batchSize: config.batch, shuffle: true, seed: config.seed, dropLast: true, epochs: Infinity, workers: flags.workers });
  const testSubset = { length: evalCount, get: (i: number) => testSet.get(i) };
  const previewBatch = async (): Promise<Batch> => {
    const l = new DataLoader(testSubset, { batchSize: 16, shuffle: false });
    const b = (await l.next())!;
    await l.close();
    return b;
  };

  const resumeHint = `vss train classifier --out ${out} --resume`;
  refuseExistingRun(out, resumeFrom, resumeHint);
  if (!resumeFrom) {
    console.error(`training a ${model.numParameters().toLocaleString('en')}-parameter classifier on ${config.dataset} ` +
      `(${trainSet.length} train / ${evalCount} test images, batch ${config.batch}, ${config.steps} steps, ${backendName()} kernels) → ${out}`);
  }
  const trainer = new Trainer<Batch>({
    model, optimizer, loader, totalSteps: config.steps, lrSchedule: schedule, clipGradNorm: 1.0,
    outDir: out, checkpointEvery: config.checkpointEvery, logEvery: config.logEvery, seed: config.seed, rng,
    resume: resumeFrom ?? false, config, resumeHint,
    step: (batch) => classifierStep(model, batch),
    evalEvery: config.evalEvery,
    evaluate: async () => {
      const l = new DataLoader(testSubset, { batchSize: 250, shuffle: false });
      try {
        const r = await evaluateAccuracy(model, l);
        return { test_accuracy: r.accuracy };
      } finally {
        await l.close();
      }
    },
    sampleEvery: config.sampleEvery,
    sample: async (ctx) => {
      await savePredictionGrid(ctx.samplePath(), model, await previewBatch(), classNames,
        `step ${ctx.step}: predicted (true) class`);
    },
    progress: flags.progress === false ? false : undefined,
  });
  const result = await runTraining(trainer, loader);
  if (result.completed && result.lastEval) {
    const acc = result.lastEval.test_accuracy;
    console.log(`test accuracy ${(100 * acc).toFixed(2)}% (${Math.round(acc * evalCount)}/${evalCount} ${config.dataset} test images) after ${result.step} steps`);
  }
  // A run stopped by Ctrl-C ends like an interrupted program (130), after saving.
  if (!result.completed) process.exitCode = 130;
}

export function registerTrainCommand(program: Command): void {
  const trainCmd = program.command('train').description('train a model with the shared training loop (progress, metrics, checkpoints, --resume)');

  const classifierCmd = trainCmd
    .command('classifier')
    .description('a small conv-net image classifier: the demonstration of the training plumbing')
    .addOption(new Option('--dataset <name>', 'what to classify (shapes: the first object\'s shape)').choices(['fashion-mnist', 'shapes']).default('fashion-mnist'))
    .option('--steps <n>', 'optimiser steps', intOption('--steps', 1), 1000)
    .option('--batch <n>', 'images per step', intOption('--batch', 1), 64)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine decay)', positiveNumberOption('--lr'), 3e-3)
    .option('--width <n>', 'channels of the first conv block (multiple of 4)', intOption('--width', 4), 16)
    .option('--seed <n>', 'seed of the initial weights and the data order', intOption('--seed', 0), 0)
    .option('-o, --out <dir>', 'run folder: checkpoint, metrics.jsonl, loss.png, samples/ (default runs/classifier-<dataset>)')
    .option('--resume [checkpoint]', 'continue the run in --out (or from the given checkpoint) exactly where it stopped')
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--sample-every <n>', 'write a grid of test predictions every n steps (0: only at the end)', intOption('--sample-every', 0), 500)
    .option('--eval-every <n>', 'measure test accuracy every n steps (0: only at the end)', intOption('--eval-every', 0), 0)
    .option('--eval-limit <n>', 'test images used for the accuracy', intOption('--eval-limit', 1), 10_000)
    .option('--max-objects <n>', 'shapes: objects per scene, 1 to 3 (with more, "first" is the one the caption names first)', intOption('--max-objects', 1), 3);
  addTrainingLoopOptions(classifierCmd, { checkpointEvery: 200, logEvery: 10 })
    .addHelpText('after', '\nExamples:\n  vss train classifier --steps 1000 --out runs/fmnist\n  vss train classifier --out runs/fmnist --resume     # after Ctrl-C\n  vss train classifier --dataset shapes --steps 600')
    .action((flags: ClassifierFlags, cmd: Command) => trainClassifier(flags, cmd));

  registerDdpmTrainCommand(trainCmd);
  registerNoisyClassifierTrainCommand(trainCmd);
}
