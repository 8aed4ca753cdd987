/** `vss plot` over a metrics log, through the real command (bin/vss.js over dist/). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readPngSize } from '../src/image/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const vssBin = path.join(root, 'bin', 'vss.js');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-plot-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

const vss = (...args: string[]) => spawnSync(process.execPath, [vssBin, ...args], { encoding: 'utf8', cwd: tmpDir });

const log = path.join(tmpDir, 'metrics.jsonl');
fs.writeFileSync(log, Array.from({ length: 40 }, (_, i) => JSON.stringify({ step: i + 1, loss: 2 / (i + 1), lr: 1e-3 })).join('\n') + '\n');

test('plot writes a PNG and an SVG of the chosen series', () => {
  const png = path.join(tmpDir, 'loss.png');
  const r = vss('plot', log, '--out', png, '--keys', 'loss,lr', '--log-y');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /2 series, 40 records/);
  const size = readPngSize(fs.readFileSync(png));
  assert.ok(size.width > 200 && size.height > 100);
  const svg = path.join(tmpDir, 'loss.svg');
  assert.equal(vss('plot', log, '--out', svg).status, 0);
  assert.match(fs.readFileSync(svg, 'utf8'), /^<svg|<\?xml/);
});

test('plot names an unknown series and lists the available ones', () => {
  const r = vss('plot', log, '--keys', 'accuracy', '--out', path.join(tmpDir, 'x.png'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no numeric series accuracy/);
  assert.match(r.stderr, /available: loss, lr/);
});
