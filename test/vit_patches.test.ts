/**
 * `vss eval vit-patches`: the mean attention distance on hand-made attention maps (closed forms), the
 * command end to end on a two-step run of patch sizes 14 and 7 (skipped without the Fashion-MNIST files),
 * and the error for a patch size that does not divide 28.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Rng, fromTypedArray } from '../src/engine/index.js';
import { FASHION_MNIST_SYSTEM_DIR } from '../src/data/index.js';
import { ViTForImageClassification } from '../src/models/vit.js';
import { readPngSize } from '../src/image/index.js';
import { AttentionDistanceMeter, meanAttentionDistance, measureAttentionDistances, patchDistances } from '../src/eval/vit_patches.js';
import { repoRoot } from './helpers/fixtures.js';

const root = repoRoot();
const haveData = fs.existsSync(path.join(FASHION_MNIST_SYSTEM_DIR, 't10k-images-idx3-ubyte.gz')) ||
  fs.existsSync(path.join(FASHION_MNIST_SYSTEM_DIR, 't10k-images-idx3-ubyte'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-vit-patches-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** `vss eval …` through commander and the CLI's error formatting, with only the eval commands registered. */
function vssEval(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const url = (p: string) => pathToFileURL(path.join(root, p)).href;
  const script = `
    import { Command } from ${JSON.stringify(url('node_modules/commander/esm.mjs'))};
    import { registerEvalCommands } from ${JSON.stringify(url('dist/src/cli/eval.js'))};
    import { exitCodeOf, formatError } from ${JSON.stringify(url('dist/src/cli/errors.js'))};
    const program = new Command().name('vss').option('--verbose');
    registerEvalCommands(program);
    program.parseAsync(process.argv).catch((err) => {
      process.stderr.write(formatError(err, process.argv.includes('--verbose')));
      process.exitCode = exitCodeOf(err);
    });`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script, 'vss', 'eval', ...args], {
    encoding: 'utf8', cwd: tmp, env: { ...process.env, VSS_NUM_THREADS: '1' },
  });
}

/**
 * Maps [B, H, T, T] over a 2×2 grid with a CLS token (T = 5): `row(q)` gives query patch q's attention over
 * the 4 patch keys; CLS gets `clsShare` of every row (the rest scaled to 1 − clsShare), and CLS's own row
 * is uniform (it must not count).
 */
function maps(B: number, H: number, row: (q: number, h: number) => number[], clsShare = 0) {
  const T = 5;
  const a = new Float32Array(B * H * T * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const base = (b * H + h) * T * T;
      a.fill(1 / T, base, base + T); // the CLS query
      for (let q = 0; q < 4; q++) {
        const r = row(q, h);
        a[base + (q + 1) * T] = clsShare;
        r.forEach((w, k) => { a[base + (q + 1) * T + 1 + k] = (1 - clsShare) * w; });
      }
    }
  }
  return fromTypedArray(a, [B, H, T, T]);
}

const P = 7; // 7-pixel patches: a 14×14 image cut 2×2
const grid: [number, number] = [2, 2];

test('patch distances: centres one patch apart are p pixels apart, diagonals p√2', () => {
  const d = patchDistances(grid, P);
  assert.deepEqual(Array.from(d.subarray(0, 4)), [0, 7, 7, 7 * Math.SQRT2]);
  assert.equal(d[3 * 4 + 0], 7 * Math.SQRT2);
  const far = patchDistances([4, 4], 7);
  assert.ok(Math.abs(far[0 * 16 + 15] - 21 * Math.SQRT2) < 1e-12); // corner to corner of 28×28
});

test('mean attention distance: uniform, self and farthest-patch attention give their closed forms', () => {
  // Uniform over the 4 patches: each query sees itself (0), two neighbours (7) and the diagonal (7√2).
  const uniform = (14 + 7 * Math.SQRT2) / 4;
  assert.ok(Math.abs(meanAttentionDistance(maps(2, 3, () => [0.25, 0.25, 0.25, 0.25]), grid, P) - uniform) < 1e-6);
  // CLS is left out and the rest renormalised: 40 % on CLS changes nothing.
  assert.ok(Math.abs(meanAttentionDistance(maps(1, 2, () => [0.25, 0.25, 0.25, 0.25], 0.4), grid, P) - uniform) < 1e-6);
  // All attention on itself: 0.
  const self = maps(2, 2, (q) => [0, 1, 2, 3].map((k) => (k === q ? 1 : 0)));
  assert.equal(meanAttentionDistance(self, grid, P), 0);
  // All attention on the farthest patch (the diagonal opposite, index 3 − q): 7√2.
  const farthest = maps(2, 2, (q) => [0, 1, 2, 3].map((k) => (k === 3 - q ? 1 : 0)), 0.2);
  assert.ok(Math.abs(meanAttentionDistance(farthest, grid, P) - 7 * Math.SQRT2) < 1e-5);
  // Per head: head 0 looks at itself, head 1 at the farthest patch.
  const mixed = maps(3, 2, (q, h) => [0, 1, 2, 3].map((k) => (k === (h === 0 ? q : 3 - q) ? 1 : 0)));
  const meter = new AttentionDistanceMeter(2, grid, P);
  meter.add(mixed);
  const heads = meter.perHead();
  assert.equal(heads[0], 0);
  assert.ok(Math.abs(heads[1] - 7 * Math.SQRT2) < 1e-5);
  assert.ok(Math.abs(meter.mean() - 3.5 * Math.SQRT2) < 1e-5);
  // Maps of the wrong size are refused.
  assert.throws(() => meanAttentionDistance(maps(1, 1, () => [1, 0, 0, 0]), [3, 3], P), /expected \[B, 1, 10, 10\]/);
});

