/**
 * Single-file Stable Diffusion checkpoints in the original (CompVis "ldm") layout → diffusers names and
 * configs, worked out from the keys and shapes alone.
 *
 *   model.diffusion_model.*            the U-Net: input_blocks / middle_block / output_blocks, time_embed, out
 *   first_stage_model.*                the VAE: encoder/decoder .down/.up/.mid, quant_conv, post_quant_conv
 *   cond_stage_model.transformer.*     SD 1.x text encoder (OpenAI CLIP ViT-L/14, transformers names)
 *   cond_stage_model.model.*           SD 2.x text encoder (OpenCLIP ViT-H/14: resblocks, fused in_proj q/k/v)
 *
 * The conversion is a plan (diffusers key → source key, shape, row slice or reshape) computed from a
 * key → shape map, so it can be checked on a header or a key list without reading any weights.
 *
 * What the shapes say: levels, channels and layers per block, which blocks have attention, the context width
 * (768 → SD 1.x, 1024 → SD 2.x), conv or linear projections, 4 or 9 input channels. What they cannot say,
 * and the rules used: attention heads (SD 1.x: 8 per block; SD 2.x: head width 64), the text encoder's
 * heads (width 64; tiny test models with width < 64·2 use 8), and the prediction type (epsilon unless the
 * caller says v — SD 2.x 768 models are v-prediction).
 *
 * U-Net sub-blocks are told apart by what they hold, not only by their position (a resnet has in_layers, an
 * upsampler a single conv, anything else is attention): files written by partial converters put the
 * upsampler of an up block with attention at position 1. Keys already in diffusers form (left behind by such
 * converters) are taken as they are.
 */

export interface Shaped {
  readonly shape: readonly number[];
}

/** Where one diffusers tensor comes from. */
export interface MappedTensor {
  /** The checkpoint key. */
  from: string;
  /** The shape after the slice / reshape. */
  shape: number[];
  /** Rows [start, start + count) of dim 0 (fused q/k/v projections). */
  rows?: [number, number];
  /** Reshape to `shape` (1×1 conv weights used as linear ones). */
  reshape?: boolean;
}

export interface ComponentPlan {
  /** The config this component is built from (a diffusers / transformers config.json object). */
  config: Record<string, unknown>;
  tensors: Map<string, MappedTensor>;
}

export type SDFamily = 'sd1' | 'sd2';

export interface LdmPlan {
  family: SDFamily;
  unet: ComponentPlan;
  vae: ComponentPlan;
  textEncoder: ComponentPlan;
  /** scheduler_config.json for this family (PNDM, as the released SD 1.x / 2.x pipelines). */
  scheduler: Record<string, unknown>;
  /** Tokenizer padding: `<|endoftext|>` (SD 1.x) or `!` (SD 2.x). */
  padToken: string;
  /** Keys deliberately not used (EMA copies, schedule buffers, OpenCLIP's dropped last layer, …). */
  ignored: string[];
  /** Things worth telling the user (e.g. keys that were already in diffusers form). */
  notes: string[];
}

export interface LdmPlanOptions {
  /** 'v' for SD 2.x 768 models (v-prediction); default 'epsilon'. Not inferable from the weights. */
  prediction?: 'epsilon' | 'v';
}

export class LdmConversionError extends Error {
  override name = 'LdmConversionError';
}

/** The scheduler the released SD 1.x / 2.x pipelines ship (PNDM, used as PLMS), for models that carry none. */
export const SD_SCHEDULER_CONFIG: Readonly<Record<string, unknown>> = {
  _class_name: 'PNDMScheduler', num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear',
  steps_offset: 1, skip_prk_steps: true, set_alpha_to_one: false, clip_sample: false, timestep_spacing: 'leading', prediction_type: 'epsilon',
};

