import type { BinaryOp, F32, UnaryOp } from '../kernels.js';
import { erf, erfc, powIeee, sigmoid } from './special.js';
import { coalesce, denseStrides, forEachRow, isDense, numel } from './strided.js';

const SQRT1_2 = Math.SQRT1_2;
const TWO_OVER_SQRT_PI = 1.1283791670955126;
const ONE_OVER_SQRT_2PI = 0.3989422804014327;
const GELU_TANH_K = Math.sqrt(2 / Math.PI);
const GELU_TANH_C = 0.044715;
const QUICK_GELU_K = 1.702;

/** Exact gelu written with erfc so that the negative tail keeps its relative accuracy. */
function gelu(x: number): number {
  return 0.5 * x * erfc(-x * SQRT1_2);
}

// ---------------------------------------------------------------- unary

export function unary(op: UnaryOp, x: F32, out: F32, alpha: number, beta: number): void {
  const n = x.length;
  // One loop per op keeps every loop monomorphic and free of a per-element switch.
  switch (op) {
    case 'neg': for (let i = 0; i < n; i++) out[i] = -x[i]; return;
    case 'exp': for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]); return;
    case 'log': for (let i = 0; i < n; i++) out[i] = Math.log(x[i]); return;
    case 'sqrt': for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]); return;
    case 'rsqrt': for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]); return;
    case 'abs': for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]); return;
    case 'sin': for (let i = 0; i < n; i++) out[i] = Math.sin(x[i]); return;
    case 'cos': for (let i = 0; i < n; i++) out[i] = Math.cos(x[i]); return;
    case 'tanh': for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]); return;
    case 'sigmoid': for (let i = 0; i < n; i++) out[i] = sigmoid(x[i]); return;
    // `v <= 0 ? 0 : v` keeps NaN and turns -0 into +0, as PyTorch does.
    case 'relu': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v <= 0 ? 0 : v; } return;
    case 'gelu': for (let i = 0; i < n; i++) out[i] = gelu(x[i]); return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = 0.5 * v * (1 + Math.tanh(GELU_TANH_K * (v + GELU_TANH_C * v * v * v)));
      }
      return;
    case 'quick_gelu': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v * sigmoid(QUICK_GELU_K * v); } return;
    case 'silu': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v * sigmoid(v); } return;
    case 'erf': for (let i = 0; i < n; i++) out[i] = erf(x[i]); return;
    case 'square': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v * v; } return;
    case 'reciprocal': for (let i = 0; i < n; i++) out[i] = 1 / x[i]; return;
    case 'pow_scalar': for (let i = 0; i < n; i++) out[i] = powIeee(x[i], alpha); return;
    // Math.max/min propagate NaN, like torch.clamp.
    case 'clamp': for (let i = 0; i < n; i++) out[i] = Math.min(Math.max(x[i], alpha), beta); return;
    case 'affine': for (let i = 0; i < n; i++) out[i] = x[i] * alpha + beta; return;
    default: throw new Error(`unary: unknown op ${op as string}`);
  }
}

export function unaryBackward(op: UnaryOp, x: F32, y: F32, gy: F32, gx: F32, alpha: number, beta: number): void {
  const n = gy.length;
  switch (op) {
    case 'neg': for (let i = 0; i < n; i++) gx[i] = -gy[i]; return;
    case 'exp': for (let i = 0; i < n; i++) gx[i] = gy[i] * y[i]; return;
    case 'log': for (let i = 0; i < n; i++) gx[i] = gy[i] / x[i]; return;
    case 'sqrt': for (let i = 0; i < n; i++) gx[i] = gy[i] * 0.5 / y[i]; return;
    case 'rsqrt': for (let i = 0; i < n; i++) { const r = y[i]; gx[i] = gy[i] * -0.5 * r * r * r; } return;
    case 'abs': for (let i = 0; i < n; i++) { const v = x[i]; gx[i] = v > 0 ? gy[i] : v < 0 ? -gy[i] : 0; } return;
    case 'sin': for (let i = 0; i < n; i++) gx[i] = gy[i] * Math.cos(x[i]); return;
    case 'cos': for (let i = 0; i < n; i++) gx[i] = -gy[i] * Math.sin(x[i]); return;
    case 'tanh': for (let i = 0; i < n; i++) { const t = y[i]; gx[i] = gy[i] * (1 - t * t); } return;
    case 'sigmoid': for (let i = 0; i < n; i++) { const s = y[i]; gx[i] = gy[i] * s * (1 - s); } return;
    case 'relu': for (let i = 0; i < n; i++) gx[i] = x[i] > 0 ? gy[i] : 0; return;
    case 'gelu':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        // Φ(x) + x·φ(x)
        const cdf = 0.5 * erfc(-v * SQRT1_2);
        const pdf = ONE_OVER_SQRT_2PI * Math.exp(-0.5 * v * v);
        gx[i] = gy[i] * (cdf + v * pdf);
      }
      return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const t = Math.tanh(GELU_TANH_K * (v + GELU_TANH_C * v * v * v));
        const du = GELU_TANH_K * (1 + 3 * GELU_TANH_C * v * v);
        gx[i] = gy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du);
      }
      return;
    case 'quick_gelu':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const s = sigmoid(QUICK_GELU_K * v);
        gx[i] = gy[i] * (s + QUICK_GELU_K * v * s * (1 - s));
      }
      return;
    case 'silu':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const s = sigmoid(v);
        gx[i] = gy[i] * s * (1 + v * (1 - s));
      }
      return;
    case 'erf': for (let i = 0; i < n; i++) { const v = x[i]; gx[i] = gy[i] * TWO_OVER_SQRT_PI * Math.exp(-v * v); } return;
    case 'square': for (let i = 0; i < n; i++) gx[i] = gy[i] * 2 * x[i]; return;
    case 'reciprocal': for (let i = 0; i < n; i++) { const r = y[i]; gx[i] = -gy[i] * r * r; } return;
    case 'pow_scalar':
      // PyTorch: exponent 0 has gradient 0 everywhere (not 0·x^-1, which is NaN at x = 0).
      if (alpha === 0) { gx.fill(0, 0, n); return; }
      for (let i = 0; i < n; i++) gx[i] = gy[i] * alpha * powIeee(x[i], alpha - 1);
      return;
    case 'clamp': for (let i = 0; i < n; i++) { const v = x[i]; gx[i] = v >= alpha && v <= beta ? gy[i] : 0; } return;
    case 'affine': for (let i = 0; i < n; i++) gx[i] = gy[i] * alpha; return;
    default: throw new Error(`unaryBackward: unknown op ${op as string}`);
  }
}

