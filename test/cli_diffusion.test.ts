/**
 * `vss diffusion forward` and `vss diffusion schedules`, run in-process through commander (the same
 * registration main.ts uses, errors formatted as bin/vss.js does) on small images made here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { registerDiffusionCommand, frameTimesteps, formatValue } from '../src/cli/diffusion.js';
import { exitCodeOf, formatError } from '../src/cli/errors.js';
import { NoiseSchedule, cosineAlphaBar } from '../src/diffusion/schedules.js';
import { type Pixels, decodePixels, readPngSize } from '../src/image/index.js';
import { FASHION_MNIST_SYSTEM_DIR } from '../src/data/index.js';

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-diffusion-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));
const tmp = (name: string) => path.join(tmpDir, name);

/** Run `vss <args>` with only the diffusion commands registered; never exits the process. */
async function vss(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [], err: string[] = [];
  const program = new Command().name('vss').exitOverride()
    .configureOutput({ writeOut: (s) => { out.push(s); }, writeErr: (s) => { err.push(s); } });
  registerDiffusionCommand(program);
  const { log, error } = console;
  console.log = (...a: unknown[]) => { out.push(`${a.join(' ')}\n`); };
  console.error = (...a: unknown[]) => { err.push(`${a.join(' ')}\n`); };
  try {
    await program.parseAsync(['node', 'vss', ...args]);
    return { code: 0, stdout: out.join(''), stderr: err.join('') };
  } catch (e) {
    err.push(formatError(e, false));
    return { code: exitCodeOf(e), stdout: out.join(''), stderr: err.join('') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** A w×h RGB test picture with structure in every channel: gradients and a bright disc. */
function testPattern(w: number, h: number): Pixels {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inDisc = (x - w / 2) ** 2 + (y - h / 2) ** 2 < (Math.min(w, h) / 4) ** 2;
      data[i] = Math.round((255 * x) / (w - 1));
      data[i + 1] = Math.round((255 * y) / (h - 1));
      data[i + 2] = inDisc ? 240 : 20;
    }
  }
  return { width: w, height: h, channels: 3, data };
}

async function writePng(file: string, p: Pixels): Promise<void> {
  await sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } }).png().toFile(file);
}

const SIDE = 96;   // ≥ the grid's 96 px minimum cell, so frames are drawn 1:1
const src = testPattern(SIDE, SIDE);
const srcFile = tmp('src.png');
await writePng(srcFile, src);

/** The w×h block of a decoded image at (x0, y0), as floats. */
function crop(img: Pixels, x0: number, y0: number, w: number, h: number): Float64Array {
  const out = new Float64Array(w * h * img.channels);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < img.channels; c++) {
    out[(y * w + x) * img.channels + c] = img.data[((y0 + y) * img.width + x0 + x) * img.channels + c];
  }
  return out;
}

function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i]; mb += b[i]; }
  ma /= n; mb /= n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) { const da = a[i] - ma, db = b[i] - mb; sab += da * db; saa += da * da; sbb += db * db; }
  return sab / Math.sqrt(saa * sbb);
}

const meanAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
};