const UNET = 'model.diffusion_model.';
const VAE = 'first_stage_model.';
const CLIP_L = 'cond_stage_model.transformer.';
const OPEN_CLIP = 'cond_stage_model.model.';
const MAX_LISTED = 12;

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Plan the conversion of a whole checkpoint. Throws on keys that belong to a component and fit nowhere. */
export function planLdmConversion(keys: ReadonlyMap<string, Shaped>, opts: LdmPlanOptions = {}): LdmPlan {
  const unetKeys = new Map<string, Shaped>(), vaeKeys = new Map<string, Shaped>();
  const clipL = new Map<string, Shaped>(), openClip = new Map<string, Shaped>();
  const ignored: string[] = [];
  for (const [k, v] of keys) {
    if (k.startsWith(UNET)) unetKeys.set(k.slice(UNET.length), v);
    else if (k.startsWith(VAE)) vaeKeys.set(k.slice(VAE.length), v);
    else if (k.startsWith(CLIP_L)) clipL.set(k.slice(CLIP_L.length), v);
    else if (k.startsWith(OPEN_CLIP)) openClip.set(k.slice(OPEN_CLIP.length), v);
    else ignored.push(k); // model_ema.*, betas, alphas_cumprod, …: not weights of the pipeline
  }
  const missing = [
    unetKeys.size === 0 && `U-Net (${UNET}*)`, vaeKeys.size === 0 && `VAE (${VAE}*)`,
    clipL.size === 0 && openClip.size === 0 && `text encoder (${CLIP_L}* or ${OPEN_CLIP}*)`,
  ].filter(Boolean);
  if (missing.length) {
    const sample = [...keys.keys()].slice(0, 5).join(', ');
    throw new LdmConversionError(`not a Stable Diffusion checkpoint in the original layout: no ${missing.join(', no ')} keys (first keys: ${sample || 'none'})` +
      (keys.has('conv_in.weight') || [...keys.keys()].some((k) => k.startsWith('down_blocks.')) ? '; it looks like a single diffusers component — point at the whole diffusers folder instead' : ''));
  }
  if (clipL.size && openClip.size) throw new LdmConversionError(`the checkpoint holds both ${CLIP_L}* and ${OPEN_CLIP}* keys; expected one text encoder`);
  const family: SDFamily = openClip.size ? 'sd2' : 'sd1';
  const prediction = opts.prediction ?? 'epsilon';
  const notes: string[] = [];

  const text = family === 'sd1' ? planClipL(clipL, ignored) : planOpenClip(openClip, ignored);
  const unet = planUnet(unetKeys, family, prediction, notes);
  const vae = planVae(vaeKeys, notes);
  const scheduler = { ...SD_SCHEDULER_CONFIG, prediction_type: prediction === 'v' ? 'v_prediction' : 'epsilon' };
  return { family, unet, vae, textEncoder: text, scheduler, padToken: family === 'sd1' ? '<|endoftext|>' : '!', ignored, notes };
}

// ------------------------------------------------------------------ helpers

class PlanBuilder {
  readonly tensors = new Map<string, MappedTensor>();
  readonly unmatched: string[] = [];
  readonly passthrough: string[] = [];

  constructor(private readonly prefix: string, private readonly keys: ReadonlyMap<string, Shaped>) {}

  put(name: string, from: string, extra: Partial<MappedTensor> = {}): void {
    const src = this.keys.get(from)!;
    const prev = this.tensors.get(name);
    if (prev) throw new LdmConversionError(`${this.prefix}${from} and ${this.prefix}${prev.from} both map to ${name}`);
    this.tensors.set(name, { from: this.prefix + from, shape: [...src.shape], ...extra });
  }

  fail(what: string): never {
    const shown = this.unmatched.slice(0, MAX_LISTED).map((k) => `\n  - ${this.prefix}${k} ${fmt(this.keys.get(k)!.shape)}`).join('');
    const more = this.unmatched.length > MAX_LISTED ? `\n  … and ${this.unmatched.length - MAX_LISTED} more` : '';
    throw new LdmConversionError(`${what}: ${this.unmatched.length} key${this.unmatched.length > 1 ? 's' : ''} fit nowhere:${shown}${more}`);
  }

  /** Shape of a diffusers-named tensor already planned. */
  shape(name: string): number[] | undefined {
    return this.tensors.get(name)?.shape;
  }

  require(name: string, what: string): number[] {
    const s = this.shape(name);
    if (!s) throw new LdmConversionError(`${what}: cannot infer the configuration, ${name} (diffusers name) is missing`);
    return s;
  }

  /** Distinct integer values of capture group 1 of `re` over the planned names. */
  indices(re: RegExp): number[] {
    const out = new Set<number>();
    for (const k of this.tensors.keys()) {
      const m = re.exec(k);
      if (m) out.add(Number(m[1]));
    }
    return [...out].sort((a, b) => a - b);
  }

  has(prefix: string): boolean {
    for (const k of this.tensors.keys()) if (k.startsWith(prefix)) return true;
    return false;
  }
}

