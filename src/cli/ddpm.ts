/**
 * `vss train ddpm`: a class-conditional pixel-space diffusion model (our UNet2DModel with AdaGN and a learned
 * class embedding) on Fashion-MNIST, with the shared training loop. The run folder gets the loop's files
 * (checkpoint, metrics.jsonl, loss.png, samples/) and `model/`, the EMA weights as a loadable f16 pipeline
 * folder that `vss generate --model` and `vss eval ddpm` take. See src/pipelines/class_conditional.ts.
 */
import * as path from 'node:path';
import { type Command, Option } from 'commander';
import { Rng, backendName, noGrad } from '../engine/index.js';
import { DataLoader, type Batch, FASHION_MNIST_CLASSES } from '../data/index.js';
import { AdamW, CosineSchedule, EMA } from '../optim/index.js';
import { UNet2DModel } from '../models/unet2d.js';
import { denoisingLoss } from '../diffusion/training.js';
import { PREDICTION_TYPES, type PredictionType } from '../diffusion/schedules.js';
import { ClassConditionalPipeline, type ClassConditionalInfo } from '../pipelines/class_conditional.js';
import { augmentBatch } from '../train/vit.js';
import { makeGrid, saveImage, tensorToPixels } from '../image/index.js';
import { Trainer } from '../train/loop.js';
import { openDataset } from './data.js';
import { UserError } from './errors.js';
import { intListOption, intOption, numberOption } from './options.js';
import { addTrainingLoopOptions, givenOnCommandLine, locateRun, mergeWithSaved, refuseExistingRun, runTraining, savedRunConfig } from './run_config.js';

const SCHEDULES = { cosine: 'squaredcos_cap_v2', linear: 'linear', 'scaled-linear': 'scaled_linear' } as const;
type ScheduleFlag = keyof typeof SCHEDULES;

/** Everything that defines a run; stored in the checkpoint so `--resume` needs only `--out`. */
export interface DdpmRunConfig {
  model: 'ddpm';
  dataset: 'fashion-mnist';
  data?: string;
  size: number;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  emaDecay: number;
  clip: number;
  seed: number;
  channels: number[];
  layersPerBlock: number;
  attentionLevels: number[];
  headDim: number;
  dropout: number;
  classDropout: number;
  prediction: PredictionType;
  minSnr: number | null;
  schedule: ScheduleFlag;
  flip: boolean;
  checkpointEvery: number;
  sampleEvery: number;
  logEvery: number;
}

/** The command line: the run's settings under their flag names, plus what a run does not store. */
type DdpmFlags = Omit<DdpmRunConfig, 'model' | 'dataset' | 'emaDecay' | 'layersPerBlock' | 'attentionLevels' | 'prediction' | 'minSnr' | 'schedule'> & {
  dataset: string;
  ema: number;
  layers: number;
  attention: number[];
  prediction: string;
  minSnr: number;
  schedule: string;
  out?: string;
  resume?: boolean | string;
  workers: number;
  progress?: boolean;
};

/** Settings the saved state depends on: a resumed run must not change them. */
const FIXED_ON_RESUME = ['dataset', 'size', 'batch', 'seed', 'channels', 'layersPerBlock', 'attentionLevels', 'headDim',
  'prediction', 'schedule'] as const;
/** The options of the settings named otherwise. */
const OPTION_OF: Record<string, string> = { layersPerBlock: 'layers', attentionLevels: 'attention', emaDecay: 'ema' };

/** The diffusers UNet2DModel config of a run. */
export function unetConfigFor(c: Pick<DdpmRunConfig, 'channels' | 'layersPerBlock' | 'attentionLevels' | 'headDim' | 'dropout' | 'size'>,
                              numClasses: number, inChannels = 1): Record<string, unknown> {
  const down = c.channels.map((_, i) => (c.attentionLevels.includes(i) ? 'AttnDownBlock2D' : 'DownBlock2D'));
  const up = [...down].reverse().map((t) => t.replace('Down', 'Up'));
  return {
    _class_name: 'UNet2DModel', sample_size: c.size, in_channels: inChannels, out_channels: inChannels,
    block_out_channels: c.channels, layers_per_block: c.layersPerBlock, down_block_types: down, up_block_types: up,
    attention_head_dim: c.headDim, norm_num_groups: Math.min(8, ...c.channels), norm_eps: 1e-5, act_fn: 'silu',
    resnet_time_scale_shift: 'scale_shift', num_class_embeds: numClasses + 1, add_attention: c.attentionLevels.length > 0,
    attn_norm_num_groups: Math.min(8, ...c.channels), dropout: c.dropout, flip_sin_to_cos: true, freq_shift: 0,
  };
}

