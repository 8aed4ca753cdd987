/**
 * `vss generate` for class-conditional pixel models (the bundled Fashion-MNIST generator, or any folder that
 * `vss train ddpm` exported): the prompt (or --class) picks the class, classifier-free guidance and an optional
 * noise-aware classifier steer the sampler, and the PNG carries the A1111 `parameters` chunk like SD output.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng, type Tensor, getMatmulPrecision } from '../engine/index.js';
import { type GenerationParameters, type Pixels, denoisingStrip, makeGrid, pickEvenly, saveImage, scaleNearest, tensorToPixels } from '../image/index.js';
import { ClassConditionalPipeline, type ClassifierGradient } from '../pipelines/class_conditional.js';
import { Progress, formatDuration } from '../train/progress.js';
import { UserError } from './errors.js';

/** The model `vss generate` uses when none is given: trained by this project, shipped in the repository. */
export const BUNDLED_MODEL = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'models', 'fmnist-ddpm');

/** A class-conditional model folder for `p`: the folder itself, or a training run's `model/` inside it. */
export function classModelFolder(p: string): string | null {
  if (!fs.existsSync(p) || !fs.statSync(p).isDirectory()) return null;
  if (ClassConditionalPipeline.isPipelineFolder(p)) return p;
  const inner = path.join(p, 'model');
  return ClassConditionalPipeline.isPipelineFolder(inner) ? inner : null;
}

export interface ClassGenerateFlags {
  class?: string;
  negativePrompt: string;
  steps: number;
  cfgScale: number;
  sampler?: string;
  eta?: number;
  seed?: number;
  width?: number;
  height?: number;
  batch: number;
  output: string;
  initImage?: string;
  mask?: string;
  initLatents?: string;
  saveLatents?: string;
  strip?: boolean;
  grid?: boolean;
  upscale: number;
  classifier?: string;
  classifierScale: number;
  progress: boolean;
}

/** Loads a noise-aware classifier folder → its gradient function (classifier guidance). */
export type ClassifierLoader = (folder: string, schedulerConfig: Record<string, unknown>) => Promise<ClassifierGradient>;

const stemOf = (output: string) => output.slice(0, output.length - path.extname(output).length);

