/**
 * Captioning end to end through the real command (bin/vss.js over dist/, so `npx tsc -p .` first): a tiny
 * captioner trained for a few steps on Shapes, then `vss caption`, `vss explain caption` and
 * `vss eval captioner` on it; the held-out split; the valid-caption references; errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AttributeCombo, FASHION_MNIST_DESCRIPTIONS, FashionMnist, ShapesDataset, captionOf, sceneContains, shapesCaptionVariants } from '../src/data/index.js';
import { floatToPixels, readPngSize, saveImage } from '../src/image/index.js';
import { WordTokenizer } from '../src/tokenizers/word.js';
import { DEFAULT_HOLD_OUT, parseHoldOut } from '../src/cli/caption.js';

// dist/test/caption_cli.test.js → the repository root.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const vssBin = path.join(root, 'bin', 'vss.js');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-cli-caption-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

function vss(...args: string[]) {
  const r = spawnSync(process.execPath, [vssBin, ...args], { encoding: 'utf8', cwd: tmpDir, env: { ...process.env, VSS_NUM_THREADS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const TINY = ['--batch', '4', '--enc-stem', '8', '--patch', '4', '--enc-dim', '16', '--enc-depth', '1', '--enc-heads', '2', '--enc-mlp', '32',
  '--dec-dim', '16', '--dec-depth', '1', '--dec-heads', '2', '--train-size', '64', '--eval-samples', '4', '--no-progress'];
const run = path.join(tmpDir, 'run');
const model = path.join(run, 'model');

/** Shapes test images as 32×32 PNGs. */
async function shapePngs(n: number): Promise<string[]> {
  const ds = new ShapesDataset({ split: 'test', length: n });
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const file = path.join(tmpDir, `shape-${i}.png`);
    await saveImage(file, floatToPixels(ds.get(i).image, 3, 32, 32, 'signed'));
    files.push(file);
  }
  return files;
}

test('train captioner: a few steps on shapes export a complete model folder; --resume continues the run', () => {
  const r = vss('train', 'captioner', '--out', run, '--steps', '2', ...TINY);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /greedy captions with EMA weights \(4 images per split\) — test: BLEU-4 \d+\.\d, exact \d+\.\d%; heldout: BLEU-4 \d+\.\d, exact \d+\.\d%/);
  for (const f of ['checkpoint.safetensors', 'metrics.jsonl', 'vocab.json', 'model/config.json', 'model/model.safetensors', 'model/vocab.json',
    'model/tokenizer_config.json', 'model/preprocessor_config.json', 'model/generation_config.json', 'model/training_data.json']) {
    assert.ok(fs.existsSync(path.join(run, f)), f);
  }
  const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'vision-encoder-decoder');
  assert.equal(config.dtype, 'float16');
  assert.deepEqual([config.decoder_start_token_id, config.eos_token_id, config.pad_token_id], [1, 2, 0]);
  const vocab = JSON.parse(fs.readFileSync(path.join(model, 'vocab.json'), 'utf8'));
  assert.equal(config.decoder.vocab_size, Object.keys(vocab).length);
  // Shapes defaults: 48 px, canonical captions (the evaluation rebuilds the same splits from this file).
  const data = JSON.parse(fs.readFileSync(path.join(model, 'training_data.json'), 'utf8'));
  assert.deepEqual([data.dataset, data.size, data.captions], ['shapes', 48, 'canonical']);
  assert.deepEqual(config.encoder.vss_conv_stem, [8]);
  assert.equal(JSON.parse(fs.readFileSync(path.join(model, 'preprocessor_config.json'), 'utf8')).size.height, 48);
  const records = fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(records.some((x) => typeof x.loss === 'number' && x.step === 2));
  assert.ok(records.some((x) => typeof x.heldout_bleu4 === 'number' && typeof x.test_exact === 'number'));

  const again = vss('train', 'captioner', '--out', run, '--steps', '2', ...TINY);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already holds a training run/);
  const more = vss('train', 'captioner', '--out', run, '--steps', '3', '--resume', '--no-progress');
  assert.equal(more.code, 0, more.stderr);
  assert.match(more.stderr, /resumed from .* at step 2\/3/);
  const changed = vss('train', 'captioner', '--out', run, '--steps', '4', '--resume', '--dec-dim', '32');
  assert.equal(changed.code, 1);
  assert.match(changed.stderr, /--dec-dim 32 differs from the run being resumed \(16\)/);
});