export function schedulerConfigFor(c: Pick<DdpmRunConfig, 'schedule' | 'prediction'>): Record<string, unknown> {
  return {
    _class_name: 'DDPMScheduler', num_train_timesteps: 1000, beta_schedule: SCHEDULES[c.schedule],
    beta_start: 0.0001, beta_end: 0.02, prediction_type: c.prediction, clip_sample: true, clip_sample_range: 1,
    variance_type: 'fixed_small', timestep_spacing: 'leading', steps_offset: 0, set_alpha_to_one: true,
  };
}

function resolveConfig(flags: DdpmFlags, cmd: Command): { config: DdpmRunConfig; out: string; resumeFrom: string | null } {
  const { out, resumeFrom } = locateRun(flags, `runs/ddpm-${flags.dataset}`);
  if (!PREDICTION_TYPES.includes(flags.prediction as PredictionType)) {
    throw new UserError(`--prediction must be one of ${PREDICTION_TYPES.join(', ')}, got '${flags.prediction}'`);
  }
  let config: DdpmRunConfig = {
    model: 'ddpm', dataset: 'fashion-mnist', data: flags.data, size: flags.size, steps: flags.steps, batch: flags.batch,
    lr: flags.lr, warmup: flags.warmup, emaDecay: flags.ema, clip: flags.clip, seed: flags.seed, channels: flags.channels,
    layersPerBlock: flags.layers, attentionLevels: flags.attention, headDim: flags.headDim, dropout: flags.dropout,
    classDropout: flags.classDropout, prediction: flags.prediction as PredictionType, minSnr: flags.minSnr > 0 ? flags.minSnr : null,
    schedule: flags.schedule as ScheduleFlag, flip: flags.flip, checkpointEvery: flags.checkpointEvery,
    sampleEvery: flags.sampleEvery, logEvery: flags.logEvery,
  };
  if (resumeFrom) {
    const saved = savedRunConfig<DdpmRunConfig>(resumeFrom, 'ddpm', 'a ddpm run');
    config = mergeWithSaved(config, saved, { given: givenOnCommandLine(cmd), fixed: FIXED_ON_RESUME, optionOf: OPTION_OF });
  }
  const levels = config.channels.length;
  if (config.size % 2 ** (levels - 1) !== 0) {
    throw new UserError(`--size ${config.size} is not divisible by ${2 ** (levels - 1)} (the U-Net halves it ${levels - 1} times)`,
      levels === 3 ? 'use 28 (native) or 32 (padded)' : `use a multiple of ${2 ** (levels - 1)} or fewer --channels levels`);
  }
  const badLevel = config.attentionLevels.find((l) => l < 0 || l >= levels);
  if (badLevel !== undefined) throw new UserError(`--attention level ${badLevel} does not exist (levels 0…${levels - 1})`);
  const groups = Math.min(8, ...config.channels);
  // Attention runs at the chosen levels and, when any is chosen, in the middle block (the last level's channels).
  const attended = config.attentionLevels.length > 0 ? [...config.attentionLevels, levels - 1] : [];
  const badCh = config.channels.find((c, i) => c % groups !== 0 || (attended.includes(i) && c % config.headDim !== 0));
  if (badCh !== undefined) throw new UserError(`--channels ${badCh} must be a multiple of the group count (${groups}) and, where attention runs, of --head-dim (${config.headDim})`);
  return { config, out, resumeFrom };
}

