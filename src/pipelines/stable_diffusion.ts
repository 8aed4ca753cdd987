/**
 * Stable Diffusion text-to-image, image-to-image and inpainting (Rombach et al. 2022), composed from named
 * components the way diffusers' StableDiffusionPipeline / Img2Img / Inpaint pipelines are, and producing the
 * same numbers given the same noise:
 *
 *   1. check the inputs            4. prepare latents (noise, or the encoded init image noised to t_start)
 *   2. encode the prompt (+ neg.)  5. prepare mask latents (inpainting)
 *   3. prepare timesteps           6. denoise: U-Net on [uncond ‖ cond] in one batch, guidance, sampler step
 *                                  7. decode with the VAE (÷ scaling_factor) → images in [0, 1]
 *
 * Every random draw comes from one seeded Rng in a fixed order, or from explicit tensors (`noise`) so a run
 * can replay another implementation's draws exactly. A step callback sees each step's latents and may stop
 * the loop; an AbortSignal cancels it (the loop yields to the event loop between steps).
 */
import { type Tensor, Rng, cat, fromTypedArray, noGrad, randn } from '../engine/index.js';
import type { AutoencoderKL, VaeTileOptions } from '../models/autoencoder_kl.js';
import type { CLIPTextModel } from '../models/clip_text.js';
import type { UNet2DConditionModel } from '../models/unet2d_condition.js';
import type { CLIPTokenizer } from '../tokenizers/index.js';
import { type Scheduler, samplerFromName, schedulerFromConfig } from '../diffusion/schedulers/index.js';
import { type Emphasis, encodePrompt, encodePromptPair } from './prompt_weighting.js';
import { loadStableDiffusion, mapsWeights, type LoadOptions, type LoadedStableDiffusion } from './loaders/index.js';
import { releaseMappedWeights } from '../io/safetensors.js';

export interface StableDiffusionComponents {
  tokenizer: CLIPTokenizer;
  textEncoder: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  /** The model's own sampler; its config is also the base for samplers picked by name. */
  scheduler: Scheduler;
  /**
   * The model's scheduler_config.json as written, the base for samplers picked by name (keys the default
   * sampler does not use, e.g. PNDM's file's `clip_sample: false`, still matter to DDIM). Default: scheduler.toJSON().
   */
  schedulerConfig?: Record<string, unknown>;
}

/** What the step callback is told besides (step, timestep, latents). */
export interface StepInfo {
  /** Model evaluations in this run (the length of the timestep list). */
  total: number;
  /** The sampler's estimate of the clean latents at this step, when it forms one (for previews). */
  predOriginal?: Tensor;
}

/** Called after every sampler step; return 'stop' to end the loop early and decode the latents so far. */
export type StepCallback = (step: number, timestep: number, latents: Tensor, info: StepInfo) => void | 'stop';

/** Draws to use instead of the Rng (each shaped like the latents it noises). */
export interface ExplicitNoise {
  /** txt2img / inpainting: the initial latents (before × initNoiseSigma); img2img: the noise added at t_start. */
  latent?: Tensor;
  /** The VAE posterior sample of the init image (img2img, and inpainting with a 4-channel U-Net or strength < 1). */
  imagePosterior?: Tensor;
  /** The VAE posterior sample of the masked image (9-channel inpainting U-Nets). */
  maskedImagePosterior?: Tensor;
  /** One tensor per step for stochastic samplers (Euler a, DDPM, DDIM η > 0, SDE solvers). */
  steps?: Tensor[];
}

