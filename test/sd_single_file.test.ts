/**
 * Single-file checkpoints in the original (ldm) layout.
 *
 *  - The real golden file's key list (test/fixtures/golden/sd_single_file_keys.json, read from its header; the
 *    15 MB file itself is not committed) plans into exactly the diffusers folder's keys, shapes and configs.
 *  - A single file built here from the committed folder weights by a test-only reverse mapping (the layout
 *    real SD checkpoints have) loads into a pipeline identical to the folder's, tensor for tensor.
 *  - The real SD 1.5 and 2.1 configurations, shape-only, mapped to ldm keys (SD 2.x with OpenCLIP's fused
 *    q/k/v and 24 layers) infer back to models with the published parameter counts.
 *  - Bad files fail at load with the file, the key and expected vs found shape.
 *  - When ../shared/golden is present, the real file loads and equals the folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Tensor, cat } from '../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { crc32 } from '../src/image/png.js';
import { AutoencoderKL } from '../src/models/autoencoder_kl.js';
import { CLIPTextModel, clipTextConfigFromJson } from '../src/models/clip_text.js';
import { UNet2DConditionModel } from '../src/models/unet2d_condition.js';
import { type Module, withoutInit } from '../src/nn/index.js';
import { loadStableDiffusion, planLdmConversion, type LdmPlan } from '../src/pipelines/loaders/index.js';
import { StableDiffusionPipeline } from '../src/pipelines/stable_diffusion.js';
import { repoRoot } from './helpers/fixtures.js';

const GOLDEN = path.join(repoRoot(), 'test', 'fixtures', 'golden');
const FOLDER = path.join(GOLDEN, 'sd_pipe');
const TOKENIZER = path.join(FOLDER, 'tokenizer');
const SHARED = [path.join(repoRoot(), '..', 'shared', 'golden'), '/work/shared/golden'].find((d) => fs.existsSync(path.join(d, 'sd_single_file.safetensors')));
const folderPipe = StableDiffusionPipeline.fromPretrained(FOLDER);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-single-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

// ------------------------------------------------------------------ test-only reverse mapping (diffusers → ldm)

type Entry = { shape: number[]; make?: () => Tensor };
const RES: Record<string, string> = {
  norm1: 'in_layers.0', conv1: 'in_layers.2', time_emb_proj: 'emb_layers.1', norm2: 'out_layers.0', conv2: 'out_layers.3', conv_shortcut: 'skip_connection',
};
const VAE_ATTN: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

/** A diffusers U-Net / VAE / CLIP state dict (real tensors or shapes) → the ldm keys real checkpoints use. */
function toLdm(unet: UNet2DConditionModel, vae: AutoencoderKL, text: CLIPTextModel, opts: { openClip?: boolean; withValues?: boolean } = {}): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const put = (k: string, t: Tensor, shape = [...t.shape], make?: () => Tensor) =>
    out.set(k, { shape, make: opts.withValues ? make ?? (() => t) : undefined });
  const L = unet.config.layersPerBlock[0];
  const upHasAttn = unet.config.upBlocks.map((b) => b.type === 'CrossAttnUpBlock2D');
  const res = (r: string) => r.replace(/^(norm1|conv1|time_emb_proj|norm2|conv2|conv_shortcut)\./, (_, n: string) => `${RES[n]}.`);
  for (const [k, t] of unet.stateDict()) {
    let m: RegExpExecArray | null, ldm: string;
    if ((m = /^conv_in\.(.+)$/.exec(k))) ldm = `input_blocks.0.0.${m[1]}`;
    else if ((m = /^time_embedding\.linear_([12])\.(.+)$/.exec(k))) ldm = `time_embed.${m[1] === '1' ? 0 : 2}.${m[2]}`;
    else if ((m = /^conv_norm_out\.(.+)$/.exec(k))) ldm = `out.0.${m[1]}`;
    else if ((m = /^conv_out\.(.+)$/.exec(k))) ldm = `out.2.${m[1]}`;
    else if ((m = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(k))) ldm = `input_blocks.${1 + +m[1] * (L + 1) + +m[2]}.0.${res(m[3])}`;
    else if ((m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(k))) ldm = `input_blocks.${1 + +m[1] * (L + 1) + +m[2]}.1.${m[3]}`;
    else if ((m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(k))) ldm = `input_blocks.${(+m[1] + 1) * (L + 1)}.0.op.${m[2]}`;
    else if ((m = /^mid_block\.resnets\.([01])\.(.+)$/.exec(k))) ldm = `middle_block.${m[1] === '0' ? 0 : 2}.${res(m[2])}`;
    else if ((m = /^mid_block\.attentions\.0\.(.+)$/.exec(k))) ldm = `middle_block.1.${m[1]}`;
    else if ((m = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(k))) ldm = `output_blocks.${+m[1] * (L + 1) + +m[2]}.0.${res(m[3])}`;
    else if ((m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(k))) ldm = `output_blocks.${+m[1] * (L + 1) + +m[2]}.1.${m[3]}`;
    else if ((m = /^up_blocks\.(\d+)\.upsamplers\.0\.(.+)$/.exec(k))) ldm = `output_blocks.${+m[1] * (L + 1) + L}.${upHasAttn[+m[1]] ? 2 : 1}.${m[2]}`;
    else throw new Error(`toLdm: unmapped U-Net key ${k}`);
    put(`model.diffusion_model.${ldm}`, t);
  }
  const n = vae.config.blockOutChannels.length;
  const vres = (r: string) => r.replace(/^conv_shortcut\./, 'nin_shortcut.');
  for (const [k, t] of vae.stateDict()) {
    let m: RegExpExecArray | null, ldm: string, shape = [...t.shape], make: (() => Tensor) | undefined;
    if ((m = /^(encoder|decoder)\.conv_norm_out\.(.+)$/.exec(k))) ldm = `${m[1]}.norm_out.${m[2]}`;
    else if ((m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(k))) ldm = `encoder.down.${m[1]}.block.${m[2]}.${vres(m[3])}`;
    else if ((m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(k))) ldm = `encoder.down.${m[1]}.downsample.conv.${m[2]}`;
    else if ((m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(k))) ldm = `decoder.up.${n - 1 - +m[1]}.block.${m[2]}.${vres(m[3])}`;
    else if ((m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(k))) ldm = `decoder.up.${n - 1 - +m[1]}.upsample.conv.${m[2]}`;
    else if ((m = /^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)$/.exec(k))) ldm = `${m[1]}.mid.block_${+m[2] + 1}.${vres(m[3])}`;
    else if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(k))) {
      ldm = `${m[1]}.mid.attn_1.${VAE_ATTN[m[2]]}.${m[3]}`;
      if (m[3] === 'weight' && m[2] !== 'group_norm') { shape = [...t.shape, 1, 1]; make = () => t.reshape(shape); }
    } else ldm = k; // conv_in, conv_out, quant_conv, post_quant_conv
    put(`first_stage_model.${ldm}`, t, shape, make);
  }
  const sd = text.stateDict();
  if (!opts.openClip) {
    for (const [k, t] of sd) put(`cond_stage_model.transformer.${k}`, t);
    out.set('cond_stage_model.transformer.text_model.embeddings.position_ids', { shape: [1, 77] });
    return out;
  }
  // OpenCLIP: fused q/k/v, one more layer than diffusers keeps, the projection.
  const layers = text.config.numHiddenLayers, D = text.config.hiddenSize;
  const P = 'cond_stage_model.model.';
  const names: Record<string, string> = { layer_norm1: 'ln_1', layer_norm2: 'ln_2', 'self_attn.out_proj': 'attn.out_proj', 'mlp.fc1': 'mlp.c_fc', 'mlp.fc2': 'mlp.c_proj' };
  for (const [k, t] of sd) {
    let m: RegExpExecArray | null;
    if (k === 'text_model.embeddings.token_embedding.weight') put(`${P}token_embedding.weight`, t);
    else if (k === 'text_model.embeddings.position_embedding.weight') put(`${P}positional_embedding`, t);
    else if ((m = /^text_model\.final_layer_norm\.(.+)$/.exec(k))) put(`${P}ln_final.${m[1]}`, t);
    else if ((m = /^text_model\.encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/.exec(k))) {
      const parts = ['q_proj', 'k_proj', 'v_proj'].map((p) => sd.get(`text_model.encoder.layers.${m![1]}.self_attn.${p}.${m![2]}`)!);
      put(`${P}transformer.resblocks.${m[1]}.attn.in_proj_${m[2]}`, t, [3 * t.shape[0], ...t.shape.slice(1)], () => cat(parts, 0));
    } else if (/self_attn\.[kv]_proj/.test(k)) continue;
    else if ((m = /^text_model\.encoder\.layers\.(\d+)\.(layer_norm1|layer_norm2|self_attn\.out_proj|mlp\.fc1|mlp\.fc2)\.(.+)$/.exec(k))) {
      put(`${P}transformer.resblocks.${m[1]}.${names[m[2]]}.${m[3]}`, t);
    } else throw new Error(`toLdm: unmapped text key ${k}`);
  }
  for (const [k, e] of [...out].filter(([k]) => k.startsWith(`${P}transformer.resblocks.0.`))) {
    out.set(k.replace('resblocks.0.', `resblocks.${layers}.`), e); // the layer SD 2.x does not use
  }
  out.set(`${P}text_projection`, { shape: [D, D] });
  out.set(`${P}logit_scale`, { shape: [] });
  return out;
}

