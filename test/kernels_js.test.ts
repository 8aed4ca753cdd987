/**
 * The pure TypeScript kernels against naive loops written here (float64, straight from the definitions),
 * on seeded random data with odd sizes that cross the kernels' block and tile boundaries.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels as K } from '../src/engine/backend/js/index.js';
import { UNARY_OPS, BINARY_OPS, convOutSize } from '../src/engine/backend/kernels.js';
import type { BinaryOp, HalfKind, UnaryOp, WeightDtype } from '../src/engine/backend/kernels.js';

// ---------------------------------------------------------------- helpers

/** mulberry32: tiny seeded PRNG, uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randArray(n: number, rng: () => number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng();
  return a;
}

/** ‖a − b‖ / ‖b‖ (absolute norm when b is zero); non-finite entries must match exactly. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(b[i]) || !Number.isFinite(a[i])) {
      assert.ok(Object.is(a[i], b[i]) || (Number.isNaN(a[i]) && Number.isNaN(b[i])),
                `non-finite mismatch at ${i}: ${a[i]} vs ${b[i]}`);
      continue;
    }
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = 1e-5): void {
  const e = relErr(actual, expected);
  assert.ok(e <= tol, `${what}: relative error ${e} > ${tol}`);
}

function denseStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) { s[d] = acc; acc *= shape[d]; }
  return s;
}

function numel(shape: readonly number[]): number { return shape.reduce((p, d) => p * d, 1); }

/** Calls fn(multiIndex, flatIndex) for every index of shape in row-major order. */
function forEachIndex(shape: readonly number[], fn: (idx: number[], flat: number) => void): void {
  const n = numel(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let flat = 0; flat < n; flat++) {
    fn(idx, flat);
    for (let d = shape.length - 1; d >= 0; d--) { if (++idx[d] < shape[d]) break; idx[d] = 0; }
  }
}

function at(idx: readonly number[], strides: readonly number[], offset: number): number {
  let o = offset;
  for (let d = 0; d < idx.length; d++) o += idx[d] * strides[d];
  return o;
}

const f32 = (v: number): number => Math.fround(v);

function toHalf(x: Float32Array, kind: HalfKind): Uint16Array {
  const h = new Uint16Array(x.length);
  K.narrow(x, kind, h);
  return h;
}

function fromHalf(h: Uint16Array, kind: HalfKind): Float32Array {
  const x = new Float32Array(h.length);
  K.widen(h, kind, x);
  return x;
}

