/**
 * Matrix products. Transposed and batch-broadcast operands are handed to the GEMM kernel as strides
 * (no copies), and 16-bit weights go to it as they are stored.
 */
import { Tensor, numelOf } from '../tensor.js';
import { K } from '../backend/index.js';
import type { WeightBuf, WeightDtype } from '../backend/kernels.js';
import { isHalf, emptyF32 } from '../dtype.js';
import { broadcastShapes, fromOp, toDense } from './data.js';
import { contiguous, expand, reshape, squeeze, transpose, unsqueeze } from './view.js';
import { sumTo, sum } from './reduce.js';

interface GemmOperand { buf: WeightBuf; dtype: WeightDtype; trans: boolean; ld: number; batchStride: number }

/**
 * How to hand the last two dims of `t` (already expanded to its batch shape) to GEMM: row-major,
 * transposed, and one stride over the flattened batch dims. Null when the layout needs a copy.
 */
function gemmOperand(t: Tensor): GemmOperand | null {
  if (t.dtype !== 'f32' && !isHalf(t.dtype)) return null;
  const nd = t.ndim, rows = t.shape[nd - 2], cols = t.shape[nd - 1];
  const rs = t.strides[nd - 2], cs = t.strides[nd - 1];
  let trans: boolean, ld: number;
  if (cs === 1 || cols === 1) { trans = false; ld = rows === 1 ? Math.max(cols, 1) : rs; if (ld < cols) return null; }
  else if (rs === 1 || rows === 1) { trans = true; ld = cols === 1 ? Math.max(rows, 1) : cs; if (ld < rows) return null; }
  else return null;
  // Batch dims must collapse to one stride (all zero = broadcast one matrix).
  let batchStride = 0, expect = -1;
  for (let d = nd - 3; d >= 0; d--) {
    if (t.shape[d] === 1) continue;
    const s = t.strides[d];
    if (expect < 0) { batchStride = s; expect = s * t.shape[d]; }
    else if (s === expect) expect = s * t.shape[d];
    else return null;
  }
  const isF32 = t.dtype === 'f32';
  const data = t.data as Float32Array | Uint16Array;
  return { buf: data.subarray(t.offset), dtype: isF32 ? 'f32' : (t.dtype as 'f16' | 'bf16'), trans, ld, batchStride };
}

function operandOf(t: Tensor): GemmOperand {
  const op = gemmOperand(t);
  if (op) return op;
  const dense = new Tensor(Float32Array.from(toDense(t)), t.shape, 'f32');
  return gemmOperand(dense)!;
}

/** a [..., M, K] @ b [..., K, N] with batch dims broadcast; both rank ≥ 2. */
function matmulNd(a: Tensor, b: Tensor): Tensor {
  const M = a.shape[a.ndim - 2], Ka = a.shape[a.ndim - 1], Kb = b.shape[b.ndim - 2], N = b.shape[b.ndim - 1];
  if (Ka !== Kb) throw new Error(`matmul: shapes [${a.shape}] and [${b.shape}] do not align (${Ka} ≠ ${Kb})`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const nb = numelOf(batch);
  const A = operandOf(expand(a.detach(), [...batch, M, Ka]));
  const B = operandOf(expand(b.detach(), [...batch, Kb, N]));
  const out = emptyF32(nb * M * N);
  if (out.length) {
    K.gemm(A.trans, B.trans, M, N, Ka, 1, A.buf, A.dtype, A.ld, A.batchStride,
           B.buf, B.dtype, B.ld, B.batchStride, 0, out, N, M * N, nb);
  }
  return fromOp(out, [...batch, M, N], [a, b], 'matmul', (g) => [
    a.requiresGrad ? sumTo(matmulNd(g, transpose(b, -1, -2)), a.shape) : null,
    b.requiresGrad ? sumTo(matmulNd(transpose(a, -1, -2), g), b.shape) : null,
  ]);
}

/** Matrix product with PyTorch's rules: 1-D operands are promoted and the added dim removed after. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0) throw new Error('matmul: operands must have at least one dim');
  const a2 = a.ndim === 1 ? unsqueeze(a, 0) : a;
  const b2 = b.ndim === 1 ? unsqueeze(b, 1) : b;
  let out = matmulNd(a2, b2);
  if (b.ndim === 1) out = squeeze(out, -1);
  if (a.ndim === 1) out = squeeze(out, a.ndim === 1 && b.ndim === 1 ? 0 : -2);
  return out;
}

export function bmm(a: Tensor, b: Tensor): Tensor {
  if (a.ndim !== 3 || b.ndim !== 3 || a.shape[0] !== b.shape[0]) {
    throw new Error(`bmm: expected [B, M, K] and [B, K, N], got [${a.shape}] and [${b.shape}]`);
  }
  return matmulNd(a, b);
}

/** y = x wᵀ + b with w [out, in] (may be 16-bit); x [..., in]. The bias is the GEMM's starting value. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor | null): Tensor {
  if (w.ndim !== 2) throw new Error(`linear: weight must be [out, in], got [${w.shape}]`);
  const [O, I] = w.shape;
  if (x.shape[x.ndim - 1] !== I) throw new Error(`linear: input [${x.shape}] does not end in ${I} (weight [${w.shape}])`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== O)) throw new Error(`linear: bias must be [${O}], got [${bias.shape}]`);
  const R = x.numel / I || 0;
  const x2 = contiguous(reshape(x.detach(), [R, I]));
  const W = operandOf(transpose(w.detach(), 0, 1)); // [in, out] view of w
  const out = emptyF32(R * O);
  if (out.length) {  // the bias is the GEMM's starting value in every row (added tile by tile, in cache)
    K.gemm(false, W.trans, R, O, I, 1, toDense(x2), 'f32', I, 0, W.buf, W.dtype, W.ld, 0, 0, out, O, 0, 1,
           bias ? toDense(bias) : null);
  }
  const inputs = bias ? [x, w, bias] : [x, w];
  return fromOp(out, [...x.shape.slice(0, -1), O], inputs, 'linear', (g) => {
    const g2 = reshape(g, [R, O]);
    return [
      x.requiresGrad ? reshape(matmulNd(g2, w.dtype === 'f32' ? w : w.detach()), x.shape) : null,
      w.requiresGrad ? matmulNd(transpose(g2, 0, 1), x2) : null,
      bias?.requiresGrad ? sum(g2, 0) : null,
    ];
  });
}
