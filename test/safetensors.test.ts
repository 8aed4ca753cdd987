import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromTypedArray, type Tensor } from '../src/engine/index.js';
import { SafetensorsFile, readSafetensors, releaseMappedWeights, writeSafetensors } from '../src/io/safetensors.js';
import { releaseMappedPages } from '../src/engine/backend/native.js';
import { denseElements } from '../src/nn/storage.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// Compiled tests run from dist/test; fixtures stay in the source tree.
const FIXTURES = path.resolve(here, '..', '..', 'test', 'fixtures', 'io');

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-safetensors-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));
let counter = 0;
const tmpPath = (name = 'x.safetensors') => path.join(tmpDir, `${counter++}-${name}`);

/** Build a safetensors file from a header object and a raw data section. */
function buildFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function writeBytes(bytes: Uint8Array, name = 'hand.safetensors'): string {
  const p = tmpPath(name);
  fs.writeFileSync(p, bytes);
  return p;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function values(t: Tensor): unknown[] {
  return Array.from(denseElements(t) as ArrayLike<unknown>);
}

test('round trip of every dtype, metadata, empty and scalar tensors', () => {
  const tensors = new Map<string, Tensor>([
    ['f32', fromTypedArray(new Float32Array([1.5, -2, 3.25, Infinity, -0, 1e-30]), [2, 3], 'f32')],
    // 16-bit tensors are bit patterns: include NaN and subnormal patterns, which must survive untouched.
    ['f16', fromTypedArray(new Uint16Array([0x3c00, 0x7e00, 0x0001, 0xfbff]), [4], 'f16')],
    ['bf16', fromTypedArray(new Uint16Array([0x3f80, 0xc000, 0x7fc1, 0x0000]), [2, 2], 'bf16')],
    ['i32', fromTypedArray(new Int32Array([-2147483648, 2147483647, 0]), [3], 'i32')],
    ['i64', fromTypedArray(new BigInt64Array([-(2n ** 63n), 2n ** 62n + 7n, 49406n]), [3, 1], 'i64')],
    ['bool', fromTypedArray(new Uint8Array([1, 0, 0, 1, 1]), [5], 'bool')],
    ['empty', fromTypedArray(new Float32Array(0), [0, 3], 'f32')],
    ['scalar', fromTypedArray(new Float32Array([42]), [], 'f32')],
  ]);
  const p = tmpPath();
  writeSafetensors(p, tensors, { format: 'pt', note: 'ünïcødé' });

  const raw = fs.readFileSync(p);
  const headerLen = Number(raw.readBigUInt64LE(0));
  assert.equal((8 + headerLen) % 8, 0, 'data section is 8-byte aligned');

  const { tensors: back, metadata } = readSafetensors(p);
  assert.deepEqual(metadata, { format: 'pt', note: 'ünïcødé' });
  assert.deepEqual([...back.keys()].sort(), [...tensors.keys()].sort());
  for (const [name, t] of tensors) {
    const u = back.get(name)!;
    assert.equal(u.dtype, t.dtype, name);
    assert.deepEqual([...u.shape], [...t.shape], name);
    assert.deepEqual(values(u), values(t), name);
  }

  // Written in sorted-key order: data offsets increase with the name.
  const file = SafetensorsFile.open(p);
  try {
    const header = JSON.parse(raw.subarray(8, 8 + headerLen).toString('utf8'));
    const order = Object.keys(header).filter((k) => k !== '__metadata__')
      .sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0] || a.localeCompare(b));
    assert.deepEqual(order.filter((k) => header[k].data_offsets[1] > header[k].data_offsets[0]),
      [...order].sort().filter((k) => header[k].data_offsets[1] > header[k].data_offsets[0]));
    assert.deepEqual(file.info('i64'), { fileDtype: 'I64', dtype: 'i64', shape: [3, 1], byteLength: 24 });
    assert.deepEqual(file.metadata, { format: 'pt', note: 'ünïcødé' });
  } finally {
    file.close();
  }
});