/** Independent erf for |x| ≤ 4: Maclaurin series in float64 (≲1e-12 there). */
function erfRef(x: number): number {
  let term = x, sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-18 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

// ---------------------------------------------------------------- half conversions

describe('half conversions', () => {
  const f16 = (v: number): number => toHalf(new Float32Array([v]), 'f16')[0];
  const bf16 = (v: number): number => toHalf(new Float32Array([v]), 'bf16')[0];

  test('known f16 bit patterns', () => {
    assert.equal(f16(1), 0x3c00);
    assert.equal(f16(-2), 0xc000);
    assert.equal(f16(0.5), 0x3800);
    assert.equal(f16(65504), 0x7bff);
    assert.equal(f16(65519), 0x7bff);             // below the halfway point to 2^16
    assert.equal(f16(65520), 0x7c00);             // halfway: rounds to even, which is Inf
    assert.equal(f16(1e10), 0x7c00);
    assert.equal(f16(-1e10), 0xfc00);
    assert.equal(f16(Infinity), 0x7c00);
    assert.equal(f16(-Infinity), 0xfc00);
    assert.equal(f16(0), 0x0000);
    assert.equal(f16(-0), 0x8000);
    assert.equal(f16(2 ** -14), 0x0400);          // smallest normal
    assert.equal(f16(1023 * 2 ** -24), 0x03ff);   // largest subnormal
    assert.equal(f16(2 ** -24), 0x0001);          // smallest subnormal
    assert.equal(f16(2 ** -25), 0x0000);          // tie between 0 and 2^-24 → even (0)
    assert.equal(f16(f32(2 ** -25 * 1.0000001)), 0x0001);
    assert.equal(f16(3 * 2 ** -25), 0x0002);      // tie between 1 and 2 ulps → even (2)
    assert.equal(f16(1 + 2 ** -11), 0x3c00);      // tie → even mantissa 0
    assert.equal(f16(1 + 3 * 2 ** -11), 0x3c02);  // tie → even mantissa 2
    assert.equal(f16(f32(1 + 2 ** -11 + 2 ** -20)), 0x3c01);
    assert.equal(f16(2 ** -30), 0x0000);
    const nan = f16(NaN);
    assert.equal(nan & 0x7c00, 0x7c00);
    assert.notEqual(nan & 0x3ff, 0);
  });

  test('known bf16 bit patterns', () => {
    assert.equal(bf16(1), 0x3f80);
    assert.equal(bf16(-2), 0xc000);
    assert.equal(bf16(1 + 2 ** -8), 0x3f80);      // tie → even
    assert.equal(bf16(1 + 3 * 2 ** -8), 0x3f82);  // tie → even
    assert.equal(bf16(f32(1 + 2 ** -8 + 2 ** -20)), 0x3f81);
    assert.equal(bf16(Infinity), 0x7f80);
    assert.equal(bf16(-Infinity), 0xff80);
    assert.equal(bf16(3.4028234663852886e38), 0x7f80); // f32 max is past bf16's halfway to 2^128
    assert.equal(bf16(-0), 0x8000);
    assert.equal(bf16(2 ** -133), 0x0001);        // f32 subnormals keep their top bits
    const nan = bf16(NaN);
    assert.equal(nan & 0x7f80, 0x7f80);
    assert.notEqual(nan & 0x7f, 0);
    // A NaN whose payload sits only in the low 16 bits must not become Inf.
    const lowNaN = new Float32Array(new Uint32Array([0x7f800001]).buffer);
    const h = toHalf(lowNaN, 'bf16')[0];
    assert.ok((h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0);
  });

  test('widen decodes known patterns', () => {
    const f = fromHalf(new Uint16Array([0x3c00, 0x7bff, 0x0001, 0x03ff, 0x8000, 0x7c00, 0xfc00, 0x7e00]), 'f16');
    assert.deepEqual(Array.from(f.slice(0, 7)), [1, 65504, 2 ** -24, 1023 * 2 ** -24, -0, Infinity, -Infinity]);
    assert.ok(Number.isNaN(f[7]));
    const b = fromHalf(new Uint16Array([0x3f80, 0xc000, 0x7f80, 0x7fc0]), 'bf16');
    assert.deepEqual(Array.from(b.slice(0, 3)), [1, -2, Infinity]);
    assert.ok(Number.isNaN(b[3]));
  });

  test('every non-NaN pattern round-trips', () => {
    for (const kind of ['f16', 'bf16'] as const) {
      const all = new Uint16Array(65536).map((_, i) => i);
      const back = toHalf(fromHalf(all, kind), kind);
      const expMask = kind === 'f16' ? 0x7c00 : 0x7f80;
      for (let i = 0; i < 65536; i++) {
        const isNaN = (i & expMask) === expMask && (i & (kind === 'f16' ? 0x3ff : 0x7f)) !== 0;
        if (isNaN) assert.ok((back[i] & expMask) === expMask && (back[i] & ~expMask & 0x7fff) !== 0);
        else assert.equal(back[i], i, `${kind} pattern ${i.toString(16)}`);
      }
    }
  });

  test('narrow picks the nearest representable value (ties to even) on random inputs', () => {
    const rng = mulberry32(7);
    for (const kind of ['f16', 'bf16'] as const) {
      const x = new Float32Array(4000);
      for (let i = 0; i < x.length; i++) {
        // Spread over the subnormal, normal and overflow ranges of f16.
        const e = kind === 'f16' ? -27 + 45 * rng() : -130 + 256 * rng();
        x[i] = (rng() < 0.5 ? -1 : 1) * 2 ** e;
      }
      const h = toHalf(x, kind);
      const table = fromHalf(new Uint16Array(65536).map((_, i) => i), kind);
      for (let i = 0; i < x.length; i++) {
        const v = x[i], got = table[h[i]];
        const ulpBelow = table[(h[i] & 0x8000) | ((h[i] & 0x7fff) - 1)];
        const ulpAbove = table[(h[i] & 0x8000) | ((h[i] & 0x7fff) + 1)];
        const err = Math.abs(v - got);
        if (!Number.isFinite(got)) {
          const max = kind === 'f16' ? 65504 : 3.3895313892515355e38;
          const halfUlp = kind === 'f16' ? 16 : 2 ** 119;
          assert.ok(Math.abs(v) >= max + halfUlp, `${kind}: ${v} overflowed`);
          continue;
        }
        if ((h[i] & 0x7fff) > 0) assert.ok(err <= Math.abs(v - ulpBelow), `${kind}: ${v} → ${got}`);
        if (Number.isFinite(ulpAbove)) assert.ok(err <= Math.abs(v - ulpAbove), `${kind}: ${v} → ${got}`);
      }
    }
  });
});

// ---------------------------------------------------------------- copies

describe('stridedCopy', () => {
  test('permuted, offset, broadcast and 16-bit sources', () => {
    const rng = mulberry32(1);
    const src = randArray(500, rng);
    const cases: { shape: number[]; strides: number[]; offset: number }[] = [
      { shape: [3, 4, 5], strides: [20, 5, 1], offset: 0 },      // dense
      { shape: [5, 4, 3], strides: [1, 5, 20], offset: 0 },      // fully permuted
      { shape: [3, 7], strides: [0, 2], offset: 11 },            // broadcast rows, step 2
      { shape: [2, 1, 3, 1], strides: [9, 100, 3, 100], offset: 5 },
      { shape: [4, 3], strides: [0, 0], offset: 42 },            // one element everywhere
      { shape: [], strides: [], offset: 17 },                    // rank 0
      { shape: [17], strides: [13], offset: 3 },
    ];
    for (const dtype of ['f32', 'f16', 'bf16'] as WeightDtype[]) {
      const data = dtype === 'f32' ? src : toHalf(src, dtype);
      const values = dtype === 'f32' ? src : fromHalf(data as Uint16Array, dtype);
      for (const c of cases) {
        const out = new Float32Array(numel(c.shape));
        K.stridedCopy(data, dtype, c.offset, c.shape, c.strides, out);
        const expected = new Float32Array(out.length);
        forEachIndex(c.shape, (idx, flat) => { expected[flat] = values[at(idx, c.strides, c.offset)]; });
        assert.deepEqual(out, expected, `${dtype} ${JSON.stringify(c)}`);
      }
    }
  });

  test('empty shapes do nothing', () => {
    const out = new Float32Array(0);
    K.stridedCopy(new Float32Array(4), 'f32', 0, [3, 0, 2], [0, 1, 1], out);
    K.stridedCopy(new Uint16Array(4), 'f16', 0, [0], [1], out);
  });
});

// ---------------------------------------------------------------- elementwise

/** float64 definitions of every unary op. */
function unaryRef(op: UnaryOp, x: number, alpha: number, beta: number): number {
  const sig = (v: number): number => 1 / (1 + Math.exp(-v));
  switch (op) {
    case 'neg': return -x;
    case 'exp': return Math.exp(x);
    case 'log': return Math.log(x);
    case 'sqrt': return Math.sqrt(x);
    case 'rsqrt': return 1 / Math.sqrt(x);
    case 'abs': return Math.abs(x);
    case 'sin': return Math.sin(x);
    case 'cos': return Math.cos(x);
    case 'tanh': return Math.tanh(x);
    case 'sigmoid': return sig(x);
    case 'relu': return Math.max(x, 0);
    case 'gelu': return 0.5 * x * (1 + erfRef(x / Math.SQRT2));
    case 'gelu_tanh': return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'quick_gelu': return x * sig(1.702 * x);
    case 'silu': return x * sig(x);
    case 'erf': return erfRef(x);
    case 'square': return x * x;
    case 'reciprocal': return 1 / x;
    case 'pow_scalar': return x ** alpha;
    case 'clamp': return Math.min(Math.max(x, alpha), beta);
    case 'affine': return x * alpha + beta;
  }
}

/** Inputs inside each op's domain and away from its kinks, so central differences are exact enough. */
function unaryInputs(op: UnaryOp, rng: () => number): Float32Array {
  const n = 37;
  const positive = op === 'log' || op === 'sqrt' || op === 'rsqrt' || op === 'pow_scalar' || op === 'reciprocal';
  const x = randArray(n, rng, positive ? 0.2 : -3, 3);
  for (let i = 0; i < n; i++) if (Math.abs(x[i]) < 0.05) x[i] = 0.3; // keep off the kinks at 0
  if (op === 'clamp') for (let i = 0; i < n; i++) if (Math.abs(Math.abs(x[i]) - 1) < 0.05) x[i] = 0.5;
  return x;
}

describe('unary', () => {
  const params: Partial<Record<UnaryOp, [number, number]>> = {
    pow_scalar: [2.5, 0], clamp: [-1, 1], affine: [1.5, -0.25],
  };

  test('every op matches its definition, and in place', () => {
    const rng = mulberry32(2);
    for (const op of UNARY_OPS) {
      const [alpha, beta] = params[op] ?? [0, 0];
      const x = unaryInputs(op, rng);
      const out = new Float32Array(x.length);
      K.unary(op, x, out, alpha, beta);
      const expected = Array.from(x, (v) => unaryRef(op, v, alpha, beta));
      assertClose(out, expected, op, 2e-7);
      const inPlace = x.slice();
      K.unary(op, inPlace, inPlace, alpha, beta);
      assert.deepEqual(inPlace, out, `${op} in place`);
    }
  });

  test('erf against known values, far tails and NaN', () => {
    // erf values to 16 digits (standard tables).
    const known: [number, number][] = [
      [0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149],
      [2, 0.9953222650189527], [2.5, 0.9995930479825550], [3, 0.9999779095030014],
      [-1.5, -0.9661051464753108], [4, 0.9999999845827421],
    ];
    const x = new Float32Array(known.map(([v]) => v));
    const out = new Float32Array(x.length);
    K.unary('erf', x, out, 0, 0);
    known.forEach(([, e], i) => assert.ok(Math.abs(out[i] - e) <= 6e-8 * Math.abs(e), `erf(${x[i]})`));
    const tails = new Float32Array([10, -10, 30, -30, NaN, 0]);
    K.unary('erf', tails, tails, 0, 0);
    assert.deepEqual(Array.from(tails.slice(0, 4)), [1, -1, 1, -1]);
    assert.ok(Number.isNaN(tails[4]));
    assert.equal(tails[5], 0);
    // gelu's negative tail keeps relative accuracy (computed through erfc): gelu(-5) ≈ -1.43326e-6.
    const g = new Float32Array([-5]);
    K.unary('gelu', g, g, 0, 0);
    assert.ok(Math.abs(g[0] - -1.4332578593959731e-6) <= 1e-6 * 1.4333e-6, `gelu(-5) = ${g[0]}`);
  });

  test('special values', () => {
    const x = new Float32Array([NaN, -0, 0, -2]);
    const out = new Float32Array(4);
    K.unary('relu', x, out, 0, 0);
    assert.ok(Number.isNaN(out[0]));
    assert.ok(Object.is(out[1], 0) && out[3] === 0);
    K.unary('clamp', x, out, -1, 1);
    assert.ok(Number.isNaN(out[0]));
    assert.equal(out[3], -1);
    K.unary('sigmoid', new Float32Array([-1000, 1000]), out.subarray(0, 2), 0, 0);
    assert.deepEqual(Array.from(out.subarray(0, 2)), [0, 1]);
    K.unary('pow_scalar', new Float32Array([1, 1]), out.subarray(0, 2), NaN, 0);
    assert.deepEqual(Array.from(out.subarray(0, 2)), [1, 1]); // 1^NaN = 1 as in C / PyTorch
  });

  test('backward: every op matches central differences of its definition', () => {
    const rng = mulberry32(3);
    for (const op of UNARY_OPS) {
      const [alpha, beta] = params[op] ?? [0, 0];
      const x = unaryInputs(op, rng);
      const y = new Float32Array(x.length);
      K.unary(op, x, y, alpha, beta);
      const gy = randArray(x.length, rng);
      const gx = new Float32Array(x.length);
      K.unaryBackward(op, x, y, gy, gx, alpha, beta);
      const h = 1e-5;
      const expected = Array.from(x, (v, i) =>
        gy[i] * (unaryRef(op, v + h, alpha, beta) - unaryRef(op, v - h, alpha, beta)) / (2 * h));
      assertClose(gx, expected, `${op} backward`, 1e-5);
    }
  });

  test('backward at the kinks', () => {
    const x = new Float32Array([0, -1, 1, 2]);
    const gy = new Float32Array([1, 1, 1, 1]);
    const gx = new Float32Array(4);
    const y = new Float32Array(4);
    K.unaryBackward('relu', x, y, gy, gx, 0, 0);
    assert.deepEqual(Array.from(gx), [0, 0, 1, 1]);
    K.unaryBackward('abs', x, y, gy, gx, 0, 0);
    assert.deepEqual(Array.from(gx), [0, -1, 1, 1]);
    K.unaryBackward('clamp', x, y, gy, gx, -1, 1); // passes where alpha ≤ x ≤ beta, ends included
    assert.deepEqual(Array.from(gx), [1, 1, 1, 0]);
    K.unaryBackward('pow_scalar', x, y, gy, gx, 0, 0); // exponent 0: gradient 0, not NaN at x = 0
    assert.deepEqual(Array.from(gx), [0, 0, 0, 0]);
  });
});

function binaryRef(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add': return a + b;
    case 'sub': return a - b;
    case 'mul': return a * b;
    case 'div': return a / b;
    case 'pow': return a ** b;
    case 'maximum': return Math.max(a, b);
    case 'minimum': return Math.min(a, b);
    case 'eq': return a === b ? 1 : 0;
    case 'ne': return a !== b ? 1 : 0;
    case 'lt': return a < b ? 1 : 0;
    case 'le': return a <= b ? 1 : 0;
    case 'gt': return a > b ? 1 : 0;
    case 'ge': return a >= b ? 1 : 0;
  }
}

describe('binary and where', () => {
  interface Layout { shape: number[]; a: [number, number[]]; b: [number, number[]] }
  const layouts: Layout[] = [
    { shape: [3, 4, 5], a: [0, [20, 5, 1]], b: [0, [20, 5, 1]] },      // dense, same shape
    { shape: [3, 4, 5], a: [7, [5, 0, 1]], b: [2, [0, 5, 1]] },        // broadcast [3,1,5] ∘ [1,4,5]
    { shape: [3, 4, 5], a: [0, [20, 5, 1]], b: [13, [0, 0, 0]] },      // tensor ∘ scalar
    { shape: [3, 4, 5], a: [9, [0, 0, 0]], b: [0, [1, 3, 12]] },       // scalar ∘ transposed
    { shape: [7, 1, 3], a: [1, [3, 99, 1]], b: [0, [1, 99, 7]] },      // size-1 dim, transposed b
    { shape: [], a: [4, []], b: [6, []] },                             // rank 0
    { shape: [17], a: [0, [2]], b: [1, [3]] },
  ];

  test('every op on dense, broadcast, scalar and transposed operands', () => {
    const rng = mulberry32(4);
    const a = randArray(100, rng, 0.1, 2);
    const b = randArray(100, rng, -2, 2);
    b[5] = a[0]; b[0] = a[0]; // some equal pairs for the comparisons
    for (const op of BINARY_OPS) {
      for (const L of layouts) {
        const out = new Float32Array(numel(L.shape));
        K.binary(op, a, L.a[0], L.a[1], b, L.b[0], L.b[1], L.shape, out);
        const expected = new Float32Array(out.length);
        forEachIndex(L.shape, (idx, flat) => {
          expected[flat] = binaryRef(op, a[at(idx, L.a[1], L.a[0])], b[at(idx, L.b[1], L.b[0])]);
        });
        assertClose(out, expected, `${op} ${JSON.stringify(L)}`, 2e-7);
      }
    }
  });

  test('NaN and IEEE pow cases', () => {
    const a = new Float32Array([NaN, 1, 1, -1, 2]);
    const b = new Float32Array([1, NaN, Infinity, -Infinity, NaN]);
    const out = new Float32Array(5);
    K.binary('maximum', a, 0, [1], b, 0, [1], [5], out);
    assert.ok(Number.isNaN(out[0]) && Number.isNaN(out[1]) && Number.isNaN(out[4]));
    K.binary('pow', a, 0, [1], b, 0, [1], [5], out);
    assert.deepEqual(Array.from(out.subarray(1, 4)), [1, 1, 1]);
    K.binary('ne', a, 0, [1], a, 0, [1], [5], out);
    assert.deepEqual(Array.from(out), [1, 0, 0, 0, 0]);
  });

  test('where with broadcast condition', () => {
    const rng = mulberry32(5);
    const cond = Float32Array.from({ length: 20 }, () => (rng() < 0.5 ? 0 : 1));
    const a = randArray(60, rng), b = randArray(60, rng);
    const shape = [3, 4, 5];
    const cases: [number, number[], number, number[], number, number[]][] = [
      [0, [0, 5, 1], 0, [20, 5, 1], 0, [20, 5, 1]],
      [3, [1, 0, 4], 1, [0, 0, 1], 2, [0, 0, 0]],
      [0, [0, 0, 0], 0, [1, 3, 12], 0, [20, 5, 1]],
    ];
    for (const [co, cs, ao, as, bo, bs] of cases) {
      const out = new Float32Array(60);
      K.where(cond, co, cs, a, ao, as, b, bo, bs, shape, out);
      const expected = new Float32Array(60);
      forEachIndex(shape, (idx, flat) => {
        expected[flat] = cond[at(idx, cs, co)] !== 0 ? a[at(idx, as, ao)] : b[at(idx, bs, bo)];
      });
      assert.deepEqual(out, expected);
    }
    const one = new Float32Array(1);
    K.where(new Float32Array([0]), 0, [], a, 0, [], b, 0, [], [], one);
    assert.equal(one[0], b[0]);
    K.where(cond, 0, [1, 1], a, 0, [1, 1], b, 0, [1, 1], [0, 4], new Float32Array(0));
  });

  test('empty shapes do nothing', () => {
    K.binary('add', new Float32Array(0), 0, [1, 1], new Float32Array(0), 0, [0, 1], [2, 0], new Float32Array(0));
    K.unary('exp', new Float32Array(0), new Float32Array(0), 0, 0);
  });
});

// ---------------------------------------------------------------- reductions

describe('reductions', () => {
  const shapes: [number, number, number][] = [[1, 1, 1], [3, 7, 1], [2, 17, 5], [1, 3, 33], [4, 0, 3], [0, 5, 2]];

  test('sum / max / min over the middle axis', () => {
    const rng = mulberry32(6);
    for (const [outer, n, inner] of shapes) {
      const x = randArray(outer * n * inner, rng);
      for (const op of ['sum', 'max', 'min'] as const) {
        const out = new Float32Array(outer * inner);
        K.reduce(op, x, outer, n, inner, out);
        const expected = new Float32Array(outer * inner);
        for (let o = 0; o < outer; o++) {
          for (let i = 0; i < inner; i++) {
            let acc = op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity;
            for (let r = 0; r < n; r++) {
              const v = x[(o * n + r) * inner + i];
              acc = op === 'sum' ? acc + v : op === 'max' ? Math.max(acc, v) : Math.min(acc, v);
            }
            expected[o * inner + i] = acc;
          }
        }
        assertClose(out, expected, `${op} ${outer}x${n}x${inner}`, 1e-6);
      }
    }
  });

  test('max / min propagate NaN; argmax takes the first max (NaN counts as max)', () => {
    const x = new Float32Array([1, NaN, 3, 3, 5, 5, 2, 5]);
    const out = new Float32Array(2);
    K.reduce('max', x, 2, 4, 1, out);
    assert.ok(Number.isNaN(out[0]));
    assert.equal(out[1], 5);
    K.reduce('min', x, 1, 4, 2, out); // columns: [1,3,5,2] and [NaN,3,5,5]
    assert.equal(out[0], 1);
    assert.ok(Number.isNaN(out[1]));
    const idx = new Int32Array(2);
    K.argReduce('argmax', x, 2, 4, 1, idx);
    assert.deepEqual(Array.from(idx), [1, 0]);
    K.argReduce('argmin', new Float32Array([4, 2, 7, 2, 9, 1]), 2, 3, 1, idx);
    assert.deepEqual(Array.from(idx), [1, 2]);
  });

  test('argmax / argmin over strided axes', () => {
    const rng = mulberry32(8);
    for (const [outer, n, inner] of shapes.filter(([, n]) => n > 0)) {
      const x = randArray(outer * n * inner, rng);
      for (const op of ['argmax', 'argmin'] as const) {
        const out = new Int32Array(outer * inner);
        K.argReduce(op, x, outer, n, inner, out);
        for (let o = 0; o < outer; o++) {
          for (let i = 0; i < inner; i++) {
            let best = 0;
            for (let r = 1; r < n; r++) {
              const v = x[(o * n + r) * inner + i], b = x[(o * n + best) * inner + i];
              if (op === 'argmax' ? v > b : v < b) best = r;
            }
            assert.equal(out[o * inner + i], best);
          }
        }
      }
    }
  });

  test('softmax, log_softmax and their backward', () => {
    const rng = mulberry32(9);
    for (const [rows, cols] of [[1, 1], [3, 7], [5, 33]]) {
      const x = randArray(rows * cols, rng, -5, 5);
      const gy = randArray(rows * cols, rng);
      for (const log of [false, true]) {
        const y = new Float32Array(rows * cols);
        K.softmax(x, rows, cols, log, y);
        const expY = new Float64Array(rows * cols), expGx = new Float64Array(rows * cols);
        for (let r = 0; r < rows; r++) {
          let z = 0;
          for (let c = 0; c < cols; c++) z += Math.exp(x[r * cols + c]);
          for (let c = 0; c < cols; c++) {
            const p = Math.exp(x[r * cols + c]) / z;
            expY[r * cols + c] = log ? Math.log(p) : p;
          }
          // Jacobian-vector product from the definition.
          for (let c = 0; c < cols; c++) {
            let g = 0;
            for (let t = 0; t < cols; t++) {
              const pc = Math.exp(x[r * cols + c]) / z, pt = Math.exp(x[r * cols + t]) / z;
              // d y_t / d x_c
              const d = log ? (t === c ? 1 : 0) - pc : pt * ((t === c ? 1 : 0) - pc);
              g += gy[r * cols + t] * d;
            }
            expGx[r * cols + c] = g;
          }
        }
        assertClose(y, expY, `softmax log=${log}`, 1e-6);
        const gx = new Float32Array(rows * cols);
        K.softmaxBackward(y, gy, rows, cols, log, gx);
        assertClose(gx, expGx, `softmaxBackward log=${log}`, 1e-5);
      }
    }
  });
});

// ---------------------------------------------------------------- gemm

describe('gemm', () => {
  function naiveGemm(transA: boolean, transB: boolean, M: number, N: number, K_: number, alpha: number,
                     A: Float32Array, lda: number, strideA: number, B: Float32Array, ldb: number, strideB: number,
                     beta: number, C: Float32Array, ldc: number, strideC: number, batch: number): Float64Array {
    const out = Float64Array.from(C);
    for (let p = 0; p < batch; p++) {
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let k = 0; k < K_; k++) {
            const a = A[p * strideA + (transA ? k * lda + i : i * lda + k)];
            const b = B[p * strideB + (transB ? j * ldb + k : k * ldb + j)];
            s += a * b;
          }
          const c = p * strideC + i * ldc + j;
          out[c] = alpha * s + (beta === 0 ? 0 : beta * C[c]);
        }
      }
    }
    return out;
  }

  test('transposes, padded leading dims, batches, alpha/beta, 16-bit operands', () => {
    const rng = mulberry32(10);
    const sizes: [number, number, number][] = [[1, 1, 1], [3, 7, 17], [37, 133, 131], [5, 1, 9], [1, 6, 3]];
    let caseIndex = 0;
    for (const [M, N, K_] of sizes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const cfg = caseIndex++;
          const batch = cfg % 3 === 0 ? 3 : 1;
          const pad = cfg % 2;
          const lda = (transA ? M : K_) + pad, ldb = (transB ? K_ : N) + 2 * pad, ldc = N + pad;
          const aSize = (transA ? K_ : M) * lda, bSize = (transB ? N : K_) * ldb;
          const strideA = cfg % 4 === 0 ? 0 : aSize;   // A broadcast over the batch every few cases
          const strideB = bSize, strideC = M * ldc + 3;
          const A = randArray(aSize * batch, rng), B = randArray(bSize * batch, rng);
          const C = randArray(strideC * batch, rng);
          const [alpha, beta] = cfg % 5 === 1 ? [2, 0.5] : [1, 0];
          if (beta === 0) C[0] = NaN; // beta = 0 ignores old contents, even NaN
          for (const dtype of ['f32', 'f16', 'bf16'] as WeightDtype[]) {
            const Aw = dtype === 'f32' ? A : toHalf(A, dtype);
            const Bw = dtype === 'f32' ? B : toHalf(B, dtype);
            const Aref = dtype === 'f32' ? A : fromHalf(Aw as Uint16Array, dtype);
            const Bref = dtype === 'f32' ? B : fromHalf(Bw as Uint16Array, dtype);
            const out = C.slice();
            K.gemm(transA, transB, M, N, K_, alpha, Aw, dtype, lda, strideA, Bw, dtype, ldb, strideB,
                   beta, out, ldc, strideC, batch);
            const expected = naiveGemm(transA, transB, M, N, K_, alpha, Aref, lda, strideA, Bref, ldb, strideB,
                                       beta, C, ldc, strideC, batch);
            // Padding between C rows must be untouched.
            for (let p = 0; p < batch; p++) for (let i = 0; i < M; i++) for (let j = N; j < ldc; j++) {
              const c = p * strideC + i * ldc + j;
              expected[c] = C[c];
            }
            assertClose(out, expected, `gemm ${M}x${N}x${K_} tA=${transA} tB=${transB} ${dtype} batch=${batch}`);
          }
        }
      }
    }
  });

  test('mixed dtypes, K = 0 and alpha = 0', () => {
    const rng = mulberry32(11);
    const A = randArray(12, rng), B = randArray(20, rng);
    const Bh = toHalf(B, 'bf16');
    const out = new Float32Array(15);
    K.gemm(false, false, 3, 5, 4, 1, A, 'f32', 4, 0, Bh, 'bf16', 5, 0, 0, out, 5, 0, 1);
    assertClose(out, naiveGemm(false, false, 3, 5, 4, 1, A, 4, 0, fromHalf(Bh, 'bf16'), 5, 0, 0, out, 5, 0, 1), 'mixed');
    const C = randArray(15, rng);
    const c2 = C.slice();
    K.gemm(false, false, 3, 5, 0, 1, A, 'f32', 1, 0, B, 'f32', 5, 0, 2, c2, 5, 0, 1);
    assertClose(c2, Array.from(C, (v) => 2 * v), 'K = 0 scales C by beta');
    const c3 = C.slice();
    K.gemm(false, false, 3, 5, 4, 0, A, 'f32', 4, 0, B, 'f32', 5, 0, 0, c3, 5, 0, 1);
    assert.ok(c3.every((v) => v === 0));
    K.gemm(false, false, 0, 5, 4, 1, A, 'f32', 4, 0, B, 'f32', 5, 0, 0, new Float32Array(0), 5, 0, 1);
  });
});

