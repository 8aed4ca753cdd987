/** IDX parsing (plain, gzip, corrupt) and the Fashion-MNIST dataset built on it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  parseIdx, readIdx, encodeIdx, IdxFormatError, FashionMnist, DatasetNotFoundError, FASHION_MNIST_SYSTEM_DIR,
  fashionMnistCaption, withArticle, DataLoader, type IdxArray,
} from '../src/data/index.js';
import { Rng } from '../src/engine/rng.js';

/** Header bytes for an IDX file of the given type code and dims. */
function header(code: number, dims: number[]): number[] {
  const out = [0, 0, code, dims.length];
  for (const d of dims) out.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return out;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'vss-idx-'));
}

test('IDX: hand-built u8 and big-endian i16/f32 files parse, plain and gzip', () => {
  const u8 = Uint8Array.from([...header(0x08, [2, 3]), 1, 2, 3, 4, 5, 250]);
  for (const bytes of [u8, new Uint8Array(gzipSync(u8))]) {
    const a = parseIdx(bytes, 'u8.idx');
    assert.equal(a.dtype, 'u8');
    assert.deepEqual(a.shape, [2, 3]);
    assert.deepEqual([...a.data], [1, 2, 3, 4, 5, 250]);
  }
  // -2 = ff fe, 258 = 01 02 (big-endian)
  const i16 = parseIdx(Uint8Array.from([...header(0x0b, [2]), 0xff, 0xfe, 0x01, 0x02]));
  assert.deepEqual([i16.dtype, [...i16.data]], ['i16', [-2, 258]]);
  // 1.5f = 3f c0 00 00
  const f32 = parseIdx(Uint8Array.from([...header(0x0d, [1, 1]), 0x3f, 0xc0, 0, 0]));
  assert.deepEqual([f32.dtype, [...f32.data]], ['f32', [1.5]]);
});

