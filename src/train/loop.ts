/**
 * The training loop every model shares: it owns the bookkeeping so that a model only supplies
 * `step(batch) → loss`.
 *
 *   - progress on stderr (rate, ETA, loss), a JSONL metrics log, periodic samples and evaluations;
 *   - checkpoints every N steps, at the end, and on Ctrl-C / SIGTERM (the current step finishes first);
 *   - `resume` continues bit-exactly: the checkpoint holds the model, optimiser, EMA, every generator
 *     (including the default one), the data loader's position and the half-filled logging window;
 *   - a final summary and a loss curve (loss.png) drawn from the metrics log.
 *
 * Step numbering: `ctx.step` is the number of optimiser steps already taken (0 on the first step, what
 * LR schedules take); the metrics log, checkpoints and messages count completed steps (1..totalSteps).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng, type Tensor, getDefaultRng, manualSeed } from '../engine/index.js';
import type { Module } from '../nn/module.js';
import { type Optimizer, clipGradNorm } from '../optim/optimizer.js';
import type { EMA } from '../optim/ema.js';
import type { LrSchedule } from '../optim/schedule.js';
import { loadCheckpoint, saveCheckpoint } from '../io/checkpoint.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { readMetricsLog, saveLinePlot, type MetricRecord } from '../image/plot.js';
import { writeFileAtomic } from '../image/io.js';
import { Progress, type ProgressStream, formatDuration, formatValue } from './progress.js';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const METRICS_FILE = 'metrics.jsonl';
export const LOSS_PLOT_FILE = 'loss.png';
export const SAMPLES_DIR = 'samples';

/** A problem with how training was set up (not a bug): the message says what, `hint` what to do. */
export class TrainError extends Error {
  constructor(message: string, readonly hint?: string) {
    super(message);
    this.name = 'TrainError';
  }
}

/** What the loop needs of a data source; DataLoader (with `epochs: Infinity`) fits. */
export interface TrainLoader<B> {
  next(): Promise<B | null>;
  state(): unknown;
  setState(state: never): void;
}

export interface StepContext {
  /** Optimiser steps already taken (0 on the first step). */
  step: number;
  totalSteps: number;
  /** The learning rate this step uses. */
  lr: number;
  /** The run's generator (the first one when several are given). */
  rng: Rng;
  rngs: Readonly<Record<string, Rng>>;
  model: Module;
  optimizer: Optimizer<any>;
  /** Ask the loop to stop after this step (a checkpoint is saved, as on Ctrl-C). */
  stop(reason?: string): void;
}

export interface StepResult {
  /** A scalar tensor; the loop calls backward() on it. */
  loss: Tensor;
  /** Extra numbers to log (averaged over the logging window like the loss). */
  metrics?: Record<string, number>;
}

/** Context of the periodic callbacks (samples, evaluation), taken after `step` completed steps. */
export interface CallbackContext {
  step: number;
  totalSteps: number;
  outDir: string;
  model: Module;
  ema?: EMA;
  /** `outDir/samples/step_000123<suffix>`; the folder exists. */
  samplePath(suffix?: string): string;
  /** Print a line without breaking the progress display. */
  log(message: string): void;
}