/**
 * A test-only `torch.save` look-alike: a stored zip of archive/data.pkl (pickle protocol 2:
 * {'state_dict': {name: _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())}}) and
 * archive/data/<i> (raw little-endian f32), so single-file .ckpt loading is checked end to end.
 */
function writeTorchZip(file: string, tensors: Map<string, Tensor>): void {
  const op: number[] = [0x80, 2, 0x7d];
  const str = (v: string) => { const b = Buffer.from(v, 'utf8'); op.push(0x58, ...u32(b.length), ...b); };
  const int = (v: number) => op.push(0x4a, ...u32(v));
  const global = (mod: string, name: string) => op.push(0x63, ...Buffer.from(`${mod}\n${name}\n`, 'latin1'));
  const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  str('state_dict');
  op.push(0x7d, 0x28);
  const entries: [string, Uint8Array][] = [];
  [...tensors].forEach(([name, t], i) => {
    const data = t.to('f32').contiguous().toFloat32Array();
    entries.push([`archive/data/${i}`, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)]);
    const strides = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    str(name);
    global('torch._utils', '_rebuild_tensor_v2');
    op.push(0x28, 0x28);
    str('storage'); global('torch', 'FloatStorage'); str(String(i)); str('cpu'); int(data.length);
    op.push(0x74, 0x51); // TUPLE, BINPERSID
    int(0);
    op.push(0x28); t.shape.forEach(int); op.push(0x74);
    op.push(0x28); strides.forEach(int); op.push(0x74);
    op.push(0x89); // False
    global('collections', 'OrderedDict'); op.push(0x29, 0x52); // OrderedDict()
    op.push(0x74, 0x52); // TUPLE, REDUCE
  });
  op.push(0x75, 0x73, 0x2e); // SETITEMS, SETITEM, STOP
  entries.unshift(['archive/data.pkl', Uint8Array.from(op)]);
  entries.push(['archive/version', Buffer.from('3\n')]);

  const parts: Uint8Array[] = [], central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name), crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14); local.writeUInt32LE(data.length, 18); local.writeUInt32LE(data.length, 22); local.writeUInt16LE(n.length, 26);
    const dir = Buffer.alloc(46);
    dir.writeUInt32LE(0x02014b50, 0); dir.writeUInt16LE(20, 4); dir.writeUInt16LE(20, 6); dir.writeUInt16LE(0x21, 14);
    dir.writeUInt32LE(crc, 16); dir.writeUInt32LE(data.length, 20); dir.writeUInt32LE(data.length, 24); dir.writeUInt16LE(n.length, 28);
    dir.writeUInt32LE(offset, 42);
    parts.push(local, n, data);
    central.push(dir, n);
    offset += 30 + n.length + data.length;
  }
  const cdSize = central.reduce((a, b) => a + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdSize, 12); end.writeUInt32LE(offset, 16);
  fs.writeFileSync(file, Buffer.concat([...parts, ...central, end]));
}

