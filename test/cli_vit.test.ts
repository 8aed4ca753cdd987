/**
 * `vss classify`, `vss explain vit` and `vss train vit` through the real command (bin/vss.js over dist/, so
 * `npx tsc -p .` first). Tests that need the bundled model (models/vit-fmnist) or the Fashion-MNIST files
 * are skipped, with the reason, when those are absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { readPngSize } from '../src/image/index.js';
import { FASHION_MNIST_CLASSES, FashionMnist } from '../src/data/index.js';

// dist/test/cli_vit.test.js → the repository root.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const vssBin = path.join(root, 'bin', 'vss.js');
const BUNDLED = path.join(root, 'models', 'vit-fmnist');
const GOLDEN_MODEL = path.join(root, 'test', 'fixtures', 'golden', 'vit', 'model');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-cli-vit-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

function vss(...args: string[]) {
  const r = spawnSync(process.execPath, [vssBin, ...args], { encoding: 'utf8', cwd: tmpDir, env: { ...process.env, VSS_NUM_THREADS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The first `n` Fashion-MNIST test images as 28×28 PNGs with their labels, or null without the dataset. */
async function fashionPngs(n: number): Promise<{ file: string; label: number }[] | null> {
  let ds: FashionMnist;
  try {
    ds = new FashionMnist({ split: 'test' });
  } catch {
    return null;
  }
  const out = [];
  for (let i = 0; i < n; i++) {
    const file = path.join(tmpDir, `fmnist-${i}.png`);
    await sharp(Buffer.from(ds.pixels(i)), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(file);
    out.push({ file, label: ds.label(i) });
  }
  return out;
}

const hasBundled = fs.existsSync(path.join(BUNDLED, 'model.safetensors'));

test('classify --json with the bundled model labels Fashion-MNIST test images correctly', async (t) => {
  if (!hasBundled) return t.skip(`no bundled model at ${BUNDLED}`);
  const images = await fashionPngs(12);
  if (!images) return t.skip('Fashion-MNIST is not installed');
  const r = vss('classify', '--json', '--top', '3', ...images.map((i) => i.file));
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; top: { label: string; p: number }[] });
  assert.equal(lines.length, images.length);
  let correct = 0;
  lines.forEach((line, i) => {
    assert.equal(line.file, images[i].file);
    assert.equal(line.top.length, 3);
    assert.ok(line.top[0].p >= line.top[1].p && line.top[1].p >= line.top[2].p);
    assert.ok(line.top.every((x) => (FASHION_MNIST_CLASSES as readonly string[]).includes(x.label)));
    if (line.top[0].label === FASHION_MNIST_CLASSES[images[i].label]) correct++;
  });
  // Test image 0 is an ankle boot; a ≥ 92 % model gets (nearly) all of the first twelve.
  assert.equal(lines[0].top[0].label, 'Ankle boot');
  assert.ok(correct >= 11, `${correct}/12 correct`);

  const text = vss('classify', images[0].file, '--top', '2');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /fmnist-0\.png: Ankle boot \d+\.\d%, \S.* \d+\.\d%/);
});

test('eval vit: the bundled model\'s test accuracy (first 500 images), JSON and text; a non-Fashion-MNIST model is refused', async (t) => {
  if (!hasBundled) return t.skip(`no bundled model at ${BUNDLED}`);
  if (!(await fashionPngs(1))) return t.skip('Fashion-MNIST is not installed');
  const r = vss('eval', 'vit', '--limit', '500', '--json');
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { model: string; accuracy: number; correct: number; total: number };
  assert.equal(res.model, BUNDLED);
  assert.equal(res.total, 500);
  assert.equal(res.accuracy, res.correct / 500);
  assert.ok(res.accuracy >= 0.9, `bundled model: ${res.correct}/500 correct`);

  const text = vss('eval', 'vit', '--limit', '20');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /vit-fmnist: test accuracy \d+\.\d\d% \(\d+\/20 Fashion-MNIST test images\)/);

  const wrong = vss('eval', 'vit', '--model', GOLDEN_MODEL, '--limit', '20');
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /is not a Fashion-MNIST classifier \(3 channel\(s\), 32 px/);
});