test('caption, explain caption and eval captioner on the tiny model produce output of the right form', async () => {
  if (!fs.existsSync(path.join(model, 'model.safetensors'))) vss('train', 'captioner', '--out', run, '--steps', '2', ...TINY);
  const files = await shapePngs(2);
  const json = vss('caption', '--model', model, '--json', ...files);
  assert.equal(json.code, 0, json.stderr);
  const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; caption: string });
  assert.deepEqual(lines.map((l) => l.file), files);
  const tok = WordTokenizer.fromPretrained(model);
  for (const l of lines) {
    assert.deepEqual(Object.keys(l), ['file', 'caption']);
    assert.ok(l.caption.split(/[ ,]+/).filter(Boolean).every((w) => tok.vocab.has(w)), l.caption);
  }
  const beam = vss('caption', '--model', model, '--beams', '2', '--max-tokens', '5', files[0]);
  assert.equal(beam.code, 0, beam.stderr);
  assert.match(beam.stdout, /shape-0\.png: /);
  const sampled = ['--temperature', '0.7', '--top-k', '5', '--seed', '3', '--json', files[0]];
  assert.equal(vss('caption', '--model', model, ...sampled).stdout, vss('caption', '--model', model, ...sampled).stdout, 'sampling is seeded');

  const out = path.join(tmpDir, 'explain.png');
  const ex = vss('explain', 'caption', '--model', model, files[0], '-o', out, '--max-tokens', '6');
  assert.equal(ex.code, 0, ex.stderr);
  const m = /wrote .*explain\.png \((\d+)x(\d+): (\d+) words over a 6x6 patch grid\): /.exec(ex.stdout);
  assert.ok(m, ex.stdout);
  const [width, height, words] = m.slice(1).map(Number);
  assert.ok(words >= 1 && words <= 6, `${words} words`);
  assert.deepEqual(readPngSize(fs.readFileSync(out)), { width, height });
  assert.ok(width >= (words + 1) * 96, `a strip of ${words + 1} cells of ≥ 96 px: ${width}`);

  const ev = vss('eval', 'captioner', '--model', model, '--samples', '5', '--beams', '2', '--examples', '2', '--json');
  assert.equal(ev.code, 0, ev.stderr);
  const r = JSON.parse(ev.stdout);
  assert.equal(r.split, 'heldout');
  assert.equal(r.samples, 5);
  assert.deepEqual(r.held_out, DEFAULT_HOLD_OUT);
  for (const k of ['bleu4', 'exact', 'bleu4_single']) {
    assert.ok(r.greedy[k] >= 0 && r.greedy[k] <= 1 && r.beam[k] >= 0 && r.beam[k] <= 1, k);
  }
  assert.equal(r.beam.beams, 2);
  assert.equal(r.examples.length, 2);
  assert.ok(new RegExp(DEFAULT_HOLD_OUT.join('|')).test(r.examples.map((e: { reference: string }) => e.reference).join(' | ')));
  const text = vss('eval', 'captioner', '--model', model, '--samples', '3', '--beams', '2', '--split', 'test');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /on shapes test \(3 images\)/);
  assert.match(text.stdout, /greedy +\d+\.\d +\d+\.\d/);
  assert.match(text.stdout, /beam 2 +\d+\.\d +\d+\.\d/);
});

test('the held-out split holds out the combinations: none in training captions, one in every held-out scene', () => {
  const info = JSON.parse(fs.existsSync(path.join(model, 'training_data.json'))
    ? fs.readFileSync(path.join(model, 'training_data.json'), 'utf8')
    : JSON.stringify({ seed: 0, size: 32, maxObjects: 3, holdOut: DEFAULT_HOLD_OUT.map(parseHoldOut) }));
  const holdOut = info.holdOut as AttributeCombo[];
  assert.deepEqual(holdOut, DEFAULT_HOLD_OUT.map(parseHoldOut));
  const opts = { seed: info.seed, size: info.size, maxObjects: info.maxObjects, holdOut };
  const train = new ShapesDataset({ ...opts, split: 'train', length: 3000 });
  const pairs = DEFAULT_HOLD_OUT.map((h) => new RegExp(`\\b${h}\\b`)); // a mention is "[size] colour shape"
  const seen = { purple: 0, star: 0 };
  for (let i = 0; i < train.length; i++) {
    const s = train.scene(i);
    assert.ok(!sceneContains(s, holdOut), `train ${i}: ${s.caption}`);
    for (const p of pairs) assert.ok(!p.test(s.caption), `train ${i}: ${s.caption}`);
    if (/purple/.test(s.caption)) seen.purple++;
    if (/star/.test(s.caption)) seen.star++;
  }
  assert.ok(seen.purple > 50 && seen.star > 50, 'the parts of a held-out combination are still seen');
  const held = new ShapesDataset({ ...opts, split: 'heldout', length: 200 });
  for (let i = 0; i < held.length; i++) assert.ok(sceneContains(held.scene(i), holdOut), held.scene(i).caption);
  assert.deepEqual(parseHoldOut('large red square top left'), { position: 'top left', size: 'large', colour: 'red', shape: 'square' });
  assert.throws(() => parseHoldOut('mauve star'), /'mauve' is not a colour/);
});