const shapesOf = (m: Module) => new Map([...m.stateDict()].map(([k, t]) => [k, [...t.shape]]));
const planShapes = (p: { tensors: Map<string, { shape: number[] }> }) => new Map([...p.tensors].map(([k, t]) => [k, t.shape]));

/** Build the three models a plan describes, shape-only. */
function buildPlanned(plan: LdmPlan) {
  return {
    unet: UNet2DConditionModel.fromDiffusersConfig(plan.unet.config, { meta: true }),
    vae: AutoencoderKL.fromDiffusersConfig(plan.vae.config, { meta: true }),
    text: withoutInit(() => new CLIPTextModel(clipTextConfigFromJson(plan.textEncoder.config))),
  };
}

// ------------------------------------------------------------------ tests

test('the real single file\'s key list plans into exactly the folder\'s keys, shapes and configs', () => {
  const list = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'sd_single_file_keys.json'), 'utf8')) as { tensors: Record<string, [string, number[]]> };
  const keys = new Map(Object.entries(list.tensors).map(([k, [, shape]]) => [k, { shape }]));
  assert.equal(keys.size, 464);
  const plan = planLdmConversion(keys);
  assert.equal(plan.family, 'sd1');
  assert.deepEqual(plan.ignored, []);
  // The file was written by a converter that left one up block's attentions in diffusers naming and numbered
  // the 2-level VAE decoder's up blocks 3, 2: both are read as they are meant.
  assert.match(plan.notes.join('\n'), /78 U-Net keys were already in diffusers form/);
  assert.match(plan.notes.join('\n'), /VAE decoder up blocks are numbered 2, 3/);
  assert.deepEqual(planShapes(plan.unet), shapesOf(folderPipe.unet));
  assert.deepEqual(planShapes(plan.vae), shapesOf(folderPipe.vae));
  assert.deepEqual(planShapes(plan.textEncoder), shapesOf(folderPipe.textEncoder));
  const built = buildPlanned(plan);
  // Everything but the training resolution (not in the weights) is inferred.
  assert.deepEqual({ ...built.unet.config, sampleSize: 0 }, { ...folderPipe.unet.config, sampleSize: 0 });
  assert.deepEqual({ ...built.vae.config, sampleSize: 0 }, { ...folderPipe.vae.config, sampleSize: 0 });
  assert.deepEqual({ ...built.text.config, projectionDim: 0 }, { ...folderPipe.textEncoder.config, projectionDim: 0 });
});