// ---------------------------------------------------------------- convolution

describe('conv2d', () => {
  interface ConvCfg { N: number; C: number; H: number; W: number; O: number; kh: number; kw: number;
    sh: number; sw: number; ph: number; pw: number; dh: number; dw: number; groups: number }
  const configs: ConvCfg[] = [
    { N: 2, C: 3, H: 7, W: 9, O: 4, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1, dh: 1, dw: 1, groups: 1 },
    { N: 1, C: 4, H: 9, W: 8, O: 6, kh: 3, kw: 2, sh: 2, sw: 3, ph: 1, pw: 2, dh: 2, dw: 1, groups: 2 },
    { N: 3, C: 6, H: 5, W: 5, O: 6, kh: 3, kw: 3, sh: 1, sw: 2, ph: 0, pw: 1, dh: 1, dw: 2, groups: 6 }, // depthwise
    { N: 2, C: 5, H: 4, W: 6, O: 3, kh: 1, kw: 1, sh: 1, sw: 1, ph: 0, pw: 0, dh: 1, dw: 1, groups: 1 }, // pointwise
    { N: 2, C: 4, H: 3, W: 5, O: 4, kh: 1, kw: 1, sh: 1, sw: 1, ph: 0, pw: 0, dh: 1, dw: 1, groups: 2 },
    { N: 1, C: 2, H: 6, W: 6, O: 3, kh: 5, kw: 4, sh: 3, sw: 1, ph: 3, pw: 0, dh: 1, dw: 1, groups: 1 },
    { N: 1, C: 1, H: 1, W: 1, O: 1, kh: 1, kw: 1, sh: 1, sw: 1, ph: 0, pw: 0, dh: 1, dw: 1, groups: 1 },
    { N: 1, C: 2, H: 4, W: 4, O: 2, kh: 2, kw: 2, sh: 2, sw: 2, ph: 0, pw: 0, dh: 1, dw: 1, groups: 1 },
  ];

  /** Direct loops from the definition; returns y, and the adjoint maps for gx and gw. */
  function naiveConv(c: ConvCfg, x: Float32Array, w: Float32Array, bias: Float32Array | null, gy: Float32Array) {
    const OH = convOutSize(c.H, c.kh, c.sh, c.ph, c.dh), OW = convOutSize(c.W, c.kw, c.sw, c.pw, c.dw);
    const Cg = c.C / c.groups, Og = c.O / c.groups;
    const y = new Float64Array(c.N * c.O * OH * OW);
    const gx = new Float64Array(x.length), gw = new Float64Array(w.length);
    for (let n = 0; n < c.N; n++) for (let o = 0; o < c.O; o++) {
      const g = Math.floor(o / Og);
      for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
        const yi = ((n * c.O + o) * OH + oh) * OW + ow;
        let s = bias ? bias[o] : 0;
        for (let cl = 0; cl < Cg; cl++) for (let ki = 0; ki < c.kh; ki++) for (let kj = 0; kj < c.kw; kj++) {
          const ih = oh * c.sh - c.ph + ki * c.dh, iw = ow * c.sw - c.pw + kj * c.dw;
          if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
          const xi = ((n * c.C + g * Cg + cl) * c.H + ih) * c.W + iw;
          const wi = ((o * Cg + cl) * c.kh + ki) * c.kw + kj;
          s += x[xi] * w[wi];
          gx[xi] += gy[yi] * w[wi];
          gw[wi] += gy[yi] * x[xi];
        }
        y[yi] = s;
      }
    }
    return { y, gx, gw, OH, OW };
  }

  test('forward and both backward passes match direct loops', () => {
    const rng = mulberry32(12);
    for (const c of configs) {
      const x = randArray(c.N * c.C * c.H * c.W, rng);
      const w = randArray(c.O * (c.C / c.groups) * c.kh * c.kw, rng);
      const bias = c.O % 2 === 0 ? randArray(c.O, rng) : null;
      const OH = convOutSize(c.H, c.kh, c.sh, c.ph, c.dh), OW = convOutSize(c.W, c.kw, c.sw, c.pw, c.dw);
      const gy = randArray(c.N * c.O * OH * OW, rng);
      const ref = naiveConv(c, x, w, bias, gy);
      const args = [c.N, c.C, c.H, c.W, c.O, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.groups] as const;
      const y = new Float32Array(ref.y.length);
      K.conv2d(x, w, 'f32', bias, ...args, y);
      assertClose(y, ref.y, `conv2d ${JSON.stringify(c)}`);
      const gx = new Float32Array(x.length).fill(NaN);
      K.conv2dBackwardInput(gy, w, 'f32', ...args, gx);
      assertClose(gx, ref.gx, `conv2dBackwardInput ${JSON.stringify(c)}`);
      const gw = new Float32Array(w.length).fill(NaN);
      K.conv2dBackwardWeight(x, gy, ...args, gw);
      assertClose(gw, ref.gw, `conv2dBackwardWeight ${JSON.stringify(c)}`);
    }
  });

  test('16-bit weights', () => {
    const rng = mulberry32(13);
    const c = configs[1];
    const x = randArray(c.N * c.C * c.H * c.W, rng);
    const w = randArray(c.O * (c.C / c.groups) * c.kh * c.kw, rng);
    const args = [c.N, c.C, c.H, c.W, c.O, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.groups] as const;
    for (const kind of ['f16', 'bf16'] as const) {
      const wh = toHalf(w, kind);
      const wRef = fromHalf(wh, kind);
      const OH = convOutSize(c.H, c.kh, c.sh, c.ph, c.dh), OW = convOutSize(c.W, c.kw, c.sw, c.pw, c.dw);
      const gy = randArray(c.N * c.O * OH * OW, rng);
      const ref = naiveConv(c, x, wRef, null, gy);
      const y = new Float32Array(ref.y.length);
      K.conv2d(x, wh, kind, null, ...args, y);
      assertClose(y, ref.y, `conv2d ${kind}`);
      const gx = new Float32Array(x.length);
      K.conv2dBackwardInput(gy, wh, kind, ...args, gx);
      assertClose(gx, ref.gx, `conv2dBackwardInput ${kind}`);
    }
  });

  test('input gradient for H/W larger than the forward implies (conv_transpose output_padding)', () => {
    // H = 8 with k = 3, s = 2, p = 1 gives OH = 4, the same as H = 7: the extra row gets zero gradient.
    const rng = mulberry32(14);
    const c: ConvCfg = { N: 1, C: 2, H: 8, W: 8, O: 3, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1, dh: 1, dw: 1, groups: 1 };
    const w = randArray(3 * 2 * 9, rng);
    const gy = randArray(3 * 4 * 4, rng);
    const ref = naiveConv(c, new Float32Array(2 * 64), w, null, gy);
    const gx = new Float32Array(2 * 64);
    K.conv2dBackwardInput(gy, w, 'f32', c.N, c.C, c.H, c.W, c.O, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, 1, gx);
    assertClose(gx, ref.gx, 'output_padding geometry');
  });

  test('empty batch does nothing', () => {
    K.conv2d(new Float32Array(0), new Float32Array(9), 'f32', null, 0, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, new Float32Array(0));
    K.conv2dBackwardWeight(new Float32Array(0), new Float32Array(0), 0, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, new Float32Array(9));
  });
});