export async function generateClassConditional(modelDir: string, prompt: string, flags: ClassGenerateFlags,
                                               given: (flag: string) => boolean, loadClassifier: ClassifierLoader): Promise<void> {
  for (const [flag, value] of [['--init-image', flags.initImage], ['--mask', flags.mask], ['--init-latents', flags.initLatents], ['--save-latents', flags.saveLatents]] as const) {
    if (value) throw new UserError(`${flag} works with Stable Diffusion models; ${modelDir} is a class-conditional pixel model`);
  }
  if (path.extname(flags.output).toLowerCase() !== '.png') throw new UserError(`--output ${flags.output}: must be a .png (the generation parameters are stored in it)`);
  let pipe: ClassConditionalPipeline;
  const t0 = performance.now();
  try {
    pipe = ClassConditionalPipeline.fromPretrained(modelDir);
  } catch (err) {
    throw new UserError(`cannot load ${modelDir}: ${(err as Error).message}`);
  }
  const { classNames, imageSize } = pipe.info;
  for (const [flag, v] of [['--width', flags.width], ['--height', flags.height]] as const) {
    if (v !== undefined && v !== imageSize) throw new UserError(`${flag} ${v}: this model makes ${imageSize}×${imageSize} images`, 'leave --width/--height out; --upscale enlarges the output');
  }
  if (flags.negativePrompt) process.stderr.write('note: --negative-prompt has no effect on a class-conditional model\n');

  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rng = new Rng(seed);
  let label: number | null;
  if (flags.class !== undefined) {
    const asIndex = Number(flags.class);
    label = Number.isInteger(asIndex) && String(asIndex) === flags.class.trim() ? asIndex : pipe.classFromText(flags.class);
    if (label === null || label < 0 || label >= classNames.length) {
      throw new UserError(`unknown class '${flags.class}'`, `this model knows: ${classNames.join(', ')} (or 0…${classNames.length - 1})`);
    }
  } else if (prompt.trim()) {
    label = pipe.classFromText(prompt);
    if (label === null) throw new UserError(`the prompt '${prompt}' names none of this model's classes`, `it knows: ${classNames.join(', ')} — e.g. vss generate "a ${classNames[7].toLowerCase()}"`);
  } else {
    label = Math.floor(new Rng(seed ^ 0x5bd1e995).uniform(1)[0] * classNames.length);
  }
  const steps = given('steps') ? flags.steps : pipe.info.defaults.steps;
  const cfg = given('cfgScale') ? flags.cfgScale : pipe.info.defaults.guidanceScale;
  const samplerName = flags.sampler ?? pipe.info.defaults.sampler;
  let sampler;
  try {
    sampler = pipe.scheduler(samplerName);
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  if (steps > sampler.config.numTrainTimesteps) throw new UserError(`--steps ${steps}: the model was trained with ${sampler.config.numTrainTimesteps} timesteps`);
  let classifierGuidance: { gradient: ClassifierGradient; scale: number } | undefined;
  if (flags.classifier) {
    if (!fs.existsSync(flags.classifier)) throw new UserError(`classifier not found: ${flags.classifier}`);
    classifierGuidance = { gradient: await loadClassifier(flags.classifier, pipe.schedulerConfig), scale: flags.classifierScale };
  } else if (given('classifierScale')) {
    throw new UserError('--classifier-scale needs --classifier <folder> (a noise-aware classifier, e.g. models/fmnist-noisy-classifier)');
  }
  const loadS = (performance.now() - t0) / 1000;

  const batch = flags.batch;
  const labels = Array.from({ length: batch }, () => label);
  const frames: { label: string; pixels: Pixels }[] = [];
  const stripAt = new Set(pickEvenly(Array.from({ length: steps }, (_, k) => k), 8));
  let progress: Progress | null = null;
  const t1 = performance.now();
  const images = pipe.generate({
    labels, sampler, steps, eta: flags.eta, guidanceScale: cfg, rng, classifierGuidance,
    onStep: (i, total, x, x0) => {
      if (flags.progress) {
        progress ??= new Progress({ total, label: 'sampling', unit: 'steps' });
        progress.update(i + 1);
      }
      if (flags.strip && stripAt.has(i) && i + 1 < total) {
        frames.push({ label: `${i + 1}/${total}`, pixels: tensorToPixels(clampUnit(x0 ?? x).narrow(0, 0, 1), { range: 'signed' })[0] });
      }
    },
  });
  (progress as Progress | null)?.done();
  const took = (performance.now() - t1) / 1000;

  const className = classNames[label];
  const params: GenerationParameters = {
    prompt: prompt || className, steps, sampler: sampler.className === 'DDIMScheduler' ? 'DDIM' : samplerName, cfgScale: cfg, seed,
    width: imageSize * flags.upscale, height: imageSize * flags.upscale, model: modelName(modelDir),
    extra: { Class: className },
  };
  if (flags.eta !== undefined) params.extra!.Eta = String(flags.eta);
  if (classifierGuidance) { params.extra!['Classifier guidance'] = String(classifierGuidance.scale); params.extra!.Classifier = path.basename(flags.classifier!); }
  if (flags.upscale > 1) params.extra!.Upscale = `${flags.upscale}x nearest`;
  if (getMatmulPrecision() !== 'f32') params.extra!.Matmul = getMatmulPrecision();   // the bits depend on it

  const pictures = tensorToPixels(images, { range: 'signed' }).map((p) => (flags.upscale > 1 ? scaleNearest(p, flags.upscale) : p));
  const stem = stemOf(flags.output);
  fs.mkdirSync(path.dirname(path.resolve(flags.output)), { recursive: true });
  let files: string[];
  if (flags.grid && batch > 1) {
    files = [flags.output];
    await saveImage(flags.output, makeGrid(pictures, { columns: Math.min(8, batch), minCellSize: 0 }), { parameters: { ...params, extra: { ...params.extra, 'Batch size': String(batch) } } });
  } else {
    files = batch === 1 ? [flags.output] : pictures.map((_, i) => `${stem}-${i}${path.extname(flags.output)}`);
    for (let i = 0; i < files.length; i++) {
      const extra = batch > 1 ? { ...params.extra, 'Batch size': String(batch), 'Batch pos': String(i) } : params.extra;
      await saveImage(files[i], pictures[i], { parameters: { ...params, extra } });
    }
  }
  if (flags.strip) {
    frames.push({ label: 'final', pixels: tensorToPixels(images.narrow(0, 0, 1), { range: 'signed' })[0] });
    await saveImage(`${stem}-strip.png`, denoisingStrip(frames.map((f) => f.pixels), { labels: frames.map((f) => f.label) }));
  }
  console.log(`wrote ${files.join(', ')} (${className}, ${imageSize}×${imageSize}${flags.upscale > 1 ? ` shown ×${flags.upscale}` : ''}, ` +
    `${steps} ${params.sampler} steps, CFG ${cfg}${classifierGuidance ? `, classifier guidance ${classifierGuidance.scale}` : ''}, seed ${seed}, ` +
    `${formatDuration(took)}; model loaded in ${loadS.toFixed(1)}s)` + (flags.strip ? `; strip in ${stem}-strip.png` : ''));
}

/** The sampler's x_0 estimates can leave [−1, 1] early on; show them clipped. */
function clampUnit(x: Tensor): Tensor {
  return x.clamp(-1, 1);
}

/** A run's `model/` folder is named after the run. */
function modelName(dir: string): string {
  const abs = path.resolve(dir);
  return path.basename(abs) === 'model' ? path.basename(path.dirname(abs)) : path.basename(abs);
}