test('valid-caption references: the drawn caption first, every size / order / relation variant, all distinct', () => {
  const ds = new ShapesDataset({ length: 200, seed: 3 });
  let three = 0;
  for (let i = 0; i < ds.length; i++) {
    const scene = ds.scene(i);
    const v = shapesCaptionVariants(scene);
    assert.equal(v[0], scene.caption);
    assert.equal(new Set(v).size, v.length);
    const n = scene.objects.length;
    if (n === 1) assert.equal(v.length, 2); // size said or not
    if (n === 2) assert.ok(v.length >= 2 * 4 && v.length <= 2 * 2 * 4, `${v.length}`);
    if (n === 3) { three++; assert.ok(v.length >= 6 * 8 && v.length <= 6 * 4 * 8, `${v.length}`); }
    // Dropping every size mention gives one of them.
    assert.ok(v.includes(captionOf({ ...scene, objects: scene.objects.map((o) => ({ ...o, sizeInCaption: false })) })));
  }
  assert.ok(three > 20);
  assert.equal(FASHION_MNIST_DESCRIPTIONS.length, 10);
  assert.equal(FASHION_MNIST_DESCRIPTIONS[9][0], 'an ankle boot');
  assert.equal(FASHION_MNIST_DESCRIPTIONS[1][0], 'a pair of trousers');
});

test('bad input fails with a one-line error and a hint', async () => {
  const unknown = vss('train', 'captioner', '--dataset', 'cifar', '--out', path.join(tmpDir, 'x'));
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /argument 'cifar' is invalid\. Allowed choices are shapes, fashion-mnist/);
  const patch = vss('train', 'captioner', '--out', path.join(tmpDir, 'y'), '--patch', '5', '--steps', '1');
  assert.equal(patch.code, 1);
  assert.match(patch.stderr, /^vss: --patch 5 does not divide the 6-pixel output of the conv stem\nhint: a stem of 3 layers leaves 6×6: use a --patch that divides 6: 1, 2, 3/);
  const plain = vss('train', 'captioner', '--out', path.join(tmpDir, 'y'), '--enc-stem', 'none', '--patch', '5');
  assert.match(plain.stderr, /^vss: --patch 5 does not divide the 48-pixel images\nhint: use a --patch that divides 48: 2, 3, 4, 6, 8, 12, 16, 24/);
  const stem = vss('train', 'captioner', '--out', path.join(tmpDir, 'y'), '--enc-stem', '8,0');
  assert.match(stem.stderr, /--enc-stem must be comma-separated integers ≥ 1 \(or 'none'\), got '8,0'/);
  const small = vss('train', 'captioner', '--out', path.join(tmpDir, 'y'), '--image-size', '16', '--patch', '4');
  assert.match(small.stderr, /--image-size 16 is too small for shapes/);
  const heads = vss('train', 'captioner', '--out', path.join(tmpDir, 'y'), '--dec-dim', '30', '--dec-heads', '4');
  assert.match(heads.stderr, /--dec-dim 30 is not divisible by --dec-heads 4/);
  const holdOut = vss('train', 'captioner', '--out', path.join(tmpDir, 'y'), '--hold-out', 'purple starfish');
  assert.match(holdOut.stderr, /--hold-out: cannot read 'purple starfish'/);
  assert.ok(!fs.existsSync(path.join(tmpDir, 'y', 'checkpoint.safetensors')));

  const missing = vss('caption', '--model', path.join(tmpDir, 'no-such-model'), 'a.png');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^vss: no model folder at .*no-such-model\nhint: /);
  if (fs.existsSync(path.join(model, 'model.safetensors'))) {
    const noImage = vss('caption', '--model', model, path.join(tmpDir, 'nothing.png'));
    assert.equal(noImage.code, 1);
    assert.match(noImage.stderr, /^vss: no image at .*nothing\.png/);
    const junk = path.join(tmpDir, 'junk.png');
    fs.writeFileSync(junk, 'not an image');
    const bad = vss('caption', '--model', model, junk);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /hint: give a PNG, JPEG or WebP image/);
    const both = vss('caption', '--model', model, '--beams', '3', '--top-p', '0.9', junk);
    assert.match(both.stderr, /--beams cannot be combined with sampling/);
    const long = vss('caption', '--model', model, '--max-tokens', '100', junk);
    assert.match(long.stderr, /^vss: --max-tokens 100 is more than this captioner can write \(31: /);
    const split = vss('eval', 'captioner', '--model', model, '--split', 'validation');
    assert.match(split.stderr, /unknown split 'validation' for shapes/);
  }
  if (!fs.existsSync(path.join(root, 'models', 'captioner-shapes'))) {
    const bundled = vss('caption', 'a.png');
    assert.equal(bundled.code, 1);
    assert.match(bundled.stderr, /^vss: the bundled captioner is missing .*\nhint: train one with `vss train captioner --export models\/captioner-shapes`/);
  }
  const notAModel = path.join(tmpDir, 'not-a-model');
  fs.mkdirSync(notAModel, { recursive: true });
  const empty = vss('caption', '--model', notAModel, 'a.png');
  assert.match(empty.stderr, /^vss: cannot load the vocabulary in .*not-a-model: no vocab\.json/);
});