// ---------------------------------------------------------------- attention

describe('attention', () => {
  interface AttnCfg { B: number; H: number; Lq: number; Lk: number; D: number; Dv: number; causal: boolean;
    mask: 'none' | 'full' | 'keyPadding' | 'perHead' }

  /** Materialises the scores; returns out, lse and the gradients. */
  function naiveAttention(c: AttnCfg, q: Float32Array, k: Float32Array, v: Float32Array, scale: number,
                          mask: Float32Array | null, mB: number, mH: number, mQ: number, gout: Float32Array) {
    const out = new Float64Array(c.B * c.H * c.Lq * c.Dv), lse = new Float64Array(c.B * c.H * c.Lq);
    const gq = new Float64Array(q.length), gk = new Float64Array(k.length), gv = new Float64Array(v.length);
    for (let b = 0; b < c.B; b++) for (let h = 0; h < c.H; h++) {
      const hd = b * c.H + h;
      for (let i = 0; i < c.Lq; i++) {
        const s = new Float64Array(c.Lk);
        let max = -Infinity;
        for (let j = 0; j < c.Lk; j++) {
          let d = 0;
          for (let t = 0; t < c.D; t++) d += q[(hd * c.Lq + i) * c.D + t] * k[(hd * c.Lk + j) * c.D + t];
          s[j] = scale * d + (mask ? mask[b * mB + h * mH + i * mQ + j] : 0) + (c.causal && j > i ? -Infinity : 0);
          max = Math.max(max, s[j]);
        }
        const oRow = (hd * c.Lq + i) * c.Dv;
        if (max === -Infinity) { lse[hd * c.Lq + i] = -Infinity; continue; }
        let z = 0;
        for (let j = 0; j < c.Lk; j++) z += Math.exp(s[j] - max);
        lse[hd * c.Lq + i] = max + Math.log(z);
        const p = Array.from(s, (sj) => Math.exp(sj - max) / z);
        for (let j = 0; j < c.Lk; j++) for (let t = 0; t < c.Dv; t++) out[oRow + t] += p[j] * v[(hd * c.Lk + j) * c.Dv + t];
        // Backward through softmax with the materialised P.
        const dp = new Float64Array(c.Lk);
        let dot = 0;
        for (let j = 0; j < c.Lk; j++) {
          for (let t = 0; t < c.Dv; t++) {
            dp[j] += gout[oRow + t] * v[(hd * c.Lk + j) * c.Dv + t];
            gv[(hd * c.Lk + j) * c.Dv + t] += p[j] * gout[oRow + t];
          }
          dot += p[j] * dp[j];
        }
        for (let j = 0; j < c.Lk; j++) {
          const ds = p[j] * (dp[j] - dot) * scale;
          for (let t = 0; t < c.D; t++) {
            gq[(hd * c.Lq + i) * c.D + t] += ds * k[(hd * c.Lk + j) * c.D + t];
            gk[(hd * c.Lk + j) * c.D + t] += ds * q[(hd * c.Lq + i) * c.D + t];
          }
        }
      }
    }
    return { out, lse, gq, gk, gv };
  }

  const configs: AttnCfg[] = [
    { B: 1, H: 1, Lq: 1, Lk: 1, D: 1, Dv: 1, causal: false, mask: 'none' },
    { B: 2, H: 3, Lq: 7, Lk: 17, D: 5, Dv: 3, causal: false, mask: 'none' },
    { B: 1, H: 2, Lq: 37, Lk: 70, D: 8, Dv: 6, causal: false, mask: 'full' },       // crosses block/tile edges
    { B: 2, H: 2, Lq: 17, Lk: 17, D: 4, Dv: 4, causal: true, mask: 'none' },
    { B: 1, H: 1, Lq: 70, Lk: 70, D: 3, Dv: 5, causal: true, mask: 'none' },
    { B: 1, H: 2, Lq: 9, Lk: 5, D: 4, Dv: 2, causal: true, mask: 'none' },          // Lq > Lk, top-left causal
    { B: 1, H: 1, Lq: 5, Lk: 9, D: 4, Dv: 2, causal: true, mask: 'keyPadding' },    // Lq < Lk
    { B: 3, H: 2, Lq: 7, Lk: 11, D: 6, Dv: 3, causal: false, mask: 'keyPadding' },
    { B: 2, H: 3, Lq: 6, Lk: 7, D: 2, Dv: 3, causal: false, mask: 'perHead' },
  ];

  test('forward and backward match the materialised definition', () => {
    const rng = mulberry32(15);
    for (const c of configs) {
      const q = randArray(c.B * c.H * c.Lq * c.D, rng), k = randArray(c.B * c.H * c.Lk * c.D, rng);
      const v = randArray(c.B * c.H * c.Lk * c.Dv, rng), gout = randArray(c.B * c.H * c.Lq * c.Dv, rng);
      const scale = 1 / Math.sqrt(c.D);
      let mask: Float32Array | null = null, mB = 0, mH = 0, mQ = 0;
      if (c.mask === 'full') {
        // [B, H, Lq, Lk] additive, with scattered -Inf and one fully masked query row.
        mask = randArray(c.B * c.H * c.Lq * c.Lk, rng, -2, 2);
        for (let t = 0; t < mask.length; t++) if (rng() < 0.2) mask[t] = -Infinity;
        mask.fill(-Infinity, 3 * c.Lk, 4 * c.Lk);
        mB = c.H * c.Lq * c.Lk; mH = c.Lq * c.Lk; mQ = c.Lk;
      } else if (c.mask === 'keyPadding') {
        // [B, 1, 1, Lk]: the last keys of each batch padded out; the last batch fully masked.
        mask = new Float32Array(c.B * c.Lk);
        for (let b = 0; b < c.B; b++) for (let j = 0; j < c.Lk; j++) {
          if (j >= c.Lk - 1 - b || b === c.B - 1) mask[b * c.Lk + j] = -Infinity;
        }
        mB = c.Lk;
      } else if (c.mask === 'perHead') {
        mask = randArray(c.H * c.Lk, rng, -1, 1); // [1, H, 1, Lk]
        mH = c.Lk;
      }
      const ref = naiveAttention(c, q, k, v, scale, mask, mB, mH, mQ, gout);
      const out = new Float32Array(ref.out.length).fill(NaN), lse = new Float32Array(ref.lse.length);
      K.attention(q, k, v, c.B, c.H, c.Lq, c.Lk, c.D, c.Dv, scale, c.causal, mask, mB, mH, mQ, out, lse);
      const name = JSON.stringify(c);
      assertClose(out, ref.out, `attention out ${name}`);
      assertClose(lse, ref.lse, `attention lse ${name}`);
      const gq = new Float32Array(q.length).fill(NaN), gk = new Float32Array(k.length).fill(NaN);
      const gv = new Float32Array(v.length).fill(NaN);
      K.attentionBackward(q, k, v, out, lse, gout, c.B, c.H, c.Lq, c.Lk, c.D, c.Dv, scale, c.causal,
                          mask, mB, mH, mQ, gq, gk, gv);
      assertClose(gq, ref.gq, `attention gq ${name}`);
      assertClose(gk, ref.gk, `attention gk ${name}`);
      assertClose(gv, ref.gv, `attention gv ${name}`);
    }
  });

  test('fully masked rows give out 0, lse -Inf and zero gradients; Lk = 0 too', () => {
    const q = new Float32Array([1, 2]), k = new Float32Array([1, 1, 3, 3]), v = new Float32Array([5, 6]);
    const mask = new Float32Array([-Infinity, -Infinity]);
    const out = new Float32Array(2).fill(NaN), lse = new Float32Array(2);
    // B = 1, H = 1, Lq = 2, Lk = 2, D = 1, Dv = 1; mask broadcast over rows.
    K.attention(q, k.subarray(0, 2), v, 1, 1, 2, 2, 1, 1, 1, false, mask, 0, 0, 0, out, lse);
    assert.deepEqual(Array.from(out), [0, 0]);
    assert.deepEqual(Array.from(lse), [-Infinity, -Infinity]);
    const gq = new Float32Array(2).fill(NaN), gk = new Float32Array(2).fill(NaN), gv = new Float32Array(2).fill(NaN);
    K.attentionBackward(q, k.subarray(0, 2), v, out, lse, new Float32Array([1, 1]), 1, 1, 2, 2, 1, 1, 1, false,
                        mask, 0, 0, 0, gq, gk, gv);
    assert.deepEqual([...gq, ...gk, ...gv], [0, 0, 0, 0, 0, 0]);
    const o2 = new Float32Array(2).fill(NaN), l2 = new Float32Array(2);
    K.attention(q, new Float32Array(0), new Float32Array(0), 1, 1, 2, 0, 1, 1, 1, false, null, 0, 0, 0, o2, l2);
    assert.deepEqual([...o2, ...l2], [0, 0, -Infinity, -Infinity]);
  });
});

