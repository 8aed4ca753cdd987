/**
 * Loading diffusers model folders: `config.json` + `diffusion_pytorch_model[.<variant>].safetensors` (or a
 * sharded `…safetensors.index[.<variant>].json`).
 *
 * The model is first built shape-only (see layers.ts), then every key and shape in the file is checked
 * against it before a byte of weight data is read; any mismatch fails with the file, the key and the
 * expected vs found shape. Only then are the tensors read, each straight into its own array, and put in place
 * of the shape-only ones in the file's dtype (f16/bf16 weights stay 16-bit unless `dtype` asks otherwise).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor } from '../../engine/index.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import type { Module } from '../../nn/index.js';
import { hasShapeOnly } from './layers.js';

export interface PretrainedOptions {
  /** Weight variant: 'fp16' reads `diffusion_pytorch_model.fp16.safetensors`. Default: the plain file, else fp16. */
  variant?: string;
  /** Convert the weights to this dtype (default: keep the file's). f32 weights are trainable. */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** Unknown config keys are an error instead of a warning. */
  strictConfig?: boolean;
  /** Memory-map the weight files (read-only inference weights; see SafetensorsFile's `map`). Default false. */
  map?: boolean;
}

export class WeightsError extends Error {
  override name = 'WeightsError';
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** The safetensors file(s) holding a folder's weights, for `base` (default diffusion_pytorch_model). */
export function findWeightFiles(folder: string, variant?: string, base = 'diffusion_pytorch_model'): string[] {
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) throw new WeightsError(`${folder}: not a folder`);
  const variants = variant !== undefined ? [`.${variant}`] : ['', '.fp16'];
  for (const v of variants) {
    const single = path.join(folder, `${base}${v}.safetensors`);
    if (fs.existsSync(single)) return [single];
    const index = path.join(folder, `${base}.safetensors.index${v}.json`);
    if (fs.existsSync(index)) return shardFiles(index);
  }
  const present = fs.readdirSync(folder).sort();
  const hint = present.some((f) => f.endsWith('.bin')) ? ' (.bin pickles are not read here: convert them to safetensors)' : '';
  throw new WeightsError(`${folder}: no ${variants.map((v) => `${base}${v}.safetensors`).join(' or ')}${hint}; the folder holds: ${present.join(', ') || 'nothing'}`);
}

function shardFiles(index: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(index, 'utf8'));
  } catch (err) {
    throw new WeightsError(`${index}: not valid JSON: ${(err as Error).message}`);
  }
  const map = (parsed as { weight_map?: unknown })?.weight_map;
  if (!map || typeof map !== 'object') throw new WeightsError(`${index}: no "weight_map" object`);
  const files = [...new Set(Object.values(map as Record<string, unknown>))];
  if (!files.every((f) => typeof f === 'string')) throw new WeightsError(`${index}: "weight_map" values must be file names`);
  return (files as string[]).map((f) => path.join(path.dirname(index), f));
}

/** Renames for older diffusers checkpoints: attention blocks saved before the Attention refactor. */
export function renameLegacyAttention(key: string): string {
  return key
    .replace(/(attentions\.\d+)\.query\./, '$1.to_q.')
    .replace(/(attentions\.\d+)\.key\./, '$1.to_k.')
    .replace(/(attentions\.\d+)\.value\./, '$1.to_v.')
    .replace(/(attentions\.\d+)\.proj_attn\./, '$1.to_out.0.');
}

export interface LoadWeightsOptions {
  /** Names errors start with, e.g. `UNet2DConditionModel.fromPretrained(/models/sd/unet)`. */
  label: string;
  /** Map a file key to the model's name for it. */
  rename?: (key: string) => string;
  dtype?: 'f32' | 'f16' | 'bf16';
  /** Memory-map the files: tensors kept in the file's dtype are views on the mapping. */
  map?: boolean;
}

const MAX_LISTED = 12;

/** One tensor available to load: its shape and dtype without reading it, where it is, and how to read it. */
interface SourceEntry {
  shape: readonly number[];
  dtype: Tensor['dtype'];
  /** For messages: `model.safetensors: key "a.b" (read as "a.c")`. */
  origin: string;
  read(): Tensor;
}

/**
 * Check the files' keys and shapes against `model`'s state dict, then put the files' tensors into the model
 * (replacing its tensors, shape-only or not). Strict: missing, unexpected and mis-shaped keys all fail.
 */