test('forward: 11 frames t = 0 … T−1; frame 0 is the image, the last is noise; one fixed ε per seed', async () => {
  const out = tmp('strip.png');
  const r = await vss('diffusion', 'forward', '--image', srcFile, '--schedule', 'cosine', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /11 frames of 96x96, t = 0, 100, 200, 300, 400, 500, 599, 699, 799, 899, 999\)/);
  const strip = await decodePixels(out, { channels: 3 });
  // makeGrid: 2 px padding around and between the cells, one row.
  assert.equal(strip.width, 2 + 11 * (SIDE + 2), 'one column per frame');
  assert.ok(strip.height > SIDE && strip.height < SIDE + 80, `height ${strip.height}`);

  // Find the row of frames: the offset where the first cell matches the source best.
  const reference = crop(src, 0, 0, SIDE, SIDE);
  let top = -1, best = Infinity;
  for (let y = 0; y + SIDE <= strip.height; y++) {
    const d = meanAbsDiff(crop(strip, 2, y, SIDE, SIDE), reference);
    if (d < best) { best = d; top = y; }
  }
  // Cosine: √(1 − ᾱ_0) ≈ 0.0064, under one 8-bit level in [-1, 1].
  assert.ok(best < 1.5, `frame 0 differs from the image by ${best.toFixed(2)} levels on average`);
  const corr = Array.from({ length: 11 }, (_, i) => correlation(crop(strip, 2 + i * (SIDE + 2), top, SIDE, SIDE), reference));
  assert.ok(corr[0] > 0.999, `frame 0 correlation ${corr[0]}`);
  assert.ok(corr[5] > 0.2 && corr[5] < 0.9, `t=500 (ᾱ ≈ 0.49) correlation ${corr[5]}`);
  assert.ok(Math.abs(corr[10]) < 0.1, `last frame correlation ${corr[10]}`);
  for (let i = 1; i < 11; i++) assert.ok(corr[i] < corr[i - 1] + 0.02, `correlation rises at frame ${i}: ${corr.map((c) => c.toFixed(3))}`);

  // The same seed gives the same strip; another seed another ε.
  const again = tmp('strip-again.png'), other = tmp('strip-seed1.png');
  assert.equal((await vss('diffusion', 'forward', '--image', srcFile, '--out', again, '--no-plot')).code, 0);
  assert.equal((await vss('diffusion', 'forward', '--image', srcFile, '--out', other, '--no-plot', '--seed', '1')).code, 0);
  assert.deepEqual(fs.readFileSync(again), fs.readFileSync(out));
  // (The title names the seed, so compare the pixels of the last frame, not the files.)
  const lastOf = async (file: string) => crop(await decodePixels(file, { channels: 3 }), 2 + 10 * (SIDE + 2), top, SIDE, SIDE);
  const [last0, last1] = [await lastOf(out), await lastOf(other)];
  assert.ok(Math.abs(correlation(last0, last1)) < 0.1, 'seed 1 draws another ε');

  // The schedule plot goes beside the strip unless asked elsewhere (three 440×340 panels).
  assert.match(r.stdout, /wrote .*strip-schedules\.png/);
  assert.deepEqual(readPngSize(fs.readFileSync(tmp('strip-schedules.png'))), { width: 1320, height: 340 });
  assert.ok(!fs.existsSync(tmp('strip-again-schedules.png')), '--no-plot writes no plot');
});

test('forward: --frames, --timesteps, --plot .svg, linear and scaled-linear schedules', async () => {
  const svg = tmp('lin.svg');
  const r = await vss('diffusion', 'forward', '--image', srcFile, '--schedule', 'linear', '-T', '50', '--frames', '4',
    '--out', tmp('lin.png'), '--plot', svg);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /4 frames of 96x96, t = 0, 16, 33, 49\)/);
  assert.deepEqual(frameTimesteps(50, 4), [0, 16, 33, 49]);
  // With T = 50, β from 1e-4 to 0.02 never reaches noise: the command says so.
  assert.match(r.stderr, /does not reach noise/);
  const text = fs.readFileSync(svg, 'utf8');
  assert.match(text, /^<svg xmlns/);
  assert.equal(text.match(/<svg /g)?.length, 4, 'three panels in one document');
  assert.match(text, /scaled-linear/);
  const scaled = await vss('diffusion', 'forward', '--image', srcFile, '--schedule', 'scaled_linear', '--frames', '2', '--out', tmp('sl.webp'), '--no-plot');
  assert.equal(scaled.code, 0, scaled.stderr);
  assert.equal(scaled.stderr, '', 'T = 1000 reaches noise: no note');
});

test('forward: --size resizes (longer side), large images are capped at 256', async () => {
  const wide = tmp('wide.png'), big = tmp('big.png');
  await writePng(wide, testPattern(200, 100));
  await writePng(big, testPattern(300, 150));
  const r = await vss('diffusion', 'forward', '--image', wide, '--size', '50', '--frames', '3', '--out', tmp('w.png'), '--no-plot');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /3 frames of 50x25/);
  const b = await vss('diffusion', 'forward', '--image', big, '--frames', '2', '--out', tmp('b.png'), '--no-plot');
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /2 frames of 256x128/);
  const small = await vss('diffusion', 'forward', '--image', wide, '--frames', '2', '--out', tmp('s.png'), '--no-plot');
  assert.match(small.stdout, /2 frames of 200x100/, 'small images are kept as they are');
});