test('non-contiguous views are materialised in their own dtype', () => {
  const base = fromTypedArray(new Float32Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), [3, 4], 'f32');
  const transposed = base.transpose(0, 1); // [4, 3]
  const narrowed = base.narrow(1, 1, 2);   // [3, 2], offset 1, row stride 4
  const half = fromTypedArray(new Uint16Array([10, 11, 12, 13, 14, 15]), [2, 3], 'f16').transpose(0, 1);
  const longs = fromTypedArray(new BigInt64Array([1n, 2n, 3n, 4n]), [2, 2], 'i64').transpose(0, 1);
  const tail = base.narrow(0, 1, 2);       // dense but offset 4
  const p = tmpPath();
  writeSafetensors(p, { transposed, narrowed, half, longs, tail });
  const { tensors } = readSafetensors(p);
  assert.deepEqual(values(tensors.get('transposed')!), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
  assert.deepEqual(values(tensors.get('narrowed')!), [1, 2, 5, 6, 9, 10]);
  assert.equal(tensors.get('half')!.dtype, 'f16');
  assert.deepEqual(values(tensors.get('half')!), [10, 13, 11, 14, 12, 15]);
  assert.deepEqual(values(tensors.get('longs')!), [1n, 3n, 2n, 4n]);
  assert.deepEqual(values(tensors.get('tail')!), [4, 5, 6, 7, 8, 9, 10, 11]);
});

test('a hand-built file (unsorted offsets, widening dtypes) is read correctly', () => {
  const f16 = new Uint16Array([0x3c00, 0xc000]);          // 1, -2
  const i64 = new BigInt64Array([5n, -6n]);
  const f64 = new Float64Array([0.5, -1e300]);            // -1e300 overflows f32 to -Inf
  const i8 = new Int8Array([-128, 127, 3]);
  const u8 = new Uint8Array([255, 0, 7]);
  const boolean = new Uint8Array([0, 2, 1]);             // non-zero bytes are true
  const parts = [bytesOf(i64), bytesOf(f16), bytesOf(f64), bytesOf(i8), bytesOf(u8), bytesOf(boolean)];
  const offs: number[] = [];
  let at = 0;
  for (const part of parts) { offs.push(at); at += part.byteLength; }
  const data = new Uint8Array(at);
  parts.forEach((part, i) => data.set(part, offs[i]));
  const header = {
    half: { dtype: 'F16', shape: [2], data_offsets: [offs[1], offs[1] + 4] },
    long: { dtype: 'I64', shape: [1, 2], data_offsets: [offs[0], offs[0] + 16] },
    dbl: { dtype: 'F64', shape: [2], data_offsets: [offs[2], offs[2] + 16] },
    bytes: { dtype: 'I8', shape: [3], data_offsets: [offs[3], offs[3] + 3] },
    ubytes: { dtype: 'U8', shape: [3], data_offsets: [offs[4], offs[4] + 3] },
    mask: { dtype: 'BOOL', shape: [3], data_offsets: [offs[5], offs[5] + 3] },
    nothing: { dtype: 'F32', shape: [2, 0], data_offsets: [0, 0] },
    __metadata__: { who: 'hand' },
  };
  const p = writeBytes(buildFile(header, data));
  const file = SafetensorsFile.open(p);
  try {
    assert.deepEqual(file.keys(), ['half', 'long', 'dbl', 'bytes', 'ubytes', 'mask', 'nothing']);
    assert.deepEqual(file.metadata, { who: 'hand' });
    const half = file.get('half');
    assert.equal(half.dtype, 'f16');
    assert.deepEqual(Array.from(half.toFloat32Array()), [1, -2]);
    assert.deepEqual(values(file.get('long')), [5n, -6n]);
    assert.equal(file.get('dbl').dtype, 'f32');
    assert.deepEqual(values(file.get('dbl')), [0.5, -Infinity]);
    assert.equal(file.get('bytes').dtype, 'i32');
    assert.deepEqual(values(file.get('bytes')), [-128, 127, 3]);
    assert.deepEqual(values(file.get('ubytes')), [255, 0, 7]);
    assert.equal(file.get('mask').dtype, 'bool');
    assert.deepEqual(values(file.get('mask')), [0, 1, 1]);
    assert.deepEqual([...file.get('nothing').shape], [2, 0]);
    assert.throws(() => file.get('absent'), /no tensor named "absent"/);
  } finally {
    file.close();
  }
});

