/** Elementwise ops: unary, binary with broadcasting, comparisons, where. */
import { emptyF32 } from '../dtype.js';
import { Tensor, sameShape, type TensorLike } from '../tensor.js';
import { K } from '../backend/index.js';
import type { BinaryOp, UnaryOp } from '../backend/kernels.js';
import { asTensor, broadcastShapes, broadcastStrides, fromOp, stridedF32, toDense } from './data.js';
import { sumTo } from './reduce.js';

// ------------------------------------------------------------------ unary

function unary(x: Tensor, op: UnaryOp, alpha = 0, beta = 0): Tensor {
  const xd = toDense(x);
  const out = emptyF32(xd.length);
  if (xd.length) K.unary(op, xd, out, alpha, beta);
  return fromOp(out, x.shape, [x], op, (g) => {
    const gx = emptyF32(xd.length);
    if (xd.length) K.unaryBackward(op, xd, out, toDense(g), gx, alpha, beta);
    return [new Tensor(gx, x.shape, 'f32')];
  });
}

export const neg = (x: Tensor) => unary(x, 'neg');
export const exp = (x: Tensor) => unary(x, 'exp');
export const log = (x: Tensor) => unary(x, 'log');
export const sqrt = (x: Tensor) => unary(x, 'sqrt');
export const rsqrt = (x: Tensor) => unary(x, 'rsqrt');
export const abs = (x: Tensor) => unary(x, 'abs');
export const sin = (x: Tensor) => unary(x, 'sin');
export const cos = (x: Tensor) => unary(x, 'cos');
export const tanh = (x: Tensor) => unary(x, 'tanh');
export const sigmoid = (x: Tensor) => unary(x, 'sigmoid');
export const relu = (x: Tensor) => unary(x, 'relu');
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none') => unary(x, approximate === 'tanh' ? 'gelu_tanh' : 'gelu');
export const quickGelu = (x: Tensor) => unary(x, 'quick_gelu');
export const silu = (x: Tensor) => unary(x, 'silu');
export const erf = (x: Tensor) => unary(x, 'erf');
export const square = (x: Tensor) => unary(x, 'square');
export const reciprocal = (x: Tensor) => unary(x, 'reciprocal');
export const clamp = (x: Tensor, min?: number, max?: number) => unary(x, 'clamp', min ?? -Infinity, max ?? Infinity);
/** x * scale + shift in one pass. */
export const affine = (x: Tensor, scale: number, shift: number) => unary(x, 'affine', scale, shift);

// ------------------------------------------------------------------ binary

function binaryForward(op: BinaryOp, a: Tensor, b: Tensor): { out: Float32Array; shape: readonly number[] } {
  if (a.dtype === 'f32' && b.dtype === 'f32' && sameShape(a.shape, b.shape)) {
    // No broadcasting: the operands' own strides (the shape is frozen, so it can be shared).
    const n = a.numel, out = emptyF32(n);
    if (n) K.binary(op, a.data as Float32Array, a.offset, a.strides, b.data as Float32Array, b.offset, b.strides, a.shape, out);
    return { out, shape: a.shape };
  }
  const shape = broadcastShapes(a.shape, b.shape);
  const A = stridedF32(a), B = stridedF32(b);
  let n = 1;
  for (const d of shape) n *= d;
  const out = emptyF32(n);
  if (n) K.binary(op, A.buf, A.offset, broadcastStrides(a.shape, A.strides, shape),
                  B.buf, B.offset, broadcastStrides(b.shape, B.strides, shape), shape, out);
  return { out, shape };
}

function binary(op: BinaryOp, x: TensorLike, y: TensorLike,
                grads: (g: Tensor, a: Tensor, b: Tensor, out: Tensor) => [Tensor | null, Tensor | null]): Tensor {
  const a = asTensor(x), b = asTensor(y);
  const { out, shape } = binaryForward(op, a, b);
  const result: Tensor = fromOp(out, shape, [a, b], op, (g) => {
    const [ga, gb] = grads(g, a, b, result);
    return [ga && a.requiresGrad ? sumTo(ga, a.shape) : null, gb && b.requiresGrad ? sumTo(gb, b.shape) : null];
  });
  return result;
}