test('measured on a model: one value per layer and head, between 0 and the image diagonal', () => {
  const model = new ViTForImageClassification({
    imageSize: 28, patchSize: 7, numChannels: 1, hiddenSize: 16, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 32,
    labels: ['a', 'b'],
  }, { rng: new Rng(3) });
  const images = fromTypedArray(new Rng(4).uniform(5 * 28 * 28).map((v) => 2 * v - 1), [5, 1, 28, 28]);
  const r = measureAttentionDistances(model, images, 2);
  assert.equal(r.images, 5);
  assert.equal(r.perLayer.length, 2);
  assert.ok(r.perHead.every((h) => h.length === 2));
  for (const d of r.perLayer) assert.ok(d > 0 && d < 21 * Math.SQRT2, `${d}`);
  // The layer value is the mean of its heads (every head sees the same number of queries).
  r.perLayer.forEach((d, l) => assert.ok(Math.abs(d - (r.perHead[l][0] + r.perHead[l][1]) / 2) < 1e-9));
});

test('eval vit-patches: a patch size that does not divide 28 fails before any training', () => {
  const r = vssEval('vit-patches', '--patches', '4,5', '--steps', '2', '--out', path.join(tmp, 'bad'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^vss: --patches 5: 5 does not divide the 28-pixel Fashion-MNIST images\nhint: use patch sizes that divide 28/);
  assert.ok(!fs.existsSync(path.join(tmp, 'bad', 'vit-patches.json')));
  const heads = vssEval('vit-patches', '--dim', '30', '--heads', '4');
  assert.equal(heads.status, 1);
  assert.match(heads.stderr, /--dim 30 is not divisible by --heads 4/);
});

test('eval vit-patches end to end: two-step runs of patches 14 and 7 give the table, JSON and plot; a rerun keeps them', { skip: haveData ? false : `Fashion-MNIST is not installed in ${FASHION_MNIST_SYSTEM_DIR}` }, () => {
  const out = path.join(tmp, 'bench'), runs = path.join(tmp, 'runs');
  const args = ['vit-patches', '--patches', '14,7', '--steps', '2', '--batch', '16', '--eval-limit', '50', '--attention-images', '16',
    '--infer-batch', '32', '--out', out, '--runs', runs, '--no-progress'];
  const r = vssEval(...args);
  assert.equal(r.status, 0, r.stderr);
  // The table: one row per patch size, in the order asked for.
  assert.match(r.stdout, /\| patch \| tokens \| params \| test acc \| train img\/s \| infer img\/s \| attn dist L1 \(px\) \| attn dist L3 \(px\) \| attn dist L6 \(px\) \|/);
  assert.match(r.stdout, /\| 14×14 \| 5 \| [\d,]+ \| \d+\.\d\d% \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \|\n\| 7×7 \| 17 \|/);
  const saved = JSON.parse(fs.readFileSync(path.join(out, 'vit-patches.json'), 'utf8'));
  assert.equal(saved.environment.threads, 1);
  assert.equal(typeof saved.environment.cpu, 'string');
  assert.ok(!Number.isNaN(Date.parse(saved.environment.date)));
  assert.deepEqual(saved.rows.map((x: { patch: number }) => x.patch), [14, 7]);
  for (const row of saved.rows) {
    assert.equal(row.eval_images, 50);
    assert.equal(row.attention_images, 16);
    assert.ok(row.test_accuracy >= 0 && row.test_accuracy <= 1);
    assert.ok(row.train_images_per_s > 0 && row.infer_images_per_s > 0);
    assert.equal(row.attention_distance.length, 6);
    assert.equal(row.attention_distance_heads[0].length, 4);
    // Between 0 and the largest centre distance of the grid.
    const side = 28 / row.patch;
    for (const d of row.attention_distance) assert.ok(d > 0 && d <= (side - 1) * row.patch * Math.SQRT2 + 1e-9, `${d}`);
    assert.ok(fs.existsSync(path.join(runs, `patch-${row.patch}`, 'model', 'model.safetensors')));
  }
  // Params differ only through the patch embedding and position table.
  assert.ok(saved.rows[0].params > saved.rows[1].params);
  assert.match(fs.readFileSync(path.join(out, 'vit-patches.md'), 'utf8'), /### Mean attention distance per layer/);
  const png = readPngSize(fs.readFileSync(path.join(out, 'attention-distance.png')));
  assert.ok(png.width > 100 && png.height > 100);

  // A rerun with the same settings measures nothing again.
  const again = vssEval(...args);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /patch 14: kept from .*vit-patches\.json/);
  assert.match(again.stderr, /patch 7: kept from/);
  assert.doesNotMatch(again.stderr, /training a/);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'vit-patches.json'), 'utf8')).rows, saved.rows);

  // Another patch size on its own adds its row and keeps the others.
  const more = vssEval(...args.map((a) => (a === '14,7' ? '28' : a)));
  assert.equal(more.status, 0, more.stderr);
  const merged = JSON.parse(fs.readFileSync(path.join(out, 'vit-patches.json'), 'utf8'));
  assert.deepEqual(merged.rows.map((x: { patch: number }) => x.patch), [14, 7, 28]);
  assert.deepEqual(merged.rows.slice(0, 2), saved.rows);
  assert.match(fs.readFileSync(path.join(out, 'vit-patches.md'), 'utf8'), /\| 14×14 \|[^\n]*\n\| 7×7 \|[^\n]*\n\| 28×28 \| 2 \|/); // one patch + CLS
});
