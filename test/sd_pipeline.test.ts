/**
 * StableDiffusionPipeline against diffusers on the golden pipeline runs (tiny random SD, 32×32):
 * sd_pipe_ddim / sd_pipe_euler (prompt embeddings, every step's latents, the final image), sd_img2img and
 * sd_inpaint (9-channel U-Net), each fed the same draws diffusers made. Then the behaviour around them:
 * seeding and replay, batches, mask blending with an ordinary U-Net, the step callback, cancellation, and
 * input errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Tensor, fromTypedArray, noGrad } from '../src/engine/index.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { loadImageTensor } from '../src/image/index.js';
import { schedulerFromConfig } from '../src/diffusion/schedulers/index.js';
import { UNet2DConditionModel } from '../src/models/unet2d_condition.js';
import { GenerationAbortedError, StableDiffusionPipeline, checkSize, samplerName } from '../src/pipelines/stable_diffusion.js';
import { repoRoot } from './helpers/fixtures.js';
import { describeDiff, relErr } from './helpers/relerr.js';

const GOLDEN = path.join(repoRoot(), 'test', 'fixtures', 'golden');
const PROMPT = 'a red circle above a blue square';
const pipe = StableDiffusionPipeline.fromPretrained(path.join(GOLDEN, 'sd_pipe'));
const tensors = (name: string) => readSafetensors(path.join(GOLDEN, name, 'tensors.safetensors')).tensors;
const I2I = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'cases_i2i.json'), 'utf8')).cases as Record<string, Record<string, unknown>>;

/** The scheduler exactly as the golden case built it (class + listed config; defaults for the rest). */
function caseScheduler(name: string) {
  const c = JSON.parse(fs.readFileSync(path.join(GOLDEN, name, 'case.json'), 'utf8')) as { scheduler: string; scheduler_config: Record<string, unknown> };
  return schedulerFromConfig(c.scheduler_config, c.scheduler);
}
const ddim = () => schedulerFromConfig({
  num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1,
  prediction_type: 'epsilon', clip_sample: false, set_alpha_to_one: false,
}, 'DDIMScheduler');

/** Every step's latents within 1e-4 relative, and the image within 1/255 per value (it is NHWC in the fixture). */
function checkRun(what: string, stepLatents: Float32Array[], image: Tensor, ref: Map<string, Tensor>): { worstStep: number; imageDiff: number } {
  const all = ref.get('step_latents')!;
  assert.equal(stepLatents.length, all.shape[0], `${what}: number of steps`);
  let worstStep = 0;
  stepLatents.forEach((l, i) => {
    const want = all.select(0, i).contiguous().toFloat32Array();
    const err = relErr(l, want);
    worstStep = Math.max(worstStep, err);
    assert.ok(err <= 1e-4, `${what} step ${i}: ${describeDiff(l, want)}`);
  });
  const got = image.permute(0, 2, 3, 1).contiguous().toFloat32Array(), want = ref.get('image')!.toFloat32Array();
  let imageDiff = 0;
  for (let i = 0; i < got.length; i++) imageDiff = Math.max(imageDiff, Math.abs(got[i] - want[i]));
  assert.ok(imageDiff <= 1 / 255, `${what}: image differs by ${imageDiff * 255}/255`);
  return { worstStep, imageDiff };
}

const collect = (into: Float32Array[]) => (_i: number, _t: number, latents: Tensor) => { into.push(Float32Array.from(latents.toFloat32Array())); };

for (const [name, negative, steps, guidance] of [['sd_pipe_ddim', 'blurry', 6, 7.5], ['sd_pipe_euler', null, 5, 5.0]] as const) {
  test(`golden ${name}: prompt embeddings, every step, the image`, async (t) => {
    const ref = tensors(name);
    const seen: Float32Array[] = [];
    const r = await pipe.generate({
      prompt: PROMPT, negativePrompt: negative ?? undefined, steps, guidanceScale: guidance, width: 32, height: 32,
      sampler: caseScheduler(name), initLatents: ref.get('init_latents')!, onStep: collect(seen),
    });
    for (const key of ['prompt_embeds', 'negative_prompt_embeds'] as const) {
      const got = (key === 'prompt_embeds' ? r.promptEmbeds : r.negativePromptEmbeds!).toFloat32Array();
      assert.ok(relErr(got, ref.get(key)!.toFloat32Array()) <= 1e-4, `${key}: ${describeDiff(got, ref.get(key)!.toFloat32Array())}`);
    }
    const { worstStep, imageDiff } = checkRun(name, seen, r.images!, ref);
    t.diagnostic(`${name}: worst step rel ${worstStep.toExponential(2)}, image max |diff| ${(imageDiff * 255).toFixed(4)}/255`);
  });
}

