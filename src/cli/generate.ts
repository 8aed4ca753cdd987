/**
 * `vss generate --model <folder|file> "prompt"`: Stable Diffusion text-to-image, image-to-image and
 * inpainting from the command line. The PNG carries the A1111 `parameters` chunk (`vss info` reads it back);
 * `--save-latents` / `--init-latents` replay a run exactly, here or in another implementation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Command, Option } from 'commander';
import sharp from 'sharp';
import { type Tensor, fromTypedArray, getMatmulPrecision } from '../engine/index.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import {
  type GenerationParameters, type Pixels, denoisingStrip, pickEvenly, pixelsToFloat, saveImage, tensorToPixels,
} from '../image/index.js';
import { Progress, formatDuration } from '../train/progress.js';
import { GenerationAbortedError, StableDiffusionPipeline, type GenerateOptions } from '../pipelines/stable_diffusion.js';
import { samplerFromName } from '../diffusion/schedulers/index.js';
import { UserError } from './errors.js';
import { intOption, numberOption } from './options.js';
import { BUNDLED_MODEL, type ClassifierLoader, classModelFolder, generateClassConditional } from './generate_class.js';

interface GenerateFlags {
  model?: string;
  class?: string;
  eta?: number;
  grid?: boolean;
  upscale: number;
  classifier?: string;
  classifierScale: number;
  tokenizer?: string;
  negativePrompt: string;
  steps: number;
  cfgScale: number;
  sampler?: string;
  seed?: number;
  width?: number;
  height?: number;
  batch: number;
  clipSkip: number;
  output: string;
  initImage?: string;
  strength?: number;
  mask?: string;
  initLatents?: string;
  saveLatents?: string;
  previewEvery: number;
  previewMode: 'approx' | 'vae';
  strip?: boolean;
  prediction?: 'epsilon' | 'v';
  dtype: 'keep' | 'f16' | 'f32';
  memory: 'lean' | 'resident';
  tiledVae?: boolean;
  progress: boolean;
}

const MAX_SIDE = 4096;

function sizeOption(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n <= 0) throw new UserError(`${what} must be a positive integer, got '${value}'`);
    if (n % 8) throw new UserError(`${what} ${n} is not a multiple of 8 (Stable Diffusion's latents are 1/8 of the image)`, `try ${Math.max(8, Math.round(n / 8) * 8)}`);
    if (n > MAX_SIDE) throw new UserError(`${what} ${n} is larger than ${MAX_SIDE}`, 'generate smaller and upscale');
    return n;
  };
}

/** Decode an image file and resize it to width × height (when given) → [1, C, H, W] in [0, 1]. */
async function readImage(file: string, channels: 1 | 3, width?: number, height?: number): Promise<Tensor> {
  if (!fs.existsSync(file)) throw new UserError(`image not found: ${file}`);
  let img = sharp(file).autoOrient();
  const meta = await sharp(file).metadata().catch((err: Error) => { throw new UserError(`cannot read image ${file}: ${err.message}`); });
  const w = width ?? meta.width!, h = height ?? meta.height!;
  if (w % 8 || h % 8) {
    throw new UserError(`${file} is ${meta.width}×${meta.height}; the size must be a multiple of 8`, `pass --width and --height to resize it (e.g. ${Math.round(w / 8) * 8}×${Math.round(h / 8) * 8})`);
  }
  if (w !== meta.width || h !== meta.height) img = img.resize(w, h, { fit: 'fill', kernel: channels === 1 ? 'nearest' : 'lanczos3' });
  img = channels === 1 ? img.greyscale().removeAlpha().toColourspace('b-w') : img.removeAlpha().toColourspace('srgb');
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const pixels: Pixels = { width: info.width, height: info.height, channels: info.channels as 1 | 3, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  if (pixels.channels !== channels) throw new UserError(`${file}: decoded ${pixels.channels} channels, wanted ${channels}`);
  return fromTypedArray(pixelsToFloat(pixels, 'chw', 'unit'), [1, channels, h, w]);
}

/** The starting latents of a saved run: `init_latents` if the file has them, else its only tensor. */
function readLatents(file: string): Tensor {
  if (!fs.existsSync(file)) throw new UserError(`latents file not found: ${file}`);
  const st = SafetensorsFile.open(file);
  try {
    const keys = st.keys();
    const key = keys.includes('init_latents') ? 'init_latents' : keys.length === 1 ? keys[0] : null;
    if (!key) throw new UserError(`${file} holds ${keys.join(', ') || 'no tensors'}; expected "init_latents" or a single tensor`);
    const t = st.get(key).to('f32');
    if (t.ndim !== 4) throw new UserError(`${file}: "${key}" has shape [${t.shape}], expected [batch, 4, height/8, width/8]`);
    return t;
  } finally {
    st.close();
  }
}

function outputFiles(output: string, batch: number): string[] {
  if (batch === 1) return [output];
  const ext = path.extname(output), stem = output.slice(0, output.length - ext.length);
  return Array.from({ length: batch }, (_, i) => `${stem}-${i}${ext}`);
}

const stemOf = (output: string) => output.slice(0, output.length - path.extname(output).length);

/** Classifier guidance: a noise-aware classifier folder → its gradient function. */
export const loadNoisyClassifier: ClassifierLoader = async (folder, schedulerConfig) => {
  const { NoisyClassifier, classifierGradientFrom } = await import('../models/noisy_classifier.js');
  try {
    return classifierGradientFrom(NoisyClassifier.fromPretrained(folder), { schedulerConfig });
  } catch (err) {
    throw new UserError(`cannot load the classifier ${folder}: ${(err as Error).message}`);
  }
};

async function generate(promptArg: string | undefined, flags: GenerateFlags, cmd: Command): Promise<void> {
  const given = (key: string) => cmd.getOptionValueSource(key) === 'cli';
  if (!flags.model) {
    if (!fs.existsSync(BUNDLED_MODEL)) {
      throw new UserError(`no --model given and the bundled model is missing (${BUNDLED_MODEL})`,
        'restore it from the repository (git checkout models/), train one with `vss train ddpm`, or point --model at Stable Diffusion ' +
        '1.x/2.x weights: a diffusers folder (model_index.json) or a single .safetensors / .ckpt checkpoint');
    }
    flags.model = BUNDLED_MODEL;
  }
  const prompt = promptArg ?? '';
  const classDir = classModelFolder(flags.model);
  if (classDir) return generateClassConditional(classDir, prompt, flags, given, loadNoisyClassifier);
  for (const flag of ['class', 'eta', 'grid', 'upscale', 'classifier', 'classifierScale']) {
    if (given(flag)) throw new UserError(`--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} works with class-conditional models (like the bundled Fashion-MNIST one), not Stable Diffusion`);
  }
  if (path.extname(flags.output).toLowerCase() !== '.png') throw new UserError(`--output ${flags.output}: must be a .png (the generation parameters are stored in it)`);
  if (flags.mask && !flags.initImage) throw new UserError('--mask needs --init-image (the picture to inpaint)');
  if (flags.strength !== undefined && !flags.initImage) throw new UserError('--strength needs --init-image');
  if (flags.initLatents && flags.initImage && !flags.mask) throw new UserError('--init-latents and --init-image (img2img) cannot be combined');

  // Inputs first (cheap), so mistakes fail before the model loads.
  if (flags.sampler) {
    try {
      samplerFromName(flags.sampler);
    } catch (err) {
      throw new UserError((err as Error).message);
    }
  }
  let initLatents: Tensor | undefined;
  let { width, height, batch } = flags;
  if (flags.initLatents) {
    initLatents = readLatents(flags.initLatents);
    const [b] = initLatents.shape;
    if (batch !== 1 && batch !== b) throw new UserError(`--batch ${batch} but ${flags.initLatents} holds ${b} latents`);
    batch = b;
  }
  const initImage = flags.initImage ? await readImage(flags.initImage, 3, width, height) : undefined;
  if (initImage) { width = initImage.shape[3]; height = initImage.shape[2]; }
  const mask = flags.mask ? await readImage(flags.mask, 1, width, height) : undefined;

  const t0 = performance.now();
  const pipe = StableDiffusionPipeline.fromPretrained(flags.model, {
    dtype: flags.dtype, prediction: flags.prediction, tokenizer: flags.tokenizer, memory: flags.memory,
  });
  const loadS = (performance.now() - t0) / 1000;
  const f = pipe.vaeScaleFactor;
  if (initLatents) {
    const [, c, h, w] = initLatents.shape;
    if (c !== pipe.latentChannels) throw new UserError(`${flags.initLatents}: ${c} latent channels, the model has ${pipe.latentChannels}`);
    if ((width ?? w * f) !== w * f || (height ?? h * f) !== h * f) {
      throw new UserError(`${flags.initLatents} holds ${w * f}×${h * f} latents but --width/--height ask for ${width}×${height}`);
    }
    width = w * f;
    height = h * f;
  }
  width ??= pipe.defaultSize;
  height ??= pipe.defaultSize;
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  process.stderr.write(`model ${flags.model} (${pipe.source?.family ?? 'sd'}, ${pipe.source?.format}) loaded in ${loadS.toFixed(1)}s\n`);
  for (const note of pipe.source?.notes ?? []) process.stderr.write(`note: ${note}\n`);

  // Previews and the strip: the sampler's x0 estimate at chosen steps.
  const stem = stemOf(flags.output);
  const frames: { label: string; pixels: Pixels }[] = [];
  let stripSteps: Set<number> | null = null;
  const pending: Promise<void>[] = [];
  const toPreview = (latents: Tensor): Pixels => {
    const images = flags.previewMode === 'vae' ? pipe.decodeLatents(latents.narrow(0, 0, 1), flags.tiledVae) : pipe.previewLatents(latents.narrow(0, 0, 1));
    return tensorToPixels(images, { range: 'unit' })[0];
  };

  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  let progress: Progress | null = null;
  const opts: GenerateOptions = {
    prompt, negativePrompt: flags.negativePrompt, steps: flags.steps, guidanceScale: flags.cfgScale, width, height, batchSize: batch,
    seed, sampler: flags.sampler, clipSkip: flags.clipSkip - 1, initLatents, initImage, strength: flags.strength, mask,
    tiledDecode: flags.tiledVae, signal: controller.signal,
    onStep: (i, t, latents, info) => {
      if (flags.progress) {
        progress ??= new Progress({ total: info.total, label: 'sampling', unit: 'steps' });
        progress.update(i + 1, { values: { t: Math.round(t) } });
      }
      if (flags.strip && stripSteps === null) stripSteps = new Set(pickEvenly(Array.from({ length: info.total }, (_, k) => k), 8));
      const x0 = info.predOriginal ?? latents;
      if (flags.previewEvery > 0 && (i + 1) % flags.previewEvery === 0 && i + 1 < info.total) {
        pending.push(saveImage(`${stem}-preview-${String(i + 1).padStart(3, '0')}.png`, toPreview(x0)));
      }
      if (stripSteps?.has(i) && i + 1 < info.total) frames.push({ label: `${i + 1}: t=${Math.round(t)}`, pixels: toPreview(x0) });
    },
  };
  let result;
  try {
    result = await pipe.generate(opts);
  } catch (err) {
    if (err instanceof GenerationAbortedError) throw new UserError(`cancelled at step ${err.step}`, undefined, 130);
    throw err;
  } finally {
    (progress as Progress | null)?.done();
    process.off('SIGINT', onSigint);
  }

  await Promise.all(pending);
  const params: GenerationParameters = {
    prompt, negativePrompt: flags.negativePrompt || undefined, steps: flags.steps, sampler: result.sampler.name, cfgScale: flags.cfgScale,
    seed, width, height, model: path.basename(flags.model).replace(/\.(safetensors|ckpt|pt|pth)$/i, ''), extra: {},
  };
  if (flags.clipSkip > 1) params.extra!['Clip skip'] = String(flags.clipSkip);
  if (initImage) params.extra!['Denoising strength'] = String(flags.strength ?? (mask ? 1 : 0.8));
  if (mask) params.extra!['Mask'] = path.basename(flags.mask!);
  if (flags.initLatents) params.extra!['Init latents'] = path.basename(flags.initLatents);
  if (getMatmulPrecision() !== 'f32') params.extra!.Matmul = getMatmulPrecision();   // the bits depend on it
  const files = outputFiles(flags.output, batch);
  const pictures = tensorToPixels(result.images!, { range: 'unit' });
  for (let i = 0; i < files.length; i++) {
    const extra = batch > 1 ? { ...params.extra, 'Batch size': String(batch), 'Batch pos': String(i) } : params.extra;
    await saveImage(files[i], pictures[i], { parameters: { ...params, extra } });
  }
  if (flags.saveLatents) {
    const tensors: Record<string, Tensor> = { latents: result.latents.contiguous() };
    if (result.initLatents) tensors.init_latents = result.initLatents.contiguous();
    fs.mkdirSync(path.dirname(path.resolve(flags.saveLatents)), { recursive: true });
    writeSafetensors(flags.saveLatents, tensors, {
      prompt, negative_prompt: flags.negativePrompt, seed: String(seed), steps: String(flags.steps), sampler: result.sampler.name,
      cfg_scale: String(flags.cfgScale), width: String(width), height: String(height), model: flags.model,
    });
  }
  if (flags.strip) {
    frames.push({ label: 'final', pixels: pictures[0] });
    await saveImage(`${stem}-strip.png`, denoisingStrip(frames.map((fr) => fr.pixels), { labels: frames.map((fr) => fr.label) }));
  }
  const took = formatDuration((performance.now() - t0) / 1000 - loadS);
  const stoppedNote = result.stopped ? ' (stopped early)' : '';
  console.log(`wrote ${files.join(', ')} (${width}×${height}, ${result.timesteps.length} steps, ${result.sampler.name}, seed ${seed}, ${took})${stoppedNote}` +
    (flags.saveLatents ? `; latents in ${flags.saveLatents}` : '') + (flags.strip ? `; strip in ${stem}-strip.png` : ''));
}

export function registerGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description('generate images: with no --model, the bundled Fashion-MNIST model (the prompt names a class: "a sneaker"); ' +
      'with --model, Stable Diffusion 1.x / 2.x (text-to-image, --init-image for img2img, --mask for inpainting) or a `vss train ddpm` model')
    .argument('[prompt]', 'what to draw; A1111 weighting works: (word:1.3), (word), [word], BREAK; class models: a sentence naming the class', '')
    .option('--model <path>', 'a diffusers folder (model_index.json), a single .safetensors / .ckpt checkpoint, or a class-conditional model folder (default: the bundled models/fmnist-ddpm)')
    .option('--class <name>', 'class models: the class to draw, by name or index (instead of a prompt)')
    .option('--eta <x>', 'DDIM: noise of each step, 0 (deterministic) … 1 (DDPM-like)', numberOption('--eta', 0, 1))
    .option('--upscale <k>', 'class models: enlarge the small output by k (nearest neighbour)', intOption('--upscale', 1, 32), 4)
    .option('--grid', 'with --batch: one PNG holding all the images')
    .option('--classifier <folder>', 'class models: classifier guidance by this noise-aware classifier (e.g. models/fmnist-noisy-classifier)')
    .option('--classifier-scale <x>', 'classifier guidance scale', numberOption('--classifier-scale', 0, 1000), 1)
    .option('--tokenizer <folder>', 'single-file checkpoints: a tokenizer folder (vocab.json + merges.txt)')
    .option('-n, --negative-prompt <text>', 'what to steer away from', '')
    .option('--steps <n>', 'sampling steps (class models: default the model\'s, 50)', intOption('--steps', 1, 1000), 20)
    .option('--cfg-scale <x>', 'classifier-free guidance scale (1 = off; class models: default the model\'s, 3)', numberOption('--cfg-scale', 0, 100), 7.5)
    .option('--sampler <name>', 'A1111 sampler name: "Euler a", "Euler", "DPM++ 2M Karras", "DDIM", "PLMS", "UniPC", … (default: the model\'s)')
    .option('--seed <n>', 'random seed (default: a random one, printed and stored in the PNG)', intOption('--seed', 0))
    .option('--width <px>', 'image width, a multiple of 8 (default: the model\'s native size, or the init image\'s)', sizeOption('--width'))
    .option('--height <px>', 'image height, a multiple of 8', sizeOption('--height'))
    .option('--batch <n>', 'images per run (output-0.png, output-1.png, …)', intOption('--batch', 1, 64), 1)
    .option('--clip-skip <n>', 'A1111 clip skip: 1 = last text-encoder layer, 2 = the one before, …', intOption('--clip-skip', 1, 12), 1)
    .option('-o, --output <file.png>', 'where to write the image', 'vss-output.png')
    .option('--init-image <file>', 'img2img: start from this picture')
    .option('--strength <x>', 'img2img: how much to change the init image, (0, 1] (default 0.8; 1 with --mask)', numberOption('--strength', 0.001, 1))
    .option('--mask <file>', 'inpainting: white = repaint, black = keep (9-channel inpainting models or mask blending)')
    .option('--init-latents <file>', 'start from these latents (a .safetensors from --save-latents, or any [B, 4, h, w] tensor)')
    .option('--save-latents <file>', 'save the starting and final latents (.safetensors) to replay the run exactly')
    .option('--preview-every <n>', 'write <output>-preview-<step>.png every n steps', intOption('--preview-every', 0), 0)
    .addOption(new Option('--preview-mode <mode>', 'previews and strip: approx (instant, rough colours) or vae (exact decode)').choices(['approx', 'vae']).default('approx'))
    .option('--strip', 'also write <output>-strip.png: the denoising at 8 steps side by side')
    .addOption(new Option('--prediction <type>', 'override the prediction type (SD 2.x 768 single files need v)').choices(['epsilon', 'v']))
    .addOption(new Option('--dtype <type>', 'weights in memory: keep the file\'s, or convert').choices(['keep', 'f16', 'f32']).default('keep'))
    .addOption(new Option('--memory <mode>', 'lean: weight files memory-mapped, only the running part (text encoder, U-Net, VAE) resident; resident: all weights read into memory').choices(['lean', 'resident']).default('lean'))
    .option('--tiled-vae', 'decode in tiles (large images in less memory)')
    .option('--no-progress', 'no progress line')
    .action((prompt: string | undefined, flags: GenerateFlags, cmd: Command) => generate(prompt, flags, cmd));
}