export interface TrainOptions<B> {
  model: Module;
  optimizer: Optimizer<any>;
  loader: TrainLoader<B>;
  step: (batch: B, ctx: StepContext) => StepResult | Promise<StepResult>;
  totalSteps: number;
  /** Sets the optimiser's learning rate before each step from the 0-based step number. */
  lrSchedule?: LrSchedule | ((step: number) => number);
  /** Clip the global gradient norm to this value (the norm is logged either way). */
  clipGradNorm?: number;
  /** Updated after every optimiser step, saved in checkpoints. */
  ema?: EMA;
  outDir: string;
  /** Save a checkpoint every this many steps (0: only at the end and on interruption). */
  checkpointEvery: number;
  sampleEvery?: number;
  /** Called every `sampleEvery` steps and at the end; the model is put back in training mode after. */
  sample?: (ctx: CallbackContext) => Promise<void> | void;
  evalEvery?: number;
  /** Returns numbers for the metrics log (e.g. test accuracy); called every `evalEvery` steps and at the end. */
  evaluate?: (ctx: CallbackContext) => Promise<Record<string, number>> | Record<string, number>;
  /** Write a metrics record every this many steps (the loss is the mean over those steps). */
  logEvery: number;
  /** true: continue from outDir's checkpoint; a path: continue from that checkpoint. */
  resume?: boolean | string;
  /** Seeds the default generator (ops given no `rng`) and, when `rng` is absent, the run's generator. */
  seed: number;
  /** The generator(s) the step draws from (dropout, noise, …); all are checkpointed. */
  rng?: Rng | Record<string, Rng>;
  /** JSON-serialisable settings stored in the checkpoint (read back with `readCheckpointInfo`). */
  config?: unknown;
  /** Images (items) in a batch, for the images/s rate; default `batch.images.shape[0]`. */
  itemsInBatch?: (batch: B) => number;
  /** Told to the user when the run stops early, e.g. the command that resumes it. */
  resumeHint?: string;
  /** Stops the run like Ctrl-C does. */
  signal?: AbortSignal;
  /** Catch SIGINT / SIGTERM while training (default true). */
  handleSignals?: boolean;
  /** Where progress and messages go (default process.stderr). */
  output?: ProgressStream;
  /** Progress display settings, or false for none (messages are still printed). */
  progress?: false | { tty?: boolean; every?: number; now?: () => number };
  /** Print nothing at all. */
  quiet?: boolean;
}

export interface TrainResult {
  /** Completed steps. */
  step: number;
  totalSteps: number;
  /** True when all totalSteps ran; false when stopped early (interrupt, stop(), data ran out). */
  completed: boolean;
  stopReason?: string;
  /** Training seconds, summed over resumed sessions. */
  elapsed: number;
  /** Mean loss of the last logging window. */
  finalLoss: number | null;
  /** Lowest logging-window mean loss and the step where it was reached. */
  bestLoss: number | null;
  bestStep: number | null;
  /** The last evaluation's numbers. */
  lastEval: Record<string, number> | null;
  /** The step a resumed run started from (0 for a fresh run). */
  resumedFrom: number;
  checkpointPath: string;
  metricsPath: string;
  lossPlotPath: string | null;
  samplesDir: string | null;
}

/** Sums over the steps since the last metrics record; checkpointed so a resumed run logs the same values. */
interface LogWindow {
  count: number;
  loss: number;
  gradNorm: number;
  metrics: Record<string, number>;
}

/** The loop's own part of the checkpoint (`extra`). */
interface LoopState {
  kind: 'vss-train-loop';
  seed: number;
  totalSteps: number;
  loader: unknown;
  elapsed: number;
  window: LogWindow;
  bestLoss: number | null;
  bestStep: number | null;
  finalLoss: number | null;
  lastEval: Record<string, number> | null;
  config?: unknown;
}

/** What the loop tallies across the run (and across resumes). */
type Tally = Pick<LoopState, 'elapsed' | 'window' | 'bestLoss' | 'bestStep' | 'finalLoss' | 'lastEval'>;

/** The default generator travels in checkpoints under this name. */
const DEFAULT_RNG_KEY = 'vss.default';

export interface CheckpointInfo {
  step: number;
  totalSteps: number | null;
  seed: number | null;
  config: unknown;
  elapsed: number | null;
}

