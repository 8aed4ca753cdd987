/**
 * `vss train noisy-classifier`: the time-conditioned classifier p(y | x_t, t) that classifier guidance
 * differentiates (src/models/noisy_classifier.ts), trained with the shared loop on Fashion-MNIST:
 *
 *   t ~ U{0 … T−1},  ε ~ N(0, I),  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,  loss = cross-entropy(f(x_t, t), y)
 *
 * The schedule must be the denoiser's (x_t means nothing under another ᾱ_t): --schedule names one the way
 * `vss train ddpm` does, or --like copies a diffusion model folder's scheduler config. Evaluation reports test
 * accuracy at fixed noise levels (t = 0, 250, 500, 750 by default), always with the same noise, so the
 * numbers are comparable across a run. The run folder gets `model/` (EMA weights, f16), with the accuracies
 * in its config.json's "training" record.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { type Command, Option } from 'commander';
import { Rng, type Tensor, backendName, crossEntropy, noGrad, randn } from '../engine/index.js';
import { DataLoader, type Batch, type Dataset, FASHION_MNIST_CLASSES } from '../data/index.js';
import { AdamW, CosineSchedule, EMA } from '../optim/index.js';
import { schedulerFromConfig } from '../diffusion/schedulers/index.js';
import type { NoiseSchedule } from '../diffusion/schedules.js';
import { NoisyClassifier, classifierGradientFrom } from '../models/noisy_classifier.js';
import { augmentBatch } from '../train/vit.js';
import { Trainer } from '../train/loop.js';
import { openDataset } from './data.js';
import { UserError } from './errors.js';
import { intListOption, intOption, numberOption } from './options.js';
import { addTrainingLoopOptions, givenOnCommandLine, locateRun, mergeWithSaved, refuseExistingRun, runTraining, savedRunConfig } from './run_config.js';
import { schedulerConfigFor } from './ddpm.js';

export { classifierGradientFrom };

const SCHEDULE_FLAGS = ['cosine', 'linear', 'scaled-linear'] as const;
type ScheduleFlag = typeof SCHEDULE_FLAGS[number];

/** Everything that defines a run; stored in the checkpoint so `--resume` needs only `--out`. */
export interface NoisyClassifierRunConfig {
  model: 'noisy-classifier';
  dataset: 'fashion-mnist';
  data?: string;
  size: number;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  emaDecay: number;
  seed: number;
  channels: number[];
  layersPerBlock: number;
  /** Where the schedule came from: a --schedule name or `like <folder>`. */
  scheduleSource: string;
  /** The diffusers scheduler config whose ᾱ_t the classifier is trained on (exported beside the weights). */
  schedulerConfig: Record<string, unknown>;
  flip: boolean;
  evalTimesteps: number[];
  evalLimit: number;
  checkpointEvery: number;
  evalEvery: number;
  logEvery: number;
}

/** The command line: the run's settings under their flag names, plus what a run does not store. */
type NoisyClassifierFlags = Omit<NoisyClassifierRunConfig,
  'model' | 'dataset' | 'emaDecay' | 'layersPerBlock' | 'scheduleSource' | 'schedulerConfig' | 'evalTimesteps'> & {
  dataset: string;
  ema: number;
  layers: number;
  schedule: string;
  like?: string;
  evalT: number[];
  out?: string;
  resume?: boolean | string;
  workers: number;
  progress?: boolean;
};

/** Settings the saved state depends on: a resumed run must not change them. */
const FIXED_ON_RESUME = ['dataset', 'size', 'batch', 'seed', 'channels', 'layersPerBlock'] as const;
/** The options of the settings named otherwise. */
const OPTION_OF: Record<string, string> = {
  layersPerBlock: 'layers', emaDecay: 'ema', evalTimesteps: 'evalT', scheduleSource: 'schedule', schedulerConfig: 'schedule',
};

/** The scheduler config of a diffusion model folder (pipeline folder, run folder, or a scheduler folder). */
export function schedulerConfigOf(folder: string): { config: Record<string, unknown>; file: string } {
  const candidates = ['scheduler/scheduler_config.json', 'model/scheduler/scheduler_config.json', 'scheduler_config.json']
    .map((f) => path.join(folder, f));
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    throw new UserError(`--like ${folder}: no scheduler config there (looked for ${candidates.map((c) => path.relative(folder, c)).join(', ')})`,
      'point --like at a diffusion model folder (e.g. models/fmnist-ddpm or runs/ddpm/model)');
  }
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    schedulerFromConfig(config);
  } catch (err) {
    throw new UserError(`--like ${folder}: ${file} is not a usable scheduler config: ${(err as Error).message}`);
  }
  return { config, file };
}