test('golden sd_img2img: strength 0.6 of 10 DDIM steps from i2i_init.png, diffusers\' two draws', async (t) => {
  const ref = tensors('sd_img2img'), c = I2I.sd_img2img;
  // The PNG decodes to exactly the fixture's init image.
  const png = await loadImageTensor(path.join(GOLDEN, 'i2i_init.png'));
  assert.deepEqual([...png.permute(1, 2, 0).contiguous().toFloat32Array()], [...ref.get('init_image')!.toFloat32Array()]);
  const seen: Float32Array[] = [];
  const r = await pipe.generate({
    prompt: c.prompt as string, negativePrompt: c.negative_prompt as string, steps: c.steps as number, guidanceScale: c.guidance_scale as number,
    strength: c.strength as number, sampler: ddim(), initImage: png, onStep: collect(seen),
    noise: { imagePosterior: ref.get('posterior_noise')!.select(0, 0), latent: ref.get('latent_noise')!.select(0, 0) },
  });
  assert.deepEqual(r.timesteps, [501, 401, 301, 201, 101, 1]);
  const { worstStep, imageDiff } = checkRun('sd_img2img', seen, r.images!, ref);
  t.diagnostic(`sd_img2img: worst step rel ${worstStep.toExponential(2)}, image max |diff| ${(imageDiff * 255).toFixed(4)}/255`);
});

test('golden sd_inpaint: 9-channel U-Net, mask + masked-image latents, strength 1', async (t) => {
  const ref = tensors('sd_inpaint'), c = I2I.sd_inpaint;
  const mask = await loadImageTensor(path.join(GOLDEN, 'inpaint_mask.png'), { channels: 1 });
  assert.deepEqual([...mask.toFloat32Array()], [...ref.get('mask')!.toFloat32Array()]);
  const inpaint = new StableDiffusionPipeline({ ...pipe, unet: UNet2DConditionModel.fromPretrained(path.join(GOLDEN, 'sd_inpaint_unet')) });
  const seen: Float32Array[] = [];
  const r = await inpaint.generate({
    prompt: c.prompt as string, negativePrompt: c.negative_prompt as string, steps: c.steps as number, guidanceScale: c.guidance_scale as number,
    sampler: ddim(), initImage: await loadImageTensor(path.join(GOLDEN, 'i2i_init.png')), mask, onStep: collect(seen),
    noise: { maskedImagePosterior: ref.get('posterior_noise')!.select(0, 0), latent: ref.get('latent_noise')!.select(0, 0) },
  });
  const { worstStep, imageDiff } = checkRun('sd_inpaint', seen, r.images!, ref);
  t.diagnostic(`sd_inpaint: worst step rel ${worstStep.toExponential(2)}, image max |diff| ${(imageDiff * 255).toFixed(4)}/255`);
  await assert.rejects(inpaint.generate({ prompt: 'x', steps: 1 }), /inpainting U-Net \(9 input channels\): it needs an initImage and a mask/);
});

