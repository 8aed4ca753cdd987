/**
 * Loading a Stable Diffusion model from what users have on disk:
 *
 *   - a diffusers folder: model_index.json + text_encoder/ tokenizer/ unet/ vae/ scheduler/, weights as
 *     `*.safetensors` (or the `fp16` variant files);
 *   - a single file in the original layout (`.safetensors`, or a pickled `.ckpt` read by our restricted
 *     unpickler), SD 1.x or 2.x, its configs inferred from the keys and shapes (ldm.ts).
 *
 * Every model is built shape-only first, the checkpoint's keys and shapes are checked against it (all
 * problems in one error naming the file, the key and expected vs found shape), and only then are weights
 * read, one tensor at a time, into the model. A bad file fails here, never in the middle of a generation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tensor } from '../../engine/index.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import { AutoencoderKL } from '../../models/autoencoder_kl.js';
import { adoptStateDict, findWeightFiles } from '../../models/blocks/weights.js';
import { CLIPTextModel, clipTextConfigFromJson } from '../../models/clip_text.js';
import { UNet2DConditionModel } from '../../models/unet2d_condition.js';
import { withoutInit, type Module } from '../../nn/index.js';
import { CLIPTokenizer } from '../../tokenizers/index.js';
import { SD_SCHEDULER_CONFIG, planLdmConversion, type ComponentPlan, type SDFamily } from './ldm.js';
import { openCheckpoint } from './tensor_source.js';

export { planLdmConversion, LdmConversionError, type LdmPlan, type ComponentPlan, type MappedTensor, type SDFamily } from './ldm.js';
export { openCheckpoint, CheckpointError, type CheckpointFile, type LazyTensor } from './tensor_source.js';
export { readTorchCheckpoint } from './ckpt.js';
export { unpickle, UnpicklingError } from './pickle.js';
export { ZipReader, ZipError } from './zip.js';

export type WeightDtype = 'f32' | 'f16' | 'keep';

export interface LoadOptions {
  /** Weights in memory: 'keep' (default) the file's dtype (f16 files stay f16), or convert to f32 / f16. */
  dtype?: WeightDtype;
  /** diffusers weight variant, e.g. 'fp16' (`*.fp16.safetensors`). Default: the plain files, else fp16. */
  variant?: string;
  /** Prediction type, overriding the scheduler config: SD 2.x 768 single files need 'v' (not inferable). */
  prediction?: 'epsilon' | 'v';
  /** Single files carry no tokenizer: a tokenizer folder (vocab.json + merges.txt). Default: `tokenizer/` beside the file. */
  tokenizer?: string;
  /**
   * 'lean' (default): safetensors weights kept in their file dtype are memory-mapped, not copied, and the
   * pipeline gives back each part's pages while the other parts run (they return from the page cache when
   * next used): peak memory is the largest part plus its activations, not all parts. 'resident': weights
   * are read into memory once and stay there.
   */
  memory?: 'lean' | 'resident';
}

/** Whether these options map weight files. */
export const mapsWeights = (opts: LoadOptions): boolean => opts.memory !== 'resident';

export interface StableDiffusionParts {
  tokenizer: CLIPTokenizer;
  textEncoder: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  /** scheduler_config.json of the model (its training schedule, prediction type, default sampler). */
  schedulerConfig: Record<string, unknown>;
}

export interface LoadedStableDiffusion extends StableDiffusionParts {
  source: {
    path: string;
    format: 'diffusers' | 'safetensors' | 'ckpt';
    family: SDFamily;
    /** Checkpoint keys not used (single files). */
    ignored: string[];
    notes: string[];
  };
}

/** An error about the model files, with a hint on what to do (the CLI prints both). */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
  constructor(message: string, readonly hint?: string) {
    super(message);
  }
}

/** Load a diffusers folder or a single-file checkpoint. */
export function loadStableDiffusion(modelPath: string, opts: LoadOptions = {}): LoadedStableDiffusion {
  if (!fs.existsSync(modelPath)) {
    throw new ModelLoadError(`model not found: ${modelPath}`, 'give a diffusers folder (with model_index.json) or a .safetensors / .ckpt checkpoint');
  }
  return fs.statSync(modelPath).isDirectory() ? loadDiffusersFolder(modelPath, opts) : loadSingleFile(modelPath, opts);
}

// ------------------------------------------------------------------ diffusers folders

const SUPPORTED_CLASSES: Record<string, string[]> = {
  unet: ['UNet2DConditionModel'], vae: ['AutoencoderKL'], text_encoder: ['CLIPTextModel'], tokenizer: ['CLIPTokenizer', 'CLIPTokenizerFast'],
};

