/**
 * Op-level parity with PyTorch. The fixtures (test/fixtures/ops/, written by scripts/torch_fixtures.py) hold,
 * for each case, dense inputs plus the view that makes them strided, the float64 forward result rounded to
 * float32, a fixed cotangent g per float output, and the gradients of L = Σ (out * g).sum() with respect to
 * every float input. Each case runs once per backend: the default one, then `setBackend('js')`.
 *
 * Tolerance: ‖ours − torch‖ / ‖torch‖ ≤ 1e-5 for floats, exact equality for integer and boolean outputs.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as vss from '../src/engine/index.js';
import { setBackend, backendName, nativeAvailable, type BackendName } from '../src/engine/backend/index.js';
import { loadOpFixtures, type OpCase } from './helpers/fixtures.js';
import { applyView, runOp } from './helpers/ops.js';
import { relErr, describeDiff, sameShape, shapeStr } from './helpers/relerr.js';

const REL_TOL = 1e-5;

const { cases, tensors, reader } = await loadOpFixtures();

function stored(name: string): vss.Tensor {
  const t = tensors.get(name);
  if (!t) throw new Error(`fixture tensor ${name} missing from ops.safetensors`);
  return t;
}

/** A private dense copy, so no case can see another's gradients or in-place writes. */
function fresh(t: vss.Tensor): vss.Tensor {
  const c = t.contiguous();
  const data = c.data.slice(c.offset, c.offset + c.numel);
  return vss.fromTypedArray(data, [...c.shape], c.dtype);
}

/** Values as plain numbers, row-major (any dtype). */
function numbers(t: vss.Tensor): number[] {
  const c = t.contiguous();
  const out = new Array<number>(c.numel);
  for (let i = 0; i < c.numel; i++) out[i] = Number(c.data[c.offset + i]);
  return out;
}

function checkFloat(what: string, actual: vss.Tensor | null, expected: vss.Tensor, errors: string[]): void {
  if (!actual) {
    // A missing gradient is acceptable only where the reference gradient is exactly zero.
    if (numbers(expected).some((v) => v !== 0)) errors.push(`${what}: no gradient, want non-zero ${shapeStr(expected.shape)}`);
    return;
  }
  if (!sameShape(actual.shape, expected.shape)) {
    errors.push(`${what}: shape ${shapeStr(actual.shape)}, want ${shapeStr(expected.shape)}`);
    return;
  }
  if (actual.dtype !== 'f32') errors.push(`${what}: dtype ${actual.dtype}, want f32`);
  const a = actual.toFloat32Array(), b = expected.toFloat32Array();
  const err = relErr(a, b);
  if (!(err <= REL_TOL)) errors.push(`${what}: ${describeDiff(a, b)}`);
}

function checkExact(what: string, kind: 'int' | 'bool', actual: vss.Tensor, expected: vss.Tensor, errors: string[]): void {
  if (!sameShape(actual.shape, expected.shape)) {
    errors.push(`${what}: shape ${shapeStr(actual.shape)}, want ${shapeStr(expected.shape)}`);
    return;
  }
  if (kind === 'bool' && actual.dtype !== 'bool') errors.push(`${what}: dtype ${actual.dtype}, want bool`);
  if (kind === 'int' && actual.dtype !== 'i64' && actual.dtype !== 'i32') errors.push(`${what}: dtype ${actual.dtype}, want an integer dtype`);
  const a = numbers(actual), b = numbers(expected);
  const bad = a.findIndex((v, i) => v !== b[i]);
  if (bad >= 0) {
    const n = a.filter((v, i) => v !== b[i]).length;
    errors.push(`${what}: ${n} of ${a.length} values differ, first at flat index ${bad} (got ${a[bad]}, want ${b[bad]})`);
  }
}

function runCase(c: OpCase): void {
  const bases = c.inputs.map((inp) => {
    const b = fresh(stored(inp.tensor));
    if (inp.grad) b.requiresGrad_(true);
    return b;
  });
  const xs = bases.map((b, i) => applyView(b, c.inputs[i].view));
  const outs = runOp(c.op, xs, c.attrs);
  const errors: string[] = [];
  if (outs.length !== c.outputs.length) {
    assert.fail(`${c.op} returned ${outs.length} outputs, torch ${c.outputs.length}`);
  }

  c.outputs.forEach((o, j) => {
    const want = stored(o.tensor);
    if (o.kind === 'float') checkFloat(`output ${j}`, outs[j], want, errors);
    else checkExact(`output ${j}`, o.kind, outs[j], want, errors);
  });

  if (c.grads.some((g) => g !== null)) {
    const floatOuts = c.outputs.map((o, j) => ({ o, t: outs[j] })).filter(({ o }) => o.kind === 'float');
    const notTracked = floatOuts.filter(({ t }) => !t.requiresGrad);
    if (notTracked.length) {
      errors.push(`outputs ${notTracked.map(({ o }) => o.tensor).join(', ')} do not require grad although inputs do`);
    } else if (floatOuts.length === 1) {
      floatOuts[0].t.backward(fresh(stored(floatOuts[0].o.g!)));
    } else {
      let loss: vss.Tensor | null = null;
      for (const { o, t } of floatOuts) {
        const term = vss.sum(vss.mul(t, fresh(stored(o.g!))));
        loss = loss ? vss.add(loss, term) : term;
      }
      loss!.backward();
    }
    if (!notTracked.length) {
      c.grads.forEach((g, i) => {
        if (g !== null) checkFloat(`grad of input ${i}`, bases[i].grad, stored(g), errors);
      });
    }
  }
  if (errors.length) assert.fail(`${c.name}\n  ` + errors.join('\n  '));
}

const initial: BackendName = backendName();
const passes: { label: string; tag: string; backend: BackendName }[] = [
  {
    tag: `default: ${initial}${initial === 'js' && !nativeAvailable() ? ', no native addon' : ''}`,
    label: initial === 'native'
      ? 'PyTorch parity, default backend (native)'
      : `PyTorch parity, default backend (js: ${nativeAvailable() ? 'selected by VSS_BACKEND' : 'native addon not built'})`,
    backend: initial,
  },
  { label: "PyTorch parity, setBackend('js')", tag: 'setBackend js', backend: 'js' },
];

test(`fixtures load (${cases.length} cases, ${tensors.size} tensors, read by ${reader})`, () => {
  assert.ok(cases.length > 0);
});

for (const pass of passes) {
  describe(pass.label, () => {
    after(() => setBackend(initial));
    for (const c of cases) {
      test(`${c.name} [${pass.tag}]`, () => {
        setBackend(pass.backend);
        runCase(c);
      });
    }
  });
}