export function loadWeights(model: Module, files: readonly string[], opts: LoadWeightsOptions): void {
  const handles: SafetensorsFile[] = [];
  try {
    for (const f of files) handles.push(SafetensorsFile.open(f, { map: opts.map }));
    const entries = new Map<string, SourceEntry>();
    const duplicates: string[] = [];
    for (const file of handles) {
      for (const key of file.keys()) {
        const name = opts.rename ? opts.rename(key) : key;
        const info = file.info(key);
        const origin = `${path.basename(file.path)}: key "${key}"${key !== name ? ` (read as "${name}")` : ''}`;
        const prev = entries.get(name);
        if (prev) duplicates.push(`${origin} duplicates ${prev.origin}`);
        entries.set(name, { shape: info.shape, dtype: info.dtype, origin, read: () => file.get(key) });
      }
    }
    adopt(model, entries, duplicates, `${opts.label}: ${files.join(', ')}`, opts.dtype);
  } finally {
    for (const h of handles) h.close();
  }
}

/**
 * Put an in-memory state dict (e.g. a converted single-file checkpoint) into a model, usually a shape-only
 * one, with the same strict checks as `loadWeights`. The tensors are adopted, not copied.
 */
export function adoptStateDict(model: Module, sd: Map<string, Tensor> | Record<string, Tensor>, opts: LoadWeightsOptions): void {
  const entries = new Map<string, SourceEntry>();
  const duplicates: string[] = [];
  for (const [key, t] of sd instanceof Map ? sd : Object.entries(sd)) {
    const name = opts.rename ? opts.rename(key) : key;
    const origin = `key "${key}"${key !== name ? ` (read as "${name}")` : ''}`;
    const prev = entries.get(name);
    if (prev) duplicates.push(`${origin} duplicates ${prev.origin}`);
    entries.set(name, { shape: t.shape, dtype: t.dtype, origin, read: () => t.detach().contiguous() });
  }
  adopt(model, entries, duplicates, `${opts.label}: state dict`, opts.dtype);
}

function adopt(model: Module, entries: Map<string, SourceEntry>, problems: string[], what: string, dtype?: LoadWeightsOptions['dtype']): void {
  const expected = model.stateDict();
  for (const [name, t] of expected) {
    const e = entries.get(name);
    if (!e) problems.push(`missing key "${name}" (expected shape ${fmt(t.shape)})`);
    else if (e.shape.length !== t.shape.length || e.shape.some((d, i) => d !== t.shape[i])) {
      problems.push(`${e.origin} has shape ${fmt(e.shape)}, the config expects ${fmt(t.shape)}`);
    } else if (!(e.dtype === 'f32' || e.dtype === 'f16' || e.dtype === 'bf16')) {
      problems.push(`${e.origin} is ${e.dtype}, expected a floating-point tensor`);
    }
  }
  for (const [name, e] of entries) if (!expected.has(name)) problems.push(`${e.origin} ${fmt(e.shape)} is not a weight of this model`);
  if (problems.length) {
    const shown = problems.slice(0, MAX_LISTED).map((p) => `\n  - ${p}`).join('');
    const more = problems.length > MAX_LISTED ? `\n  … and ${problems.length - MAX_LISTED} more` : '';
    throw new WeightsError(`${what} does not match the config (${problems.length} problem${problems.length > 1 ? 's' : ''}):${shown}${more}`);
  }

  // Walk the modules' own tensor fields, as Module does to name them, and replace each in place.
  const params = new Set(model.namedParameters().map(([n]) => n));
  for (const [prefix, m] of model.namedModules()) {
    const fields = m as unknown as Record<string, unknown>;
    for (const [field, value] of Object.entries(fields)) {
      if (!(value instanceof Tensor) || field.startsWith('_')) continue;
      const name = prefix ? `${prefix}.${field}` : field;
      const e = entries.get(name);
      if (!e || !expected.has(name)) continue;
      let t = e.read();
      if (dtype && t.dtype !== dtype) t = t.to(dtype).contiguous();
      if (t.dtype === 'f32' && params.has(name)) t.requiresGrad_(true);
      fields[field] = t;
    }
  }
  if (hasShapeOnly(model)) throw new WeightsError(`${what}: some weights were not loaded (internal error)`);
}

/**
 * The common `fromPretrained` flow: read `config.json` with `build`'s parser, build shape-only, load the
 * weights (strict) into it.
 */
export function loadPretrained<M extends Module>(folder: string, className: string, opts: PretrainedOptions,
                                                 build: (configFile: string) => M, rename?: (key: string) => string): M {
  const configFile = path.join(folder, 'config.json');
  if (!fs.existsSync(configFile)) throw new WeightsError(`${className}.fromPretrained(${folder}): no config.json in the folder`);
  const model = build(configFile);
  loadWeights(model, findWeightFiles(folder, opts.variant), { label: `${className}.fromPretrained(${folder})`, rename, dtype: opts.dtype, map: opts.map });
  return model;
}
