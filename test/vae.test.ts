/**
 * AutoencoderKL: parity with diffusers on the golden `vae` case (posterior mean/logvar, decode), legacy
 * attention names, and tiled encode/decode (exact with one tile, blended seams with many).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng, interpolate, noGrad, randn, type Tensor } from '../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { AutoencoderKL } from '../src/models/autoencoder_kl.js';
import { tileStarts, tiledApply } from '../src/models/blocks/tiling.js';
import { repoRoot } from './helpers/fixtures.js';
import { describeDiff, relErr } from './helpers/relerr.js';

const GOLDEN = path.join(repoRoot(), 'test', 'fixtures', 'golden');
const VAE_DIR = path.join(GOLDEN, 'sd_pipe', 'vae');
const vae = AutoencoderKL.fromPretrained(VAE_DIR);
const golden = readSafetensors(path.join(GOLDEN, 'vae', 'tensors.safetensors')).tensors;

function close(actual: Tensor, expected: Tensor, tol = 1e-4): void {
  assert.deepEqual(actual.shape, expected.shape);
  const a = actual.toFloat32Array(), b = expected.toFloat32Array();
  assert.ok(relErr(a, b) <= tol, describeDiff(a, b));
}

test('golden vae: posterior mean / logvar and decode match diffusers', () => {
  assert.equal(vae.scalingFactor, 0.18215);
  assert.equal(vae.downscaleFactor, 2);
  noGrad(() => {
    const p = vae.encode(golden.get('image')!);
    close(p.mean, golden.get('posterior_mean')!);
    close(p.logvar, golden.get('posterior_logvar')!);
    close(vae.decode(golden.get('latent')!), golden.get('decoded')!);
  });
});

test('checkpoints with the old attention names (query/key/value/proj_attn) load the same', () => {
  const old = (k: string) => k.replace('.to_q.', '.query.').replace('.to_k.', '.key.').replace('.to_v.', '.value.').replace('.to_out.0.', '.proj_attn.');
  const weights = readSafetensors(path.join(VAE_DIR, 'diffusion_pytorch_model.safetensors')).tensors;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-vae-'));
  try {
    fs.copyFileSync(path.join(VAE_DIR, 'config.json'), path.join(dir, 'config.json'));
    writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), new Map([...weights].map(([k, v]) => [old(k), v])));
    const legacy = AutoencoderKL.fromPretrained(dir);
    const z = golden.get('latent')!;
    assert.deepEqual(noGrad(() => legacy.decode(z)).toFloat32Array(), noGrad(() => vae.decode(z)).toFloat32Array());

    // A mis-shaped legacy key is reported under both names.
    weights.set('encoder.mid_block.attentions.0.to_q.weight', randn([64, 32]));
    writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), new Map([...weights].map(([k, v]) => [old(k), v])));
    assert.throws(() => AutoencoderKL.fromPretrained(dir),
      /key "encoder\.mid_block\.attentions\.0\.query\.weight" \(read as "encoder\.mid_block\.attentions\.0\.to_q\.weight"\) has shape \[64, 32\], the config expects \[64, 64\]/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('tile grid: regular stride, last tile flush with the border', () => {
  assert.deepEqual(tileStarts(16, 32, 8), [0]);
  assert.deepEqual(tileStarts(32, 16, 8), [0, 8, 16]);
  assert.deepEqual(tileStarts(30, 16, 4), [0, 12, 14]);
  assert.deepEqual(tileStarts(48, 16, 8, 8), [0, 8, 16, 24, 32]);
  assert.throws(() => tileStarts(40, 16, 4, 8), /multiples of 8/); // stride 12 would break the encoder's grid
});

test('tiled blending is exact for a pointwise function (any grid, both directions)', () => {
  const rng = new Rng(5);
  const up = (t: Tensor) => interpolate(t.mul(2).add(1), { scaleFactor: 4, mode: 'nearest' }); // local: 1 px → 4×4
  const x = randn([2, 3, 21, 26], { rng });
  for (const [tile, overlap] of [[8, 2], [10, 4], [7, 3]]) {
    close(tiledApply(x, up, { tile, overlap, scale: 4 }), up(x), 1e-6);
  }
  const down = (t: Tensor) => t.slice(2, 0, undefined, 4).slice(3, 0, undefined, 4).mul(3); // stride-4 subsample
  const img = randn([1, 2, 48, 40], { rng });
  close(tiledApply(img, down, { tile: 16, overlap: 8, scale: 1 / 4, align: 4 }), down(img), 1e-6);
});

test('VAE tiling: one tile is exactly the untiled result; small tiles stay close', () => {
  const rng = new Rng(11);
  noGrad(() => {
    const z = golden.get('latent')!; // 16×16 latent → 32×32 image
    assert.deepEqual(vae.decodeTiled(z, { tileSize: 32, overlap: 8 }).toFloat32Array(), vae.decode(z).toFloat32Array());
    const x = golden.get('image')!;
    const whole = vae.encode(x), tiledOne = vae.encodeTiled(x, { tileSize: 64, overlap: 16 });
    assert.deepEqual(tiledOne.mean.toFloat32Array(), whole.mean.toFloat32Array());
    assert.deepEqual(tiledOne.logvar.toFloat32Array(), whole.logvar.toFloat32Array());

    // 32×32 latent in 24×24 tiles overlapping by 8 (2 × 2 tiles). This random-weight VAE is far from local
    // (GroupNorm statistics and the mid-block attention see one tile), so "close" is loose; blending must
    // still beat hard-edged tiles clearly.
    const big = randn([1, 4, 32, 32], { rng });
    const full = vae.decode(big);
    const err = (tileSize: number, overlap: number) =>
      relErr(vae.decodeTiled(big, { tileSize, overlap }).toFloat32Array(), full.toFloat32Array());
    const blended = err(48, 16), blended32 = err(32, 16), hard32 = err(32, 0);
    assert.ok(blended < 0.25, `tiles 48/16: rel err ${blended}`);
    assert.ok(blended32 < 0.6 * hard32, `tiles 32: blended ${blended32}, hard-edged ${hard32}`);
    const img = randn([1, 3, 64, 64], { rng }).mul(0.5);
    const e = vae.encodeTiled(img, { tileSize: 48, overlap: 16 }), ef = vae.encode(img);
    assert.ok(relErr(e.mean.toFloat32Array(), ef.mean.toFloat32Array()) < 0.15);
  });
  assert.throws(() => vae.decodeTiled(golden.get('latent')!, { tileSize: 15, overlap: 4 }), /multiples of 2/);
});