/** ldm ResBlock → diffusers ResnetBlock2D names (U-Net). */
function unetResnet(rest: string): string | null {
  const m = /^(in_layers\.0|in_layers\.2|emb_layers\.1|out_layers\.0|out_layers\.3|skip_connection)\.(weight|bias)$/.exec(rest);
  if (!m) return null;
  const names: Record<string, string> = {
    'in_layers.0': 'norm1', 'in_layers.2': 'conv1', 'emb_layers.1': 'time_emb_proj', 'out_layers.0': 'norm2',
    'out_layers.3': 'conv2', 'skip_connection': 'conv_shortcut',
  };
  return `${names[m[1]]}.${m[2]}`;
}

const DIFFUSERS_UNET = /^(conv_in|conv_out|conv_norm_out|time_embedding|down_blocks|up_blocks|mid_block)\./;

// ------------------------------------------------------------------ U-Net

function planUnet(keys: ReadonlyMap<string, Shaped>, family: SDFamily, prediction: 'epsilon' | 'v', notes: string[]): ComponentPlan {
  const b = new PlanBuilder(UNET, keys);
  if ([...keys.keys()].some((k) => k.startsWith('label_emb.'))) {
    throw new LdmConversionError(`${UNET}label_emb.* (class-conditioned U-Net, e.g. unCLIP or the x4 upscaler) is not supported`);
  }
  // Layers per level, from the input blocks: 1 + levels·L + (levels − 1) downsamplers.
  const inputIdx = new Set<number>(), downsampleIdx = new Set<number>();
  for (const k of keys.keys()) {
    const m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k);
    if (!m) continue;
    inputIdx.add(Number(m[1]));
    if (m[2] === '0' && m[3].startsWith('op.')) downsampleIdx.add(Number(m[1]));
  }
  const K = Math.max(0, ...inputIdx);
  const levels = downsampleIdx.size + 1;
  const L = (K - downsampleIdx.size) / levels;
  if (inputIdx.size && !(Number.isInteger(L) && L >= 1)) {
    throw new LdmConversionError(`${UNET}input_blocks: ${K} blocks with ${downsampleIdx.size} downsamplers do not make whole levels`);
  }

  // Output sub-blocks are classified by what they hold.
  const outputGroups = new Map<string, string[]>();
  for (const k of keys.keys()) {
    const m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k);
    if (m) outputGroups.set(`${m[1]}.${m[2]}`, [...(outputGroups.get(`${m[1]}.${m[2]}`) ?? []), m[3]]);
  }
  const outputKind = (km: string): 'resnet' | 'upsampler' | 'attention' => {
    const rests = outputGroups.get(km)!;
    if (rests.some((r) => r.startsWith('in_layers.'))) return 'resnet';
    if (rests.every((r) => r === 'conv.weight' || r === 'conv.bias')) return 'upsampler';
    return 'attention';
  };

  let already = 0;
  for (const k of keys.keys()) {
    let m: RegExpExecArray | null;
    if ((m = /^time_embed\.([02])\.(weight|bias)$/.exec(k))) b.put(`time_embedding.linear_${m[1] === '0' ? 1 : 2}.${m[2]}`, k);
    else if ((m = /^input_blocks\.0\.0\.(weight|bias)$/.exec(k))) b.put(`conv_in.${m[1]}`, k);
    else if ((m = /^out\.0\.(weight|bias)$/.exec(k))) b.put(`conv_norm_out.${m[1]}`, k);
    else if ((m = /^out\.2\.(weight|bias)$/.exec(k))) b.put(`conv_out.${m[1]}`, k);
    else if ((m = /^middle_block\.([012])\.(.+)$/.exec(k))) {
      const res = m[1] !== '1' ? unetResnet(m[2]) : null;
      if (m[1] === '1') b.put(`mid_block.attentions.0.${m[2]}`, k);
      else if (res) b.put(`mid_block.resnets.${m[1] === '0' ? 0 : 1}.${res}`, k);
      else b.unmatched.push(k);
    } else if ((m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k))) {
      const idx = Number(m[1]) - 1, level = Math.floor(idx / (L + 1)), j = idx % (L + 1);
      const res = unetResnet(m[3]);
      if (j === L && m[2] === '0' && /^op\.(weight|bias)$/.test(m[3])) b.put(`down_blocks.${level}.downsamplers.0.conv.${m[3].slice(3)}`, k);
      else if (j < L && m[2] === '0' && res) b.put(`down_blocks.${level}.resnets.${j}.${res}`, k);
      else if (j < L && m[2] === '1') b.put(`down_blocks.${level}.attentions.${j}.${m[3]}`, k);
      else b.unmatched.push(k);
    } else if ((m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k))) {
      const idx = Number(m[1]), level = Math.floor(idx / (L + 1)), j = idx % (L + 1);
      const kind = outputKind(`${m[1]}.${m[2]}`);
      const res = unetResnet(m[3]);
      if (kind === 'resnet' && res) b.put(`up_blocks.${level}.resnets.${j}.${res}`, k);
      else if (kind === 'upsampler' && j === L) b.put(`up_blocks.${level}.upsamplers.0.${m[3]}`, k);
      else if (kind === 'attention') b.put(`up_blocks.${level}.attentions.${j}.${m[3]}`, k);
      else b.unmatched.push(k);
    } else if (DIFFUSERS_UNET.test(k)) {
      b.put(k, k);
      already++;
    } else b.unmatched.push(k);
  }
  if (b.unmatched.length) b.fail(`U-Net (${UNET}*)`);
  if (already) notes.push(`${already} U-Net keys were already in diffusers form (a partially converted file); taken as they are`);

  // The config, from the diffusers-named shapes.
  const what = 'U-Net';
  const levelIdx = b.indices(/^down_blocks\.(\d+)\./);
  const n = levelIdx.length;
  if (n === 0 || levelIdx[n - 1] !== n - 1) throw new LdmConversionError(`${what}: down blocks ${levelIdx.join(', ')} are not numbered 0…n−1`);
  const channels = levelIdx.map((i) => b.require(`down_blocks.${i}.resnets.0.conv1.weight`, what)[0]);
  const layers = b.indices(/^down_blocks\.0\.resnets\.(\d+)\./).length;
  const convIn = b.require('conv_in.weight', what), convOut = b.require('conv_out.weight', what);
  const temb = b.require('time_embedding.linear_1.weight', what);
  let crossDim: number | null = null, linear = false, tLayers = 1;
  for (const [k, t] of b.tensors) {
    if (crossDim === null && /attn2\.to_k\.weight$/.test(k)) crossDim = t.shape[1];
    if (/\.proj_in\.weight$/.test(k)) linear = t.shape.length === 2;
  }
  const firstAttn = [...b.tensors.keys()].find((k) => /attentions\.\d+\.transformer_blocks\.\d+\./.test(k));
  if (firstAttn) {
    const stem = firstAttn.slice(0, firstAttn.indexOf('.transformer_blocks.'));
    tLayers = b.indices(new RegExp(`^${stem.replace(/\./g, '\\.')}\\.transformer_blocks\\.(\\d+)\\.`)).length;
  }
  const config: Record<string, unknown> = {
    _class_name: 'UNet2DConditionModel',
    in_channels: convIn[1], out_channels: convOut[0], conv_in_kernel: convIn[2], conv_out_kernel: convOut[2],
    block_out_channels: channels, layers_per_block: layers,
    down_block_types: levelIdx.map((i) => b.has(`down_blocks.${i}.attentions.`) ? 'CrossAttnDownBlock2D' : 'DownBlock2D'),
    up_block_types: levelIdx.map((i) => b.has(`up_blocks.${i}.attentions.`) ? 'CrossAttnUpBlock2D' : 'UpBlock2D'),
    mid_block_type: b.has('mid_block.') ? 'UNetMidBlock2DCrossAttn' : null,
    cross_attention_dim: crossDim ?? 768,
    // SD 2.x: 64-wide heads; SD 1.x: 8 heads everywhere (diffusers' `attention_head_dim` counts heads).
    attention_head_dim: family === 'sd2' ? channels.map((c) => Math.max(1, Math.round(c / 64))) : 8,
    use_linear_projection: linear,
    upcast_attention: family === 'sd2',
    transformer_layers_per_block: tLayers,
    time_embedding_dim: temb[0] === 4 * channels[0] ? null : temb[0],
    sample_size: family === 'sd2' && prediction === 'v' ? 96 : 64,
    act_fn: 'silu', norm_num_groups: 32, norm_eps: 1e-5, flip_sin_to_cos: true, freq_shift: 0, downsample_padding: 1,
  };
  return { config, tensors: b.tensors };
}