test('a single file in the ldm layout, made from the folder\'s weights, loads into the same pipeline', async () => {
  const ldm = toLdm(folderPipe.unet, folderPipe.vae, folderPipe.textEncoder, { withValues: true });
  const file = path.join(tmp, 'tiny-sd.safetensors');
  const tensors = new Map<string, Tensor>();
  for (const [k, e] of ldm) if (e.make) tensors.set(k, e.make().contiguous());
  tensors.set('model_ema.decay', folderPipe.unet.conv_in.bias!.narrow(0, 0, 1)); // ignored, as real files' extras
  writeSafetensors(file, tensors);
  const loaded = loadStableDiffusion(file, { tokenizer: TOKENIZER });
  assert.equal(loaded.source.format, 'safetensors');
  assert.deepEqual(loaded.source.ignored, ['model_ema.decay']);
  assert.deepEqual(loaded.source.notes, []);
  for (const [name, a, b] of [['unet', loaded.unet, folderPipe.unet], ['vae', loaded.vae, folderPipe.vae], ['text', loaded.textEncoder, folderPipe.textEncoder]] as const) {
    const sa = (a as Module).stateDict(), sb = (b as Module).stateDict();
    assert.deepEqual([...sa.keys()].sort(), [...sb.keys()].sort(), name);
    for (const [k, t] of sb) assert.deepEqual(sa.get(k)!.toFloat32Array(), t.toFloat32Array(), `${name} ${k}`);
  }
  const pipe = StableDiffusionPipeline.fromPretrained(file, { tokenizer: TOKENIZER });
  const run = (p: StableDiffusionPipeline) => p.generate({ prompt: 'a red circle above a blue square', steps: 2, sampler: 'DDIM', width: 32, height: 32, seed: 4 });
  const [x, y] = [await run(pipe), await run(folderPipe)];
  assert.deepEqual(x.images!.toFloat32Array(), y.images!.toFloat32Array());

  // f16 in memory, and the tokenizer found beside the file.
  const half = loadStableDiffusion(file, { tokenizer: TOKENIZER, dtype: 'f16' });
  assert.ok(half.unet.parameters().every((p) => p.dtype === 'f16'));
  assert.throws(() => loadStableDiffusion(file), (err: Error & { hint?: string }) =>
    /single-file checkpoints carry no tokenizer, and there is no tokenizer\/ folder beside it/.test(err.message) && /--tokenizer/.test(err.hint ?? ''));
});