export interface GenerateOptions {
  prompt: string;
  /** Default '' (diffusers' unconditional prompt). */
  negativePrompt?: string;
  /** Default 20. */
  steps?: number;
  /** Classifier-free guidance scale; ≤ 1 turns guidance off (one U-Net pass per step). Default 7.5. */
  guidanceScale?: number;
  /** Image size in pixels (multiples of 8). Default: the init image's size, else the U-Net's sample_size × 8. */
  width?: number;
  height?: number;
  /** Images per prompt. Default 1. */
  batchSize?: number;
  /** Seed of the Rng all draws come from (ignored when `rng` is given). Default 0. */
  seed?: number;
  rng?: Rng;
  /** An A1111 name ('Euler a', 'DPM++ 2M Karras', …), a diffusers class name, or a scheduler. Default: the model's. */
  sampler?: string | Scheduler;
  /** diffusers' clip_skip: 0 = last layer, 1 = penultimate (A1111 "Clip skip: 2"). */
  clipSkip?: number;
  /** A1111 prompt weighting mode (default 'original'). */
  emphasis?: Emphasis;
  /** Start from these latents [B, 4, h, w] (multiplied by initNoiseSigma, as diffusers does) instead of random ones. */
  initLatents?: Tensor;
  /** img2img / inpainting source, [1 | B, 3, H, W] with values in [0, 1]. */
  initImage?: Tensor;
  /** How much of the schedule to run on the init image, (0, 1]. Default 0.8 (img2img), 1 (inpainting). */
  strength?: number;
  /** Inpainting mask, [1 | B, 1, H, W] or [H, W] in [0, 1]; ≥ 0.5 is repainted. */
  mask?: Tensor;
  noise?: ExplicitNoise;
  /** Precomputed prompt embeddings [1, L, D] (skip stage 2). Both are needed when guidance is on. */
  promptEmbeds?: Tensor;
  negativePromptEmbeds?: Tensor;
  onStep?: StepCallback;
  signal?: AbortSignal;
  /** Decode with VAE tiles (large images in less memory); true = default tiles. */
  tiledDecode?: boolean | VaeTileOptions;
  /** 'none' skips stage 7 (latents only). */
  output?: 'image' | 'none';
}

export interface GenerateResult {
  /** [B, 3, H, W] in [0, 1]; null with output 'none'. */
  images: Tensor | null;
  /** The final latents (what the VAE decodes, × scaling_factor). */
  latents: Tensor;
  /** txt2img: the starting latents before × initNoiseSigma (feed back as `initLatents` to replay the run). */
  initLatents: Tensor | null;
  promptEmbeds: Tensor;
  negativePromptEmbeds: Tensor | null;
  /** The timesteps the U-Net ran at. */
  timesteps: number[];
  /** The sampler's diffusers class and its A1111 name. */
  sampler: { className: string; name: string };
  seed: number | null;
  width: number;
  height: number;
  /** True when the callback stopped the loop early. */
  stopped: boolean;
}

export class GenerationAbortedError extends Error {
  override name = 'AbortError';
  constructor(readonly step: number) {
    super(`generation cancelled at step ${step}`);
  }
}

export class StableDiffusionPipeline {
  readonly tokenizer: CLIPTokenizer;
  readonly textEncoder: CLIPTextModel;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly scheduler: Scheduler;
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  /** Where the model came from (fromPretrained), for messages and PNG metadata. */
  source: LoadedStableDiffusion['source'] | null = null;
  /**
   * Give back the other parts' memory-mapped weight pages before a part runs (fromPretrained's `memory:
   * 'lean'`, the default there). Weights read into memory are never affected.
   */
  releaseIdleWeights = false;

  constructor(components: StableDiffusionComponents) {
    this.tokenizer = components.tokenizer;
    this.textEncoder = components.textEncoder;
    this.unet = components.unet;
    this.vae = components.vae;
    this.scheduler = components.scheduler;
    this.schedulerConfig = { ...(components.schedulerConfig ?? components.scheduler.toJSON()), _class_name: components.scheduler.className };
    const ctx = this.textEncoder.config.hiddenSize, cross = this.unet.crossAttentionDim;
    if (cross !== null && cross !== ctx) {
      throw new Error(`StableDiffusionPipeline: the text encoder's width ${ctx} is not the U-Net's cross_attention_dim ${cross}`);
    }
    if (this.vae.config.latentChannels !== this.latentChannels) {
      throw new Error(`StableDiffusionPipeline: the VAE has ${this.vae.config.latentChannels} latent channels, the U-Net predicts ${this.latentChannels}`);
    }
    for (const m of [this.textEncoder, this.unet, this.vae]) m.eval().requiresGrad_(false);
  }