// ------------------------------------------------------------------ VAE

function planVae(keys: ReadonlyMap<string, Shaped>, notes: string[]): ComponentPlan {
  const b = new PlanBuilder(VAE, keys);
  const res = (rest: string) => rest.replace(/^nin_shortcut\./, 'conv_shortcut.');
  const attn: Record<string, string> = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };
  // Decoder up blocks run bottom to top in ldm and top to bottom in diffusers: rank the indices found.
  const ups = [...new Set([...keys.keys()].map((k) => /^decoder\.up\.(\d+)\./.exec(k)?.[1]).filter((x): x is string => !!x).map(Number))]
    .sort((a, c) => c - a);
  const upRank = new Map(ups.map((u, r) => [u, r]));
  if (ups.length && ups[0] !== ups.length - 1) notes.push(`VAE decoder up blocks are numbered ${[...ups].reverse().join(', ')}; read as levels ${ups.length - 1}…0`);

  let already = 0;
  for (const k of keys.keys()) {
    let m: RegExpExecArray | null;
    if ((m = /^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$/.exec(k))) b.put(k, k);
    else if ((m = /^(encoder|decoder)\.norm_out\.(weight|bias)$/.exec(k))) b.put(`${m[1]}.conv_norm_out.${m[2]}`, k);
    else if ((m = /^(quant_conv|post_quant_conv)\.(weight|bias)$/.exec(k))) b.put(k, k);
    else if ((m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(k))) b.put(`encoder.down_blocks.${m[1]}.resnets.${m[2]}.${res(m[3])}`, k);
    else if ((m = /^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$/.exec(k))) b.put(`encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`, k);
    else if ((m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(k))) b.put(`decoder.up_blocks.${upRank.get(Number(m[1]))}.resnets.${m[2]}.${res(m[3])}`, k);
    else if ((m = /^decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)$/.exec(k))) b.put(`decoder.up_blocks.${upRank.get(Number(m[1]))}.upsamplers.0.conv.${m[2]}`, k);
    else if ((m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(k))) b.put(`${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${res(m[3])}`, k);
    else if ((m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(k))) {
      const shape = keys.get(k)!.shape;
      // ldm's attention uses 1×1 convs; diffusers' Attention uses linear layers.
      const squeeze = m[3] === 'weight' && shape.length === 4;
      b.put(`${m[1]}.mid_block.attentions.0.${attn[m[2]]}.${m[3]}`, k, squeeze ? { shape: [shape[0], shape[1]], reshape: true } : {});
    } else if (/^(encoder|decoder)\.(down_blocks|up_blocks|mid_block|conv_norm_out)\./.test(k)) {
      b.put(k, k);
      already++;
    } else b.unmatched.push(k);
  }
  if (b.unmatched.length) b.fail(`VAE (${VAE}*)`);
  if (already) notes.push(`${already} VAE keys were already in diffusers form; taken as they are`);

  const what = 'VAE';
  const levelIdx = b.indices(/^encoder\.down_blocks\.(\d+)\./);
  const channels = levelIdx.map((i) => b.require(`encoder.down_blocks.${i}.resnets.0.conv1.weight`, what)[0]);
  const config: Record<string, unknown> = {
    _class_name: 'AutoencoderKL',
    in_channels: b.require('encoder.conv_in.weight', what)[1],
    out_channels: b.require('decoder.conv_out.weight', what)[0],
    latent_channels: b.require('decoder.conv_in.weight', what)[1],
    block_out_channels: channels,
    layers_per_block: b.indices(/^encoder\.down_blocks\.0\.resnets\.(\d+)\./).length,
    down_block_types: channels.map(() => 'DownEncoderBlock2D'),
    up_block_types: channels.map(() => 'UpDecoderBlock2D'),
    act_fn: 'silu', norm_num_groups: 32, sample_size: 512, scaling_factor: 0.18215,
    use_quant_conv: b.has('quant_conv.'), use_post_quant_conv: b.has('post_quant_conv.'),
    mid_block_add_attention: b.has('encoder.mid_block.attentions.'),
  };
  return { config, tensors: b.tensors };
}