/** Step and settings of a checkpoint written by the loop, without loading any weights. */
export function readCheckpointInfo(file: string): CheckpointInfo {
  let sf: SafetensorsFile;
  try {
    sf = SafetensorsFile.open(file);
  } catch (err) {
    throw new TrainError(`cannot read checkpoint ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    const meta = sf.metadata;
    const extra = meta.extra === undefined ? undefined : JSON.parse(meta.extra) as Partial<LoopState>;
    const loop = extra?.kind === 'vss-train-loop' ? extra : undefined;
    return {
      step: Number(meta.step ?? 0),
      totalSteps: loop?.totalSteps ?? null,
      seed: loop?.seed ?? null,
      config: loop?.config,
      elapsed: loop?.elapsed ?? null,
    };
  } finally {
    sf.close();
  }
}

function emptyWindow(): LogWindow {
  return { count: 0, loss: 0, gradNorm: 0, metrics: {} };
}

function defaultItems(batch: unknown): number {
  const images = (batch as { images?: { shape?: readonly number[] } } | null)?.images;
  return images?.shape?.[0] ?? 0;
}

/** Round to 6 significant digits for the log, but keep losses exact (resume is compared bit for bit). */
function tidy(v: number): number {
  return Number.isFinite(v) ? Number(v.toPrecision(6)) : v;
}

/**
 * One training run. `run()` trains; `stop()` (or Ctrl-C, SIGTERM, the abort signal) ends it after the
 * current step with a checkpoint.
 */
export class Trainer<B> {
  private stopReason: string | null = null;
  private readonly rngs: Record<string, Rng>;
  private readonly primaryRng: Rng;
  private progress: Progress | null = null;
  private readonly output: ProgressStream;

  constructor(private readonly opts: TrainOptions<B>) {
    const { totalSteps, logEvery, checkpointEvery } = opts;
    if (!Number.isInteger(totalSteps) || totalSteps < 0) throw new TrainError(`totalSteps must be a non-negative integer, got ${totalSteps}`);
    if (!Number.isInteger(logEvery) || logEvery < 1) throw new TrainError(`logEvery must be a positive integer, got ${logEvery}`);
    if (!Number.isInteger(checkpointEvery) || checkpointEvery < 0) throw new TrainError(`checkpointEvery must be a non-negative integer, got ${checkpointEvery}`);
    if (!Number.isSafeInteger(opts.seed) || opts.seed < 0) throw new TrainError(`seed must be a non-negative integer, got ${opts.seed}`);
    const given = opts.rng ?? new Rng(opts.seed);
    this.rngs = given instanceof Rng ? { main: given } : { ...given };
    if (DEFAULT_RNG_KEY in this.rngs) throw new TrainError(`the generator name '${DEFAULT_RNG_KEY}' is reserved`);
    const first = Object.values(this.rngs)[0];
    if (!first) throw new TrainError('rng: give at least one generator');
    this.primaryRng = first;
    this.output = opts.output ?? process.stderr;
  }

  /** End the run after the current step (a checkpoint is saved). */
  stop(reason = 'stopped'): void {
    this.stopReason ??= reason;
  }

  get checkpointPath(): string {
    return path.join(this.opts.outDir, CHECKPOINT_FILE);
  }

  async run(): Promise<TrainResult> {
    const o = this.opts;
    const outDir = o.outDir;
    fs.mkdirSync(outDir, { recursive: true });
    const metricsPath = path.join(outDir, METRICS_FILE);
    const checkpointPath = this.checkpointPath;

    // ---- fresh start or resume
    let step = 0;
    let state: Tally = {
      elapsed: 0, window: emptyWindow(), bestLoss: null, bestStep: null, finalLoss: null, lastEval: null,
    };
    const resumeFrom = o.resume === true ? checkpointPath : typeof o.resume === 'string' ? o.resume : null;
    if (resumeFrom !== null) {
      if (!fs.existsSync(resumeFrom)) {
        throw new TrainError(`nothing to resume: no checkpoint at ${resumeFrom}`,
          typeof o.resume === 'string' ? 'check the checkpoint path' : 'start a new run without --resume (or point --out at the run to continue)');
      }
      const restored = this.restore(resumeFrom);
      step = restored.step;
      state = restored.state;
      this.truncateMetrics(metricsPath, step);
    } else {
      if (fs.existsSync(checkpointPath)) {
        const info = readCheckpointInfo(checkpointPath);
        throw new TrainError(`${outDir} already holds a run (checkpoint at step ${info.step})`,
          'add --resume to continue it, or choose another --out folder');
      }
      manualSeed(o.seed);
      fs.rmSync(metricsPath, { force: true });
    }
    const resumedFrom = step;

    // ---- output
    if (!o.quiet && o.progress !== false) {
      this.progress = new Progress({
        total: o.totalSteps, label: 'train', stream: this.output, itemsUnit: 'img', start: step,
        tty: o.progress?.tty, every: o.progress?.every, now: o.progress?.now,
      });
    }
    if (resumedFrom > 0) this.log(`resumed from ${resumeFrom} at step ${resumedFrom}/${o.totalSteps}`);
    if (resumedFrom >= o.totalSteps && resumedFrom > 0) {
      this.log(`the run already has ${resumedFrom} of ${o.totalSteps} steps: nothing to train (ask for more steps to continue it)`);
    }

    // ---- stop requests
    let signalCount = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signalCount++;
      if (signalCount > 1) {
        this.progress?.done();
        this.output.write(`\n${signal} again: quitting without saving (the last checkpoint is at ${checkpointPath})\n`);
        process.exit(130);
      }
      this.stop(signal === 'SIGINT' ? 'interrupted (Ctrl-C)' : `stopped by ${signal}`);
      this.log(`${signal}: finishing this step and saving a checkpoint (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again quits at once)`);
    };
    const handleSignals = o.handleSignals ?? true;
    if (handleSignals) { process.on('SIGINT', onSignal); process.on('SIGTERM', onSignal); }
    const onAbort = () => this.stop('aborted');
    if (o.signal?.aborted) onAbort();
    o.signal?.addEventListener('abort', onAbort);

    const sessionStart = performance.now();
    const elapsedNow = () => state.elapsed + (performance.now() - sessionStart) / 1000;
    let window = state.window;
    // Rate of the current logging window (wall clock, so not checkpointed).
    let windowStart = performance.now();
    let windowItems = 0;
    let smoothLoss: number | null = null;
    let lastEvalStep = -1;
    let samplesDir: string | null = null;

    const callbackContext = (): CallbackContext => ({
      step, totalSteps: o.totalSteps, outDir, model: o.model, ema: o.ema,
      samplePath: (suffix = '.png') => {
        samplesDir = path.join(outDir, SAMPLES_DIR);
        fs.mkdirSync(samplesDir, { recursive: true });
        return path.join(samplesDir, `step_${String(step).padStart(6, '0')}${suffix}`);
      },
      log: (m) => this.log(m),
    });
    const runEvaluate = async () => {
      if (!o.evaluate) return;
      const values = await o.evaluate(callbackContext());
      o.model.train();
      lastEvalStep = step;
      state.lastEval = { ...values };
      this.appendRecord(metricsPath, { step, elapsed: tidy(elapsedNow()), ...values });
      this.log(`eval @ ${step}: ${Object.entries(values).map(([k, v]) => `${k} ${formatValue(v)}`).join(', ')}`);
    };
    const runSample = async () => {
      if (!o.sample) return;
      await o.sample(callbackContext());
      o.model.train();
    };
    const save = () => {
      const loopState: LoopState = {
        kind: 'vss-train-loop', seed: o.seed, totalSteps: o.totalSteps, loader: o.loader.state(),
        elapsed: elapsedNow(), window, bestLoss: state.bestLoss, bestStep: state.bestStep,
        finalLoss: state.finalLoss, lastEval: state.lastEval, config: o.config,
      };
      saveCheckpoint(checkpointPath, {
        model: o.model, optimizer: o.optimizer, ema: o.ema,
        rng: { ...this.rngs, [DEFAULT_RNG_KEY]: getDefaultRng() }, step, extra: loopState,
      });
    };

    const params = o.optimizer.allParams();
    const ctxBase = {
      totalSteps: o.totalSteps, rng: this.primaryRng, rngs: this.rngs, model: o.model, optimizer: o.optimizer,
      stop: (reason?: string) => this.stop(reason ?? 'stopped by the step function'),
    };
    let ranOutOfData = false;

    try {
      o.model.train();
      while (step < o.totalSteps && this.stopReason === null) {
        // Let pending signals in: a compute-bound loop that only awaits resolved promises never would.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.stopReason !== null) break;
        const batch = await o.loader.next();
        if (batch === null) { ranOutOfData = true; break; }

        const lr = o.lrSchedule === undefined ? o.optimizer.lr
          : typeof o.lrSchedule === 'function' ? o.lrSchedule(step) : o.lrSchedule.lrAt(step);
        o.optimizer.setLr(lr);
        o.optimizer.zeroGrad();
        const result = await o.step(batch, { ...ctxBase, step, lr });
        const loss = result.loss.item();
        if (!Number.isFinite(loss)) {
          throw new TrainError(`the loss became ${loss} at step ${step + 1}`,
            'lower the learning rate, or set gradient clipping; the last checkpoint is unaffected');
        }
        result.loss.backward();
        const gradNorm = clipGradNorm(params, o.clipGradNorm ?? Infinity);
        o.optimizer.step();
        o.ema?.update();
        step++;

        window.count++;
        window.loss += loss;
        window.gradNorm += gradNorm;
        for (const [k, v] of Object.entries(result.metrics ?? {})) window.metrics[k] = (window.metrics[k] ?? 0) + v;
        const items = (o.itemsInBatch ?? defaultItems)(batch);
        windowItems += items;
        smoothLoss = smoothLoss === null ? loss : 0.9 * smoothLoss + 0.1 * loss;
        this.progress?.update(step, { items, values: { loss: smoothLoss, lr } });

        if (step % o.logEvery === 0 || step === o.totalSteps) {
          const seconds = (performance.now() - windowStart) / 1000;
          const meanLoss = window.loss / window.count;
          const record: MetricRecord = {
            step, loss: meanLoss, lr, grad_norm: tidy(window.gradNorm / window.count),
            images_per_s: tidy(seconds > 0 ? windowItems / seconds : 0), elapsed: tidy(elapsedNow()),
          };
          for (const [k, v] of Object.entries(window.metrics)) record[k] = v / window.count;
          this.appendRecord(metricsPath, record);
          state.finalLoss = meanLoss;
          if (state.bestLoss === null || meanLoss < state.bestLoss) { state.bestLoss = meanLoss; state.bestStep = step; }
          window = emptyWindow();
          windowStart = performance.now();
          windowItems = 0;
        }
        const atEnd = step === o.totalSteps;
        if (!atEnd && o.evalEvery && step % o.evalEvery === 0) await runEvaluate();
        if (!atEnd && o.sampleEvery && step % o.sampleEvery === 0) await runSample();
        if (!atEnd && o.checkpointEvery > 0 && step % o.checkpointEvery === 0) save();
      }

      const completed = step >= o.totalSteps;
      if (ranOutOfData && !completed) this.stopReason ??= 'the data loader ran out of batches';
      // A resumed run that was already complete has nothing new to evaluate or draw.
      if (completed && step > resumedFrom) {
        if (o.evaluate && lastEvalStep !== step) await runEvaluate();
        await runSample();
      }
      save();
      this.progress?.done();
      this.progress = null;

      const lossPlotPath = await this.plotLoss(metricsPath);
      const result: TrainResult = {
        step, totalSteps: o.totalSteps, completed, stopReason: completed ? undefined : this.stopReason ?? undefined,
        elapsed: elapsedNow(), finalLoss: state.finalLoss, bestLoss: state.bestLoss, bestStep: state.bestStep,
        lastEval: state.lastEval, resumedFrom, checkpointPath, metricsPath, lossPlotPath, samplesDir,
      };
      this.summarise(result, (performance.now() - sessionStart) / 1000);
      return result;
    } finally {
      this.progress?.done();
      if (handleSignals) { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); }
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  private restore(file: string): { step: number; state: Tally } {
    const o = this.opts;
    const info = readCheckpointInfo(file);
    if (info.seed === null) throw new TrainError(`${file} was not written by the training loop`, 'resume from a checkpoint.safetensors of a vss training run');
    if (info.seed !== o.seed) {
      throw new TrainError(`the checkpoint was trained with seed ${info.seed}, this run asks for seed ${o.seed}`,
        `pass --seed ${info.seed} (or leave --seed out) to resume it`);
    }
    let loaded;
    try {
      loaded = loadCheckpoint(file, {
        model: o.model, optimizer: o.optimizer, ema: o.ema, rng: { ...this.rngs, [DEFAULT_RNG_KEY]: getDefaultRng() },
      });
    } catch (err) {
      throw new TrainError(`cannot resume from ${file}: ${(err as Error).message}`,
        'the model or optimiser settings differ from the run that wrote it; use the same settings, or a new --out folder');
    }
    const saved = loaded.extra as LoopState;
    try {
      (o.loader.setState as (s: unknown) => void)(saved.loader);
    } catch (err) {
      throw new TrainError(`cannot resume the data order from ${file}: ${(err as Error).message}`,
        'use the same dataset, batch size and seed as the run that wrote it');
    }
    return {
      step: loaded.step,
      state: {
        elapsed: saved.elapsed, window: saved.window ?? emptyWindow(), bestLoss: saved.bestLoss, bestStep: saved.bestStep,
        finalLoss: saved.finalLoss, lastEval: saved.lastEval,
      },
    };
  }

  /** Records past the checkpoint were written by steps that will now run again: drop them. */
  private truncateMetrics(file: string, step: number): void {
    if (!fs.existsSync(file)) return;
    const kept = readMetricsLog(file).filter((r) => typeof r.step === 'number' && r.step <= step);
    writeFileAtomic(file, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
  }

  /** Appended synchronously, so every record is on disk (in the OS) when the step ends. */
  private appendRecord(file: string, record: MetricRecord): void {
    fs.appendFileSync(file, `${JSON.stringify(record)}\n`);
  }

  private log(message: string): void {
    if (this.opts.quiet) return;
    if (this.progress) this.progress.log(message);
    else this.output.write(`${message}\n`);
  }

  /** loss.png from the metrics log; a failure to draw is reported, never fatal (the run is saved). */
  private async plotLoss(metricsPath: string): Promise<string | null> {
    if (!fs.existsSync(metricsPath)) return null;
    const records = readMetricsLog(metricsPath).filter((r) => typeof r.step === 'number' && typeof r.loss === 'number');
    if (records.length === 0) return null;
    const file = path.join(this.opts.outDir, LOSS_PLOT_FILE);
    try {
      await saveLinePlot(file, [{ name: 'loss', x: records.map((r) => r.step as number), y: records.map((r) => r.loss as number) }], {
        title: 'training loss', xLabel: 'step', yLabel: 'loss', smoothing: records.length > 50 ? 0.6 : 0,
      });
      return file;
    } catch (err) {
      this.log(`could not draw ${file}: ${(err as Error).message}`);
      return null;
    }
  }

  private summarise(r: TrainResult, sessionSeconds: number): void {
    const sessionSteps = r.step - r.resumedFrom;
    const speed = sessionSteps > 0 && sessionSeconds > 0 ? `, ${(sessionSteps / sessionSeconds).toFixed(1)} steps/s` : '';
    const resumed = r.resumedFrom > 0 ? ` (resumed at ${r.resumedFrom}; ${formatDuration(r.elapsed)} of training in all)` : '';
    const lines = [r.completed
      ? `done: ${r.step} steps in ${formatDuration(sessionSeconds)}${speed}${resumed}`
      : `${r.stopReason ?? 'stopped'} at step ${r.step}/${r.totalSteps} after ${formatDuration(sessionSeconds)}${speed}${resumed}`];
    if (r.finalLoss !== null) lines.push(`loss: final ${formatValue(r.finalLoss)}, best ${formatValue(r.bestLoss!)} (step ${r.bestStep})`);
    if (r.lastEval) lines.push(`eval: ${Object.entries(r.lastEval).map(([k, v]) => `${k} ${formatValue(v)}`).join(', ')}`);
    const files = [r.checkpointPath, r.metricsPath, r.lossPlotPath, r.samplesDir && `${r.samplesDir}${path.sep}`].filter(Boolean);
    lines.push(`files: ${files.join(', ')}`);
    if (!r.completed) lines.push(`checkpoint saved; to continue: ${this.opts.resumeHint ?? `train again with resume: true and outDir ${this.opts.outDir}`}`);
    for (const l of lines) this.log(l);
  }
}

/** Train with the shared loop; see `TrainOptions`. Use `new Trainer(opts)` to keep a stop handle. */
export function train<B>(opts: TrainOptions<B>): Promise<TrainResult> {
  return new Trainer(opts).run();
}