export const add = (a: TensorLike, b: TensorLike): Tensor => binary('add', a, b, (g) => [g, g]);
export const sub = (a: TensorLike, b: TensorLike): Tensor => binary('sub', a, b, (g, _a, b) => [g, b.requiresGrad ? neg(g) : null]);
export const mul = (a: TensorLike, b: TensorLike): Tensor =>
  binary('mul', a, b, (g, a, b): [Tensor | null, Tensor | null] => [a.requiresGrad ? mul(g, b) : null, b.requiresGrad ? mul(g, a) : null]);
export const div = (a: TensorLike, b: TensorLike): Tensor =>
  binary('div', a, b, (g, a, b, out): [Tensor | null, Tensor | null] => [a.requiresGrad ? div(g, b) : null, b.requiresGrad ? neg(div(mul(g, out), b)) : null]);
export const pow = (a: TensorLike, b: TensorLike): Tensor => {
  // A constant exponent is a unary op (cheaper, and exact at a = 0).
  if (typeof b === 'number') return unary(asTensor(a), 'pow_scalar', b, 0);
  return binary('pow', a, b, (g, a, b, out) => [
    a.requiresGrad ? mul(g, mul(b, pow(a, sub(b, 1)))) : null,
    b.requiresGrad ? mul(g, mul(out, log(a))) : null,
  ]);
};
/** Ties send half the gradient to each side, as PyTorch does. */
function tieSplit(g: Tensor, a: Tensor, b: Tensor, firstWins: BinaryOp): [Tensor, Tensor] {
  const win = compare(firstWins, a, b), tie = compare('eq', a, b);
  const wa = add(win, mul(tie, 0.5));
  return [mul(g, wa), mul(g, sub(1, wa))];
}
export const maximum = (a: TensorLike, b: TensorLike) => binary('maximum', a, b, (g, a, b) => tieSplit(g, a, b, 'gt'));
export const minimum = (a: TensorLike, b: TensorLike) => binary('minimum', a, b, (g, a, b) => tieSplit(g, a, b, 'lt'));

// ------------------------------------------------------------------ comparisons and where

/** Comparison as f32 1/0 (internal: used as a mask in gradient formulas). */
function compare(op: BinaryOp, a: TensorLike, b: TensorLike): Tensor {
  const { out, shape } = binaryForward(op, asTensor(a), asTensor(b));
  return new Tensor(out, shape, 'f32');
}

function toBool(t: Tensor): Tensor {
  const d = t.data as Float32Array;
  const out = new Uint8Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = d[i] !== 0 ? 1 : 0;
  return new Tensor(out, t.shape, 'bool');
}

export const eq = (a: TensorLike, b: TensorLike) => toBool(compare('eq', a, b));
export const ne = (a: TensorLike, b: TensorLike) => toBool(compare('ne', a, b));
export const lt = (a: TensorLike, b: TensorLike) => toBool(compare('lt', a, b));
export const le = (a: TensorLike, b: TensorLike) => toBool(compare('le', a, b));
export const gt = (a: TensorLike, b: TensorLike) => toBool(compare('gt', a, b));
export const ge = (a: TensorLike, b: TensorLike) => toBool(compare('ge', a, b));
export const logicalNot = (x: Tensor) => toBool(compare('eq', x, 0));

/** cond ? a : b with broadcasting; cond is any dtype (non-zero = true). */
export function where(cond: Tensor, x: TensorLike, y: TensorLike): Tensor {
  const a = asTensor(x), b = asTensor(y);
  const shape = broadcastShapes(cond.shape, a.shape, b.shape);
  const C = stridedF32(cond), A = stridedF32(a), B = stridedF32(b);
  let n = 1;
  for (const d of shape) n *= d;
  const out = emptyF32(n);
  if (n) K.where(C.buf, C.offset, broadcastStrides(cond.shape, C.strides, shape),
                 A.buf, A.offset, broadcastStrides(a.shape, A.strides, shape),
                 B.buf, B.offset, broadcastStrides(b.shape, B.strides, shape), shape, out);
  return fromOp(out, shape, [a, b], 'where', (g) => [
    a.requiresGrad ? sumTo(where(cond, g, 0), a.shape) : null,
    b.requiresGrad ? sumTo(where(cond, 0, g), b.shape) : null,
  ]);
}