test('explain vit writes a PNG: a row per head (+ mean), a column per layer (+ image), and the rollout', async (t) => {
  const model = hasBundled ? BUNDLED : GOLDEN_MODEL;
  const image = path.join(tmpDir, 'explain-in.png');
  await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toFile(image);
  const out = path.join(tmpDir, 'explain.png');
  const r = vss('explain', 'vit', '--model', model, image, '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const m = /wrote .*explain\.png \((\d+)x(\d+): (\d+) layers × (\d+) heads over a (\d+)x(\d+) patch grid/.exec(r.stdout);
  assert.ok(m, r.stdout);
  const [width, height, layers, heads] = m.slice(1, 5).map(Number);
  const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
  assert.equal(layers, config.num_hidden_layers);
  assert.equal(heads, config.num_attention_heads);
  assert.deepEqual(readPngSize(fs.readFileSync(out)), { width, height });
  // Cells are at least 96 px: (layers + 1) columns, (heads + 1) rows, and the rollout panel below.
  assert.ok(width >= (layers + 1) * 96 && width < (layers + 1) * 200, `width ${width}`);
  assert.ok(height >= (heads + 2) * 96 + 160 && height < (heads + 2) * 200 + 400, `height ${height}`);
});

test('classify with an official-layout model folder (3-channel, 32 px) and the error for a missing folder', async () => {
  const image = path.join(tmpDir, 'rgb.png');
  await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 10, g: 120, b: 250 } } }).png().toFile(image);
  const r = vss('classify', '--model', GOLDEN_MODEL, '--json', '--top', '10', image);
  assert.equal(r.code, 0, r.stderr);
  const line = JSON.parse(r.stdout);
  assert.equal(line.top.length, 10);
  assert.ok(Math.abs(line.top.reduce((s: number, x: { p: number }) => s + x.p, 0) - 1) < 1e-4);
  assert.ok(line.top.every((x: { label: string }) => /^LABEL_\d$/.test(x.label)));

  const missing = vss('classify', '--model', path.join(tmpDir, 'no-such-model'), image);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^vss: no model folder at .*no-such-model\nhint: /);
});

test('train vit: a two-step run saves a checkpoint and exports a model that classify loads', async (t) => {
  if (!(await fashionPngs(1))) return t.skip('Fashion-MNIST is not installed');
  const out = path.join(tmpDir, 'run');
  const r = vss('train', 'vit', '--out', out, '--steps', '2', '--batch', '8', '--dim', '16', '--depth', '1', '--heads', '2',
    '--mlp', '32', '--stem', '4,4', '--stem-strides', '1', '--eval-limit', '40', '--no-progress');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /conv stem \[4,4\] strides \[1,2\]/);
  assert.match(r.stdout, /test accuracy \d+\.\d\d% with EMA weights \(\d+\/40 test images/);
  for (const f of ['checkpoint.safetensors', 'metrics.jsonl', 'model/config.json', 'model/model.safetensors', 'model/preprocessor_config.json']) {
    assert.ok(fs.existsSync(path.join(out, f)), f);
  }
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'model/config.json'), 'utf8')).vss_conv_stem_strides, [1, 2]);
  const c = vss('classify', '--model', path.join(out, 'model'), '--json', path.join(tmpDir, 'fmnist-0.png'));
  assert.equal(c.code, 0, c.stderr);
  assert.equal(JSON.parse(c.stdout).top.length, 3);
  // The run is complete: resuming it trains nothing; a fresh start in the same folder is refused.
  const again = vss('train', 'vit', '--out', out, '--steps', '2', '--no-progress');
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already holds a training run/);
  // a --stem of one's own: stride 2 everywhere (the recipe's strides belong to the recipe's stem)
  const own = vss('train', 'vit', '--out', path.join(tmpDir, 'own-stem'), '--steps', '1', '--batch', '4', '--dim', '16', '--depth', '1',
    '--heads', '2', '--mlp', '16', '--stem', '4,4', '--eval-limit', '8', '--no-progress');
  assert.equal(own.code, 0, own.stderr);
  assert.match(own.stderr, /conv stem \[4,4\] strides \[2,2\]/);
  const badStride = vss('train', 'vit', '--out', path.join(tmpDir, 'bad'), '--stem', '4', '--stem-strides', '3', '--no-progress');
  assert.equal(badStride.code, 1);
  assert.match(badStride.stderr, /--stem-strides \[3\] must be 1 or 2, at most one per --stem layer \(1\)/);
});
