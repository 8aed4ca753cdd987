import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('package.json "main" and "types" point at the built entry, which exposes every layer', async () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { main: string; types: string };
  readFileSync(join(root, pkg.types));   // throws when missing
  const vss = await import(pathToFileURL(join(root, pkg.main)).href) as Record<string, Record<string, unknown>>;
  for (const layer of ['engine', 'nn', 'optim', 'data', 'image', 'io', 'tokenizers']) {
    assert.equal(typeof vss[layer], 'object', `layer ${layer}`);
    assert.ok(Object.keys(vss[layer]!).length > 0, `layer ${layer} is empty`);
  }
  // a round trip through the engine as a user of the package would make it
  const t = (vss.engine!.fromTypedArray as (a: Float32Array, s: number[]) => { add(o: unknown): { toFloat32Array(): Float32Array } })(
    new Float32Array([1, 2]), [2]);
  assert.deepEqual([...t.add(t).toFloat32Array()], [2, 4]);
});

test('the layers import by package name as the README shows (vss/engine, vss/nn, vss/optim, ...)', async () => {
  for (const layer of ['engine', 'nn', 'optim', 'data', 'image', 'io', 'tokenizers']) {
    const specifier: string = `vss/${layer}`;   // the package refers to itself through its "exports"
    const mod = await import(specifier) as Record<string, unknown>;
    assert.ok(Object.keys(mod).length > 0, specifier);
  }
  const { Linear } = await import('vss/nn' as string) as { Linear: unknown };
  assert.equal(typeof Linear, 'function');
});

test("the README's ten-line engine example runs and learns (imports by package name)", async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = readme.split('## The engine in ten lines')[1]!.split('```ts')[1]!.split('```')[0]!;
  // run it as written, then report the last loss
  const code = `${block}\nexport const last = crossEntropy(model.forward(x), y).item();\n`;
  const file = join(root, 'dist', 'test', 'readme_engine_example.mjs');
  const { writeFileSync, rmSync } = await import('node:fs');
  writeFileSync(file, code);
  try {
    const { last } = await import(pathToFileURL(file).href) as { last: number };
    assert.ok(Number.isFinite(last) && last < 0.6, `loss after 100 steps: ${last}`);
  } finally {
    rmSync(file, { force: true });
  }
});