test('a seed fixes the run; returned initLatents replay it; batches draw per image', async () => {
  const base = { prompt: 'a (red:1.2) circle', steps: 3, width: 32, height: 32, sampler: 'Euler a' } as const;
  const a = await pipe.generate({ ...base, seed: 11 });
  const b = await pipe.generate({ ...base, seed: 11 });
  const c = await pipe.generate({ ...base, seed: 12 });
  assert.deepEqual([...a.images!.toFloat32Array()], [...b.images!.toFloat32Array()]);
  assert.notDeepEqual([...a.latents.toFloat32Array()], [...c.latents.toFloat32Array()]);
  assert.equal(a.sampler.name, 'Euler a');
  // Euler a also draws per step: replaying the start latents with the same seed gives the same result.
  const replay = await pipe.generate({ ...base, seed: 11, initLatents: a.initLatents! });
  assert.deepEqual([...replay.latents.toFloat32Array()], [...a.latents.toFloat32Array()]);

  const two = await pipe.generate({ prompt: PROMPT, steps: 2, width: 32, height: 40, batchSize: 2, seed: 3 });
  assert.deepEqual(two.images!.shape, [2, 3, 40, 32]);
  const [x, y] = two.latents.chunk(2, 0);
  assert.ok(relErr(x.contiguous().toFloat32Array(), y.contiguous().toFloat32Array()) > 0.1, 'two images of a batch differ');
  const v = two.images!.toFloat32Array();
  assert.ok(v.every((p) => p >= 0 && p <= 1));
});

test('mask blending with an ordinary U-Net: the kept area follows the init image, a zero mask returns it', async () => {
  const image = await loadImageTensor(path.join(GOLDEN, 'i2i_init.png'));
  const posterior = fromTypedArray(new Float32Array(4 * 16 * 16).fill(0.25), [1, 4, 16, 16]);
  const zero = fromTypedArray(new Float32Array(32 * 32), [32, 32]);
  const r = await pipe.generate({ prompt: PROMPT, steps: 4, sampler: ddim(), initImage: image, mask: zero, strength: 0.75, seed: 1, noise: { imagePosterior: posterior } });
  // Nothing to repaint: the final latents are the init image's posterior sample itself.
  const want = noGrad(() => {
    const p = pipe.vae.encode(image.unsqueeze(0).mul(2).sub(1));
    return p.mean.add(p.logvar.mul(0.5).exp().mul(posterior)).mul(pipe.vae.scalingFactor).toFloat32Array();
  });
  assert.ok(relErr(r.latents.toFloat32Array(), want) < 1e-6, describeDiff(r.latents.toFloat32Array(), want));
  const half = fromTypedArray(Float32Array.from({ length: 32 * 32 }, (_, i) => (i % 32 < 16 ? 1 : 0)), [1, 1, 32, 32]);
  const m = await pipe.generate({ prompt: PROMPT, steps: 4, sampler: ddim(), initImage: image, mask: half, seed: 1, noise: { imagePosterior: posterior } });
  const got = m.latents.toFloat32Array();
  let keptDiff = 0, paintedDiff = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (i % 16 < 8) paintedDiff = Math.max(paintedDiff, d); else keptDiff = Math.max(keptDiff, d);
  }
  assert.equal(keptDiff, 0, 'kept half is the init latents');
  assert.ok(paintedDiff > 0.1, 'masked half is repainted');
});

test('the step callback sees every step and can stop; an AbortSignal cancels', async () => {
  const seen: number[] = [];
  const r = await pipe.generate({
    prompt: PROMPT, steps: 5, width: 32, height: 32, sampler: 'DDIM',
    onStep: (i, t, latents, info) => { seen.push(t); assert.equal(info.total, 5); assert.ok(info.predOriginal); assert.deepEqual(latents.shape, [1, 4, 16, 16]); return i === 1 ? 'stop' : undefined; },
  });
  assert.deepEqual(seen, [801, 601]);
  assert.equal(r.stopped, true);
  assert.deepEqual(r.images!.shape, [1, 3, 32, 32]);

  const controller = new AbortController();
  const run = pipe.generate({ prompt: PROMPT, steps: 50, width: 32, height: 32, onStep: (i) => { if (i === 2) setImmediate(() => controller.abort()); }, signal: controller.signal });
  await assert.rejects(run, (err: unknown) => err instanceof GenerationAbortedError && err.step >= 3 && err.step < 50);
});

