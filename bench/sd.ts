/**
 * `npm run bench:sd` — Stable Diffusion 1.5 at full size, on random weights.
 *
 *   node dist/bench/sd.js [--full] [--steps n] [--keep <dir>] [--resident]
 *
 * 1. A child process writes a random-weight SD 1.5 diffusers folder (the real U-Net / VAE / text-encoder
 *    configs, f16 weights, our own safetensors writer, U-Net in ~500 MB shards) to a temp dir (~2.1 GB).
 *    Writing happens in the child so this process's peak RSS measures loading and running only.
 * 2. This process loads it (weights stay f16, memory-mapped; --resident: read into memory) and times the
 *    text encoder, U-Net steps with classifier-free guidance (batch 2) at 256² (and 512² with --full) and the
 *    VAE decode at the same sizes, with the resident memory after each phase.
 * 3. Prints a table beside the peers measured on this kind of machine (issue 5), then deletes the folder.
 *
 * Weights are uniform with the variance of PyTorch's default init (norms 1, biases 0), so activations stay
 * in range and no denormals slow anything down; the numbers are timings only.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Tensor, backendName, cat, fromTypedArray, noGrad, randn, Rng } from '../src/engine/index.js';
import { getNumThreads } from '../src/engine/backend/native.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { AutoencoderKL } from '../src/models/autoencoder_kl.js';
import { CLIPTextModel, clipTextConfigFromJson } from '../src/models/clip_text.js';
import { UNet2DConditionModel } from '../src/models/unet2d_condition.js';
import { type Module, withoutInit } from '../src/nn/index.js';
import { StableDiffusionPipeline } from '../src/pipelines/stable_diffusion.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const GOLDEN = path.join(ROOT, 'test', 'fixtures', 'golden');
const SHARD_BYTES = 512 * 2 ** 20;

/** Peers on 2 threads, otherwise idle (issue 5): seconds, GB. */
const PEERS = {
  torch: { step256: 10.6, step512: 50.5, vae256: 6.7, vae512: 36.1, rss256: null as number | null, rss512: 6.0 },
  sdcpp: { step256: 5.7, step512: 30, vae256: 14, vae512: 57, rss256: 2.5 as number | null, rss512: 3.8 },
};

// ------------------------------------------------------------------ writing the checkpoint (child process)

/** xorshift32 → uniform(−a, a) as f16 bits, straight into the array (fast enough for 1.1 G values). */
function fillUniformHalf(out: Uint16Array, a: number, seed: number): void {
  let s = seed >>> 0 || 1;
  const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    f32[0] = (s / 4294967296 * 2 - 1) * a;
    const x = u32[0], sign = (x >>> 16) & 0x8000, exp = ((x >>> 23) & 0xff) - 127 + 15, mant = x & 0x7fffff;
    // |values| < 1 and not tiny: normal halves (round to nearest), tiny ones flush to zero.
    out[i] = exp <= 0 ? sign : sign | ((exp << 10) + ((mant + 0x1000) >>> 13));
  }
}

function randomHalf(name: string, shape: readonly number[], seed: number): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const data = new Uint16Array(n);
  if (shape.length === 1) {
    if (/(norm|layer_norm\d?|group_norm|norm\d|conv_norm_out|final_layer_norm)\.weight$/.test(name)) data.fill(0x3c00); // 1.0
  } else {
    const fanIn = n / shape[0];
    fillUniformHalf(data, Math.sqrt(3 / fanIn), seed);
  }
  return fromTypedArray(data, [...shape], 'f16');
}

function writeComponent(dir: string, model: Module, config: Record<string, unknown>, base: string, seed: number): number {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 1));
  const weightMap: Record<string, string> = {};
  let shard = new Map<string, Tensor>(), shardBytes = 0, total = 0, count = 0, i = 0;
  // At most one shard in memory: write it out as soon as it is full.
  const flush = () => {
    if (!shard.size) return;
    const file = `${base}-${String(++count).padStart(5, '0')}.safetensors`;
    writeSafetensors(path.join(dir, file), shard);
    for (const k of shard.keys()) weightMap[k] = file;
    shard = new Map();
    shardBytes = 0;
  };
  for (const [name, t] of model.stateDict()) {
    if (shardBytes + t.numel * 2 > SHARD_BYTES) flush();
    shard.set(name, randomHalf(name, t.shape, seed * 100_003 + i++));
    shardBytes += t.numel * 2;
    total += t.numel * 2;
  }
  flush();
  fs.writeFileSync(path.join(dir, `${base}.safetensors.index.json`), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
  return total;
}