/** Save the EMA weights as a loadable pipeline folder. */
function exportModel(dir: string, unet: UNet2DModel, config: DdpmRunConfig, step: number, elapsed: number): ClassConditionalPipeline {
  const info: ClassConditionalInfo = {
    classNames: [...FASHION_MNIST_CLASSES], imageSize: config.size, channels: 1, dataRange: 'signed',
    defaults: { sampler: 'DDIM', steps: 50, guidanceScale: 3 },
    training: { command: 'vss train ddpm', dataset: config.dataset, steps: step, batch: config.batch, seed: config.seed, seconds: Math.round(elapsed) },
  };
  const pipe = new ClassConditionalPipeline(unet, schedulerConfigFor(config), info);
  pipe.save(dir, { unetConfig: unetConfigFor(config, FASHION_MNIST_CLASSES.length), dtype: 'f16' });
  return pipe;
}

async function trainDdpm(flags: DdpmFlags, cmd: Command): Promise<void> {
  const { config, out, resumeFrom } = resolveConfig(flags, cmd);
  const trainSet = await openDataset('fashion-mnist', { split: 'train', data: config.data, size: config.size });
  const classes = FASHION_MNIST_CLASSES.length;
  const rng = new Rng(config.seed);
  const unetConfig = unetConfigFor(config, classes);
  const unet = UNet2DModel.fromDiffusersConfig(unetConfig, { rng });
  const ema = new EMA(unet, { decay: config.emaDecay, warmup: true });
  const emaNet = UNet2DModel.fromDiffusersConfig(unetConfig);
  emaNet.eval();
  const pipeFor = (net: UNet2DModel) => new ClassConditionalPipeline(net, schedulerConfigFor(config), {
    classNames: [...FASHION_MNIST_CLASSES], imageSize: config.size, channels: 1, dataRange: 'signed',
    defaults: { sampler: 'DDIM', steps: 25, guidanceScale: 3 },
  });
  const schedule = pipeFor(emaNet).schedule;
  const optimizer = new AdamW(unet.parameters(), { lr: config.lr, weightDecay: 0.0 });
  const lrSchedule = new CosineSchedule({ lr: config.lr, warmupSteps: Math.min(config.warmup, Math.floor(config.steps / 5)), totalSteps: config.steps, minLr: config.lr / 20 });
  const loader = new DataLoader(trainSet, { batchSize: config.batch, shuffle: true, seed: config.seed, dropLast: true, epochs: Infinity, workers: flags.workers });
  const noiseRng = new Rng(config.seed + 1);
  const modelDir = path.join(out, 'model');

  const resumeHint = `vss train ddpm --out ${out} --resume`;
  refuseExistingRun(out, resumeFrom, resumeHint);
  if (!resumeFrom) {
    console.error(`training a ${unet.numParameters().toLocaleString('en')}-parameter class-conditional U-Net on ${config.dataset} ` +
      `(${config.size}×${config.size}, batch ${config.batch}, ${config.steps} steps, ${config.prediction} prediction, ${config.schedule} schedule, ` +
      `${backendName()} kernels) → ${out}`);
  }
  const trainer = new Trainer<Batch>({
    model: unet, optimizer, loader, totalSteps: config.steps, lrSchedule, clipGradNorm: config.clip, ema,
    outDir: out, checkpointEvery: config.checkpointEvery, logEvery: config.logEvery, seed: config.seed,
    rng: { main: rng, noise: noiseRng }, resume: resumeFrom ?? false, config, resumeHint,
    step: (batch) => {
      const x0 = config.flip ? augmentBatch(batch.images, noiseRng, { cropPadding: 0, cropProb: 0, flip: true, erasing: 0, background: -1 }) : batch.images;
      const labels = Array.from(batch.labels.toFloat32Array(), Math.round);
      const r = denoisingLoss((xt, t, y) => unet.forward(xt, t, y), schedule, x0, labels, {
        prediction: config.prediction, minSnrGamma: config.minSnr, classDropout: config.classDropout, nullClass: classes, rng: noiseRng,
      });
      return { loss: r.loss };
    },
    sampleEvery: config.sampleEvery,
    sample: async (ctx) => {
      ema.copyTo(emaNet);
      const pipe = pipeFor(emaNet);
      const labels = Array.from({ length: 2 * classes }, (_, i) => i % classes);
      const images = noGrad(() => pipe.generate({ labels, steps: 25, guidanceScale: 3, rng: new Rng(1234) }));
      await saveImage(ctx.samplePath(), makeGrid(tensorToPixels(images, { range: 'signed' }), {
        columns: classes, captions: labels.map((y) => FASHION_MNIST_CLASSES[y]), title: `step ${ctx.step}: DDIM 25, CFG 3 (EMA weights)`,
      }));
      exportModel(modelDir, emaNet, config, ctx.step, 0);
      ctx.log(`samples → ${ctx.samplePath()}; model → ${modelDir}`);
    },
    itemsInBatch: (b) => b.images.shape[0],
    progress: flags.progress === false ? false : undefined,
  });
  const result = await runTraining(trainer, loader);
  ema.copyTo(emaNet);
  exportModel(modelDir, emaNet, config, result.step, result.elapsed);
  console.log(`model (EMA weights, f16) → ${modelDir}   try: vss generate --model ${modelDir} "a sneaker"`);
  if (!result.completed) process.exitCode = 130;
}