  /** Load a diffusers folder or a single-file checkpoint (.safetensors / .ckpt). */
  static fromPretrained(modelPath: string, opts: LoadOptions = {}): StableDiffusionPipeline {
    const parts = loadStableDiffusion(modelPath, opts);
    const pipe = new StableDiffusionPipeline({ ...parts, scheduler: schedulerFromConfig(parts.schedulerConfig), schedulerConfig: parts.schedulerConfig });
    pipe.source = parts.source;
    pipe.releaseIdleWeights = mapsWeights(opts);
    return pipe;
  }

  /**
   * Called before a part runs. The text encoder, U-Net and VAE take turns, so with `releaseIdleWeights` the
   * memory-mapped weights of the other two are given back (their pages return from the page cache when
   * next read): peak memory is one part's weights and activations, not all three parts'.
   */
  usePart(part: 'text' | 'unet' | 'vae'): void {
    if (!this.releaseIdleWeights) return;
    const parts = { text: this.textEncoder, unet: this.unet, vae: this.vae };
    for (const [name, m] of Object.entries(parts)) if (name !== part) releaseMappedWeights(m.stateDict().values());
  }

  /** Image pixels per latent pixel (8 for SD). */
  get vaeScaleFactor(): number {
    return this.vae.downscaleFactor;
  }

  get latentChannels(): number {
    return this.unet.config.outChannels;
  }

  /** The size the U-Net was trained at, in pixels (512 for SD 1.5, 768 for SD 2.1-v). */
  get defaultSize(): number {
    return (this.unet.config.sampleSize ?? 64) * this.vaeScaleFactor;
  }

  /** A fresh sampler (schedulers hold per-run state): by name on the model's config, or the model's own. */
  makeScheduler(sampler?: string | Scheduler): Scheduler {
    if (sampler && typeof sampler !== 'string') return sampler;
    const base = { ...this.schedulerConfig };
    return sampler ? samplerFromName(sampler, base) : schedulerFromConfig(base);
  }

  /** Stage 2 on its own: [1, L, D] embeddings of the prompt and (with guidance) the negative prompt. */
  encodePrompt(prompt: string, negativePrompt: string | null, opts: { clipSkip?: number; emphasis?: Emphasis } = {}): { cond: Tensor; uncond: Tensor | null } {
    const o = { clipSkip: opts.clipSkip ?? 0, emphasis: opts.emphasis };
    this.usePart('text');
    if (negativePrompt === null) return { cond: encodePrompt(prompt, this.tokenizer, this.textEncoder, o), uncond: null };
    return encodePromptPair(prompt, negativePrompt, this.tokenizer, this.textEncoder, o);
  }

  /** Stage 7 on its own: latents (× scaling_factor) → images [B, 3, H, W] in [0, 1], one image at a time. */
  decodeLatents(latents: Tensor, tiled?: boolean | VaeTileOptions): Tensor {
    this.usePart('vae');
    return noGrad(() => {
      const scaled = latents.div(this.vae.scalingFactor);
      const images: Tensor[] = [];
      for (let b = 0; b < latents.shape[0]; b++) {
        const z = scaled.narrow(0, b, 1);
        const x = tiled ? this.vae.decodeTiled(z, tiled === true ? {} : tiled) : this.vae.decode(z);
        images.push(x.mul(0.5).add(0.5).clamp(0, 1));
      }
      return images.length === 1 ? images[0] : cat(images, 0);
    });
  }

