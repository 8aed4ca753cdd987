/**
 * `vss generate` through the real command (bin/vss.js over dist/) on the tiny golden pipeline at 32×32:
 * the PNG and its `parameters` chunk as `vss info` reads it, the --save-latents / --init-latents round trip,
 * img2img + mask with previews and a strip, and the errors a user meets first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors } from '../src/io/safetensors.js';
import { decodePixels, readGenerationParameters, readPngSize } from '../src/image/index.js';
import { repoRoot } from './helpers/fixtures.js';

const root = repoRoot();
const vssBin = path.join(root, 'bin', 'vss.js');
const GOLDEN = path.join(root, 'test', 'fixtures', 'golden');
const MODEL = path.join(GOLDEN, 'sd_pipe');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-generate-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const vss = (...args: string[]) => spawnSync(process.execPath, [vssBin, ...args], { encoding: 'utf8', cwd: tmp });
const at = (f: string) => path.join(tmp, f);

test('generate writes a PNG whose parameters vss info reads back; saved latents replay it exactly', async () => {
  const r = vss('generate', '--model', MODEL, 'a (red:1.2) circle, blue square', '-n', 'blurry', '--width', '32', '--height', '32',
    '--steps', '3', '--seed', '42', '--sampler', 'Euler a', '--cfg-scale', '6', '--clip-skip', '2', '-o', at('a.png'), '--save-latents', at('a.safetensors'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /wrote .*a\.png \(32×32, 3 steps, Euler a, seed 42/);
  assert.match(r.stderr, /sampling 3\/3 100%.*took/);
  assert.deepEqual(readPngSize(fs.readFileSync(at('a.png'))), { width: 32, height: 32 });

  const info = vss('info', at('a.png'), '--json');
  assert.equal(info.status, 0, info.stderr);
  const p = JSON.parse(info.stdout).parameters;
  assert.equal(p.prompt, 'a (red:1.2) circle, blue square');
  assert.equal(p.negativePrompt, 'blurry');
  assert.deepEqual([p.steps, p.sampler, p.cfgScale, p.seed, p.width, p.height, p.model], [3, 'Euler a', 6, 42, 32, 32, 'sd_pipe']);
  assert.equal(p.extra['Clip skip'], '2');

  const saved = readSafetensors(at('a.safetensors'));
  assert.deepEqual(saved.tensors.get('init_latents')!.shape, [1, 4, 16, 16]);
  assert.equal(saved.metadata.seed, '42');
  // The size comes from the latents; Euler a's per-step noise comes from the same seed.
  const b = vss('generate', '--model', MODEL, 'a (red:1.2) circle, blue square', '-n', 'blurry', '--steps', '3', '--seed', '42',
    '--sampler', 'Euler a', '--cfg-scale', '6', '--clip-skip', '2', '-o', at('b.png'), '--init-latents', at('a.safetensors'), '--save-latents', at('b.safetensors'), '--no-progress');
  assert.equal(b.status, 0, b.stderr);
  assert.deepEqual(readSafetensors(at('b.safetensors')).tensors.get('latents')!.toFloat32Array(), saved.tensors.get('latents')!.toFloat32Array());
  assert.deepEqual((await decodePixels(at('b.png'))).data, (await decodePixels(at('a.png'))).data);
  assert.doesNotMatch(b.stderr, /sampling/);
});

test('img2img with a mask, previews and a denoising strip', () => {
  const r = vss('generate', '--model', MODEL, 'a red circle', '--init-image', path.join(GOLDEN, 'i2i_init.png'), '--mask', path.join(GOLDEN, 'inpaint_mask.png'),
    '--strength', '0.75', '--steps', '4', '--seed', '1', '--batch', '2', '--preview-every', '1', '--strip', '-o', at('i.png'), '--no-progress');
  assert.equal(r.status, 0, r.stderr);
  for (const f of ['i-0.png', 'i-1.png', 'i-strip.png', 'i-preview-001.png', 'i-preview-002.png']) assert.ok(fs.existsSync(at(f)), f);
  const info = readGenerationParameters(at('i-1.png'))!.parsed;
  assert.equal(info.extra['Denoising strength'], '0.75');
  assert.equal(info.extra['Batch pos'], '1');
  assert.ok(readPngSize(fs.readFileSync(at('i-strip.png'))).width > 2 * 32);
});

test('clear errors: a prompt the bundled model cannot draw, impossible sizes, options that need others', () => {
  const none = vss('generate', 'a cat');
  assert.equal(none.status, 1);
  assert.match(none.stderr, /vss: the prompt 'a cat' names none of this model's classes\nhint: it knows: T-shirt\/top, Trouser, .*Ankle boot/);
  assert.match(vss('generate', '--model', MODEL, 'x', '--class', 'coat').stderr, /--class works with class-conditional models/);
  const odd = vss('generate', '--model', MODEL, 'x', '--width', '100');
  assert.equal(odd.status, 1);
  assert.match(odd.stderr, /--width 100 is not a multiple of 8 .*\nhint: try 104/);
  assert.match(vss('generate', '--model', MODEL, 'x', '--height', '16384').stderr, /--height 16384 is larger than 4096/);
  assert.match(vss('generate', '--model', MODEL, 'x', '--mask', 'm.png').stderr, /--mask needs --init-image/);
  assert.match(vss('generate', '--model', path.join(tmp, 'missing'), 'x').stderr, /model not found: .*missing\nhint: give a diffusers folder/);
  assert.match(vss('generate', '--model', MODEL, 'x', '--sampler', 'Euler z', '--steps', '1').stderr, /unknown sampler 'Euler z'/);
});