function resolveConfig(flags: NoisyClassifierFlags, cmd: Command): { config: NoisyClassifierRunConfig; out: string; resumeFrom: string | null } {
  const given = givenOnCommandLine(cmd);
  const { out, resumeFrom } = locateRun(flags, 'runs/noisy-classifier');
  if (flags.like !== undefined && given('schedule')) {
    throw new UserError('--schedule and --like both set the noise schedule', 'give one: --like copies the diffusion model\'s own schedule');
  }
  const schedule = flags.like !== undefined
    ? { source: `like ${flags.like}`, config: schedulerConfigOf(flags.like).config }
    : { source: flags.schedule, config: schedulerConfigFor({ schedule: flags.schedule as ScheduleFlag, prediction: 'epsilon' }) };
  const T = schedulerFromConfig(schedule.config).schedule.numTrainTimesteps;
  const badT = flags.evalT.find((t) => t >= T);
  if (badT !== undefined) throw new UserError(`--eval-t ${badT} is past the schedule's last timestep (${T - 1})`);

  let config: NoisyClassifierRunConfig = {
    model: 'noisy-classifier', dataset: 'fashion-mnist', data: flags.data, size: flags.size, steps: flags.steps,
    batch: flags.batch, lr: flags.lr, warmup: flags.warmup, emaDecay: flags.ema, seed: flags.seed, channels: flags.channels,
    layersPerBlock: flags.layers, scheduleSource: schedule.source, schedulerConfig: schedule.config, flip: flags.flip,
    evalTimesteps: flags.evalT, evalLimit: flags.evalLimit, checkpointEvery: flags.checkpointEvery,
    evalEvery: flags.evalEvery, logEvery: flags.logEvery,
  };
  if (resumeFrom) {
    const saved = savedRunConfig<NoisyClassifierRunConfig>(resumeFrom, 'noisy-classifier', 'a noisy-classifier run');
    const scheduleGiven = given('schedule') || flags.like !== undefined;
    if (scheduleGiven && saved.schedulerConfig && JSON.stringify(saved.schedulerConfig) !== JSON.stringify(config.schedulerConfig)) {
      throw new UserError(`the noise schedule (${config.scheduleSource}) differs from the run being resumed (${saved.scheduleSource})`,
        'leave --schedule and --like out, or start a new run in another --out folder');
    }
    // The schedule's two settings come from the checkpoint unless --schedule or --like is given.
    config = mergeWithSaved(config, saved, {
      given: (option) => (option === 'schedule' ? scheduleGiven : given(option)), fixed: FIXED_ON_RESUME, optionOf: OPTION_OF,
    });
  }
  const groups = 8;
  const badCh = config.channels.find((c) => c % groups !== 0);
  if (badCh !== undefined) throw new UserError(`--channels ${badCh} is not a multiple of ${groups} (the GroupNorm group count)`);
  return { config, out, resumeFrom };
}

/**
 * Test accuracy at each of `timesteps`, on the first `count` images of `testSet`. The noise is drawn from a
 * generator seeded afresh for every call, so two evaluations differ only by the weights.
 */
export async function accuracyByTimestep(model: NoisyClassifier, schedule: NoiseSchedule, testSet: Dataset, count: number,
                                         timesteps: readonly number[], seed: number): Promise<Record<number, number>> {
  const result: Record<number, number> = {};
  const subset = { length: Math.min(count, testSet.length), get: (i: number) => testSet.get(i) };
  for (const t of timesteps) {
    const rng = new Rng(seed * 7919 + t);
    const loader = new DataLoader(subset, { batchSize: 200, shuffle: false });
    let correct = 0, total = 0;
    try {
      for (let b = await loader.next(); b; b = await loader.next()) {
        const batch = b;
        const predicted = noGrad(() => {
          const xt = schedule.qSample(batch.images, randn(batch.images.shape, { rng }), t);
          return model.forward(xt, t).argmax(1).toArray() as number[];
        });
        const truth = batch.labels.toArray() as number[];
        predicted.forEach((p, i) => { if (p === truth[i]) correct++; });
        total += truth.length;
      }
    } finally {
      await loader.close();
    }
    result[t] = total > 0 ? correct / total : 0;
  }
  return result;
}