// ---------------------------------------------------------------- normalisation

describe('normalisation', () => {
  /** Normalise one group and back-propagate through it by the explicit Jacobian (O(n²), tiny n only). */
  function naiveNormGroup(x: number[], w: number[], b: number[], gy: number[], eps: number) {
    const n = x.length;
    const mean = x.reduce((s, v) => s + v, 0) / n;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / n;
    const rstd = 1 / Math.sqrt(variance + eps);
    const xhat = x.map((v) => (v - mean) * rstd);
    const y = xhat.map((v, i) => v * w[i] + b[i]);
    const gx = x.map((_, kk) => {
      let s = 0;
      for (let j = 0; j < n; j++) s += gy[j] * w[j] * rstd * ((j === kk ? 1 : 0) - 1 / n - (xhat[j] * xhat[kk]) / n);
      return s;
    });
    return { y, gx, xhat, mean, rstd };
  }

  test('layerNorm forward / backward, with and without affine', () => {
    const rng = mulberry32(16);
    for (const [rows, cols] of [[1, 1], [3, 7], [4, 33]]) {
      for (const affine of [true, false]) {
        const x = randArray(rows * cols, rng, -3, 5), gy = randArray(rows * cols, rng);
        const w = affine ? randArray(cols, rng) : null, b = affine ? randArray(cols, rng) : null;
        const eps = 1e-5;
        const out = new Float32Array(rows * cols), mean = new Float32Array(rows), rstd = new Float32Array(rows);
        K.layerNorm(x, w, b, rows, cols, eps, out, mean, rstd);
        const ey = new Float64Array(rows * cols), egx = new Float64Array(rows * cols);
        const egw = new Float64Array(cols), egb = new Float64Array(cols);
        const emean = new Float64Array(rows), erstd = new Float64Array(rows);
        for (let r = 0; r < rows; r++) {
          const sl = (a: ArrayLike<number>) => Array.from(a).slice(r * cols, (r + 1) * cols);
          const ref = naiveNormGroup(sl(x), w ? Array.from(w) : Array(cols).fill(1), b ? Array.from(b) : Array(cols).fill(0),
                                     sl(gy), eps);
          ey.set(ref.y, r * cols); egx.set(ref.gx, r * cols);
          emean[r] = ref.mean; erstd[r] = ref.rstd;
          for (let c = 0; c < cols; c++) { egw[c] += gy[r * cols + c] * ref.xhat[c]; egb[c] += gy[r * cols + c]; }
        }
        assertClose(out, ey, 'layerNorm');
        assertClose(mean, emean, 'layerNorm mean');
        assertClose(rstd, erstd, 'layerNorm rstd');
        const gx = new Float32Array(rows * cols), gw = new Float32Array(cols).fill(NaN), gb = new Float32Array(cols).fill(NaN);
        K.layerNormBackward(x, w, mean, rstd, gy, rows, cols, gx, affine ? gw : null, affine ? gb : null);
        assertClose(gx, egx, `layerNormBackward gx ${rows}x${cols}`, cols === 1 ? 1e-3 : 1e-5);
        if (affine) { assertClose(gw, egw, 'layerNormBackward gw'); assertClose(gb, egb, 'layerNormBackward gb'); }
      }
    }
  });

  test('groupNorm forward / backward', () => {
    const rng = mulberry32(17);
    for (const [N, C, HW, G] of [[2, 6, 5, 3], [1, 4, 1, 4], [3, 8, 7, 1], [1, 3, 9, 3]]) {
      for (const affine of [true, false]) {
        const x = randArray(N * C * HW, rng, -2, 3), gy = randArray(N * C * HW, rng);
        const w = affine ? randArray(C, rng) : null, b = affine ? randArray(C, rng) : null;
        const eps = 1e-5, Cg = C / G, n = Cg * HW;
        const out = new Float32Array(x.length), mean = new Float32Array(N * G), rstd = new Float32Array(N * G);
        K.groupNorm(x, w, b, N, C, HW, G, eps, out, mean, rstd);
        const ey = new Float64Array(x.length), egx = new Float64Array(x.length);
        const egw = new Float64Array(C), egb = new Float64Array(C);
        for (let s = 0; s < N * G; s++) {
          const base = s * n, g = s % G;
          const chan = (t: number) => g * Cg + Math.floor(t / HW);
          const xs = Array.from(x.subarray(base, base + n)), gys = Array.from(gy.subarray(base, base + n));
          const ws = xs.map((_, t) => (w ? w[chan(t)] : 1)), bs = xs.map((_, t) => (b ? b[chan(t)] : 0));
          const ref = naiveNormGroup(xs, ws, bs, gys, eps);
          ey.set(ref.y, base); egx.set(ref.gx, base);
          for (let t = 0; t < n; t++) { egw[chan(t)] += gys[t] * ref.xhat[t]; egb[chan(t)] += gys[t]; }
        }
        assertClose(out, ey, `groupNorm ${N},${C},${HW},${G}`);
        const gx = new Float32Array(x.length), gw = new Float32Array(C), gb = new Float32Array(C);
        K.groupNormBackward(x, w, mean, rstd, gy, N, C, HW, G, gx, affine ? gw : null, affine ? gb : null);
        assertClose(gx, egx, `groupNormBackward gx ${N},${C},${HW},${G}`, n === 1 ? 1e-3 : 1e-5);
        if (affine) { assertClose(gw, egw, 'groupNormBackward gw'); assertClose(gb, egb, 'groupNormBackward gb'); }
      }
    }
  });
});