export function loadDiffusersFolder(folder: string, opts: LoadOptions = {}): LoadedStableDiffusion {
  const index = path.join(folder, 'model_index.json');
  const notes: string[] = [];
  if (fs.existsSync(index)) {
    const mi = readJson(index);
    const cls = typeof mi._class_name === 'string' ? mi._class_name : '';
    if (/XL|Flux|StableDiffusion3|Kandinsky|IF/.test(cls)) {
      throw new ModelLoadError(`${folder}: ${cls} models are not supported`, 'use a Stable Diffusion 1.x or 2.x model');
    }
    for (const [part, allowed] of Object.entries(SUPPORTED_CLASSES)) {
      const entry = mi[part];
      const name = Array.isArray(entry) ? entry[1] : undefined;
      if (name === undefined || name === null) throw new ModelLoadError(`${index}: no "${part}" component`);
      if (!allowed.includes(String(name))) throw new ModelLoadError(`${index}: ${part} is ${name}; supported: ${allowed.join(', ')}`);
    }
  } else {
    for (const part of ['unet', 'vae', 'text_encoder', 'tokenizer']) {
      if (!fs.existsSync(path.join(folder, part))) {
        throw new ModelLoadError(`${folder}: not a diffusers model folder (no model_index.json and no ${part}/)`,
          'point at the folder holding model_index.json, or at a single .safetensors / .ckpt file');
      }
    }
    notes.push('no model_index.json: components read from the standard sub-folders');
  }
  const weightDtype = opts.dtype === 'keep' || opts.dtype === undefined ? undefined : opts.dtype;
  const unetDir = path.join(folder, 'unet'), vaeDir = path.join(folder, 'vae');
  const map = mapsWeights(opts);
  const unet = UNet2DConditionModel.fromPretrained(unetDir, { variant: variantIn(unetDir, 'diffusion_pytorch_model', opts.variant), dtype: weightDtype, map });
  const vae = AutoencoderKL.fromPretrained(vaeDir, { variant: variantIn(vaeDir, 'diffusion_pytorch_model', opts.variant), dtype: weightDtype, map });
  const textEncoder = loadTextEncoderFolder(path.join(folder, 'text_encoder'), opts);
  const tokenizer = CLIPTokenizer.fromPretrained(path.join(folder, 'tokenizer'));
  const family: SDFamily = unet.crossAttentionDim === 1024 ? 'sd2' : 'sd1';

  const schedFile = path.join(folder, 'scheduler', 'scheduler_config.json');
  let schedulerConfig: Record<string, unknown>;
  if (fs.existsSync(schedFile)) schedulerConfig = readJson(schedFile);
  else {
    schedulerConfig = { ...SD_SCHEDULER_CONFIG };
    notes.push('no scheduler/scheduler_config.json: the standard SD schedule is used');
  }
  if (opts.prediction) schedulerConfig = { ...schedulerConfig, prediction_type: opts.prediction === 'v' ? 'v_prediction' : 'epsilon' };
  return { tokenizer, textEncoder, unet, vae, schedulerConfig, source: { path: folder, format: 'diffusers', family, ignored: [], notes } };
}

/** transformers' text_encoder/ folder, built shape-only and filled through the same checks as the other models. */
function loadTextEncoderFolder(dir: string, opts: LoadOptions): CLIPTextModel {
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new ModelLoadError(`${dir}: no config.json`);
  const model = withoutInit(() => new CLIPTextModel(clipTextConfigFromJson(readJson(cfgFile), cfgFile)));
  const files = findWeightFiles(dir, variantIn(dir, 'model', opts.variant), 'model');
  const handles = files.map((f) => SafetensorsFile.open(f, { map: mapsWeights(opts) }));
  try {
    const sources = new Map<string, Source>();
    for (const h of handles) {
      for (const key of h.keys()) {
        const name = key.startsWith('text_model.') ? key : `text_model.${key}`;
        if (name === 'text_model.embeddings.position_ids') continue; // positions are always 0…L−1
        sources.set(name, { from: `${path.basename(h.path)}: key "${key}"`, shape: h.info(key).shape, read: () => h.get(key) });
      }
    }
    fillModel(model, sources, `CLIPTextModel (${dir})`, opts.dtype);
  } finally {
    for (const h of handles) h.close();
  }
  return model.eval().requiresGrad_(false);
}

/**
 * The variant to ask a component folder for: the requested one when that folder has it, else none (the
 * plain files, else fp16) — diffusers' fallback, since pipelines often ship fp16 files for some parts only.
 */
function variantIn(dir: string, base: string, variant: string | undefined): string | undefined {
  if (variant === undefined) return undefined;
  const has = [`${base}.${variant}.safetensors`, `${base}.safetensors.index.${variant}.json`].some((f) => fs.existsSync(path.join(dir, f)));
  return has ? variant : undefined;
}

// ------------------------------------------------------------------ single files