test('IDX: every type round-trips through encodeIdx and readIdx (plain and .gz on disk)', () => {
  const dir = tempDir();
  try {
    const arrays: IdxArray[] = [
      { dtype: 'u8', shape: [2, 2], data: Uint8Array.from([0, 1, 128, 255]) },
      { dtype: 'i8', shape: [3], data: Int8Array.from([-128, 0, 127]) },
      { dtype: 'i16', shape: [2], data: Int16Array.from([-32768, 32767]) },
      { dtype: 'i32', shape: [1, 2], data: Int32Array.from([-2147483648, 123456789]) },
      { dtype: 'f32', shape: [2], data: Float32Array.from([-0.25, 3e38]) },
      { dtype: 'f64', shape: [2, 1, 1], data: Float64Array.from([Math.PI, -1e300]) },
    ];
    for (const arr of arrays) {
      for (const gzip of [false, true]) {
        const path = join(dir, `${arr.dtype}${gzip ? '.gz' : ''}`);
        writeFileSync(path, encodeIdx(arr, { gzip }));
        const back = readIdx(path);
        assert.equal(back.dtype, arr.dtype);
        assert.deepEqual(back.shape, arr.shape);
        assert.deepEqual([...back.data], [...arr.data]);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('IDX: corrupt and truncated files give clear errors that name the file', () => {
  const err = (bytes: number[] | Uint8Array, re: RegExp) =>
    assert.throws(() => parseIdx(Uint8Array.from(bytes), 'bad.idx'), (e: Error) => {
      assert.ok(e instanceof IdxFormatError);
      assert.match(e.message, /^bad\.idx: /);
      assert.match(e.message, re);
      return true;
    });
  err([0x12, 0x34, 0x08, 0x01, 0, 0, 0, 0], /bad magic number 12 34 08 01/);
  err([0, 0, 0x0a, 1, 0, 0, 0, 1, 7], /unsupported IDX type code 0x0a/);
  err([0, 0, 0x08], /too short/);
  err([0, 0, 0x08, 3, 0, 0], /declares 3 dimensions/);
  // The size of the real training images, with most of the payload missing.
  err([...header(0x08, [60000, 28, 28]), ...new Array(1000).fill(0)],
    /truncated: expected 47040000 bytes of image data after the header, found 1000/);
  err([...header(0x08, [4]), 1, 2], /expected 4 bytes of label data after the header, found 2/);
  err([...header(0x0e, [0xffffffff, 0xffffffff, 0xffffffff])], /overflow/);
  err([...header(0x08, [1]), 1, 2], /1 unexpected bytes after/);
  const gz = gzipSync(Uint8Array.from([...header(0x08, [100]), ...new Array(100).fill(3)]));
  err(gz.subarray(0, gz.length - 12), /gzip stream is corrupt or truncated/);

  const dir = tempDir();
  try {
    const path = join(dir, 'train-images-idx3-ubyte');
    writeFileSync(path, Uint8Array.from([...header(0x08, [10, 28, 28]), 1, 2, 3]));
    assert.throws(() => readIdx(path), (e: Error) => e.message.startsWith(`${path}: truncated: expected 7840 bytes`));
    assert.throws(() => readIdx(join(dir, 'missing')), /cannot read IDX file .*missing: ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('captions pick a or an by sound', () => {
  assert.equal(withArticle('ankle boot'), 'an ankle boot');
  assert.equal(withArticle('sneaker'), 'a sneaker');
  assert.equal(withArticle('orange star'), 'an orange star');
  assert.equal(withArticle('uniform'), 'a uniform');
  const rng = new Rng(3);
  for (let k = 0; k < 20; k++) {
    assert.match(fashionMnistCaption(9, rng), /(^|\s)an ankle boot$/);
    assert.match(fashionMnistCaption(7, rng), /(^|\s)a sneaker$/);
  }
});

/** A tiny stand-in for the real files: 3 test images of labels 9, 0, 7, one file plain, one gzipped. */
function writeTinyFashion(dir: string): Uint8Array {
  const pixels = new Uint8Array(3 * 28 * 28);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7) % 256;
  writeFileSync(join(dir, 't10k-images-idx3-ubyte'), encodeIdx({ dtype: 'u8', shape: [3, 28, 28], data: pixels }));
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte.gz'), encodeIdx({ dtype: 'u8', shape: [3], data: Uint8Array.from([9, 0, 7]) }, { gzip: true }));
  return pixels;
}

test('Fashion-MNIST from a user folder: ranges, padding, resizing, seeded captions', () => {
  const dir = tempDir();
  try {
    const pixels = writeTinyFashion(dir);
    const ds = new FashionMnist({ dir, split: 'test' });
    assert.equal(ds.length, 3);
    const s = ds.get(0);
    assert.deepEqual(s.shape, [1, 28, 28]);
    assert.equal(s.label, 9);
    assert.ok(Math.abs(s.image[5] - ((pixels[5] / 255) * 2 - 1)) < 1e-6);
    assert.match(s.caption, /an ankle boot$/);
    assert.equal(ds.get(0).caption, s.caption, 'the caption is a function of (seed, epoch, index)');

    const unit = new FashionMnist({ dir, split: 'test', range: '[0,1]' }).get(1).image;
    assert.ok(Math.abs(unit[100] - pixels[784 + 100] / 255) < 1e-6);

    const padded = new FashionMnist({ dir, split: 'test', size: 32 }).get(0);
    assert.deepEqual(padded.shape, [1, 32, 32]);
    assert.equal(padded.image[0], -1, 'padding is background');
    assert.equal(padded.image[2 * 32 + 2], s.image[0], '28×28 sits in the middle');

    const resized = new FashionMnist({ dir, split: 'test', size: 14, fit: 'resize' }).get(0);
    assert.deepEqual(resized.shape, [1, 14, 14]);
    assert.ok(resized.image.every((v) => v >= -1 && v <= 1));

    // Several templates appear across indices and epochs, always ending in the noun.
    const captions = new Set<string>();
    for (let epoch = 0; epoch < 20; epoch++) captions.add(ds.get(2, { epoch }).caption);
    assert.ok(captions.size >= 3, [...captions].join(' | '));
    for (const c of captions) assert.match(c, /a sneaker$/);

    assert.throws(() => new FashionMnist({ dir, split: 'test', size: 20 }), /use fit 'resize'/);
    assert.throws(() => ds.get(3), RangeError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Fashion-MNIST in loader workers: shared pixels, same batches as in-process', async () => {
  const dir = tempDir();
  try {
    writeTinyFashion(dir);
    const ds = new FashionMnist({ dir, split: 'test', size: 32 });
    const run = async (workers: number) => {
      const loader = new DataLoader(ds, { batchSize: 2, seed: 1, epochs: 2, workers });
      const out: unknown[] = [];
      try {
        for await (const b of loader) out.push([b.indices, b.captions, [...b.labels.data as Int32Array], [...b.images.toFloat32Array()]]);
      } finally {
        await loader.close();
      }
      return out;
    };
    const inProcess = await run(0);
    assert.equal(inProcess.length, 4);
    assert.deepEqual(await run(1), inProcess);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Fashion-MNIST missing: the error says how to get it', () => {
  const dir = tempDir();
  try {
    assert.throws(() => new FashionMnist({ dir, split: 'train' }), (e: Error) => {
      assert.ok(e instanceof DatasetNotFoundError);
      assert.match(e.message, /train-images-idx3-ubyte\[\.gz\] and train-labels-idx1-ubyte\[\.gz\]/);
      assert.match(e.hint, /apt-get install dataset-fashion-mnist/);
      assert.match(e.hint, /--data <dir>/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Fashion-MNIST real files: test split is 10000 × 28 × 28 with 1000 per class',
  { skip: !existsSync(FASHION_MNIST_SYSTEM_DIR) && `${FASHION_MNIST_SYSTEM_DIR} not installed` }, () => {
    const ds = new FashionMnist({ split: 'test' });
    assert.equal(ds.length, 10000);
    assert.deepEqual(ds.get(0).shape, [1, 28, 28]);
    assert.equal(ds.pixels(9999).length, 28 * 28);
    assert.deepEqual(ds.histogram(), new Array(10).fill(1000));
    const img = ds.get(0).image;
    assert.ok(img.some((v) => v > 0.5) && img.some((v) => v === -1), 'real pixel content in [-1, 1]');
  });
