/**
 * The FID-FMNIST harness end to end: the shipped evaluation classifier (models/fmnist-eval-classifier)
 * loads and reads real test images correctly, a damaged classifier folder fails with an error that says
 * which file and what to do, and `vss eval ddpm` / `vss eval sweep` on a tiny untrained model print and
 * write every number. Tests that need the Fashion-MNIST files skip when they are not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Rng, fromTypedArray } from '../src/engine/index.js';
import { FashionMnist, FASHION_MNIST_CLASSES, FASHION_MNIST_SYSTEM_DIR } from '../src/data/index.js';
import { ClassifierFileError, FmnistEvalClassifier, loadReference, readImages } from '../src/eval/fmnist_classifier.js';
import { UNet2DModel } from '../src/models/unet2d.js';
import { ClassConditionalPipeline } from '../src/pipelines/class_conditional.js';
import { schedulerConfigFor, unetConfigFor } from '../src/cli/ddpm.js';
import { repoRoot } from './helpers/fixtures.js';

const root = repoRoot();
const SHIPPED = path.join(root, 'models', 'fmnist-eval-classifier');
const haveData = fs.existsSync(path.join(FASHION_MNIST_SYSTEM_DIR, 't10k-images-idx3-ubyte.gz')) ||
  fs.existsSync(path.join(FASHION_MNIST_SYSTEM_DIR, 't10k-images-idx3-ubyte'));
const noData = haveData ? false : `Fashion-MNIST is not installed in ${FASHION_MNIST_SYSTEM_DIR}`;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-eval-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const at = (f: string) => path.join(tmp, f);

/**
 * `vss eval …` through commander and the CLI's error formatting, as bin/vss.js does it, but with only the
 * eval commands registered (so this test does not depend on the rest of main.ts).
 */
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
    encoding: 'utf8', cwd: tmp, env: { ...process.env, VSS_NUM_THREADS: '1', VSS_CACHE_DIR: at('cache') },
  });
}

/** A tiny untrained class-conditional model folder (what `vss train ddpm --steps 1 --channels 8,16` would export). */
function tinyModel(dir: string): string {
  const cfg = { channels: [8, 16], layersPerBlock: 1, attentionLevels: [], headDim: 8, dropout: 0, size: 28 };
  const unetConfig = unetConfigFor(cfg, FASHION_MNIST_CLASSES.length);
  const unet = UNet2DModel.fromDiffusersConfig(unetConfig, { rng: new Rng(0) });
  const pipe = new ClassConditionalPipeline(unet, schedulerConfigFor({ schedule: 'cosine', prediction: 'epsilon' }), {
    classNames: [...FASHION_MNIST_CLASSES], imageSize: 28, channels: 1, dataRange: 'signed', defaults: { sampler: 'DDIM', steps: 10, guidanceScale: 3 },
  });
  pipe.save(dir, { unetConfig });
  return dir;
}

test('the shipped classifier: small, ≥ 92 % test accuracy on record, reference statistics and floors included', () => {
  const { model, meta } = FmnistEvalClassifier.fromPretrained(SHIPPED);
  assert.equal(model.config.featureDim, 128);
  assert.deepEqual(model.config.classNames, [...FASHION_MNIST_CLASSES]);
  assert.ok((meta.testAccuracy ?? 0) >= 0.92, `recorded test accuracy ${meta.testAccuracy}`);
  const bytes = fs.readdirSync(SHIPPED).reduce((n, f) => n + fs.statSync(path.join(SHIPPED, f)).size, 0);
  assert.ok(bytes < 1.2e6, `${bytes} bytes`);
  const ref = loadReference(SHIPPED, 128, 10)!;
  assert.equal(ref.stats.all.count, 10_000);
  assert.deepEqual(ref.stats.perClass.map((s) => s?.count), new Array(10).fill(1000));
  for (const n of [1000, 10_000]) {
    const floor = ref.floors.get(n);
    assert.ok(floor && floor.fid > 0 && floor.fid < 5, `floor at ${n}: ${floor?.fid}`);
  }
  // More real images → a lower floor (FID's small-sample bias).
  assert.ok(ref.floors.get(10_000)!.fid < ref.floors.get(1000)!.fid);
});