export function registerDdpmTrainCommand(trainCmd: Command): void {
  const ddpmCmd = trainCmd
    .command('ddpm')
    .description('a class-conditional diffusion U-Net (AdaGN, self-attention, CFG class dropout, EMA) on Fashion-MNIST')
    .addOption(new Option('--dataset <name>', 'what to train on').choices(['fashion-mnist']).default('fashion-mnist'))
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--size <n>', 'image side: 28 (native) or 32 (padded with background)', intOption('--size', 8), 28)
    .option('--steps <n>', 'optimiser steps', intOption('--steps', 1), 3600)
    .option('--batch <n>', 'images per step', intOption('--batch', 1), 32)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine decay to lr/20)', numberOption('--lr', 1e-8, 1), 7e-4)
    .option('--warmup <n>', 'warm-up steps', intOption('--warmup', 0), 200)
    .option('--ema <decay>', 'EMA decay of the exported weights (ramped up over the first steps)', numberOption('--ema', 0, 1), 0.999)
    .option('--clip <norm>', 'gradient norm clip', numberOption('--clip', 1e-6, 1e6), 1)
    .option('--seed <n>', 'seed of the weights, data order and noise', intOption('--seed', 0), 0)
    .option('--channels <list>', 'channels per U-Net level', intListOption('--channels', 1), [32, 64, 128])
    .option('--layers <n>', 'resnet blocks per level (down path; the up path has one more)', intOption('--layers', 1), 1)
    .option('--attention <levels>', "levels (0 = full resolution) with self-attention (the middle block has it too), comma-separated, or 'none' (no attention anywhere)", intListOption('--attention', 0, { allowNone: true }), [2])
    .option('--head-dim <n>', 'channels per attention head', intOption('--head-dim', 1), 32)
    .option('--dropout <p>', 'dropout inside the resnets', numberOption('--dropout', 0, 0.9), 0)
    .option('--class-dropout <p>', 'probability of training on the null class (for classifier-free guidance)', numberOption('--class-dropout', 0, 1), 0.1)
    .addOption(new Option('--prediction <type>', 'what the network predicts').choices([...PREDICTION_TYPES]).default('epsilon'))
    .option('--min-snr <gamma>', 'min-SNR-γ loss weighting (0: off)', numberOption('--min-snr', 0, 1e6), 5)
    .addOption(new Option('--schedule <name>', 'noise schedule').choices(Object.keys(SCHEDULES)).default('cosine'))
    .option('--no-flip', 'no random horizontal flips of the training images')
    .option('-o, --out <dir>', 'run folder (default runs/ddpm-fashion-mnist); the model goes to <out>/model')
    .option('--resume [checkpoint]', 'continue the run in --out exactly where it stopped')
    .option('--sample-every <n>', 'write a sample grid and export the model every n steps (0: only at the end)', intOption('--sample-every', 0), 500);
  addTrainingLoopOptions(ddpmCmd, { checkpointEvery: 200, logEvery: 10 })
    .addHelpText('after', '\nExamples:\n  vss train ddpm --out runs/ddpm                 # the defaults that made models/fmnist-ddpm\n' +
      '  vss train ddpm --out runs/ddpm --resume        # after Ctrl-C\n' +
      '  vss train ddpm --steps 20 --channels 16,32 --attention none --out /tmp/smoke')
    .action((flags: DdpmFlags, cmd: Command) => trainDdpm(flags, cmd));
}