test('the same single file as a pickled .ckpt loads through the restricted unpickler', () => {
  const ldm = toLdm(folderPipe.unet, folderPipe.vae, folderPipe.textEncoder, { withValues: true });
  const tensors = new Map<string, Tensor>();
  for (const [k, e] of ldm) if (e.make) tensors.set(k, e.make());
  const file = path.join(tmp, 'tiny-sd.ckpt');
  writeTorchZip(file, tensors);
  const loaded = loadStableDiffusion(file, { tokenizer: TOKENIZER });
  assert.equal(loaded.source.format, 'ckpt');
  for (const [a, b] of [[loaded.unet, folderPipe.unet], [loaded.vae, folderPipe.vae], [loaded.textEncoder, folderPipe.textEncoder]] as [Module, Module][]) {
    const sb = b.stateDict();
    for (const [k, t] of a.stateDict()) assert.deepEqual(t.toFloat32Array(), sb.get(k)!.toFloat32Array(), k);
  }
});

const REAL = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'real_configs.json'), 'utf8')) as {
  configs: Record<string, Record<string, unknown>>; counts: Record<string, { params: number }>;
};

for (const [family, unetCfg, textCfg] of [['sd1', 'sd15_unet', 'clip_vit_l_text'], ['sd2', 'sd21_unet', 'openclip_h_text_23']] as const) {
  test(`real ${family === 'sd1' ? 'SD 1.5' : 'SD 2.1'} layout: configs inferred from ldm keys give the published parameter counts`, () => {
    const unet = UNet2DConditionModel.fromDiffusersConfig(REAL.configs[unetCfg], { meta: true });
    const vae = AutoencoderKL.fromDiffusersConfig(REAL.configs.sd_vae, { meta: true });
    const text = withoutInit(() => new CLIPTextModel(clipTextConfigFromJson(REAL.configs[textCfg])));
    const ldm = toLdm(unet, vae, text, { openClip: family === 'sd2' });
    const plan = planLdmConversion(ldm, { prediction: family === 'sd2' ? 'v' : undefined });
    assert.equal(plan.family, family);
    assert.equal(plan.padToken, family === 'sd1' ? '<|endoftext|>' : '!');
    assert.equal(plan.scheduler.prediction_type, family === 'sd2' ? 'v_prediction' : 'epsilon');
    const built = buildPlanned(plan);
    assert.equal(built.unet.numParameters(), REAL.counts[unetCfg].params);
    assert.equal(built.vae.numParameters(), REAL.counts.sd_vae.params);
    assert.equal(built.text.numParameters(), REAL.counts[textCfg].params);
    assert.deepEqual({ ...built.unet.config, sampleSize: 0 }, { ...unet.config, sampleSize: 0 });
    assert.deepEqual(built.text.config.numAttentionHeads, text.config.numAttentionHeads);
    assert.deepEqual(planShapes(plan.textEncoder), shapesOf(text));
    if (family === 'sd2') {
      assert.equal(built.text.config.numHiddenLayers, 23);
      assert.ok(plan.ignored.includes('cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight'));
      assert.deepEqual(plan.textEncoder.tensors.get('text_model.encoder.layers.5.self_attn.v_proj.weight'),
        { from: 'cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight', shape: [1024, 1024], rows: [2048, 1024] });
    } else {
      assert.deepEqual(plan.ignored, ['cond_stage_model.transformer.text_model.embeddings.position_ids']);
    }
  });
}

