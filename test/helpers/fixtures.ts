/**
 * Loading of the PyTorch op fixtures written by scripts/torch_fixtures.py (test/fixtures/ops/).
 * Tensors are read with the engine's own safetensors reader (src/io/safetensors.ts) when it loads, and with the
 * minimal test reader (./safetensors.ts) otherwise.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vss from '../../src/engine/index.js';
import { readSafetensorsRaw } from './safetensors.js';
import type { Attrs, ViewStep } from './ops.js';

export interface CaseInput { tensor: string; view: ViewStep[]; grad: boolean }
export interface CaseOutput { tensor: string; kind: 'float' | 'int' | 'bool'; g: string | null }
export interface OpCase {
  name: string;
  op: string;
  inputs: CaseInput[];
  attrs: Attrs;
  outputs: CaseOutput[];
  grads: (string | null)[];
}

/** The repository root, found from this file whether it runs from test/ (ts) or dist/test/ (js). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('repoRoot: package.json not found above ' + fileURLToPath(import.meta.url));
}

export const FIXTURE_DIR = () => path.join(repoRoot(), 'test', 'fixtures', 'ops');

/** Reads a safetensors file into engine tensors; `reader` says which implementation did it. */
export async function loadTensors(file: string): Promise<{ tensors: Map<string, vss.Tensor>; reader: string }> {
  try {
    const io = await import('../../src/io/safetensors.js');
    return { tensors: io.readSafetensors(file).tensors, reader: 'src/io/safetensors.ts' };
  } catch (err) {
    if (!(err instanceof Error) || !/Cannot find module|ERR_MODULE_NOT_FOUND|does not provide an export/.test(String(err))) throw err;
    const raw = readSafetensorsRaw(file);
    const tensors = new Map<string, vss.Tensor>();
    for (const [name, t] of raw.tensors) tensors.set(name, vss.fromTypedArray(t.data, t.shape, t.dtype));
    return { tensors, reader: 'test/helpers/safetensors.ts' };
  }
}

export async function loadOpFixtures(): Promise<{ cases: OpCase[]; tensors: Map<string, vss.Tensor>; reader: string }> {
  const dir = FIXTURE_DIR();
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'cases.json'), 'utf8')) as { file: string; cases: OpCase[] };
  const { tensors, reader } = await loadTensors(path.join(dir, meta.file));
  return { cases: meta.cases, tensors, reader };
}