function accuracyMetrics(acc: Record<number, number>): Record<string, number> {
  const m: Record<string, number> = {};
  for (const [t, a] of Object.entries(acc)) m[`test_accuracy_t${t}`] = a;
  const values = Object.values(acc);
  if (values.length) m.test_accuracy_mean = values.reduce((s, a) => s + a, 0) / values.length;
  return m;
}

function accuracyFromMetrics(m: Record<string, number>): Record<number, number> | null {
  const acc: Record<number, number> = {};
  for (const [k, v] of Object.entries(m)) {
    const t = /^test_accuracy_t(\d+)$/.exec(k);
    if (t) acc[Number(t[1])] = v;
  }
  return Object.keys(acc).length ? acc : null;
}

async function trainNoisyClassifier(flags: NoisyClassifierFlags, cmd: Command): Promise<void> {
  const { config, out, resumeFrom } = resolveConfig(flags, cmd);
  const trainSet = await openDataset('fashion-mnist', { split: 'train', data: config.data, size: config.size });
  const testSet = await openDataset('fashion-mnist', { split: 'test', data: config.data, size: config.size });
  const evalCount = Math.min(testSet.length, config.evalLimit);
  const schedule = schedulerFromConfig(config.schedulerConfig).schedule;
  const T = schedule.numTrainTimesteps;

  const rng = new Rng(config.seed);
  const modelConfig = { classNames: [...FASHION_MNIST_CLASSES], sampleSize: config.size, blockOutChannels: config.channels, layersPerBlock: config.layersPerBlock };
  const model = NoisyClassifier.create(modelConfig, { rng });
  const ema = new EMA(model, { decay: config.emaDecay, warmup: true });
  const emaNet = NoisyClassifier.create(modelConfig);
  emaNet.schedulerConfig = config.schedulerConfig;
  const optimizer = new AdamW(model.parameters(), { lr: config.lr, weightDecay: 1e-4 });
  const lrSchedule = new CosineSchedule({ lr: config.lr, warmupSteps: Math.min(config.warmup, Math.floor(config.steps / 5)), totalSteps: config.steps, minLr: config.lr / 20 });
  const loader = new DataLoader(trainSet, { batchSize: config.batch, shuffle: true, seed: config.seed, dropLast: true, epochs: Infinity, workers: flags.workers });
  const noiseRng = new Rng(config.seed + 1);
  const modelDir = path.join(out, 'model');

  const resumeHint = `vss train noisy-classifier --out ${out} --resume`;
  refuseExistingRun(out, resumeFrom, resumeHint);
  if (!resumeFrom) {
    console.error(`training a ${model.numParameters().toLocaleString('en')}-parameter noise-aware classifier on ${config.dataset} ` +
      `(x_t of the ${config.scheduleSource} schedule, T = ${T}; batch ${config.batch}, ${config.steps} steps, ${backendName()} kernels) → ${out}`);
  }
  let lastAccuracy: Record<number, number> | null = null;
  const exportModel = (step: number, seconds: number | null) => {
    emaNet.provenance = {
      command: 'vss train noisy-classifier', dataset: config.dataset, schedule: config.scheduleSource, steps: step,
      batch: config.batch, lr: config.lr, seed: config.seed, seconds: seconds === null ? null : Math.round(seconds),
      accuracy_by_t: lastAccuracy, accuracy_images: evalCount,
    };
    emaNet.savePretrained(modelDir, { dtype: 'f16' });
  };
  const trainer = new Trainer<Batch>({
    model, optimizer, loader, totalSteps: config.steps, lrSchedule, clipGradNorm: 1.0, ema,
    outDir: out, checkpointEvery: config.checkpointEvery, logEvery: config.logEvery, seed: config.seed,
    rng: { main: rng, noise: noiseRng }, resume: resumeFrom ?? false, config, resumeHint,
    step: (batch) => {
      const x0 = config.flip ? augmentBatch(batch.images, noiseRng, { cropPadding: 0, cropProb: 0, flip: true, erasing: 0, background: -1 }) : batch.images;
      const B = x0.shape[0];
      const t = Array.from(noiseRng.integers(B, 0, T));
      const xt: Tensor = schedule.qSample(x0, randn(x0.shape, { rng: noiseRng }), t);
      const logits = model.forward(xt, t);
      const loss = crossEntropy(logits, batch.labels);
      const predicted = logits.detach().argmax(1).toArray() as number[];
      const truth = batch.labels.toArray() as number[];
      const accuracy = predicted.reduce((n, p, i) => n + (p === truth[i] ? 1 : 0), 0) / B;
      return { loss, metrics: { accuracy } };
    },
    evalEvery: config.evalEvery,
    evaluate: async (ctx) => {
      ema.copyTo(emaNet);
      lastAccuracy = await accuracyByTimestep(emaNet, schedule, testSet, evalCount, config.evalTimesteps, config.seed);
      exportModel(ctx.step, null); // an interrupted run still leaves a usable model
      return accuracyMetrics(lastAccuracy);
    },
    itemsInBatch: (b) => b.images.shape[0],
    progress: flags.progress === false ? false : undefined,
  });
  const result = await runTraining(trainer, loader);
  ema.copyTo(emaNet);
  if (!lastAccuracy && result.lastEval) lastAccuracy = accuracyFromMetrics(result.lastEval); // resumed after the last evaluation
  exportModel(result.step, result.elapsed);
  console.log(`model (EMA weights, f16) → ${modelDir}` + (lastAccuracy
    ? `; test accuracy on ${evalCount} images: ${Object.entries(lastAccuracy).map(([t, a]) => `t=${t} ${(100 * a).toFixed(1)}%`).join(', ')}`
    : ''));
  if (!result.completed) process.exitCode = 130;
}