test('bad single files fail at load with the file, the key and expected vs found shape', () => {
  const ldm = toLdm(folderPipe.unet, folderPipe.vae, folderPipe.textEncoder, { withValues: true });
  const base = new Map<string, Tensor>();
  for (const [k, e] of ldm) if (e.make) base.set(k, e.make().contiguous());
  const write = (name: string, edit: (m: Map<string, Tensor>) => void) => {
    const m = new Map(base);
    edit(m);
    const f = path.join(tmp, name);
    writeSafetensors(f, m);
    return f;
  };
  const conv = 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight';
  const wrong = write('wrong.safetensors', (m) => m.set(conv, m.get(conv)!.narrow(2, 1, 1).narrow(3, 1, 1).contiguous()));
  assert.throws(() => loadStableDiffusion(wrong, { tokenizer: TOKENIZER }),
    /U-Net \(wrong\.safetensors, inferred config\): the checkpoint does not fit the model \(1 problem\):\n {2}- wrong\.safetensors: key "model\.diffusion_model\.input_blocks\.1\.0\.in_layers\.2\.weight" \(as "down_blocks\.0\.resnets\.0\.conv1\.weight"\) has shape \[32, 32, 1, 1\], expected \[32, 32, 3, 3\]/);
  const missing = write('missing.safetensors', (m) => m.delete('first_stage_model.decoder.mid.attn_1.q.bias'));
  assert.throws(() => loadStableDiffusion(missing, { tokenizer: TOKENIZER }), /VAE \(missing\.safetensors.*\n {2}- missing "decoder\.mid_block\.attentions\.0\.to_q\.bias" \(expected shape \[64\]\)/);
  const stray = write('stray.safetensors', (m) => m.set('model.diffusion_model.input_blocks.1.7.weight', m.get(conv)!));
  assert.throws(() => loadStableDiffusion(stray, { tokenizer: TOKENIZER }), /U-Net \(model\.diffusion_model\.\*\): 1 key fit nowhere:\n {2}- model\.diffusion_model\.input_blocks\.1\.7\.weight/);
  const unetOnly = write('unet-only.safetensors', (m) => { for (const k of m.keys()) if (!k.startsWith('model.')) m.delete(k); });
  assert.throws(() => loadStableDiffusion(unetOnly), /not a Stable Diffusion checkpoint in the original layout: no VAE \(first_stage_model\.\*\), no text encoder/);

  const bytes = fs.readFileSync(write('whole.safetensors', () => {}));
  const truncated = path.join(tmp, 'truncated.safetensors');
  fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 1000));
  assert.throws(() => loadStableDiffusion(truncated, { tokenizer: TOKENIZER }), /truncated\.safetensors is truncated: header says \d+ bytes of data/);
  const garbage = path.join(tmp, 'garbage.ckpt');
  fs.writeFileSync(garbage, 'not a model at all');
  assert.throws(() => loadStableDiffusion(garbage), /garbage\.ckpt: not a safetensors file nor a PyTorch zip checkpoint/);
  assert.throws(() => loadStableDiffusion(path.join(tmp, 'nope.safetensors')), /model not found/);
});