test('the shipped classifier reads real test images correctly', { skip: noData }, () => {
  const { model } = FmnistEvalClassifier.fromPretrained(SHIPPED);
  const test = new FashionMnist({ split: 'test' });
  const n = 100;
  const data = new Float32Array(n * 784);
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = test.get(i);
    data.set(s.image, i * 784);
    labels.push(s.label!);
  }
  const r = readImages(model, fromTypedArray(data, [n, 1, 28, 28]));
  const correct = labels.filter((y, i) => r.predicted[i] === y).length;
  assert.ok(correct >= 88, `${correct}/${n} correct`);
  assert.equal(r.features.length, n * 128);
  // Features of an image do not depend on the batch it is read in (GroupNorm, no batch statistics).
  const one = readImages(model, fromTypedArray(data.slice(0, 784), [1, 1, 28, 28]));
  assert.ok(one.features.every((v, j) => Math.abs(v - r.features[j]) < 1e-4));
});

test('a damaged classifier folder fails with an error naming the file and a way out', () => {
  const copy = (name: string) => {
    const dir = at(name);
    fs.cpSync(SHIPPED, dir, { recursive: true });
    return dir;
  };
  const truncated = copy('truncated');
  const weights = path.join(truncated, 'model.safetensors');
  fs.truncateSync(weights, Math.floor(fs.statSync(weights).size / 2));
  assert.throws(() => FmnistEvalClassifier.fromPretrained(truncated), (e: Error) =>
    e instanceof ClassifierFileError && /cannot load .*truncated.model\.safetensors/.test(e.message));

  const garbage = copy('garbage');
  fs.writeFileSync(path.join(garbage, 'model.safetensors'), 'not a safetensors file at all');
  assert.throws(() => FmnistEvalClassifier.fromPretrained(garbage), /cannot load .*model\.safetensors/);

  const wrongShape = copy('wrong-shape');
  const cfg = JSON.parse(fs.readFileSync(path.join(wrongShape, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(wrongShape, 'config.json'), JSON.stringify({ ...cfg, width: 16 }));
  assert.throws(() => FmnistEvalClassifier.fromPretrained(wrongShape), /shape mismatch/);

  const noConfig = copy('no-config');
  fs.rmSync(path.join(noConfig, 'config.json'));
  assert.throws(() => FmnistEvalClassifier.fromPretrained(noConfig), /not a classifier folder: no config\.json/);
  const badJson = copy('bad-json');
  fs.writeFileSync(path.join(badJson, 'config.json'), '{"_class_name": ');
  assert.throws(() => FmnistEvalClassifier.fromPretrained(badJson), /not valid JSON/);

  // Through the command: one line saying what, one saying what to do, exit code 1.
  const model = tinyModel(at('tiny-for-errors'));
  const r = vssEval('ddpm', '--model', model, '--samples', '20', '--classifier', truncated);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^vss: cannot load .*model\.safetensors.*\nhint: use the shipped models\/fmnist-eval-classifier/m);
  const missing = vssEval('ddpm', '--model', at('nowhere'), '--samples', '20', '--classifier', SHIPPED);
  assert.match(missing.stderr, /vss: no model at .*nowhere\nhint:/);
  assert.match(vssEval('ddpm', '--model', model, '--samples', '5').stderr, /--samples 5 is too few/);
});

test('vss eval ddpm on a tiny untrained model prints FID with its floor, class accuracy, the per-class table, s/sample', { skip: noData }, () => {
  const model = tinyModel(at('tiny'));
  // 30 samples: a count whose floor does not ship with the classifier, so it is measured (and cached).
  const r = vssEval('ddpm', '--model', model, '--samples', '30', '--steps', '2', '--batch', '15',
    '--json', at('eval.json'), '--grid', at('eval.png'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /FID-FMNIST\s+\d+\.\d\d\s+floor \d+\.\d\d \(30 training vs test images\)/);
  assert.match(r.stdout, /class acc\s+\d+\.\d%/);
  assert.match(r.stdout, /\d\.\d{3} s\/sample/);
  for (const name of FASHION_MNIST_CLASSES) assert.match(r.stdout, new RegExp(`^${name.replace('/', '\\/')}\\s+3\\s+\\d+\\.\\d%`, 'm'));
  assert.match(r.stderr, /measuring the FID floor at 30 images/);
  assert.match(r.stderr, /sampling 30\/30 100%/);

  const j = JSON.parse(fs.readFileSync(at('eval.json'), 'utf8'));
  assert.equal(j.samples, 30);
  assert.equal(j.per_class.length, 10);
  // Untrained: noise, far from Fashion-MNIST, and far above the floor of 30 real images.
  assert.ok(j.fid > 3 * j.fid_floor, `${j.fid} vs floor ${j.fid_floor}`);
  assert.ok(j.class_accuracy >= 0 && j.class_accuracy <= 1 && j.seconds_per_sample > 0);
  assert.ok(fs.statSync(at('eval.png')).size > 1000);

  // The floor is cached: a second run does not measure it again, and gives the same numbers (same seed).
  const again = vssEval('ddpm', '--model', model, '--samples', '30', '--steps', '2', '--batch', '30', '--no-progress', '--json', at('again.json'));
  assert.equal(again.status, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /measuring the FID floor/);
  const k = JSON.parse(fs.readFileSync(at('again.json'), 'utf8'));
  assert.ok(Math.abs(k.fid - j.fid) < 1e-3 && k.fid_floor === j.fid_floor, `${k.fid} vs ${j.fid}`);

  // Classifier guidance by the shipped noise-aware classifier: recorded, and it changes the samples.
  const guided = vssEval('ddpm', '--model', model, '--samples', '30', '--steps', '2', '--batch', '30', '--no-progress',
    '--guide-classifier', path.join(root, 'models', 'fmnist-noisy-classifier'), '--guide-scale', '20', '--json', at('guided.json'));
  assert.equal(guided.status, 0, guided.stderr);
  assert.match(guided.stdout, /CFG 3, classifier guidance 20/);
  const g = JSON.parse(fs.readFileSync(at('guided.json'), 'utf8'));
  assert.equal(g.classifier_guidance, 20);
  assert.ok(Math.abs(g.fid - j.fid) > 1e-3, `guided FID ${g.fid} equals unguided ${j.fid}`);
  const noClassifier = vssEval('ddpm', '--model', model, '--samples', '30', '--guide-classifier', at('nowhere'));
  assert.match(noClassifier.stderr, /vss: no classifier at .*nowhere\nhint:/);
});

test('vss eval sweep writes the steps and CFG tables, JSON and plots, and keeps finished rows', { skip: noData }, () => {
  const model = tinyModel(at('tiny-sweep'));
  const out = at('sweep');
  // One and two DDIM steps, both η, a 2-step "DDPM" row, two CFG scales: the shape of the real sweep, in seconds.
  const r = vssEval('sweep', '--model', model, '--what', 'all', '--samples', '20', '--ddim-steps', '1,2', '--etas', '0,1',
    '--ddpm-steps', '2', '--guidance', '1', '--scales', '0,3', '--steps', '1', '--batch', '20', '--out', out, '--no-progress');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\| DDIM \| 2 \| 1 \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d% \|/);
  assert.match(r.stdout, /\| DDPM \| 2 \| - \|/);
  assert.match(r.stdout, /\| 3 \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d% \|/);
  for (const f of ['ddim.md', 'ddim.json', 'ddim_fid.png', 'ddim_time.png', 'cfg.md', 'cfg.json', 'cfg_fid.png', 'cfg_accuracy.png']) {
    assert.ok(fs.existsSync(path.join(out, f)), f);
  }
  const ddim = JSON.parse(fs.readFileSync(path.join(out, 'ddim.json'), 'utf8'));
  assert.deepEqual(ddim.rows.map((x: { sampler: string; steps: number; eta: number }) => `${x.sampler} ${x.steps} ${x.eta}`),
    ['DDIM 1 0', 'DDIM 2 0', 'DDIM 1 1', 'DDIM 2 1', 'DDPM 2 0']);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'cfg.json'), 'utf8')).rows.length, 2);
  // Run again: the finished rows are kept, not sampled again.
  const again = vssEval('sweep', '--model', model, '--what', 'cfg', '--samples', '20', '--scales', '0,3', '--steps', '1', '--out', out, '--no-progress');
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stderr.match(/kept from/g)?.length, 2);
});