test('train captioner on fashion-mnist: per-class descriptions, a test split and no held-out one', async (t) => {
  try {
    new FashionMnist({ split: 'test', limit: 1 });
  } catch {
    return t.skip('Fashion-MNIST is not installed');
  }
  const fm = path.join(tmpDir, 'fm');
  const r = vss('train', 'captioner', '--dataset', 'fashion-mnist', '--out', fm, '--steps', '1', ...TINY.filter((a, i, all) => a !== '--patch' && all[i - 1] !== '--patch'), '--patch', '7');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /test: BLEU-4 \d+\.\d, exact \d+\.\d% — after 1 steps/);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(fm, 'model', 'training_data.json'), 'utf8')), { dataset: 'fashion-mnist' });
  const vocab = WordTokenizer.fromPretrained(path.join(fm, 'model'));
  for (const w of ['ankle', 'boot', 'trousers', 't-shirt', 'sneaker']) assert.ok(vocab.vocab.has(w), w);
  const ev = vss('eval', 'captioner', '--model', path.join(fm, 'model'), '--samples', '3', '--beams', '2', '--json');
  assert.equal(ev.code, 0, ev.stderr);
  assert.equal(JSON.parse(ev.stdout).split, 'test');
  const held = vss('eval', 'captioner', '--model', path.join(fm, 'model'), '--split', 'heldout');
  assert.match(held.stderr, /^vss: Fashion-MNIST has no heldout split\nhint: use --split test/);
  const holdOut = vss('train', 'captioner', '--dataset', 'fashion-mnist', '--out', path.join(tmpDir, 'fm2'), '--hold-out', 'red star');
  assert.match(holdOut.stderr, /--hold-out is for --dataset shapes/);
  const style = vss('train', 'captioner', '--dataset', 'fashion-mnist', '--out', path.join(tmpDir, 'fm2'), '--captions', 'random');
  assert.match(style.stderr, /--captions is for --dataset shapes/);
});

const BUNDLED_CAPTIONER = path.join(root, 'models', 'captioner-shapes');

test('the bundled captioner: `vss caption` with no --model describes a Shapes scene in the dataset grammar',
  { skip: !fs.existsSync(BUNDLED_CAPTIONER) && 'models/captioner-shapes not present' }, async () => {
    const [file] = await shapePngs(1);
    const r = vss('caption', '--json', file);
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.stdout.trim().split('\n')[0]) as { file: string; caption: string };
    assert.equal(line.file, file);
    // Every caption the grammar writes names at least one colour and one shape.
    assert.match(line.caption, /^an? .*\b(red|orange|yellow|green|cyan|blue|purple|pink|white|brown)\b.*\b(circle|square|triangle|star|diamond|hexagon|cross)\b/);
  });
