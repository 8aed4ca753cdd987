/**
 * Scheduler configuration: a typed, frozen object read from a diffusers `scheduler_config.json`.
 *
 * Each scheduler declares a schema (field → default + parser). `parseConfig` takes the JSON object, maps its
 * snake_case keys onto the schema's camelCase fields (camelCase keys are accepted too), type-checks every
 * field the scheduler uses, fills in diffusers' defaults and freezes the result. Keys the scheduler does not
 * use — another scheduler's options, `_diffusers_version` — are ignored, as diffusers' `from_config` does,
 * so one model's config can build any scheduler.
 */
import {
  BETA_SCHEDULES, PREDICTION_TYPES, TIMESTEP_SPACINGS, type BetaScheduleName, type PredictionType, type TimestepSpacing,
} from '../schedules.js';

export interface Field<T> {
  readonly default: T;
  /** Parse a JSON value (never undefined; null only where the field allows it). */
  parse(value: unknown, where: string): T;
}

type Schema = Record<string, Field<unknown>>;
export type ConfigOf<S extends Schema> = { readonly [K in keyof S]: S[K] extends Field<infer T> ? T : never };

const show = (v: unknown) => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v));

export function num(def: number, o: { int?: boolean; min?: number; max?: number } = {}): Field<number> {
  return {
    default: def,
    parse(v, where) {
      if (typeof v !== 'number' || Number.isNaN(v)) throw new Error(`${where} must be a number, got ${show(v)}`);
      if (o.int && !Number.isInteger(v)) throw new Error(`${where} must be an integer, got ${v}`);
      if (o.min !== undefined && v < o.min) throw new Error(`${where} must be ≥ ${o.min}, got ${v}`);
      if (o.max !== undefined && v > o.max) throw new Error(`${where} must be ≤ ${o.max}, got ${v}`);
      return v;
    },
  };
}

export function numOrNull(def: number | null, o: { min?: number } = {}): Field<number | null> {
  const n = num(0, o);
  return { default: def, parse: (v, where) => (v === null ? null : n.parse(v, where)) };
}

export function bool(def: boolean): Field<boolean> {
  return {
    default: def,
    parse(v, where) {
      if (typeof v !== 'boolean') throw new Error(`${where} must be true or false, got ${show(v)}`);
      return v;
    },
  };
}

export function oneOf<T extends string>(def: T, values: readonly T[]): Field<T> {
  return {
    default: def,
    parse(v, where) {
      if (typeof v !== 'string' || !values.includes(v as T)) {
        throw new Error(`${where} must be one of ${values.map((x) => `'${x}'`).join(', ')}, got ${show(v)}`);
      }
      return v as T;
    },
  };
}

export function numList(def: readonly number[] | null, o: { int?: boolean } = {}): Field<readonly number[] | null> {
  return {
    default: def,
    parse(v, where) {
      if (v === null) return null;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && (!o.int || Number.isInteger(x)))) {
        throw new Error(`${where} must be a list of ${o.int ? 'integers' : 'numbers'}${def === null ? ' or null' : ''}, got ${show(v)}`);
      }
      return Object.freeze([...v]) as readonly number[];
    },
  };
}

export function strOrNull(def: string | null): Field<string | null> {
  return {
    default: def,
    parse(v, where) {
      if (v !== null && typeof v !== 'string') throw new Error(`${where} must be a string or null, got ${show(v)}`);
      return v;
    },
  };
}

/** A known option whose non-default values this implementation does not support: rejected clearly. */
export function unsupported<T>(def: T, what: string): Field<T> {
  return {
    default: def,
    parse(v, where) {
      if (v !== def && v !== null) throw new Error(`${where} = ${show(v)} is not supported (${what})`);
      return def;
    },
  };
}

// ---------------------------------------------------------------------------------------------- shared fields

/** The fields every scheduler here reads: the training noise schedule and how steps are laid out. */
export function commonFields(o: { betaStart?: number; betaEnd?: number; spacing: TimestepSpacing; predictionTypes?: readonly PredictionType[] }) {
  return {
    numTrainTimesteps: num(1000, { int: true, min: 1 }),
    betaStart: num(o.betaStart ?? 0.0001, { min: 0 }),
    betaEnd: num(o.betaEnd ?? 0.02, { min: 0 }),
    betaSchedule: oneOf<BetaScheduleName>('linear', BETA_SCHEDULES),
    trainedBetas: numList(null),
    predictionType: oneOf<PredictionType>('epsilon', o.predictionTypes ?? PREDICTION_TYPES),
    timestepSpacing: oneOf<TimestepSpacing>(o.spacing, TIMESTEP_SPACINGS),
    stepsOffset: num(0, { int: true, min: 0 }),
    rescaleBetasZeroSnr: bool(false),
  };
}

/** x_0 clipping ([DDPM] clips to [−1, 1]) and Imagen's dynamic thresholding (Saharia et al. 2022, §2.3). */
export const thresholdFields = (clipSample: boolean) => ({
  clipSample: bool(clipSample),
  clipSampleRange: num(1, { min: 0 }),
  thresholding: bool(false),
  dynamicThresholdingRatio: num(0.995, { min: 0, max: 1 }),
  sampleMaxValue: num(1, { min: 0 }),
});

/** Karras sigmas option of the sigma-based schedulers; the other sigma spacings of diffusers are refused. */
export const karrasFields = () => ({
  useKarrasSigmas: bool(false),
  useExponentialSigmas: unsupported(false, 'exponential sigmas are not implemented; use use_karras_sigmas'),
  useBetaSigmas: unsupported(false, 'beta sigmas are not implemented; use use_karras_sigmas'),
});

export type CommonConfig = ConfigOf<ReturnType<typeof commonFields>>;
export type ThresholdConfig = ConfigOf<ReturnType<typeof thresholdFields>>;

// ---------------------------------------------------------------------------------------------- parsing

export const snakeCase = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

/** Build the frozen config of `className` from a JSON object (snake_case or camelCase keys). */
export function parseConfig<S extends Schema>(className: string, schema: S, json: Record<string, unknown>): ConfigOf<S> {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${className}: the scheduler config must be a JSON object, got ${show(json)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(schema)) {
    const snake = snakeCase(key);
    const hasSnake = json[snake] !== undefined, hasCamel = key !== snake && json[key] !== undefined;
    if (hasSnake && hasCamel && JSON.stringify(json[snake]) !== JSON.stringify(json[key])) {
      throw new Error(`${className}: config gives both ${snake} and ${key} with different values`);
    }
    const raw = hasSnake ? json[snake] : hasCamel ? json[key] : undefined;
    // null stands for "unset" in diffusers configs (e.g. "trained_betas": null).
    out[key] = raw === undefined || (raw === null && field.default !== null) ? field.default
      : field.parse(raw, `${className} config '${snake}'`);
  }
  return Object.freeze(out) as ConfigOf<S>;
}

/** The config as diffusers writes it: `_class_name` first, snake_case keys. */
export function configToJSON(className: string, config: object): Record<string, unknown> {
  const out: Record<string, unknown> = { _class_name: className };
  for (const [k, v] of Object.entries(config)) out[snakeCase(k)] = v;
  return out;
}
