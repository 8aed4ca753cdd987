/** Image folders: captions (jsonl and .txt), crops, flips, normalisation, broken files skipped and counted. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { DataLoader, ImageFolder, datasetFromName } from '../src/data/index.js';

let root = '';

/** A w×h RGB image whose pixel (x, y) is colour(x, y). */
async function writeImage(path: string, w: number, h: number, colour: (x: number, y: number) => number[], format: 'png' | 'jpeg' = 'png') {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set(colour(x, y), (y * w + x) * 3);
  const img = sharp(raw, { raw: { width: w, height: h, channels: 3 } });
  await (format === 'png' ? img.png() : img.jpeg({ quality: 95 })).toFile(path);
}

const RED = [255, 0, 0], BLUE = [0, 0, 255];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'vss-folder-'));
  // Folder "txt": captions in .txt files beside the images.
  const txt = join(root, 'txt');
  mkdirSync(join(txt, 'nested'), { recursive: true });
  await writeImage(join(txt, 'wide.png'), 32, 16, (x) => (x < 8 ? BLUE : x < 24 ? RED : BLUE)); // red middle
  await writeImage(join(txt, 'halves.png'), 16, 16, (x) => (x < 8 ? RED : BLUE));
  await writeImage(join(txt, 'nested', 'green.jpg'), 24, 24, () => [0, 200, 0], 'jpeg');
  await sharp(Buffer.alloc(20 * 20, 128), { raw: { width: 20, height: 20, channels: 1 } }).png().toFile(join(txt, 'grey.png'));
  await sharp({ create: { width: 16, height: 16, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .png().toFile(join(txt, 'clear.png'));
  writeFileSync(join(txt, 'broken.png'), 'this is not a png at all');
  writeFileSync(join(txt, 'wide.txt'), 'a red stripe\n');
  writeFileSync(join(txt, 'halves.txt'), 'red on the left, blue on the right');
  writeFileSync(join(txt, 'nested', 'green.txt'), 'green');
  writeFileSync(join(txt, 'clear.txt'), 'nothing');
  // Folder "jsonl": captions.jsonl with one bad line and one entry for a file that is not there.
  const jsonl = join(root, 'jsonl');
  mkdirSync(jsonl);
  await writeImage(join(jsonl, 'a.png'), 16, 16, () => RED);
  await writeImage(join(jsonl, 'b.png'), 16, 16, () => BLUE);
  writeFileSync(join(jsonl, 'b.txt'), 'ignored: captions.jsonl wins');
  writeFileSync(join(jsonl, 'captions.jsonl'), [
    JSON.stringify({ file: 'a.png', caption: 'all red' }),
    '{ not json',
    JSON.stringify({ file: 'b.png', caption: 'all blue' }),
    JSON.stringify({ file: 'gone.png', caption: 'missing' }),
  ].join('\n'));
});

after(() => rmSync(root, { recursive: true, force: true }));

/** RGB in [0, 255] at (x, y) of a normalised [-1, 1] CHW image. */
function rgbAt(image: Float32Array, size: number, x: number, y: number): number[] {
  return [0, 1, 2].map((c) => Math.round(((image[c * size * size + y * size + x] + 1) / 2) * 255));
}

test('image folder: a broken image is skipped and counted, the rest load with their captions', async () => {
  const ds = await ImageFolder.open({ dir: join(root, 'txt'), size: 16 });
  assert.equal(ds.length, 5);
  assert.deepEqual(ds.skipped.map((s) => s.file), ['broken.png']);
  assert.ok(ds.skipped[0].reason.length > 0);
  assert.equal(ds.uncaptioned, 1, 'grey.png has no caption');
  assert.match(ds.report(), /5 images from .*1 skipped \(broken\.png: .*1 without a caption/);
  const byFile = new Map(Array.from({ length: ds.length }, (_, i) => [ds.file(i), ds.get(i)]));
  assert.deepEqual([...byFile.keys()], ['clear.png', 'grey.png', 'halves.png', 'nested/green.jpg', 'wide.png']);
  assert.equal(byFile.get('wide.png')!.caption, 'a red stripe');
  assert.equal(byFile.get('nested/green.jpg')!.caption, 'green');
  assert.equal(byFile.get('grey.png')!.caption, '');

  for (const s of byFile.values()) {
    assert.deepEqual(s.shape, [3, 16, 16]);
    assert.equal(s.label, -1);
    assert.ok(s.image.every((v) => v >= -1 && v <= 1));
  }
  // 32×16 scaled to shortest side 16 is unchanged; the centre crop is the red middle.
  const wide = byFile.get('wide.png')!.image;
  for (const x of [0, 8, 15]) assert.deepEqual(rgbAt(wide, 16, x, 5), RED);
  assert.deepEqual(rgbAt(byFile.get('grey.png')!.image, 16, 3, 3), [128, 128, 128], 'grey becomes RGB');
  assert.deepEqual(rgbAt(byFile.get('clear.png')!.image, 16, 3, 3), [255, 255, 255], 'transparency on white');
  const green = rgbAt(byFile.get('nested/green.jpg')!.image, 16, 8, 8);
  assert.ok(green[0] < 20 && Math.abs(green[1] - 200) < 10 && green[2] < 20, `jpeg green ${green}`);
});

test('image folder: captions.jsonl wins; bad lines and missing files are reported, not fatal', async () => {
  const ds = await ImageFolder.open({ dir: join(root, 'jsonl'), size: 8 });
  assert.equal(ds.length, 2);
  assert.deepEqual([ds.get(0).caption, ds.get(1).caption], ['all red', 'all blue']);
  assert.deepEqual(ds.skipped.map((s) => s.file), ['captions.jsonl:2', 'gone.png']);
  assert.deepEqual(rgbAt(ds.get(0).image, 8, 4, 4), RED, 'downscaled to 8×8');
  const named = await datasetFromName(join(root, 'jsonl'), { size: 8 });
  assert.equal(named.length, 2);
  await assert.rejects(ImageFolder.open({ dir: join(root, 'nope') }), /image folder not found/);
});

test('image folder: random crops and flips are seeded by (seed, epoch, index)', async () => {
  const ds = await ImageFolder.open({ dir: join(root, 'txt'), size: 16, crop: 'random', flip: true, seed: 1 });
  const halves = [...Array(ds.length).keys()].find((i) => ds.file(i) === 'halves.png')!;
  const leftColours = new Set<string>();
  for (let epoch = 0; epoch < 12; epoch++) {
    const s = ds.get(halves, { epoch });
    assert.deepEqual(s.image, ds.get(halves, { epoch }).image, 'same (seed, epoch, index), same pixels');
    const left = rgbAt(s.image, 16, 0, 0), right = rgbAt(s.image, 16, 15, 0);
    assert.notDeepEqual(left, right);
    leftColours.add(left.join());
  }
  assert.equal(leftColours.size, 2, 'flipped in some epochs, not in others');
  // Random crops of the 32×16 image land at several offsets.
  const wide = [...Array(ds.length).keys()].find((i) => ds.file(i) === 'wide.png')!;
  const firstColumns = new Set<string>();
  for (let epoch = 0; epoch < 12; epoch++) firstColumns.add(Array.from({ length: 16 }, (_, x) => rgbAt(ds.get(wide, { epoch }).image, 16, x, 0)[0]).join());
  assert.ok(firstColumns.size > 2, `${firstColumns.size} distinct crops`);
});

test('image folder: worker-built batches equal in-process ones (pixels shared, not re-decoded)', async () => {
  const ds = await ImageFolder.open({ dir: join(root, 'txt'), size: 16, crop: 'random', flip: true });
  const opts = { batchSize: 2, seed: 5, epochs: 2 };
  const collect = async (loader: DataLoader) => {
    const out: unknown[] = [];
    try {
      for await (const b of loader) out.push([b.indices, b.captions, [...b.images.toFloat32Array()]]);
    } finally {
      await loader.close();
    }
    return out;
  };
  const inProcess = await collect(new DataLoader(ds, opts));
  const workers = new DataLoader(ds, { ...opts, workers: 1 });
  assert.equal(workers.mode, 'workers');
  assert.deepEqual(await collect(workers), inProcess);
});