// ---------------------------------------------------------------- pooling and resampling

describe('pooling and interpolation', () => {
  const poolCfgs: [number, number, number, number, number, number, number, number, number, number][] = [
    // N, C, H, W, kh, kw, sh, sw, ph, pw
    [2, 3, 7, 9, 3, 3, 2, 2, 1, 1],
    [1, 2, 6, 5, 2, 3, 1, 2, 0, 1],
    [1, 1, 5, 5, 5, 5, 1, 1, 2, 2],
    [1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    [1, 2, 8, 8, 2, 2, 2, 2, 0, 0],
  ];

  test('maxPool2d forward / backward', () => {
    const rng = mulberry32(18);
    for (const [N, C, H, W, kh, kw, sh, sw, ph, pw] of poolCfgs) {
      const x = randArray(N * C * H * W, rng);
      const OH = convOutSize(H, kh, sh, ph, 1), OW = convOutSize(W, kw, sw, pw, 1);
      const out = new Float32Array(N * C * OH * OW), arg = new Int32Array(out.length);
      K.maxPool2d(x, N, C, H, W, kh, kw, sh, sw, ph, pw, out, arg);
      const gy = randArray(out.length, rng);
      const egx = new Float64Array(x.length);
      for (let p = 0; p < N * C; p++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
        let best = -Infinity, bi = -1;
        for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
          const ih = oh * sh - ph + i, iw = ow * sw - pw + j;
          if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
          if (x[p * H * W + ih * W + iw] > best) { best = x[p * H * W + ih * W + iw]; bi = ih * W + iw; }
        }
        const o = (p * OH + oh) * OW + ow;
        assert.equal(out[o], best);
        assert.equal(arg[o], bi);
        egx[p * H * W + bi] += gy[o];
      }
      const gx = new Float32Array(x.length).fill(NaN);
      K.maxPool2dBackward(gy, arg, N, C, H, W, OH, OW, gx);
      assertClose(gx, egx, 'maxPool2dBackward');
    }
  });

  test('avgPool2d forward / backward, both divisor modes', () => {
    const rng = mulberry32(19);
    for (const [N, C, H, W, kh, kw, sh, sw, ph, pw] of poolCfgs) {
      for (const includePad of [true, false]) {
        const x = randArray(N * C * H * W, rng);
        const OH = convOutSize(H, kh, sh, ph, 1), OW = convOutSize(W, kw, sw, pw, 1);
        const out = new Float32Array(N * C * OH * OW);
        K.avgPool2d(x, N, C, H, W, kh, kw, sh, sw, ph, pw, includePad, out);
        const gy = randArray(out.length, rng);
        const ey = new Float64Array(out.length), egx = new Float64Array(x.length);
        for (let p = 0; p < N * C; p++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
          const cells: number[] = [];
          for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
            const ih = oh * sh - ph + i, iw = ow * sw - pw + j;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) cells.push(p * H * W + ih * W + iw);
          }
          const div = includePad ? kh * kw : cells.length;
          const o = (p * OH + oh) * OW + ow;
          ey[o] = cells.reduce((s, ci) => s + x[ci], 0) / div;
          for (const ci of cells) egx[ci] += gy[o] / div;
        }
        assertClose(out, ey, `avgPool2d pad=${includePad}`);
        const gx = new Float32Array(x.length).fill(NaN);
        K.avgPool2dBackward(gy, N, C, H, W, kh, kw, sh, sw, ph, pw, includePad, gx);
        assertClose(gx, egx, `avgPool2dBackward pad=${includePad}`);
      }
    }
  });

  test('maxPool2d keeps NaN and indexes the first in-bounds cell of an all -Inf window', () => {
    const x = new Float32Array([1, NaN, 3, 4]);
    const out = new Float32Array(1), arg = new Int32Array(1);
    K.maxPool2d(x, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0, out, arg);
    assert.ok(Number.isNaN(out[0]));
    assert.equal(arg[0], 1);
    K.maxPool2d(new Float32Array(4).fill(-Infinity), 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, new Float32Array(9), new Int32Array(9));
  });

  test('interpolate nearest / bilinear (both alignCorners) and its adjoint', () => {
    const rng = mulberry32(20);
    const sizes: [number, number, number, number][] = [[3, 5, 7, 9], [8, 6, 4, 3], [4, 4, 8, 8], [5, 1, 2, 3], [1, 3, 1, 7], [3, 3, 3, 3]];
    for (const [H, W, OH, OW] of sizes) {
      for (const mode of ['nearest', 'bilinear'] as const) {
        for (const alignCorners of mode === 'nearest' ? [false] : [false, true]) {
          const P = 2;
          const x = randArray(P * H * W, rng), gy = randArray(P * OH * OW, rng);
          const out = new Float32Array(P * OH * OW);
          K.interpolate(x, P, H, W, OH, OW, mode, alignCorners, out);
          // Per-axis source coordinate by the documented PyTorch formulas.
          const axis = (inS: number, outS: number, o: number): [number, number, number] => {
            if (mode === 'nearest') { const s = Math.min(Math.floor((o * inS) / outS), inS - 1); return [s, s, 0]; }
            let src = alignCorners ? (outS > 1 ? (o * (inS - 1)) / (outS - 1) : 0) : Math.max((o + 0.5) * (inS / outS) - 0.5, 0);
            src = Math.min(src, inS - 1);
            const lo = Math.floor(src);
            return [lo, Math.min(lo + 1, inS - 1), src - lo];
          };
          const ey = new Float64Array(out.length), egx = new Float64Array(x.length);
          for (let p = 0; p < P; p++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
            const [h0, h1, lh] = axis(H, OH, oh), [w0, w1, lw] = axis(W, OW, ow);
            const terms: [number, number][] = [[h0 * W + w0, (1 - lh) * (1 - lw)], [h0 * W + w1, (1 - lh) * lw],
                                               [h1 * W + w0, lh * (1 - lw)], [h1 * W + w1, lh * lw]];
            const o = (p * OH + oh) * OW + ow;
            for (const [cell, wt] of terms) { ey[o] += wt * x[p * H * W + cell]; egx[p * H * W + cell] += wt * gy[o]; }
          }
          const name = `${mode} align=${alignCorners} ${H}x${W}→${OH}x${OW}`;
          assertClose(out, ey, name);
          const gx = new Float32Array(x.length).fill(NaN);
          K.interpolateBackward(gy, P, H, W, OH, OW, mode, alignCorners, gx);
          assertClose(gx, egx, `${name} backward`);
        }
      }
    }
  });

  test('nearest follows floor(dst * H / OH) exactly', () => {
    const H = 5, OH = 3;
    const x = Float32Array.from({ length: H }, (_, i) => i);
    const out = new Float32Array(OH);
    K.interpolate(x, 1, H, 1, OH, 1, 'nearest', false, out);
    assert.deepEqual(Array.from(out), [0, 1, 3]); // floor(0), floor(5/3), floor(10/3)
  });
});

test('every kernel of the contract is implemented', () => {
  assert.equal(K.name, 'js');
  for (const [key, value] of Object.entries(K)) if (key !== 'name') assert.equal(typeof value, 'function', key);
  assert.equal(Object.keys(K).length, 29);
});
