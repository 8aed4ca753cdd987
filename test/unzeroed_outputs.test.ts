/**
 * Op outputs are allocated without a zero fill (emptyF32), which is only sound because every kernel
 * writes its output in full. VSS_POISON_EMPTY=1 fills those buffers with NaN instead; running the op-level
 * suites under it, on both backends, shows any op that would leave an element unwritten.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { emptyF32 } from '../src/engine/dtype.js';

const here = dirname(fileURLToPath(import.meta.url));
const OP_SUITES = ['gradcheck', 'parity_torch', 'nn', 'engine_core'].map((s) => join(here, `${s}.test.js`));

test('emptyF32: the requested length, small and large; NaN-filled under VSS_POISON_EMPTY', () => {
  for (const n of [0, 5, 1023, 1024, 100_000]) {
    const a = emptyF32(n);
    assert.ok(a instanceof Float32Array);
    assert.equal(a.length, n);
    assert.equal(a.byteOffset % 4, 0);
    a.fill(1);   // writable over its whole length
    assert.equal(a[n - 1] ?? 1, 1);
  }
  const run = spawnSync(process.execPath, ['--input-type=module', '-e',
    `import { emptyF32 } from ${JSON.stringify(join(here, '..', 'src', 'engine', 'dtype.js'))};` +
    'const a = emptyF32(5000), b = emptyF32(3); console.log(a.every(Number.isNaN) && b.every(Number.isNaN));'],
  { env: { ...process.env, VSS_POISON_EMPTY: '1' }, encoding: 'utf8' });
  assert.equal(run.stdout.trim(), 'true', run.stderr);
});

// A nested `node --test` reports to its parent runner when it inherits NODE_TEST_CONTEXT; drop it for TAP.
const { NODE_TEST_CONTEXT: _, ...baseEnv } = process.env;

for (const backend of ['native', 'js']) {
  test(`every op writes its whole output: op suites pass with NaN-poisoned buffers (${backend} backend)`, () => {
    const run = spawnSync(process.execPath, ['--test', '--test-reporter=tap', ...OP_SUITES],
      { env: { ...baseEnv, VSS_POISON_EMPTY: '1', VSS_BACKEND: backend }, encoding: 'utf8', timeout: 300_000 });
    const failed = run.stdout.match(/^# fail (\d+)/m);
    assert.equal(run.status, 0, `op suites failed under VSS_POISON_EMPTY=1 (${failed?.[1] ?? '?'} failures):\n${run.stdout.slice(-3000)}${run.stderr}`);
    assert.match(run.stdout, /^# pass [1-9]\d*/m);
  });
}