test('corrupt and hostile files give clear errors', () => {
  const ok = { a: { dtype: 'F32', shape: [3, 4], data_offsets: [0, 48] } };
  const data48 = new Uint8Array(48);
  const cases: [string, Uint8Array, RegExp][] = [
    ['shorter than 8 bytes', new Uint8Array(5), /bad\.safetensors: not a safetensors file: 5 bytes/],
    ['huge header length', (() => { const b = new Uint8Array(16); new DataView(b.buffer).setBigUint64(0, 2n ** 60n, true); return b; })(),
      /header length \d+ is larger than the \d+-byte limit/],
    ['header longer than file', (() => { const b = buildFile(ok, data48); new DataView(b.buffer).setBigUint64(0, 1000n, true); return b; })(),
      /header length 1000 is larger than the rest of the file \(\d+ bytes\)/],
    ['bad JSON', buildFile(null, data48, '{"a": {"dtype": "F32",'), /header is not valid UTF-8 JSON/],
    ['JSON array', buildFile([1, 2]), /header must be a JSON object/],
    ['truncated data', buildFile(ok, new Uint8Array(20)),
      /bad\.safetensors is truncated: header says 48 bytes of data \(tensor "a" ends there\), file has 20/],
    ['offsets outside the data', buildFile({ a: { dtype: 'F32', shape: [2], data_offsets: [100, 108] } }, data48),
      /is truncated: header says 108 bytes of data .*file has 48/],
    ['overlapping offsets', buildFile({
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
    }, data48), /tensor "b" bytes \[8, 24\] overlap tensor "a" \[0, 16\]/],
    ['wrong byte count', buildFile({ 'conv.weight': { dtype: 'F32', shape: [3, 4], data_offsets: [0, 100] } }, new Uint8Array(100)),
      /bad\.safetensors: tensor "conv\.weight": data_offsets \[0, 100\] do not match shape \[3, 4\] × F32 \(48 bytes\)/],
    ['reversed offsets', buildFile({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, data48), /tensor "a": data_offsets \[8, 4\] end before they begin/],
    ['unknown dtype', buildFile({ a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, data48),
      /tensor "a": unsupported dtype "F8_E4M3" \(supported: .*BF16/],
    ['negative shape', buildFile({ a: { dtype: 'F32', shape: [-1, 4], data_offsets: [0, 16] } }, data48),
      /tensor "a": shape \[-1,4\] must be a list of non-negative integers/],
    ['non-integer shape', buildFile({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, data48), /shape \[1\.5\] must be/],
    ['offsets not integers', buildFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, '4'] } }, data48), /data_offsets \[0,"4"\] must be two non-negative integers/],
    ['entry not an object', buildFile({ a: 7 }, data48), /tensor "a": entry must be an object/],
    ['metadata not strings', buildFile({ ...ok, __metadata__: { n: 1 } }, data48), /"__metadata__" key "n" must be a string/],
  ];
  for (const [what, bytes, expected] of cases) {
    const p = writeBytes(bytes, 'bad.safetensors');
    assert.throws(() => SafetensorsFile.open(p), expected, what);
  }
  assert.throws(() => SafetensorsFile.open(path.join(tmpDir, 'absent.safetensors')), /ENOENT/);
});

test('a failed write leaves neither a temp file nor a damaged target', () => {
  const p = tmpPath('atomic.safetensors');
  writeSafetensors(p, { keep: fromTypedArray(new Float32Array([1, 2]), [2], 'f32') });
  const before = fs.readFileSync(p);

  // A tensor whose storage cannot be read fails after the temp file is open.
  const good = fromTypedArray(new Float32Array([3]), [1], 'f32');
  const broken = Object.create(good, { data: { get() { throw new Error('storage exploded'); } } }) as Tensor;
  assert.throws(() => writeSafetensors(p, { a: good, b: broken }), /storage exploded/);
  assert.deepEqual(fs.readFileSync(p), before, 'the old file is untouched');
  const leftovers = fs.readdirSync(path.dirname(p)).filter((f) => f.includes('.tmp-'));
  assert.deepEqual(leftovers, []);

  assert.throws(() => writeSafetensors(path.join(tmpDir, 'no-such-dir', 'x.safetensors'), { a: good }), /ENOENT/);
  assert.throws(() => writeSafetensors(tmpPath(), { a: good }, { n: 1 as unknown as string }), /metadata "n" must be a string/);
});

