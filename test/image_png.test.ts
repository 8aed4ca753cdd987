import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { fromTypedArray } from '../src/engine/index.js';
import {
  type GenerationParameters, crc32, decodeImage, encodePng, formatA1111Parameters, insertPngText, loadImageTensor,
  parseA1111Parameters, parsePngChunks, readGenerationParameters, readPngText, saveImage, saveTensorImage,
  tensorToPixels,
} from '../src/image/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// Compiled tests run from dist/test; the repository root is two levels up.
const ROOT = path.resolve(here, '..', '..');

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-image-png-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));
const tmp = (name: string) => path.join(tmpDir, name);

const ascii = (s: string) => new TextEncoder().encode(s);

/** A tiny RGB image: red, green / blue, white. */
const TINY = { width: 2, height: 2, channels: 3 as const, data: Uint8Array.of(255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255) };

const FULL: GenerationParameters = {
  prompt: 'a small red circle above a large blue square, watercolour, "soft" light',
  negativePrompt: 'blurry, low quality',
  steps: 20,
  sampler: 'Euler a',
  cfgScale: 7.5,
  seed: 42,
  width: 512,
  height: 256,
  model: 'vss-shapes-64',
  extra: { 'Model hash': 'abc123', Schedule: 'cosine, shifted', Note: 'key: value', Quote: '"quoted"' },
};

test('crc32 matches the standard check values', () => {
  assert.equal(crc32(ascii('123456789')), 0xcbf43926);
  assert.equal(crc32(ascii('')), 0);
  assert.equal(crc32(ascii('IEND')), 0xae426082); // the CRC every PNG ends with
  // A running CRC over two pieces equals the CRC of the whole.
  assert.equal(crc32(ascii('6789'), crc32(ascii('12345'))), 0xcbf43926);
});

test('A1111 parameters: format → parse gives the input back', () => {
  const text = formatA1111Parameters(FULL);
  assert.equal(text.split('\n')[0], FULL.prompt);
  assert.equal(text.split('\n')[1], 'Negative prompt: blurry, low quality');
  assert.match(text.split('\n')[2], /^Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x256, Model: vss-shapes-64, /);
  assert.deepEqual(parseA1111Parameters(text), FULL);

  const unicode: GenerationParameters = {
    prompt: 'un chat 🐱 sur la table, très détaillé,\nsecond line: with a colon',
    negativePrompt: 'flou, 低品質\nand more',
    steps: 1, sampler: 'DDIM', cfgScale: 1, seed: 4294967295, width: 28, height: 28, model: 'módel, v2', extra: {},
  };
  assert.deepEqual(parseA1111Parameters(formatA1111Parameters(unicode)), unicode);
});

test('A1111 parameters: parse a hand-written string and a prompt-only text', () => {
  const p = parseA1111Parameters(
    'masterpiece, cat\nNegative prompt: dog\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 123, Size: 640x480, ' +
    'Model hash: 31e35c80fc, Model: sd_xl_base, Denoising strength: 0.7\n');
  assert.equal(p.prompt, 'masterpiece, cat');
  assert.equal(p.negativePrompt, 'dog');
  assert.equal(p.steps, 30);
  assert.equal(p.sampler, 'DPM++ 2M Karras');
  assert.equal(p.cfgScale, 6.5);
  assert.equal(p.seed, 123);
  assert.equal(p.width, 640);
  assert.equal(p.height, 480);
  assert.equal(p.model, 'sd_xl_base');
  assert.deepEqual(p.extra, { 'Model hash': '31e35c80fc', 'Denoising strength': '0.7' });

  assert.deepEqual(parseA1111Parameters('just a prompt, with commas'), { prompt: 'just a prompt, with commas', negativePrompt: '', extra: {} });
});

test('PNG text chunks: parameters written, read back and parsed; unicode goes to iTXt', async () => {
  const png = await encodePng(TINY, { parameters: FULL, text: { Software: 'vss' } });
  const types = parsePngChunks(png).map((c) => c.type);
  assert.deepEqual(types.slice(0, 3), ['IHDR', 'tEXt', 'tEXt']);
  assert.equal(types[types.length - 1], 'IEND');
  const text = readPngText(png);
  assert.equal(text.Software, 'vss');
  assert.deepEqual(parseA1111Parameters(text.parameters), FULL);

  const unicode = { ...FULL, prompt: 'ein Hund 🐶, 一只狗' };
  const png2 = await encodePng(TINY, { parameters: unicode });
  assert.ok(parsePngChunks(png2).some((c) => c.type === 'iTXt'));
  assert.deepEqual(parseA1111Parameters(readPngText(png2).parameters), unicode);

  // The image is still a valid PNG to a real decoder.
  const meta = await sharp(png2).metadata();
  assert.equal(meta.width, 2);

  // Writing the same keyword again replaces, rather than duplicates, the chunk.
  const png3 = insertPngText(png2, { parameters: 'replaced\nSteps: 5, Sampler: x, Seed: 1' });
  assert.equal(parsePngChunks(png3).filter((c) => c.type === 'iTXt' || c.type === 'tEXt').length, 1);
  assert.equal(parseA1111Parameters(readPngText(png3).parameters).steps, 5);
});

