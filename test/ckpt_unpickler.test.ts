/**
 * Pickled PyTorch checkpoints read without Python: fixtures written by Debian's torch
 * (scripts/make_ckpt_fixture.py) in pickle protocols 2 and 4, stored and deflated; every tensor's dtype,
 * shape and values. Then what must be refused: a checkpoint whose pickle would run os.system, hand-made
 * pickles naming other callables, damaged archives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openCheckpoint, readTorchCheckpoint, unpickle, UnpicklingError, ZipReader } from '../src/pipelines/loaders/index.js';
import { repoRoot } from './helpers/fixtures.js';

const DIR = path.join(repoRoot(), 'test', 'fixtures', 'ckpt');
interface Expected { tensors: Record<string, { dtype: string; shape: number[]; values: number[] }> }
const EXPECTED = JSON.parse(fs.readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Expected;
/** torch dtype → the engine dtype it loads as (float64 is narrowed to f32). */
const ENGINE: Record<string, string> = { float32: 'f32', float16: 'f16', bfloat16: 'bf16', float64: 'f32', int64: 'i64', bool: 'bool' };

for (const file of ['tiny.ckpt', 'tiny_p4.ckpt', 'tiny_deflate.ckpt']) {
  test(`${file}: every tensor with its dtype, shape and values`, () => {
    const ckpt = readTorchCheckpoint(path.join(DIR, file));
    try {
      assert.deepEqual([...ckpt.tensors.keys()].sort(), Object.keys(EXPECTED.tensors).sort());
      assert.deepEqual([...ckpt.otherKeys].sort(), ['epoch', 'global_step', 'info']);
      for (const [name, want] of Object.entries(EXPECTED.tensors)) {
        const lazy = ckpt.tensors.get(name)!;
        assert.equal(lazy.dtype, ENGINE[want.dtype], `${name} dtype`);
        assert.deepEqual([...lazy.shape], want.shape, `${name} shape (known before reading)`);
        const t = lazy.read();
        assert.deepEqual([...t.shape], want.shape);
        const got = t.dtype === 'i64' ? [...(t.data as BigInt64Array)].map(Number)
          : t.dtype === 'bool' ? [...(t.data as Uint8Array)] : [...t.toFloat32Array()];
        const ref = want.dtype === 'float64' ? want.values.map(Math.fround) : want.values;
        assert.deepEqual(got, ref, `${name} values`);
      }
    } finally {
      ckpt.close();
    }
  });
}

test('views sharing one storage (a transpose, an offset slice) are gathered correctly', () => {
  const ckpt = readTorchCheckpoint(path.join(DIR, 'tiny.ckpt'));
  try {
    const base = ckpt.tensors.get('model.base')!.read().toFloat32Array();
    const tr = ckpt.tensors.get('model.transposed')!.read();
    const sl = ckpt.tensors.get('model.slice')!.read();
    assert.deepEqual(tr.shape, [4, 3]);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) assert.equal(tr.toFloat32Array()[i * 3 + j], base[j * 4 + i]);
    assert.deepEqual([...sl.toFloat32Array()], [base[6], base[7], base[10], base[11]]);
  } finally {
    ckpt.close();
  }
});

test('openCheckpoint takes .ckpt files the same way as safetensors', () => {
  const c = openCheckpoint(path.join(DIR, 'tiny.ckpt'));
  try {
    assert.equal(c.format, 'ckpt');
    assert.deepEqual([...c.tensors.get('net.fc.weight')!.read().toFloat32Array()], [0.5, -1, 2, 0.25, 0, -0.75]);
  } finally {
    c.close();
  }
});

test('a checkpoint that would run os.system is refused, naming the callable', () => {
  assert.throws(() => readTorchCheckpoint(path.join(DIR, 'malicious.ckpt')), (err: unknown) => {
    assert.ok(err instanceof UnpicklingError);
    assert.match(err.message, /malicious\.ckpt: .*data\.pkl: refers to posix\.system, which is not allowed: only tensors and plain containers are rebuilt/);
    return true;
  });
});

/** A hand-assembled protocol-2 pickle: PROTO 2, then `body`, then STOP. */
const pickle = (...parts: (string | number[])[]) =>
  Uint8Array.from([0x80, 2, ...parts.flatMap((p) => (typeof p === 'string' ? [...Buffer.from(p, 'latin1')] : p)), 0x2e]);
const GLOBALS = new Map();

test('hand-made pickles: plain data decodes; any global outside the allow-list is refused', () => {
  // {'a': [1, -2, 3.5, None, True], 'b': ('x', b'\x01')}
  const data = pickle([0x7d, 0x28], [0x8c, 1], 'a', [0x5d, 0x28, 0x4b, 1, 0x4a, 0xfe, 0xff, 0xff, 0xff, 0x47, 0x40, 0x0c, 0, 0, 0, 0, 0, 0, 0x4e, 0x88, 0x65],
    [0x8c, 1], 'b', [0x8c, 1], 'x', [0x43, 1, 1, 0x86, 0x75]);
  const v = unpickle(data, { globals: GLOBALS }) as Map<string, unknown>;
  assert.deepEqual(v.get('a'), [1, -2, 3.5, null, true]);
  assert.deepEqual(v.get('b'), ['x', Uint8Array.of(1)]);

  const osSystem = pickle('cos\nsystem\n', [0x8c, 2], 'id', [0x85, 0x52]);
  assert.throws(() => unpickle(osSystem, { globals: GLOBALS, source: 'evil.pkl' }), /evil\.pkl: refers to os\.system, which is not allowed/);
  const builtinsEval = pickle([0x8c, 8], 'builtins', [0x8c, 4], 'eval', [0x93]);
  assert.throws(() => unpickle(builtinsEval, { globals: GLOBALS }), /refers to builtins\.eval, which is not allowed/);
  assert.throws(() => unpickle(Uint8Array.of(0x80, 2, 0x69), { globals: GLOBALS }), /unsupported pickle opcode 0x69 'i'/); // INST
  assert.throws(() => unpickle(Uint8Array.of(0x80, 2, 0x58, 9, 0, 0, 0, 0x61), { globals: GLOBALS }), /truncated/);
});

test('damaged archives fail at open with the file named', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-ckpt-'));
  try {
    const whole = fs.readFileSync(path.join(DIR, 'tiny.ckpt'));
    const cut = path.join(tmp, 'cut.ckpt');
    fs.writeFileSync(cut, whole.subarray(0, whole.length - 200));
    assert.throws(() => readTorchCheckpoint(cut), /cut\.ckpt: not a zip archive, or truncated/);
    const head = path.join(tmp, 'head.ckpt');
    fs.writeFileSync(head, whole.subarray(0, 1500));
    assert.throws(() => openCheckpoint(head), /head\.ckpt/);
    const notZip = path.join(tmp, 'legacy.ckpt');
    fs.writeFileSync(notZip, Buffer.from([0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]));
    assert.throws(() => openCheckpoint(notZip), /legacy format that is not read/);
    // A zip that is not a torch archive.
    assert.ok(ZipReader.isZip(path.join(DIR, 'tiny.ckpt')));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
