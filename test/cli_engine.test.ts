/**
 * `vss engine` and the global --matmul option through the real command (bin/vss.js over dist/), and the
 * engine's setMatmulPrecision: bf16 products where the CPU and kernel path allow them, a clear refusal
 * (naming the reason) elsewhere, and f32 untouched afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  backendName, getMatmulPrecision, matmul, nativeAvailable, noGrad, randn, Rng, setBackend, setMatmulPrecision,
} from '../src/engine/index.js';
import { relErr } from './helpers/relerr.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const vssBin = path.join(root, 'bin', 'vss.js');

function vss(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [vssBin, ...args], { encoding: 'utf8', env: { ...process.env, VSS_NUM_THREADS: '1', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** 'available' or the reason bf16 cannot run, as `vss engine info` reports it. */
function bf16Status(): string {
  const r = vss(['engine', 'info', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { matmul: string };
  const m = /^f32 \(bf16: (available|not available: .+)\)$/.exec(info.matmul);
  assert.ok(m, `matmul field: ${info.matmul}`);
  return m[1];
}

test('engine info reports the matmul precision and whether bf16 can run', () => {
  bf16Status();
});

test('--matmul bf16 runs the GEMM check where bf16 is available, and names the reason where not', () => {
  const status = bf16Status();
  const r = vss(['--matmul', 'bf16', 'engine', 'gemm', '-n', '64', '-r', '1']);
  if (status === 'available') {
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^sgemm 64³ on native: /);
    // a generated image records the precision its bits depend on
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-matmul-'));
    try {
      const out = path.join(dir, 'x.png');
      const g = vss(['--matmul', 'bf16', 'generate', 'a sneaker', '--steps', '2', '--seed', '1', '--no-progress', '-o', out]);
      assert.equal(g.code, 0, g.stderr);
      assert.match(vss(['info', out]).stdout, /^Matmul\s+bf16$/m);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  } else {
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bf16 matmul is not available: /);
  }
});

test('--matmul rejects anything but f32 and bf16, and bf16 on the JS backend', () => {
  const bad = vss(['--matmul', 'f16', 'engine', 'info']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--matmul must be "f32" or "bf16", got "f16"/);
  const js = vss(['--matmul', 'bf16', 'engine', 'gemm', '-n', '8', '-r', '1'], { VSS_BACKEND: 'js' });
  assert.notEqual(js.code, 0);
  assert.match(js.stderr, /bf16 matmul is not available: it needs the native backend/);
  assert.equal(vss(['--matmul', 'f32', 'engine', 'gemm', '-n', '8', '-r', '1'], { VSS_BACKEND: 'js' }).code, 0);
});

test('setMatmulPrecision: bf16 products differ from f32 by bf16 rounding; f32 is restored exactly', () => {
  const rng = new Rng(5);
  const a = randn([70, 90], { rng }), b = randn([90, 50], { rng });
  const f32 = noGrad(() => matmul(a, b)).toFloat32Array();
  let available = true;
  try { setMatmulPrecision('bf16'); } catch (e) {
    available = false;
    assert.match((e as Error).message, /^bf16 matmul is not available: /);
  }
  if (available) {
    try {
      assert.equal(getMatmulPrecision(), 'bf16');
      const bf = noGrad(() => matmul(a, b)).toFloat32Array();
      const err = relErr(bf, f32);
      assert.ok(err > 1e-4 && err < 1e-2, `bf16 vs f32: ${err}`);
    } finally {
      setMatmulPrecision('f32');
    }
  }
  assert.equal(getMatmulPrecision(), 'f32');
  assert.deepEqual(noGrad(() => matmul(a, b)).toFloat32Array(), f32);
  assert.throws(() => setMatmulPrecision('f16' as never), /matmul precision must be "f32" or "bf16"/);
  if (nativeAvailable() && backendName() === 'native') {
    setBackend('js');
    try {
      assert.throws(() => setMatmulPrecision('bf16'), /needs the native backend/);
      assert.equal(getMatmulPrecision(), 'f32');
    } finally {
      setBackend('native');
    }
  }
});