// ---------------------------------------------------------------- binary

/**
 * One inner row of a binary op. aStep/bStep are 0 (scalar operand) or the operand's inner stride; the
 * op switch runs once per row.
 */
function binaryRow(op: BinaryOp, a: F32, ai: number, aStep: number, b: F32, bi: number, bStep: number,
                   out: F32, oi: number, len: number): void {
  const end = oi + len;
  switch (op) {
    case 'add': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] + b[bi]; return;
    case 'sub': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] - b[bi]; return;
    case 'mul': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] * b[bi]; return;
    case 'div': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] / b[bi]; return;
    case 'pow': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = powIeee(a[ai], b[bi]); return;
    case 'maximum': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = Math.max(a[ai], b[bi]); return;
    case 'minimum': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = Math.min(a[ai], b[bi]); return;
    case 'eq': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] === b[bi] ? 1 : 0; return;
    case 'ne': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] !== b[bi] ? 1 : 0; return;
    case 'lt': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] < b[bi] ? 1 : 0; return;
    case 'le': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] <= b[bi] ? 1 : 0; return;
    case 'gt': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] > b[bi] ? 1 : 0; return;
    case 'ge': for (; oi < end; oi++, ai += aStep, bi += bStep) out[oi] = a[ai] >= b[bi] ? 1 : 0; return;
    default: throw new Error(`binary: unknown op ${op as string}`);
  }
}

export function binary(op: BinaryOp, a: F32, aOffset: number, aStrides: readonly number[],
                       b: F32, bOffset: number, bStrides: readonly number[], shape: readonly number[], out: F32): void {
  const n = numel(shape);
  if (n === 0) return;
  // Two dense operands (the common case, and most of the cost of a tiny op): one row, no coalescing.
  if (isDense(shape, aStrides) && isDense(shape, bStrides)) { binaryRow(op, a, aOffset, 1, b, bOffset, 1, out, 0, n); return; }
  // Dense same-shape and scalar operands coalesce to a single row: one call of binaryRow.
  const c = coalesce(shape, [aStrides, bStrides, denseStrides(shape)]);
  const last = c.shape.length - 1;
  const aStep = c.strides[0][last];
  const bStep = c.strides[1][last];
  forEachRow(c, [aOffset, bOffset, 0], (off, len) => {
    binaryRow(op, a, off[0], aStep, b, off[1], bStep, out, off[2], len);
  });
}

export function where(cond: F32, cOffset: number, cStrides: readonly number[],
                      a: F32, aOffset: number, aStrides: readonly number[],
                      b: F32, bOffset: number, bStrides: readonly number[], shape: readonly number[], out: F32): void {
  if (numel(shape) === 0) return;
  const c = coalesce(shape, [cStrides, aStrides, bStrides, denseStrides(shape)]);
  const last = c.shape.length - 1;
  const cStep = c.strides[0][last];
  const aStep = c.strides[1][last];
  const bStep = c.strides[2][last];
  forEachRow(c, [cOffset, aOffset, bOffset, 0], (off, len) => {
    let ci = off[0], ai = off[1], bi = off[2], oi = off[3];
    const end = oi + len;
    for (; oi < end; oi++, ci += cStep, ai += aStep, bi += bStep) out[oi] = cond[ci] !== 0 ? a[ai] : b[bi];
  });
}
