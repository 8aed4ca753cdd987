/**
 * What the training commands (`vss train …`, `vss eval train-classifier`) share: where the run lives, which
 * checkpoint it resumes from, how the command line merges with the settings saved in that checkpoint, the
 * loop's own options, and running the loop to its end.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { CHECKPOINT_FILE, type TrainResult, type Trainer, readCheckpointInfo } from '../train/loop.js';
import { UserError } from './errors.js';
import { intOption } from './options.js';

/** The options every resumable command has. */
export interface RunFolderFlags {
  out?: string;
  /** true: the checkpoint in --out; a string: that checkpoint file. */
  resume?: boolean | string;
}

/** Whether an option (commander's attribute name, e.g. `headDim`) was typed on the command line. */
export type GivenOption = (option: string) => boolean;

export function givenOnCommandLine(cmd: Command): GivenOption {
  return (option) => cmd.getOptionValueSource(option) === 'cli';
}

/**
 * The run folder and the checkpoint to resume from (null for a new run). `--resume <checkpoint>` without
 * --out continues in the checkpoint's folder. Set `checkpointArgument: false` where --resume takes no path.
 */
export function locateRun(flags: RunFolderFlags, defaultOut: string, { checkpointArgument = true } = {}): { out: string; resumeFrom: string | null } {
  const out = flags.out ?? (typeof flags.resume === 'string' ? path.dirname(flags.resume) : defaultOut);
  if (flags.resume === undefined || flags.resume === false) return { out, resumeFrom: null };
  const resumeFrom = typeof flags.resume === 'string' ? flags.resume : path.join(out, CHECKPOINT_FILE);
  if (!existsSync(resumeFrom)) {
    throw new UserError(`nothing to resume: no checkpoint at ${resumeFrom}`,
      `point --out at the run to continue${checkpointArgument ? ' (or --resume <checkpoint>)' : ''}, or start a new run without --resume`);
  }
  return { out, resumeFrom };
}

/** A new run must not overwrite one: refuse when `out` already holds a checkpoint. */
export function refuseExistingRun(out: string, resumeFrom: string | null, resumeHint: string): void {
  if (!resumeFrom && existsSync(path.join(out, CHECKPOINT_FILE))) {
    throw new UserError(`${out} already holds a training run`, `add --resume to continue it (${resumeHint}), or choose another --out folder`);
  }
}

/** The run settings saved in a checkpoint, which must be those of a `model` run (`what`: e.g. 'a ViT run'). */
export function savedRunConfig<C extends { model: string }>(checkpoint: string, model: C['model'], what: string): Partial<C> {
  const saved = readCheckpointInfo(checkpoint).config as Partial<C> | undefined;
  if (saved?.model !== model) throw new UserError(`${checkpoint} is not ${what}`, 'resume it with the command that trained it');
  return saved;
}

export interface MergeRules {
  given: GivenOption;
  /** Settings the saved state depends on: given on the command line, they must equal the saved ones. */
  fixed: readonly string[];
  /** The option of a setting whose option has another name (e.g. emaDecay → ema); by default the same. */
  optionOf?: Readonly<Record<string, string>>;
}

/** `--head-dim` for the attribute headDim. */
export function flagName(option: string): string {
  return `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function showValue(v: unknown): string {
  return Array.isArray(v) ? v.join(',') : String(v);
}

/**
 * The command line merged with a checkpoint's settings: the saved value wins wherever its option was not
 * given; a given option that changes a fixed setting is refused.
 */
export function mergeWithSaved<C extends object>(config: C, saved: Partial<C>, rules: MergeRules): C {
  const optionOf = (key: string) => rules.optionOf?.[key] ?? key;
  const current = config as Record<string, unknown>, before = saved as Record<string, unknown>;
  for (const key of rules.fixed) {
    const option = optionOf(key);
    if (rules.given(option) && JSON.stringify(before[key]) !== JSON.stringify(current[key])) {
      throw new UserError(`${flagName(option)} ${showValue(current[key])} differs from the run being resumed (${showValue(before[key])})`,
        `leave ${flagName(option)} out to use the run's value, or start a new run in another --out folder`);
    }
  }
  const merged: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(before)) {
    if (value !== undefined && !rules.given(optionOf(key))) merged[key] = value;
  }
  return merged as C;
}

/** Run the loop to its end (or Ctrl-C), closing the data loader whatever happens. */
export async function runTraining<B>(trainer: Trainer<B>, loader: { close(): Promise<void> }): Promise<TrainResult> {
  try {
    return await trainer.run();
  } finally {
    await loader.close();
  }
}

/** The shared loop's own options (checkpoints, metrics records, batch-preparing threads, progress line). */
export function addTrainingLoopOptions(cmd: Command, defaults: { checkpointEvery: number; logEvery: number }): Command {
  return cmd
    .option('--checkpoint-every <n>', 'save a checkpoint every n steps (0: only at the end)', intOption('--checkpoint-every', 0), defaults.checkpointEvery)
    .option('--log-every <n>', 'write a metrics record every n steps', intOption('--log-every', 1), defaults.logEvery)
    .option('--workers <n>', 'threads preparing batches ahead of the training loop', intOption('--workers', 0), 0)
    .option('--no-progress', 'no progress line (the summary is still printed)');
}