  /** A cheap preview: the latents mapped to RGB by a fixed linear map (SD 1.x/2.x latent space), [B, 3, h, w] in [0, 1]. */
  previewLatents(latents: Tensor): Tensor {
    const [B, C, h, w] = latents.shape;
    const src = latents.contiguous().toFloat32Array();
    const out = new Float32Array(B * 3 * h * w);
    const plane = h * w;
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < plane; i++) {
          let v = 0;
          for (let k = 0; k < Math.min(C, 4); k++) v += LATENT_RGB[k][c] * src[(b * C + k) * plane + i];
          out[(b * 3 + c) * plane + i] = Math.min(1, Math.max(0, v * 0.5 + 0.5));
        }
      }
    }
    return fromTypedArray(out, [B, 3, h, w]);
  }

  /** Run the pipeline. */
  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    // 1. Check inputs
    const f = this.vaeScaleFactor;
    const batch = opts.batchSize ?? 1;
    const steps = opts.steps ?? 20;
    const guidance = opts.guidanceScale ?? 7.5;
    const doCfg = guidance > 1;
    const initImage = opts.initImage ? asImageBatch(opts.initImage, 3, 'initImage') : null;
    const width = opts.width ?? (initImage ? initImage.shape[3] : this.defaultSize);
    const height = opts.height ?? (initImage ? initImage.shape[2] : this.defaultSize);
    checkSize(width, height, f);
    if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`batchSize must be a positive integer, got ${batch}`);
    if (!(Number.isInteger(steps) && steps >= 1)) throw new Error(`steps must be a positive integer, got ${steps}`);
    if (!Number.isFinite(guidance)) throw new Error(`guidanceScale must be a number, got ${guidance}`);
    if (initImage && (initImage.shape[2] !== height || initImage.shape[3] !== width)) {
      throw new Error(`initImage is ${initImage.shape[3]}×${initImage.shape[2]}, the output ${width}×${height}: resize it first`);
    }
    const mask = opts.mask ? asImageBatch(opts.mask, 1, 'mask') : null;
    if (mask && !initImage) throw new Error('a mask needs an initImage (inpainting)');
    if (mask && (mask.shape[2] !== height || mask.shape[3] !== width)) {
      throw new Error(`mask is ${mask.shape[3]}×${mask.shape[2]}, the image ${width}×${height}`);
    }
    const unetIn = this.unet.config.inChannels, lc = this.latentChannels;
    const inpaintModel = unetIn === 2 * lc + 1;
    if (inpaintModel && !mask) throw new Error(`this is an inpainting U-Net (${unetIn} input channels): it needs an initImage and a mask`);
    if (!inpaintModel && unetIn !== lc) throw new Error(`U-Net with ${unetIn} input channels is not supported (expected ${lc} or ${2 * lc + 1})`);
    const strength = opts.strength ?? (mask ? 1 : 0.8);
    if (initImage && !(strength > 0 && strength <= 1)) throw new Error(`strength must be in (0, 1], got ${strength}`);
    const h = height / f, w = width / f;
    const latentShape = [batch, lc, h, w];
    if (opts.initLatents) checkShape(opts.initLatents, latentShape, 'initLatents');
    const rng = opts.rng ?? new Rng(opts.seed ?? 0);
    const seed = opts.rng ? null : opts.seed ?? 0;
    const scheduler = this.makeScheduler(opts.sampler);

    // Stages 2–5 and each step run synchronously under noGrad; the loop yields between steps.
    const prep = noGrad(() => {
      // 2. Encode the prompt (+ negative): one [1, L, D] each, repeated over the batch
      let cond = opts.promptEmbeds ?? null, uncond = opts.negativePromptEmbeds ?? null;
      if (!cond || (doCfg && !uncond)) {
        const e = this.encodePrompt(opts.prompt, doCfg ? opts.negativePrompt ?? '' : null, { clipSkip: opts.clipSkip, emphasis: opts.emphasis });
        cond = e.cond;
        uncond = e.uncond;
      }
      const repeatB = (t: Tensor) => (batch === 1 ? t : t.repeat(batch, 1, 1));
      const context = doCfg ? cat([repeatB(uncond!), repeatB(cond)], 0) : repeatB(cond);

      // 3. Prepare timesteps: img2img / inpainting start `strength` of the way into the schedule
      scheduler.setTimesteps(steps);
      let timesteps = [...scheduler.timesteps];
      if (initImage) {
        const initSteps = Math.min(Math.floor(steps * strength), steps);
        const tStart = Math.max(steps - initSteps, 0);
        timesteps = timesteps.slice(tStart * scheduler.order);
        scheduler.setBeginIndex(tStart * scheduler.order);
        if (timesteps.length === 0) throw new Error(`strength ${strength} with ${steps} steps runs no step: raise either`);
      }
      const strengthMax = strength === 1;

      // 4. Prepare latents
      const drawOr = (given: Tensor | undefined, shape: number[], what: string) => {
        if (given) { checkShape(given, shape, what); return given; }
        return randn(shape, { rng });
      };
      const signedImage = initImage ? initImage.mul(2).sub(1) : null; // [0, 1] → [−1, 1]
      const encodeImage = (x: Tensor, given: Tensor | undefined, what: string): Tensor => {
        this.usePart('vae');
        const post = this.vae.encode(x);
        const z = post.mean.add(post.logvar.mul(0.5).exp().mul(drawOr(given, [...post.mean.shape], what)));
        const scaled = z.mul(this.vae.scalingFactor);
        return scaled.shape[0] === batch ? scaled : scaled.repeat(batch, 1, 1, 1);
      };
      let latents: Tensor;
      let initLatents: Tensor | null = null;
      let imageLatents: Tensor | null = null;
      let latentNoise: Tensor | null = null;
      if (!initImage) {
        // Given latents still use up their draw, so a replay with the same seed also repeats the per-step noise.
        const drawn = drawOr(opts.noise?.latent, latentShape, 'noise.latent');
        initLatents = opts.initLatents ?? drawn;
        latents = initLatents.mul(scheduler.initNoiseSigma);
      } else if (!mask) {
        // img2img: posterior sample of the init image, noised to the first timestep
        imageLatents = encodeImage(signedImage!, opts.noise?.imagePosterior, 'noise.imagePosterior');
        latentNoise = drawOr(opts.noise?.latent, latentShape, 'noise.latent');
        latents = scheduler.addNoise(imageLatents, latentNoise, timesteps[0]);
      } else {
        // inpainting: pure noise at full strength, else the init image noised to the first timestep
        if (!inpaintModel || !strengthMax) imageLatents = encodeImage(signedImage!, opts.noise?.imagePosterior, 'noise.imagePosterior');
        latentNoise = opts.initLatents ?? drawOr(opts.noise?.latent, latentShape, 'noise.latent');
        latents = strengthMax ? latentNoise.mul(scheduler.initNoiseSigma) : scheduler.addNoise(imageLatents!, latentNoise, timesteps[0]);
        if (strengthMax) initLatents = latentNoise;
      }

      // 5. Prepare mask latents: the binarised mask at latent size, and (9-channel U-Nets) the masked image's latents
      let latentMask: Tensor | null = null, maskedLatents: Tensor | null = null;
      if (mask) {
        const binary = binarize(mask);
        latentMask = resizeNearest(binary, h, w);
        if (latentMask.shape[0] !== batch) latentMask = latentMask.repeat(batch, 1, 1, 1);
        if (inpaintModel) {
          const keep = fromTypedArray(binary.toFloat32Array().map((v) => (v < 0.5 ? 1 : 0)), [...binary.shape]);
          maskedLatents = encodeImage(signedImage!.mul(keep), opts.noise?.maskedImagePosterior, 'noise.maskedImagePosterior');
        }
      }
      const maskIn = inpaintModel ? (doCfg ? cat([latentMask!, latentMask!], 0) : latentMask!) : null;
      const maskedIn = inpaintModel ? (doCfg ? cat([maskedLatents!, maskedLatents!], 0) : maskedLatents!) : null;

      return { cond, uncond, context, timesteps, latents, initLatents, imageLatents, latentNoise, latentMask, maskIn, maskedIn };
    });
    const { cond, uncond, context, timesteps, initLatents, imageLatents, latentNoise, latentMask, maskIn, maskedIn } = prep;
    let latents = prep.latents;

    // 6. Denoising loop
    this.usePart('unet');
    let stopped = false;
    for (let i = 0; i < timesteps.length; i++) {
      if (opts.signal?.aborted) throw new GenerationAbortedError(i);
      const t = timesteps[i];
      const res = noGrad(() => {
        let x = scheduler.scaleModelInput(doCfg ? cat([latents, latents], 0) : latents, t);
        if (maskIn) x = cat([x, maskIn, maskedIn!], 1);
        const out = this.unet.forward(x, t, context);
        let eps = out;
        if (doCfg) {
          const [u, c] = out.chunk(2, 0);
          eps = u.add(c.sub(u).mul(guidance)); // ε̂ = ε_u + s (ε_c − ε_u)
        }
        const r = scheduler.step(eps, t, latents, { rng, noise: opts.noise?.steps?.[i] });
        let next = r.prevSample;
        if (mask && !inpaintModel) {
          // Ordinary U-Nets: keep the unmasked area on the init image's trajectory, re-noised to the next timestep.
          const proper = i < timesteps.length - 1 ? scheduler.addNoise(imageLatents!, latentNoise!, timesteps[i + 1]) : imageLatents!;
          next = proper.add(latentMask!.mul(next.sub(proper))); // (1 − m)·proper + m·latents
        }
        return { next, predOriginal: r.predOriginalSample };
      });
      latents = res.next;
      if (opts.onStep?.(i, t, latents, { total: timesteps.length, predOriginal: res.predOriginal }) === 'stop') {
        stopped = i < timesteps.length - 1;
        break;
      }
      // Let timers, I/O and abort signals run between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }

    // 7. Decode
    const images = opts.output === 'none' ? null : this.decodeLatents(latents, opts.tiledDecode);
    return {
      images, latents, initLatents, promptEmbeds: cond, negativePromptEmbeds: doCfg ? uncond : null, timesteps,
      sampler: { className: scheduler.className, name: samplerName(scheduler) }, seed, width, height, stopped,
    };
  }
}

