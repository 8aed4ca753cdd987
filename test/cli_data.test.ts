/**
 * `vss data` through the real command (bin/vss.js over dist/, so `npx tsc -p .` first): preview grids,
 * statistics, and the one-line error + hint for a dataset that does not exist.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readPngSize } from '../src/image/index.js';
import { describeError, formatError, UserError } from '../src/cli/errors.js';
import { DatasetNotFoundError } from '../src/data/index.js';

// dist/test/cli_data.test.js → the repository root.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const vssBin = path.join(root, 'bin', 'vss.js');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-cli-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

function vss(...args: string[]) {
  const r = spawnSync(process.execPath, [vssBin, ...args], { encoding: 'utf8', cwd: tmpDir, env: { ...process.env, VSS_NUM_THREADS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('data preview shapes writes a labelled grid PNG', () => {
  const out = path.join(tmpDir, 'shapes.png');
  const r = vss('data', 'preview', 'shapes', '--out', out, '--count', '8');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /wrote .*shapes\.png \(\d+x\d+, 8 samples\)/);
  const size = readPngSize(fs.readFileSync(out));
  // 8 cells of 32 px enlarged to 96 in 3 columns and 3 rows, plus captions and a title.
  assert.ok(size.width >= 3 * 96 && size.width < 500, `width ${size.width}`);
  assert.ok(size.height >= 3 * 96 + 20 + 3 * 30 && size.height < 600, `height ${size.height}`);
  assert.ok(r.stdout.includes(`(${size.width}x${size.height},`));
});

test('data stats shapes prints size, shape, classes, captions and pixel statistics', () => {
  const r = vss('data', 'stats', 'shapes', '--limit', '50', '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.samples, 10000);
  assert.deepEqual(s.imageShape, [3, 32, 32]);
  assert.equal(Object.keys(s.classes).length, 7);
  assert.equal(Object.values(s.classes as Record<string, number>).reduce((a, b) => a + b, 0), 10000);
  assert.ok(s.captions.unique > 1000 && s.captions.words.min >= 2 && s.captions.vocabulary > 10);
  assert.equal(s.pixels.samples, 50);
  assert.equal(s.pixels.mean.length, 3);

  const text = vss('data', 'stats', 'shapes', '--limit', '20');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^samples {4}10000$/m);
  assert.match(text.stdout, /^image {6}3x32x32 /m);
  assert.match(text.stdout, /^ {11}circle +\d+ +[\d.]+% #+$/m);
  assert.match(text.stdout, /^captions {3}10000 \(\d+ unique\)/m);
  assert.match(text.stdout, /^pixels {5}mean \[/m);
});

test('an unknown dataset path is one line of error plus a hint, exit code 1', () => {
  const r = vss('data', 'preview', path.join(tmpDir, 'no-such-folder'));
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 2, r.stderr);
  assert.match(lines[0], /^vss: no dataset '.*no-such-folder': it is neither a dataset name nor an existing folder$/);
  assert.match(lines[1], /^hint: use fashion-mnist, shapes, or the path of a folder of images/);

  const verbose = vss('data', 'stats', 'nope', '--verbose');
  assert.equal(verbose.code, 1);
  assert.match(verbose.stderr, /\n\s+at /, 'the stack with --verbose');
});

test('error formatting: hints from library errors are shown once, unexpected errors point at --verbose', () => {
  const missing = new DatasetNotFoundError('Fashion-MNIST train split not found in /x', 'hint: install it with apt');
  assert.deepEqual(describeError(missing), { message: 'Fashion-MNIST train split not found in /x', hint: 'install it with apt' });
  assert.equal(formatError(missing, false), 'vss: Fashion-MNIST train split not found in /x\nhint: install it with apt\n');
  assert.equal(formatError(new UserError('bad --steps', 'use a positive integer'), false), 'vss: bad --steps\nhint: use a positive integer\n');
  assert.equal(formatError(new Error('boom\nsecond line'), false), 'vss: boom — second line\nhint: run with --verbose to see where it happened\n');
  assert.match(formatError(new UserError('x'), true), /^vss: x\nUserError: x\n\s+at /);
});

test('a missing Fashion-MNIST folder prints the install hint', () => {
  const r = vss('data', 'stats', 'fashion-mnist', '--data', path.join(tmpDir, 'nothing-here'));
  assert.equal(r.code, 1);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 2, r.stderr);
  assert.match(lines[0], /^vss: Fashion-MNIST train split not found/);
  assert.match(lines[1], /^hint: install it with `sudo apt-get install dataset-fashion-mnist`/);
});