export function registerNoisyClassifierTrainCommand(trainCmd: Command): void {
  const noisyClassifierCmd = trainCmd
    .command('noisy-classifier')
    .description('a noise-aware classifier p(y | x_t, t) on Fashion-MNIST, for classifier guidance of a diffusion model')
    .addOption(new Option('--dataset <name>', 'what to train on').choices(['fashion-mnist']).default('fashion-mnist'))
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--size <n>', 'image side: 28 (native) or 32 (padded), as the diffusion model', intOption('--size', 8), 28)
    .addOption(new Option('--schedule <name>', 'noise schedule of x_t: must be the diffusion model\'s').choices([...SCHEDULE_FLAGS]).default('cosine'))
    .option('--like <model>', 'copy the noise schedule of this diffusion model folder (instead of --schedule)')
    .option('--steps <n>', 'optimiser steps', intOption('--steps', 1), 800)
    .option('--batch <n>', 'images per step', intOption('--batch', 1), 64)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine decay to lr/20)', numberOption('--lr', 1e-8, 1), 2e-3)
    .option('--warmup <n>', 'warm-up steps', intOption('--warmup', 0), 50)
    .option('--ema <decay>', 'EMA decay of the evaluated and exported weights (ramped up over the first steps)', numberOption('--ema', 0, 1), 0.999)
    .option('--seed <n>', 'seed of the weights, data order and noise', intOption('--seed', 0), 0)
    .option('--channels <list>', 'channels per level (multiples of 8); every level but the last halves the image', intListOption('--channels', 8), [32, 64, 64])
    .option('--layers <n>', 'resnet blocks per level', intOption('--layers', 1), 1)
    .option('--no-flip', 'no random horizontal flips of the training images')
    .option('--eval-t <list>', 'timesteps at which test accuracy is measured', intListOption('--eval-t', 0), [0, 250, 500, 750])
    .option('--eval-limit <n>', 'test images used for each accuracy', intOption('--eval-limit', 1), 1000)
    .option('-o, --out <dir>', 'run folder (default runs/noisy-classifier); the model goes to <out>/model')
    .option('--resume [checkpoint]', 'continue the run in --out exactly where it stopped')
    .option('--eval-every <n>', 'measure test accuracy and export the model every n steps (0: only at the end)', intOption('--eval-every', 0), 200);
  addTrainingLoopOptions(noisyClassifierCmd, { checkpointEvery: 200, logEvery: 10 })
    .addHelpText('after', '\nExamples:\n  vss train noisy-classifier --out runs/noisy-classifier           # cosine schedule, as vss train ddpm\n' +
      '  vss train noisy-classifier --like models/fmnist-ddpm --out runs/nc\n' +
      '  vss train noisy-classifier --out runs/noisy-classifier --resume  # after Ctrl-C')
    .action((flags: NoisyClassifierFlags, cmd: Command) => trainNoisyClassifier(flags, cmd));
}