function writeCheckpoint(dir: string): void {
  const real = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'real_configs.json'), 'utf8')) as { configs: Record<string, Record<string, unknown>> };
  const unetCfg = { _class_name: 'UNet2DConditionModel', ...real.configs.sd15_unet };
  const vaeCfg = { _class_name: 'AutoencoderKL', ...real.configs.sd_vae };
  const textCfg = { architectures: ['CLIPTextModel'], model_type: 'clip_text_model', ...real.configs.clip_vit_l_text };
  const t0 = performance.now();
  let bytes = writeComponent(path.join(dir, 'unet'), UNet2DConditionModel.fromDiffusersConfig(unetCfg, { meta: true }), unetCfg, 'diffusion_pytorch_model', 1);
  bytes += writeComponent(path.join(dir, 'vae'), AutoencoderKL.fromDiffusersConfig(vaeCfg, { meta: true }), vaeCfg, 'diffusion_pytorch_model', 2);
  bytes += writeComponent(path.join(dir, 'text_encoder'), withoutInit(() => new CLIPTextModel(clipTextConfigFromJson(textCfg))), textCfg, 'model', 3);
  fs.cpSync(path.join(GOLDEN, 'sd_pipe', 'tokenizer'), path.join(dir, 'tokenizer'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'scheduler'));
  fs.writeFileSync(path.join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify({
    _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000,
    skip_prk_steps: true, steps_offset: 1, set_alpha_to_one: false, clip_sample: false,
  }));
  fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify({
    _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
    text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'PNDMScheduler'],
  }));
  console.log(`wrote ${(bytes / 1e9).toFixed(2)} GB of f16 weights in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

// ------------------------------------------------------------------ measuring (this process)

const secs = (t0: number) => (performance.now() - t0) / 1000;

/** CPU seconds (all threads) since `from`: with wall time it shows how much of the machine the run really had. */
const cpuSecs = (from: NodeJS.CpuUsage) => { const u = process.cpuUsage(from); return (u.user + u.system) / 1e6; };

interface Timed { wall: number; cpu: number }

/** Resident memory now and the peak so far, for the log line of each phase. */
function memory(): string {
  const gib = (b: number) => (b / 2 ** 30).toFixed(2);
  return `RSS ${gib(process.memoryUsage().rss)} GiB, peak ${gib(process.resourceUsage().maxRSS * 1024)} GiB`;
}

function timeSteps(pipe: StableDiffusionPipeline, size: number, steps: number, context: Tensor): Timed {
  const h = size / pipe.vaeScaleFactor;
  const x = randn([1, 4, h, h], { rng: new Rng(1) });
  const times: Timed[] = [];
  pipe.usePart('unet'); // as generate() does: the text encoder's mapped pages go back
  noGrad(() => {
    for (let i = 0; i <= steps; i++) {
      const t0 = performance.now(), c0 = process.cpuUsage();
      const out = pipe.unet.forward(cat([x, x], 0), 999 - 100 * i, context); // one CFG step: [uncond ‖ cond]
      const [u, c] = out.chunk(2, 0);
      u.add(c.sub(u).mul(7.5)).toFloat32Array();
      const t = { wall: secs(t0), cpu: cpuSecs(c0) };
      if (i > 0) times.push(t); // the first one warms up
      process.stdout.write(`  U-Net ${size}² step ${i}${i ? '' : ' (warm-up)'}: ${t.wall.toFixed(2)} s (cpu ${t.cpu.toFixed(2)} s; ${memory()})\n`);
    }
  });
  return { wall: times.reduce((a, b) => a + b.wall, 0) / times.length, cpu: times.reduce((a, b) => a + b.cpu, 0) / times.length };
}

function timeDecode(pipe: StableDiffusionPipeline, size: number): Timed {
  const h = size / pipe.vaeScaleFactor;
  const z = randn([1, 4, h, h], { rng: new Rng(2) });
  const t0 = performance.now(), c0 = process.cpuUsage();
  pipe.decodeLatents(z).toFloat32Array();
  return { wall: secs(t0), cpu: cpuSecs(c0) };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--write') { writeCheckpoint(argv[1]); return; }
  const full = argv.includes('--full');
  const stepsAt = argv.indexOf('--steps');
  const steps = stepsAt >= 0 ? Number(argv[stepsAt + 1]) : 2;
  const keepAt = argv.indexOf('--keep');
  const dir = keepAt >= 0 ? argv[keepAt + 1] : fs.mkdtempSync(path.join(os.tmpdir(), 'vss-bench-sd-'));

  console.log(`# Stable Diffusion 1.5 (random f16 weights) — backend ${backendName()}, ${getNumThreads()} threads, ${os.cpus()[0]?.model}, load average ${os.loadavg()[0].toFixed(1)}`);
  try {
    if (!fs.existsSync(path.join(dir, 'model_index.json'))) {
      const w = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--write', dir], { stdio: 'inherit' });
      if (w.status !== 0) throw new Error(`writing the checkpoint failed (exit ${w.status})`);
    }
    let t0 = performance.now();
    const pipe = StableDiffusionPipeline.fromPretrained(dir, { memory: argv.includes('--resident') ? 'resident' : 'lean' });
    const load = secs(t0);
    console.log(`  load: ${load.toFixed(1)} s (U-Net weights ${pipe.unet.parameters()[0].dtype}, ` +
      `${pipe.releaseIdleWeights ? 'memory-mapped: pages are read during the first step of each part' : 'read into memory'}; ${memory()})`);
    t0 = performance.now();
    const { cond, uncond } = pipe.encodePrompt('a photograph of an astronaut riding a horse', '');
    const text = secs(t0);
    console.log(`  text encoder: ${text.toFixed(2)} s (${memory()})`);
    const context = cat([uncond!, cond], 0);
    const rows: { what: string; ours: number; cpu?: number; torch: number | null; sdcpp: number | null; unit: string }[] = [];
    for (const size of full ? [256, 512] : [256]) {
      const step = timeSteps(pipe, size, steps, context);
      const vae = timeDecode(pipe, size);
      console.log(`  VAE decode ${size}²: ${vae.wall.toFixed(2)} s (cpu ${vae.cpu.toFixed(2)} s; ${memory()})`);
      const k = size === 256 ? '256' : '512';
      rows.push({ what: `U-Net CFG step (batch 2) ${size}²`, ours: step.wall, cpu: step.cpu, torch: PEERS.torch[`step${k}`], sdcpp: PEERS.sdcpp[`step${k}`], unit: 's' });
      rows.push({ what: `VAE decode ${size}²`, ours: vae.wall, cpu: vae.cpu, torch: PEERS.torch[`vae${k}`], sdcpp: PEERS.sdcpp[`vae${k}`], unit: 's' });
    }
    const rss = process.resourceUsage().maxRSS * 1024 / 1e9; // KiB → GB (decimal, like the peers' figures)
    const big = full ? '512' : '256';
    rows.push({ what: `peak RSS (${big}² run)`, ours: rss, torch: PEERS.torch[`rss${big}`], sdcpp: PEERS.sdcpp[`rss${big}`], unit: 'GB' });
    rows.push({ what: `load (f16 weights${pipe.releaseIdleWeights ? ', memory-mapped' : ''})`, ours: load, torch: null, sdcpp: null, unit: 's' });
    rows.push({ what: 'text encoder (prompt + empty negative)', ours: text, torch: null, sdcpp: null, unit: 's' });

    const f = (v: number | null, unit: string) => (v === null ? '—' : `${v.toFixed(2)} ${unit}`);
    console.log(`\nload average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (peers were measured on an idle machine; cpu = CPU seconds over both threads)`);
    console.log('\n| what | VSS | VSS cpu | PyTorch 1.13 (fp32) | stable-diffusion.cpp (f16) | VSS vs faster peer |');
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) {
      const peers = [r.torch, r.sdcpp].filter((v): v is number => v !== null);
      const best = peers.length ? Math.min(...peers) : null;
      const ratio = best === null ? '—' : `${(best / r.ours).toFixed(2)}× ${best / r.ours >= 1 ? '(faster/leaner)' : '(slower)'}`;
      console.log(`| ${r.what} | ${f(r.ours, r.unit)} | ${r.cpu === undefined ? '—' : f(r.cpu, 's')} | ${f(r.torch, r.unit)} | ${f(r.sdcpp, r.unit)} | ${ratio} |`);
    }
  } finally {
    if (keepAt < 0) fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