test('clip skip, long prompts, guidance off, latents-only output, precomputed embeddings, tiled decode', async () => {
  const e = pipe.encodePrompt(PROMPT, '', { clipSkip: 1 });
  const base = await pipe.generate({ prompt: PROMPT, steps: 2, clipSkip: 1, seed: 5, output: 'none' });
  assert.equal(base.images, null);
  assert.ok(relErr(base.promptEmbeds.toFloat32Array(), e.cond.toFloat32Array()) === 0);
  const given = await pipe.generate({ prompt: 'ignored', steps: 2, seed: 5, output: 'none', promptEmbeds: e.cond, negativePromptEmbeds: e.uncond! });
  assert.deepEqual([...given.latents.toFloat32Array()], [...base.latents.toFloat32Array()]);
  const tiled = pipe.decodeLatents(base.latents, { tileSize: 16, overlap: 4 });
  const plain = pipe.decodeLatents(base.latents);
  assert.deepEqual(tiled.shape, [1, 3, 32, 32]);
  assert.ok(tiled.toFloat32Array().every((v) => v >= 0 && v <= 1));
  assert.notDeepEqual(tiled.toFloat32Array(), plain.toFloat32Array()); // the tiled path really ran
  // Past 75 tokens the prompt runs in two 77-token windows; the negative is padded to match.
  const long = await pipe.generate({ prompt: Array.from({ length: 20 }, (_, i) => `red circle ${i}`).join(', '), steps: 1, output: 'none' });
  assert.deepEqual([long.promptEmbeds.shape, long.negativePromptEmbeds!.shape], [[1, 154, 32], [1, 154, 32]]);
  const noCfg = await pipe.generate({ prompt: PROMPT, steps: 2, guidanceScale: 1, seed: 5 });
  assert.equal(noCfg.negativePromptEmbeds, null);
  assert.notDeepEqual([...noCfg.latents.toFloat32Array()], [...base.latents.toFloat32Array()]);
});

test('input errors are clear and happen before any work', async () => {
  assert.throws(() => checkSize(30, 32), /width 30 is not a multiple of 8 .*try 32/);
  assert.throws(() => checkSize(32, 0), /height must be a positive integer/);
  await assert.rejects(pipe.generate({ prompt: 'x', width: 36, height: 32 }), /width 36 is not a multiple of 8/);
  await assert.rejects(pipe.generate({ prompt: 'x', mask: fromTypedArray(new Float32Array(4), [2, 2]) }), /a mask needs an initImage/);
  await assert.rejects(pipe.generate({ prompt: 'x', initLatents: fromTypedArray(new Float32Array(16), [1, 4, 2, 2]), width: 32, height: 32 }),
    /initLatents has shape \[1, 4, 2, 2\], expected \[1, 4, 16, 16\]/);
  const image = fromTypedArray(new Float32Array(3 * 32 * 32), [3, 32, 32]);
  await assert.rejects(pipe.generate({ prompt: 'x', initImage: image, strength: 0.05, steps: 10 }), /runs no step/);
  await assert.rejects(pipe.generate({ prompt: 'x', sampler: 'Euler b' }), /unknown sampler 'Euler b'/);
  assert.equal(samplerName(pipe.makeScheduler('DPM++ 2M Karras')), 'DPM++ 2M Karras');
  assert.equal(samplerName(pipe.makeScheduler()), 'DDIM');
});

test("memory 'lean' (mapped weights, each part's pages given back while the others run) gives the same images as 'resident'", async () => {
  const resident = StableDiffusionPipeline.fromPretrained(path.join(GOLDEN, 'sd_pipe'), { memory: 'resident' });
  assert.equal(resident.releaseIdleWeights, false);
  assert.equal(pipe.releaseIdleWeights, true, 'lean is the default');
  const opts = { prompt: PROMPT, steps: 3, width: 32, height: 32, seed: 5 };
  const lean1 = await pipe.generate(opts);
  const lean2 = await pipe.generate(opts); // the second run reads every part back after its release
  const res = await resident.generate(opts);
  assert.deepEqual([...lean1.images!.toFloat32Array()], [...res.images!.toFloat32Array()]);
  assert.deepEqual([...lean2.images!.toFloat32Array()], [...res.images!.toFloat32Array()]);
});