/** Linear map from the 4 SD latent channels to RGB (rows: channel; columns: R, G, B), a rough preview. */
const LATENT_RGB = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/** The A1111 name of a sampler (for the PNG `parameters` chunk). */
export function samplerName(s: Scheduler): string {
  const c = s.toJSON();
  const karras = c.use_karras_sigmas === true ? ' Karras' : '';
  switch (s.className) {
    case 'DDIMScheduler': return 'DDIM';
    case 'PNDMScheduler': return c.skip_prk_steps ? 'PLMS' : 'PNDM';
    case 'EulerDiscreteScheduler': return `Euler${karras}`;
    case 'EulerAncestralDiscreteScheduler': return 'Euler a';
    case 'HeunDiscreteScheduler': return `Heun${karras}`;
    case 'LMSDiscreteScheduler': return `LMS${karras}`;
    case 'DPMSolverMultistepScheduler': return `DPM++ 2M${String(c.algorithm_type).startsWith('sde') ? ' SDE' : ''}${karras}`;
    case 'UniPCMultistepScheduler': return 'UniPC';
    case 'DDPMScheduler': return 'DDPM';
    default: return s.className;
  }
}

/** Sizes the pipeline accepts: positive multiples of 8 (and of the VAE's factor). */
export function checkSize(width: number, height: number, factor = 8): void {
  const m = Math.max(8, factor);
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer, got ${v}`);
    if (v % m) throw new Error(`${name} ${v} is not a multiple of ${m} (the latents are 1/${factor} of the image): try ${Math.max(m, Math.round(v / m) * m)}`);
  }
}

function checkShape(t: Tensor, shape: readonly number[], what: string): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${what} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
}

/** [C, H, W] / [H, W] / [B, C, H, W] → [B, C, H, W] f32. */
function asImageBatch(t: Tensor, channels: number, what: string): Tensor {
  let x = t.to('f32');
  if (x.ndim === 2 && channels === 1) x = x.reshape([1, 1, ...x.shape]);
  else if (x.ndim === 3) x = x.unsqueeze(0);
  if (x.ndim !== 4 || x.shape[1] !== channels) throw new Error(`${what} must be [B, ${channels}, H, W], got [${t.shape.join(', ')}]`);
  return x.contiguous();
}

/** ≥ 0.5 → 1, else 0 (diffusers' mask binarisation). */
function binarize(mask: Tensor): Tensor {
  return fromTypedArray(mask.toFloat32Array().map((v) => (v >= 0.5 ? 1 : 0)), [...mask.shape]);
}

/** Nearest-neighbour resize of [B, C, H, W] to [B, C, h, w], source index ⌊i·H/h⌋ (torch's 'nearest'). */
function resizeNearest(x: Tensor, h: number, w: number): Tensor {
  const [B, C, H, W] = x.shape;
  const src = x.toFloat32Array();
  const out = new Float32Array(B * C * h * w);
  for (let p = 0; p < B * C; p++) {
    for (let i = 0; i < h; i++) {
      const si = Math.min(H - 1, Math.floor(i * (H / h)));
      for (let j = 0; j < w; j++) out[(p * h + i) * w + j] = src[(p * H + si) * W + Math.min(W - 1, Math.floor(j * (W / w)))];
    }
  }
  return fromTypedArray(out, [B, C, h, w]);
}
