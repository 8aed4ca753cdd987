/**
 * Training checkpoints as one safetensors file:
 *   model.<name>    the model's state dict
 *   optim.<i>.<buf> optimiser buffers (Adam moments, momentum), by parameter index
 *   ema.<name>      EMA shadow weights (when an EMA is given)
 * and JSON strings in `__metadata__`: step, rng state(s), optimiser hyper-parameters and step counts, EMA
 * settings, and the caller's `extra`. Restoring all of it makes a resumed run continue bit-exactly.
 * The write is atomic (temp file + rename), so a crash mid-save never leaves a half-written checkpoint.
 */
import { Rng, type Tensor } from '../engine/index.js';
import type { Module } from '../nn/module.js';
import type { Optimizer, OptimizerStateDict } from '../optim/optimizer.js';
import type { EMA } from '../optim/ema.js';
import { SafetensorsFile, writeSafetensors } from './safetensors.js';

const FORMAT = 'vss-checkpoint';
const VERSION = '1';

export interface CheckpointParts {
  model: Module;
  optimizer?: Optimizer<any>;
  ema?: EMA;
  /** One generator, or several by name (e.g. { data, dropout }). */
  rng?: Rng | Record<string, Rng>;
}

export interface SaveCheckpointOptions extends CheckpointParts {
  step?: number;
  /** Anything JSON-serialisable the caller wants back (config, dataset position, …). */
  extra?: unknown;
}

export interface LoadedCheckpoint {
  step: number;
  extra: unknown;
  /** Raw metadata, for inspection. */
  metadata: Record<string, string>;
}

function rngStates(rng: CheckpointParts['rng']): unknown {
  if (rng === undefined) return undefined;
  if (rng instanceof Rng) return rng.getState();
  return Object.fromEntries(Object.entries(rng).map(([k, r]) => [k, r.getState()]));
}

export function saveCheckpoint(path: string, opts: SaveCheckpointOptions): void {
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of opts.model.stateDict()) tensors.set(`model.${name}`, t);

  const metadata: Record<string, string> = {
    format: FORMAT,
    'vss.version': VERSION,
    step: String(opts.step ?? 0),
  };
  if (opts.optimizer) {
    const sd = opts.optimizer.stateDict();
    for (const [key, t] of sd.state) tensors.set(`optim.${key}`, t);
    metadata.optimizer = JSON.stringify({ type: sd.type, groups: sd.groups, steps: sd.steps });
  }
  if (opts.ema) {
    const { shadow, ...settings } = opts.ema.stateDict();
    for (const [name, t] of shadow) tensors.set(`ema.${name}`, t);
    metadata.ema = JSON.stringify(settings);
  }
  const rng = rngStates(opts.rng);
  if (rng !== undefined) metadata.rng = JSON.stringify(rng);
  if (opts.extra !== undefined) metadata.extra = JSON.stringify(opts.extra);
  writeSafetensors(path, tensors, metadata);
}

/**
 * Restore whatever parts are given from a checkpoint written by `saveCheckpoint`. The model load is strict;
 * asking for a part (optimizer, ema, rng) the file lacks is an error.
 */
export function loadCheckpoint(path: string, parts: CheckpointParts): LoadedCheckpoint {
  const file = SafetensorsFile.open(path);
  try {
    const meta = file.metadata;
    if (meta.format !== FORMAT) throw new Error(`${path}: not a VSS checkpoint (metadata format is ${JSON.stringify(meta.format)})`);
    const group = (prefix: string) => {
      const out = new Map<string, Tensor>();
      for (const key of file.keys()) if (key.startsWith(prefix)) out.set(key.slice(prefix.length), file.get(key));
      return out;
    };
    const need = (key: string) => {
      if (meta[key] === undefined) throw new Error(`${path}: checkpoint has no ${key} state`);
      return JSON.parse(meta[key]);
    };

    parts.model.loadStateDict(group('model.'));
    if (parts.optimizer) {
      const { type, groups, steps } = need('optimizer') as Omit<OptimizerStateDict, 'state'>;
      parts.optimizer.loadStateDict({ type, groups, steps, state: group('optim.') });
    }
    if (parts.ema) {
      parts.ema.loadStateDict({ ...need('ema'), shadow: group('ema.') });
    }
    if (parts.rng) {
      const saved = need('rng');
      if (parts.rng instanceof Rng) parts.rng.setState(saved);
      else {
        for (const [name, r] of Object.entries(parts.rng)) {
          if (!saved[name]) throw new Error(`${path}: checkpoint has no rng state "${name}"`);
          r.setState(saved[name]);
        }
      }
    }
    return {
      step: Number(meta.step ?? 0),
      extra: meta.extra === undefined ? undefined : JSON.parse(meta.extra),
      metadata: { ...meta },
    };
  } finally {
    file.close();
  }
}