// ------------------------------------------------------------------ text encoders

function clipConfig(b: PlanBuilder, act: 'quick_gelu' | 'gelu'): Record<string, unknown> {
  const what = 'text encoder';
  const [vocab, width] = b.require('text_model.embeddings.token_embedding.weight', what);
  const positions = b.require('text_model.embeddings.position_embedding.weight', what)[0];
  const layers = b.indices(/^text_model\.encoder\.layers\.(\d+)\./).length;
  const inner = b.require('text_model.encoder.layers.0.mlp.fc1.weight', what)[0];
  // Every released CLIP text tower uses 64-wide heads; diffusers' tiny test models (width 32) use 4 heads.
  const heads = width >= 128 && width % 64 === 0 ? width / 64 : Math.max(1, width / 8);
  return {
    architectures: ['CLIPTextModel'], model_type: 'clip_text_model', vocab_size: vocab, hidden_size: width,
    intermediate_size: inner, num_hidden_layers: layers, num_attention_heads: heads, max_position_embeddings: positions,
    hidden_act: act, layer_norm_eps: 1e-5, bos_token_id: 49406, eos_token_id: 49407, pad_token_id: 1,
  };
}

/** SD 1.x: transformers' CLIPTextModel under `cond_stage_model.transformer.` (with or without `text_model.`). */
function planClipL(keys: ReadonlyMap<string, Shaped>, ignored: string[]): ComponentPlan {
  const b = new PlanBuilder(CLIP_L, keys);
  for (const k of keys.keys()) {
    const rest = k.startsWith('text_model.') ? k.slice('text_model.'.length) : k;
    if (rest === 'embeddings.position_ids') ignored.push(CLIP_L + k); // positions are always 0…76
    else if (/^(embeddings|encoder|final_layer_norm)\./.test(rest)) b.put(`text_model.${rest}`, k);
    else b.unmatched.push(k);
  }
  if (b.unmatched.length) b.fail(`text encoder (${CLIP_L}*)`);
  return { config: clipConfig(b, 'quick_gelu'), tensors: b.tensors };
}