test('forward: a custom list of betas from a JSON file', async () => {
  const betas = Array.from({ length: 20 }, (_, i) => 0.01 + (i * 0.49) / 19);
  const file = tmp('betas.json');
  fs.writeFileSync(file, JSON.stringify(betas));
  const r = await vss('diffusion', 'forward', '--image', srcFile, '--schedule', file, '--frames', '5', '--out', tmp('c.png'), '--plot', tmp('c-plot.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /5 frames of 96x96, t = 0, 5, 10, 14, 19\)/);
  assert.match(r.stdout, /T = 20/);
  // {"betas": [...]} is read too.
  fs.writeFileSync(tmp('betas-obj.json'), JSON.stringify({ betas }));
  assert.equal((await vss('diffusion', 'forward', '--image', srcFile, '--schedule', tmp('betas-obj.json'), '--out', tmp('c2.png'), '--no-plot', '--frames', '3')).code, 0);
});

test('forward: clear errors for bad inputs, and nothing written', async () => {
  const out = tmp('never.png');
  const run = (...args: string[]) => vss('diffusion', 'forward', '--out', out, ...args);
  const expectError = async (args: string[], pattern: RegExp) => {
    const r = await run(...args);
    assert.equal(r.code, 1, `${args.join(' ')} should fail`);
    assert.match(r.stderr, pattern);
    assert.doesNotMatch(r.stderr, /--verbose/, 'a user error, not a crash');
  };
  const json = (name: string, text: string) => { fs.writeFileSync(tmp(name), text); return tmp(name); };

  await expectError(['--image', tmp('nope.png')], /vss: image not found: .*nope\.png/);
  await expectError(['--image', json('notimage.png', 'hello')], /cannot read image .*notimage\.png/);
  await expectError(['--image', srcFile, '--schedule', 'sigmoid'], /unknown schedule 'sigmoid'\nhint: use linear, cosine, scaled-linear, or a \.json file/);
  await expectError(['--image', srcFile, '--schedule', json('obj.json', '{"a": 1}')], /does not hold a list of betas \(found an object with keys a\)/);
  await expectError(['--image', srcFile, '--schedule', json('num.json', '0.5')], /does not hold a list of betas \(found a number\)/);
  await expectError(['--image', srcFile, '--schedule', json('empty.json', '[]')], /holds an empty list of betas/);
  await expectError(['--image', srcFile, '--schedule', json('big.json', '[0.1, 1.5]')], /beta 1 is 1.5, outside \(0, 1\)/);
  await expectError(['--image', srcFile, '--schedule', json('zero.json', '[0.1, 0.2, 0]')], /beta 2 is 0, outside \(0, 1\)/);
  await expectError(['--image', srcFile, '--schedule', json('one.json', '[1]')], /beta 0 is 1, outside \(0, 1\)/);
  await expectError(['--image', srcFile, '--schedule', json('str.json', '["0.1"]')], /beta 0 is "0.1", outside/);
  await expectError(['--image', srcFile, '--schedule', json('bad.json', '[0.1,')], /bad\.json is not valid JSON/);
  await expectError(['--image', srcFile, '--schedule', tmp('missing.json')], /betas file not found: .*missing\.json/);
  await expectError(['--image', srcFile, '--schedule', json('ten.json', JSON.stringify(new Array(10).fill(0.1))), '-T', '50'],
    /--timesteps 50 but .*ten\.json holds 10 betas/);
  await expectError(['--image', srcFile, '--frames', '1'], /--frames 1 is impossible with T = 1000\nhint: the strip shows 2\.\.100 distinct timesteps/);
  await expectError(['--image', srcFile, '--frames', '30', '-T', '20'], /--frames 30 is impossible with T = 20/);
  await expectError(['--image', srcFile, '--frames', '2.5'], /--frames must be an integer/);
  await expectError(['--image', srcFile, '-T', '1'], /--timesteps must be an integer in \[2, 100000\], got '1'/);
  await expectError(['--image', srcFile, '--beta-end', '2'], /--beta-end must be a number in \(0, 1\)/);
  await expectError([], /nothing to noise: pass --image <file> or --dataset <name>/);
  await expectError(['--image', srcFile, '--dataset', 'shapes'], /either --image or --dataset, not both/);
  await expectError(['--image', srcFile, '--index', '3'], /--index picks a dataset sample/);
  await expectError(['--image', srcFile, '--plot', tmp('p.gif')], /--plot must end in \.png or \.svg/);
  assert.ok(!fs.existsSync(out), 'no strip written by a failed command');
  const badOut = await vss('diffusion', 'forward', '--image', srcFile, '--out', tmp('strip.gif'));
  assert.equal(badOut.code, 1);
  assert.match(badOut.stderr, /--out must end in \.png, \.jpg or \.webp/);
});

test('forward: a Fashion-MNIST sample by --index', { skip: !fs.existsSync(FASHION_MNIST_SYSTEM_DIR) && 'no Fashion-MNIST in /usr/share/datasets' }, async () => {
  const r = await vss('diffusion', 'forward', '--dataset', 'fashion-mnist', '--index', '3', '--frames', '3', '--out', tmp('f.png'), '--no-plot');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /3 frames of 28x28/);
  const past = await vss('diffusion', 'forward', '--dataset', 'fashion-mnist', '--index', '10000', '--out', tmp('f2.png'));
  assert.equal(past.code, 1);
  assert.match(past.stderr, /--index 10000 is past the end of fashion-mnist \(10000 samples\)/);
});

test('schedules: --json gives ᾱ and SNR at 0, T/4, T/2, 3T/4, T−1 matching the closed forms', async () => {
  const r = await vss('diffusion', 'schedules', '--out', tmp('sched.png'), '--json');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { timesteps: number; at: number[]; schedules: { name: string; alphaBar: number[]; snr: number[] }[] };
  assert.equal(j.timesteps, 1000);
  assert.deepEqual(j.at, [0, 250, 500, 750, 999]);
  assert.deepEqual(j.schedules.map((s) => s.name), ['linear', 'cosine', 'scaled-linear']);
  const [linear, cosine, scaled] = j.schedules;
  // ᾱ_t = Π_{s≤t} (1 − β_s), β linear from 1e-4 to 0.02 (or √β linear for scaled-linear), in float64.
  const closed = (beta: (s: number) => number, t: number) => { let p = 1; for (let s = 0; s <= t; s++) p *= 1 - beta(s); return p; };
  const lin = (s: number) => 1e-4 + (s / 999) * (0.02 - 1e-4);
  const sq = (s: number) => (Math.sqrt(1e-4) + (s / 999) * (Math.sqrt(0.02) - Math.sqrt(1e-4))) ** 2;
  j.at.forEach((t, k) => {
    const rel = (a: number, b: number) => Math.abs(a - b) / b;
    assert.ok(rel(linear.alphaBar[k], closed(lin, t)) < 1e-4, `linear ᾱ_${t}: ${linear.alphaBar[k]} vs ${closed(lin, t)}`);
    assert.ok(rel(scaled.alphaBar[k], closed(sq, t)) < 1e-4, `scaled-linear ᾱ_${t}`);
    if (t < 999) assert.ok(rel(cosine.alphaBar[k], cosineAlphaBar((t + 1) / 1000) / cosineAlphaBar(0)) < 1e-4, `cosine ᾱ_${t}`);
    for (const s of j.schedules) assert.ok(rel(s.snr[k], s.alphaBar[k] / (1 - s.alphaBar[k])) < 1e-9, `${s.name} SNR_${t}`);
  });
  assert.deepEqual(readPngSize(fs.readFileSync(tmp('sched.png'))), { width: 1320, height: 340 });
});

test('schedules: the table, an SVG plot, a custom list, bad --out', async () => {
  const r = await vss('diffusion', 'schedules', '--out', tmp('sched.svg'), '-T', '100');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^T = 100\s+t\s+0\s+25\s+50\s+75\s+99$/);
  assert.match(lines[1], /^linear\s+ᾱ\s+1-1\.0e-4\s/);
  assert.match(lines[2], /^\s+SNR\s+999\d\s/);   // ᾱ_0 = 1 − 1e-4 in float32
  assert.match(r.stderr, /linear, scaled-linear do not reach noise at T = 100/);
  assert.equal(lines.filter((l) => /\sᾱ\s/.test(l)).length, 3);
  assert.match(lines.at(-1)!, /wrote .*sched\.svg/);
  assert.match(fs.readFileSync(tmp('sched.svg'), 'utf8'), /^<svg xmlns/);

  const betas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
  fs.writeFileSync(tmp('b8.json'), JSON.stringify(betas));
  const c = await vss('diffusion', 'schedules', '--betas', tmp('b8.json'), '--json', '--out', tmp('b8.png'));
  assert.equal(c.code, 0, c.stderr);
  const j = JSON.parse(c.stdout) as { timesteps: number; at: number[]; schedules: { name: string; alphaBar: number[] }[] };
  assert.equal(j.timesteps, 8);
  assert.deepEqual(j.at, [0, 2, 4, 6, 7]);
  const custom = j.schedules.find((s) => s.name === 'custom (b8.json)')!;
  j.at.forEach((t, k) => {
    const exact = betas.slice(0, t + 1).reduce((p, b) => p * (1 - b), 1);
    assert.ok(Math.abs(custom.alphaBar[k] - exact) < 1e-6 * exact + 1e-9, `custom ᾱ_${t}`);
  });
  assert.equal(new NoiseSchedule(betas).alphaBar(7), custom.alphaBar[4]);

  const bad = await vss('diffusion', 'schedules', '--out', tmp('sched.jpg'));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--out must end in \.png or \.svg/);
  const missing = await vss('diffusion', 'schedules', '--betas', tmp('nope.json'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /betas file not found/);
});

test('formatValue: short, and honest just under 1', () => {
  assert.equal(formatValue(0.5322), '0.5322');
  assert.equal(formatValue(0.99996), '1-4.0e-5');
  assert.equal(formatValue(2.4287e-9), '2.4e-9');
  assert.equal(formatValue(24208.5), '24209');
  assert.equal(formatValue(0), '0.000');
});