test('real checkpoints written by the Python safetensors library', () => {
  // vit_tiny: a tiny ViT from transformers (F32, 40 tensors, {"format": "pt"}).
  const file = SafetensorsFile.open(path.join(FIXTURES, 'vit_tiny.safetensors'));
  try {
    assert.equal(file.keys().length, 40);
    assert.deepEqual(file.metadata, { format: 'pt' });
    assert.deepEqual(file.info('vit.embeddings.patch_embeddings.projection.weight').shape, [32, 3, 4, 4]);
    const bias = file.get('classifier.bias').toFloat32Array();
    assert.deepEqual(Array.from(bias.subarray(0, 4)),
      [0.03326357528567314, 0.004970197100192308, 0.06425143033266068, 0.050957709550857544]);
    const ln = file.get('vit.layernorm.weight').toFloat32Array();
    assert.ok(Math.abs(ln.reduce((s, x) => s + x, 0) - 31.91856837272644) < 1e-4);
  } finally {
    file.close();
  }
  // tokenizer_i64: I64 token ids.
  const { tensors } = readSafetensors(path.join(FIXTURES, 'tokenizer_i64.safetensors'));
  const ids = tensors.get('input_ids_pad_eot')!;
  assert.equal(ids.dtype, 'i64');
  assert.deepEqual([...ids.shape], [14, 77]);
  assert.deepEqual(values(ids).slice(0, 4), [49406n, 320n, 1125n, 539n]);
  assert.equal(values(ids).reduce((s: number, x) => s + Number(x), 0), 41731338);
});

// ------------------------------------------------------------------ memory-mapped files

test('mapped files: views on the mapping with the same values; pages go back on release and return on reading', (t) => {
  const n = 4 << 20; // 16 MiB of f32 (several thousand pages), + f16, i64 and a tiny tensor
  const big = new Float32Array(n);
  for (let i = 0; i < n; i++) big[i] = Math.sin(i * 0.001) * 3;
  const half = fromTypedArray(new Float32Array(1000).map((_, i) => i / 7), [1000]).to('f16');
  const p = tmpPath('mapped.safetensors');
  writeSafetensors(p, { big: fromTypedArray(big, [n]), half, ids: fromTypedArray(BigInt64Array.from([5n, -3n]), [2], 'i64'), small: fromTypedArray(Float32Array.from([1, 2, 3]), [3]) });

  const file = SafetensorsFile.open(p, { map: true });
  if (!file.isMapped) { file.close(); t.skip('no native addon: mapping falls back to reading'); return; }
  const read = readSafetensors(p).tensors;
  const mapped = new Map(file.keys().map((k) => [k, file.get(k)]));
  file.close(); // the tensors keep the mapping alive
  for (const [k, v] of read) assert.deepEqual(values(mapped.get(k)!), values(v), k);
  assert.equal((mapped.get('big')!.data as Float32Array).buffer.byteLength, fs.statSync(p).size, 'a view on the whole-file mapping');

  const rssMiB = () => process.memoryUsage().rss / 2 ** 20;
  const sum = (a: Float32Array) => { let s = 0; for (let i = 0; i < a.length; i += 1024) s += a[i]; return s; };
  const view = mapped.get('big')!.data as Float32Array;
  const expected = sum(big);
  assert.equal(sum(view), expected); // every page touched: resident
  const before = rssMiB();
  const released = releaseMappedWeights(mapped.values());
  assert.ok(released >= 16 * 2 ** 20 - 2 * 65536, `released ${released} bytes`);
  assert.ok(before - rssMiB() > 12, `RSS fell ${(before - rssMiB()).toFixed(1)} MiB (expected ~16)`);
  assert.equal(sum(view), expected, 'the values read back from the page cache');
  assert.deepEqual(values(mapped.get('ids')!), [5n, -3n]);
  // Heap tensors are never released (the same madvise would zero them).
  assert.equal(releaseMappedWeights(read.values()), 0);
  assert.throws(() => releaseMappedPages(new ArrayBuffer(1 << 16), 0, 1 << 16), /not a mapped file/);
});

test('mapped files: a truncated file still fails at open, before anything is mapped', () => {
  const p = tmpPath('trunc.safetensors');
  writeSafetensors(p, { w: fromTypedArray(new Float32Array(4096), [4096]) });
  fs.truncateSync(p, fs.statSync(p).size - 100);
  assert.throws(() => SafetensorsFile.open(p, { map: true }), /truncated/);
});