/**
 * SD 2.x: OpenCLIP's text tower under `cond_stage_model.model.`. SD 2.x conditions on the penultimate
 * layer followed by ln_final, so the original checkpoints' last resblock is dropped (diffusers' text encoder
 * has 23 of ViT-H's 24 layers). Files converted back from diffusers hold only those 23 and no
 * text_projection: then every layer is kept.
 */
function planOpenClip(keys: ReadonlyMap<string, Shaped>, ignored: string[]): ComponentPlan {
  const b = new PlanBuilder(OPEN_CLIP, keys);
  const blocks = new Set<number>();
  for (const k of keys.keys()) {
    const m = /^transformer\.resblocks\.(\d+)\./.exec(k);
    if (m) blocks.add(Number(m[1]));
  }
  const total = blocks.size;
  const keep = keys.has('text_projection') ? total - 1 : total;
  const layer: Record<string, string> = {
    'ln_1': 'layer_norm1', 'ln_2': 'layer_norm2', 'attn.out_proj': 'self_attn.out_proj', 'mlp.c_fc': 'mlp.fc1', 'mlp.c_proj': 'mlp.fc2',
  };
  for (const k of keys.keys()) {
    let m: RegExpExecArray | null;
    if (k === 'token_embedding.weight') b.put('text_model.embeddings.token_embedding.weight', k);
    else if (k === 'positional_embedding') b.put('text_model.embeddings.position_embedding.weight', k);
    else if ((m = /^ln_final\.(weight|bias)$/.exec(k))) b.put(`text_model.final_layer_norm.${m[1]}`, k);
    else if (k === 'text_projection' || k === 'logit_scale' || k === 'attn_mask' || k.startsWith('visual.')) ignored.push(OPEN_CLIP + k);
    else if ((m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(k))) {
      const i = Number(m[1]), rest = m[2];
      let r: RegExpExecArray | null;
      if (i >= keep) ignored.push(OPEN_CLIP + k);
      else if ((r = /^attn\.in_proj_(weight|bias)$/.exec(rest))) {
        // One fused [3·D, D] projection → q, k, v: rows [0, D), [D, 2D), [2D, 3D).
        const shape = keys.get(k)!.shape;
        if (shape[0] % 3) throw new LdmConversionError(`${OPEN_CLIP}${k} ${fmt(shape)}: first dimension is not 3 × width`);
        const d = shape[0] / 3;
        ['q_proj', 'k_proj', 'v_proj'].forEach((p, j) =>
          b.tensors.set(`text_model.encoder.layers.${i}.self_attn.${p}.${r![1]}`, { from: OPEN_CLIP + k, shape: [d, ...shape.slice(1)], rows: [j * d, d] }));
      } else if ((r = /^(ln_1|ln_2|attn\.out_proj|mlp\.c_fc|mlp\.c_proj)\.(weight|bias)$/.exec(rest))) {
        b.put(`text_model.encoder.layers.${i}.${layer[r[1]]}.${r[2]}`, k);
      } else b.unmatched.push(k);
    } else b.unmatched.push(k);
  }
  if (b.unmatched.length) b.fail(`text encoder (${OPEN_CLIP}*)`);
  return { config: clipConfig(b, 'gelu'), tensors: b.tensors };
}