export function loadSingleFile(file: string, opts: LoadOptions = {}): LoadedStableDiffusion {
  const ckpt = openCheckpoint(file, { map: mapsWeights(opts) });
  try {
    const plan = planLdmConversion(ckpt.tensors, { prediction: opts.prediction });
    const label = path.basename(file);
    const sourcesOf = (c: ComponentPlan): Map<string, Source> => {
      const out = new Map<string, Source>();
      let cache: { key: string; t: Tensor } | null = null; // fused q/k/v: one read for three slices
      for (const [name, m] of c.tensors) {
        out.set(name, {
          from: `${label}: key "${m.from}"${m.rows ? ` rows ${m.rows[0]}…${m.rows[0] + m.rows[1] - 1}` : ''}`,
          shape: m.shape,
          read: () => {
            const src = ckpt.tensors.get(m.from)!;
            if (!m.rows) return m.reshape ? src.read().reshape(m.shape) : src.read();
            if (cache?.key !== m.from) cache = { key: m.from, t: src.read() };
            return cache.t.narrow(0, m.rows[0], m.rows[1]).contiguous();
          },
        });
      }
      return out;
    };

    const unet = UNet2DConditionModel.fromDiffusersConfig(plan.unet.config, { meta: true });
    fillModel(unet, sourcesOf(plan.unet), `U-Net (${label}, inferred config)`, opts.dtype);
    const vae = AutoencoderKL.fromDiffusersConfig(plan.vae.config, { meta: true });
    fillModel(vae, sourcesOf(plan.vae), `VAE (${label}, inferred config)`, opts.dtype);
    const textEncoder = withoutInit(() => new CLIPTextModel(clipTextConfigFromJson(plan.textEncoder.config, `${label}: text encoder`)));
    fillModel(textEncoder, sourcesOf(plan.textEncoder), `text encoder (${label}, inferred config)`, opts.dtype);
    textEncoder.eval().requiresGrad_(false);

    const tokDir = opts.tokenizer ?? path.join(path.dirname(file), 'tokenizer');
    if (!fs.existsSync(tokDir)) {
      throw new ModelLoadError(`${file}: single-file checkpoints carry no tokenizer, and ${opts.tokenizer ? `${tokDir} does not exist` : `there is no tokenizer/ folder beside it`}`,
        'pass --tokenizer <folder with vocab.json + merges.txt>, e.g. the tokenizer/ folder of any SD 1.x or 2.x diffusers model (they share one vocabulary)');
    }
    const tokenizer = CLIPTokenizer.fromPretrained(tokDir, { padToken: plan.padToken });
    return {
      tokenizer, textEncoder, unet, vae, schedulerConfig: plan.scheduler,
      source: { path: file, format: ckpt.format, family: plan.family, ignored: plan.ignored, notes: plan.notes },
    };
  } finally {
    ckpt.close();
  }
}

// ------------------------------------------------------------------ shared

interface Source {
  /** For messages: the file and key it comes from. */
  from: string;
  shape: readonly number[];
  read(): Tensor;
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;
const MAX_LISTED = 12;

/**
 * Check every key and shape against the (shape-only) model, then read the tensors one by one, convert
 * them as asked and put them into the model. Nothing is read when anything does not match.
 */
function fillModel(model: Module, sources: Map<string, Source>, label: string, dtype: WeightDtype = 'keep'): void {
  const expected = model.stateDict();
  const problems: string[] = [];
  for (const [name, t] of expected) {
    const s = sources.get(name);
    if (!s) problems.push(`missing "${name}" (expected shape ${fmt(t.shape)}): no checkpoint key maps to it`);
    else if (s.shape.length !== t.shape.length || s.shape.some((d, i) => d !== t.shape[i])) {
      problems.push(`${s.from} (as "${name}") has shape ${fmt(s.shape)}, expected ${fmt(t.shape)}`);
    }
  }
  for (const [name, s] of sources) if (!expected.has(name)) problems.push(`${s.from} (as "${name}") ${fmt(s.shape)} is not a weight of this model`);
  if (problems.length) {
    const shown = problems.slice(0, MAX_LISTED).map((p) => `\n  - ${p}`).join('');
    const more = problems.length > MAX_LISTED ? `\n  … and ${problems.length - MAX_LISTED} more` : '';
    throw new ModelLoadError(`${label}: the checkpoint does not fit the model (${problems.length} problem${problems.length > 1 ? 's' : ''}):${shown}${more}`,
      'the file is damaged, or not a Stable Diffusion 1.x / 2.x checkpoint');
  }
  const tensors = new Map<string, Tensor>();
  for (const [name, s] of sources) {
    let t = s.read();
    if (!(t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16')) throw new ModelLoadError(`${s.from} is ${t.dtype}, expected floating-point weights`);
    if (dtype !== 'keep' && t.dtype !== dtype) t = t.to(dtype).contiguous();
    tensors.set(name, t);
  }
  adoptStateDict(model, tensors, { label });
}

function readJson(file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ModelLoadError(`${file}: expected a JSON object`);
  return raw as Record<string, unknown>;
}