test('corrupt and truncated PNGs give errors naming the file', async () => {
  const good = await encodePng(TINY, { parameters: FULL });
  const badCrc = Buffer.from(good);
  badCrc[45] ^= 0xff; // inside the first text chunk's data
  assert.throws(() => readPngText(badCrc, 'broken.png'), /broken\.png is corrupt: CRC mismatch/);
  assert.throws(() => readPngText(good.subarray(0, good.length - 20), 'short.png'), /short\.png is truncated/);
  assert.throws(() => readPngText(ascii('hello'), 'hello.png'), /hello\.png is not a PNG/);

  const file = tmp('corrupt.png');
  fs.writeFileSync(file, Buffer.concat([good.subarray(0, 30), Buffer.alloc(40, 7)]));
  await assert.rejects(decodeImage(file), (err: Error) => err.message.includes(`cannot decode image ${file}`));
  await assert.rejects(decodeImage(tmp('missing.png')), /image not found: .*missing\.png/);
  await assert.rejects(decodeImage(ascii('not an image'), { name: 'upload.jpg' }), /cannot decode image upload\.jpg/);
});

test('decode to CHW / HWC floats in [0,1] or [-1,1]', async () => {
  const file = tmp('tiny.png');
  await saveImage(file, TINY);
  const chw = await decodeImage(file);
  assert.deepEqual([chw.width, chw.height, chw.channels, chw.layout], [2, 2, 3, 'chw']);
  // Red plane first: red pixel, then blue-channel plane last.
  assert.deepEqual([...chw.data.subarray(0, 4)], [1, 0, 0, 1]);
  assert.deepEqual([...chw.data.subarray(8, 12)], [0, 0, 1, 1]);
  const hwc = await decodeImage(file, { layout: 'hwc', range: 'signed' });
  assert.deepEqual([...hwc.data.subarray(0, 6)], [1, -1, -1, -1, 1, -1]);
  const grey = await loadImageTensor(file, { channels: 1 });
  assert.deepEqual(grey.shape, [1, 2, 2]);
  assert.equal(grey.toFloat32Array()[3], 1); // white stays white

  // JPEG and WebP decode as well.
  for (const ext of ['jpg', 'webp']) {
    const f = tmp(`tiny.${ext}`);
    await saveImage(f, TINY);
    const t = await loadImageTensor(f, { layout: 'hwc' });
    assert.deepEqual(t.shape, [2, 2, 3]);
  }
});

test('tensors encode clamped and rounded; batches become a grid; writes are atomic', async () => {
  const t = fromTypedArray(Float32Array.of(-1, 0, 1, 5, -0.5, 0.5, 2, -3, 0, 0, 0, 0), [3, 2, 2]);
  const [p] = tensorToPixels(t); // signed range by default
  assert.deepEqual([p.width, p.height, p.channels], [2, 2, 3]);
  assert.deepEqual([...p.data.subarray(0, 6)], [0, 64, 128, 128, 191, 128]);
  assert.deepEqual([...tensorToPixels(t, { range: 'unit' })[0].data.subarray(0, 3)], [0, 0, 0]);

  const nested = path.join(tmpDir, 'out', 'deeper', 'sample.png');
  await saveTensorImage(nested, t, { parameters: { prompt: 'x', seed: 1, steps: 2 } });
  assert.equal(readGenerationParameters(nested)?.parsed.seed, 1);
  assert.deepEqual(fs.readdirSync(path.dirname(nested)), ['sample.png']); // no temp file left behind

  const batch = fromTypedArray(new Float32Array(4 * 1 * 8 * 8).fill(0.5), [4, 1, 8, 8]);
  const gridFile = tmp('batch.png');
  await saveTensorImage(gridFile, batch, { grid: { padding: 2, columns: 2 } });
  const meta = await sharp(gridFile).metadata();
  assert.deepEqual([meta.width, meta.height], [2 * 8 + 3 * 2, 2 * 8 + 3 * 2]);
});

test('vss info prints the parameters of a generated PNG', async () => {
  const file = tmp('generated.png');
  await saveImage(file, TINY, { parameters: { ...FULL, prompt: 'a green triangle left of a yellow star, 🌟' } });
  const cli = path.join(ROOT, 'bin', 'vss.js');
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'info', ...args], { encoding: 'utf8' });

  const plain = run(file);
  assert.equal(plain.status, 0, plain.stderr);
  assert.match(plain.stdout, /^prompt +a green triangle left of a yellow star, 🌟$/m);
  assert.match(plain.stdout, /^seed +42$/m);
  assert.match(plain.stdout, /^Schedule +cosine, shifted$/m);

  const json = run(file, '--json');
  assert.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { parameters: GenerationParameters; width: number };
  assert.equal(parsed.parameters.prompt, 'a green triangle left of a yellow star, 🌟');
  assert.equal(parsed.width, 2);

  const raw = run(file, '--raw');
  assert.equal(raw.stdout.trimEnd(), readGenerationParameters(file)?.raw);

  const bare = tmp('bare.png');
  await saveImage(bare, TINY);
  const none = run(bare);
  assert.notEqual(none.status, 0);
  assert.match(none.stderr, /has no 'parameters' text chunk/);
});