test('a diffusers folder: a truncated or mismatched component fails at load, naming it; fp16 variants load', () => {
  const folder = path.join(tmp, 'folder');
  fs.mkdirSync(path.join(folder, 'text_encoder'), { recursive: true });
  for (const part of ['unet', 'vae', 'tokenizer', 'scheduler', 'model_index.json']) fs.symlinkSync(path.join(FOLDER, part), path.join(folder, part));
  fs.copyFileSync(path.join(FOLDER, 'text_encoder', 'config.json'), path.join(folder, 'text_encoder', 'config.json'));
  const weights = readSafetensors(path.join(FOLDER, 'text_encoder', 'model.safetensors')).tensors;
  const file = path.join(folder, 'text_encoder', 'model.safetensors');
  const key = [...weights.keys()].find((k) => k.endsWith('layers.1.mlp.fc1.weight'))!;
  writeSafetensors(file, new Map([...weights].map(([k, t]) => [k, k === key ? t.narrow(0, 0, 30).contiguous() : t])));
  assert.throws(() => loadStableDiffusion(folder), new RegExp(`model\\.safetensors: key "${key.replace(/\./g, '\\.')}" \\(as "text_model\\.encoder\\.layers\\.1\\.mlp\\.fc1\\.weight"\\) has shape \\[30, 32\\], expected \\[37, 32\\]`));
  writeSafetensors(file, weights);
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 64));
  assert.throws(() => loadStableDiffusion(folder), /model\.safetensors is truncated/);
  // Only the fp16 variant present: found without asking, kept 16-bit, or widened on request.
  fs.rmSync(file);
  writeSafetensors(path.join(folder, 'text_encoder', 'model.fp16.safetensors'), new Map([...weights].map(([k, t]) => [k, t.half()])));
  assert.ok(loadStableDiffusion(folder).textEncoder.parameters().every((p) => p.dtype === 'f16'));
  assert.ok(loadStableDiffusion(folder, { variant: 'fp16', dtype: 'f32' }).textEncoder.parameters().every((p) => p.dtype === 'f32'));
  assert.throws(() => loadStableDiffusion(path.join(FOLDER, 'unet')), /not a diffusers model folder \(no model_index\.json and no unet\/\)/);
});

test('the real golden single file (when ../shared/golden is present) equals the folder', { skip: SHARED ? false : 'shared/golden not present' }, async () => {
  const file = path.join(SHARED!, 'sd_single_file.safetensors');
  const pipe = StableDiffusionPipeline.fromPretrained(file, { tokenizer: TOKENIZER });
  for (const [a, b] of [[pipe.unet, folderPipe.unet], [pipe.vae, folderPipe.vae], [pipe.textEncoder, folderPipe.textEncoder]] as [Module, Module][]) {
    const sb = b.stateDict();
    for (const [k, t] of a.stateDict()) assert.deepEqual(t.toFloat32Array(), sb.get(k)!.toFloat32Array(), k);
  }
  const run = (p: StableDiffusionPipeline) => p.generate({ prompt: 'a red circle above a blue square', negativePrompt: 'blurry', steps: 3, sampler: 'DDIM', width: 32, height: 32, seed: 9 });
  const [x, y] = [await run(pipe), await run(folderPipe)];
  assert.deepEqual(x.latents.toFloat32Array(), y.latents.toFloat32Array());
  assert.deepEqual(x.images!.toFloat32Array(), y.images!.toFloat32Array());
});
