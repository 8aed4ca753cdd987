/**
 * The kernel layer: the only place where loops over tensor data live.
 *
 * Two implementations exist:
 *  - `js/`      the pure TypeScript reference. It implements every kernel below, is used by tests as the
 *               reference, and is the fallback when the native addon cannot load.
 *  - `native`   our C++ N-API addon. It overrides the heavy kernels; anything it does not provide falls
 *               back to the JS version (the backend object is `{ ...jsKernels, ...nativeKernels }`).
 *
 * Conventions (all kernels):
 *  - Buffers are flat typed arrays. Unless a parameter says "strided", a buffer is dense row-major
 *    starting at index 0 of the array passed (callers pass `subarray` views, never copies).
 *  - Compute is float32. `Half` buffers hold raw 16-bit patterns (IEEE f16 or bfloat16, named by a
 *    `HalfKind`); kernels that accept them widen to f32 as they read.
 *  - Output buffers are fully overwritten (never accumulated into) unless a parameter says otherwise.
 *  - Shapes/strides are plain number arrays; rank ≤ 8.
 *  - Kernels never allocate tensors; scratch memory is their own business.
 */

export type F32 = Float32Array;
export type Half = Uint16Array;
export type HalfKind = 'f16' | 'bf16';
/** Dtype of a weight-like operand that a kernel may read in 16-bit form. */
export type WeightDtype = 'f32' | HalfKind;
/** A weight-like operand: f32 data, or 16-bit patterns tagged by the accompanying WeightDtype. */
export type WeightBuf = F32 | Half;

export const UNARY_OPS = [
  'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'sin', 'cos', 'tanh', 'sigmoid', 'relu',
  'gelu', 'gelu_tanh', 'quick_gelu', 'silu', 'erf', 'square', 'reciprocal',
  'pow_scalar', // y = x ** alpha
  'clamp',      // y = min(max(x, alpha), beta)  (alpha = -Infinity / beta = +Infinity for one-sided)
  'affine',     // y = x * alpha + beta
] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];

export const BINARY_OPS = [
  'add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum',
  // comparisons write 1.0 (true) or 0.0 (false)
  'eq', 'ne', 'lt', 'le', 'gt', 'ge',
] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

export type ReduceOp = 'sum' | 'max' | 'min';
export type ArgReduceOp = 'argmax' | 'argmin';

/**
 * Where an attention operand's rows are: row i of (batch b, head h) starts at b*[0] + h*[1] + i*[2]
 * elements into its buffer, and its last dim is dense. Dense [B, H, L, n] is [H*L*n, L*n, n]; the
 * [B, L, H·n] a linear layer writes, seen as heads without a copy, is [L*H*n, n, H*n].
 */
export type AttnLayout = readonly [batch: number, head: number, row: number];
export interface AttnLayouts { q: AttnLayout; k: AttnLayout; v: AttnLayout; out: AttnLayout }
export interface AttnGradLayouts extends AttnLayouts { gout: AttnLayout; gq: AttnLayout; gk: AttnLayout; gv: AttnLayout }

/** The layout of a dense [B, H, L, n] operand. */
export function denseAttnLayout(H: number, L: number, n: number): AttnLayout {
  return [H * L * n, L * n, n];
}

export interface Kernels {
  readonly name: 'js' | 'native';

  // ---------------------------------------------------------------- copies and casts
  /**
   * Gather a strided view into a dense f32 buffer: out[i] = src[offset + Σ idx_d * strides[d]] for the
   * row-major multi-index idx of i over `shape`. `src` is f32, or 16-bit patterns when srcDtype is a
   * HalfKind (widened while copying). Strides may be 0 (broadcast) or any positive value.
   */
  stridedCopy(src: F32 | Half, srcDtype: WeightDtype, offset: number, shape: readonly number[],
              strides: readonly number[], out: F32): void;
  /** 16-bit patterns → f32, elementwise, dense. */
  widen(src: Half, kind: HalfKind, out: F32): void;
  /** f32 → 16-bit patterns, round to nearest even (NaN stays NaN, overflow → ±Inf for f16). */
  narrow(src: F32, kind: HalfKind, out: Half): void;

  // ---------------------------------------------------------------- elementwise
  /** Dense, out.length === x.length; out may alias x (in place). alpha/beta only for the ops that say so. */
  unary(op: UnaryOp, x: F32, out: F32, alpha: number, beta: number): void;
  /**
   * gx = gy * dy/dx, dense. `y` is the forward output (some ops use it: exp, sigmoid, tanh, sqrt, …;
   * others use x). For 'clamp' the gradient passes where alpha ≤ x ≤ beta. For relu it is 0 at x = 0.
   */
  unaryBackward(op: UnaryOp, x: F32, y: F32, gy: F32, gx: F32, alpha: number, beta: number): void;
  /**
   * out (dense over `shape`) = a ∘ b, where a and b are strided views (offset + strides, strides may be 0
   * to broadcast). Comparisons produce 1.0 / 0.0.
   */
  binary(op: BinaryOp, a: F32, aOffset: number, aStrides: readonly number[],
         b: F32, bOffset: number, bStrides: readonly number[], shape: readonly number[], out: F32): void;
  /** out (dense over shape) = cond != 0 ? a : b; all three strided (strides may be 0). */
  where(cond: F32, cOffset: number, cStrides: readonly number[],
        a: F32, aOffset: number, aStrides: readonly number[],
        b: F32, bOffset: number, bStrides: readonly number[], shape: readonly number[], out: F32): void;

  // ---------------------------------------------------------------- reductions
  /**
   * x viewed as dense [outer, n, inner]; out[o * inner + i] = reduce over r of x[(o * n + r) * inner + i].
   * 'sum' of n = 0 is 0; 'max' / 'min' of n = 0 is -Inf / +Inf. NaN propagates for max/min.
   */
  reduce(op: ReduceOp, x: F32, outer: number, n: number, inner: number, out: F32): void;
  /** Same layout; writes the index r of the first max/min. */
  argReduce(op: ArgReduceOp, x: F32, outer: number, n: number, inner: number, out: Int32Array): void;
  /** Softmax (or log-softmax) of each row of a dense [rows, cols] matrix. */
  softmax(x: F32, rows: number, cols: number, log: boolean, out: F32): void;
  /**
   * Given y = softmax(x) (or log_softmax when log) and gy, write gx:
   *  softmax:     gx = y * (gy - Σ gy*y)
   *  log_softmax: gx = gy - exp(y) * Σ gy
   */
  softmaxBackward(y: F32, gy: F32, rows: number, cols: number, log: boolean, gx: F32): void;

  // ---------------------------------------------------------------- matrix multiply
  /**
   * Batched row-major GEMM: for each batch index p in [0, batch):
   *   C_p[M×N] = alpha * op(A_p) · op(B_p) + beta * C_p
   * op(A_p) is M×K: A_p is stored M×K (lda ≥ K), or K×M when transA (lda ≥ M), starting at A[p*strideA].
   * op(B_p) is K×N: B_p is stored K×N (ldb ≥ N), or N×K when transB (ldb ≥ K), starting at B[p*strideB].
   * C_p starts at C[p*strideC] with row stride ldc ≥ N. strideA/strideB may be 0 (broadcast).
   * A and B may be 16-bit (aDtype/bDtype), widened during packing. beta = 0 ignores C's old contents
   * (even NaN). With `bias` (N values) every row of C_p also gets bias added, before the products.
   */
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
       A: WeightBuf, aDtype: WeightDtype, lda: number, strideA: number,
       B: WeightBuf, bDtype: WeightDtype, ldb: number, strideB: number,
       beta: number, C: F32, ldc: number, strideC: number, batch: number, bias?: F32 | null): void;

  // ---------------------------------------------------------------- convolution (NCHW, OIHW)
  /**
   * y[N, O, OH, OW] = conv(x[N, C, H, W], w[O, C/groups, kh, kw]) + bias[O]
   * with OH = floor((H + 2*ph - dh*(kh-1) - 1) / sh) + 1 (same for OW). bias may be null.
   */
  conv2d(x: F32, w: WeightBuf, wDtype: WeightDtype, bias: F32 | null,
         N: number, C: number, H: number, W: number, O: number, kh: number, kw: number,
         sh: number, sw: number, ph: number, pw: number, dh: number, dw: number, groups: number,
         out: F32): void;
  /**
   * gx[N, C, H, W] = gradient of conv2d w.r.t. its input, given gy[N, O, OH, OW]. H and W are given
   * (not derived) so that conv_transpose2d with output_padding can use this kernel as its forward.
   * OH/OW are derived from H/W by the formula above.
   */
  conv2dBackwardInput(gy: F32, w: WeightBuf, wDtype: WeightDtype,
                      N: number, C: number, H: number, W: number, O: number, kh: number, kw: number,
                      sh: number, sw: number, ph: number, pw: number, dh: number, dw: number, groups: number,
                      gx: F32): void;
  /** gw[O, C/groups, kh, kw] = gradient of conv2d w.r.t. its weight, given x and gy. */
  conv2dBackwardWeight(x: F32, gy: F32,
                       N: number, C: number, H: number, W: number, O: number, kh: number, kw: number,
                       sh: number, sw: number, ph: number, pw: number, dh: number, dw: number, groups: number,
                       gw: F32): void;

  // ---------------------------------------------------------------- attention
  /**
   * Fused scaled-dot-product attention that never materialises the Lq×Lk score matrix (tiled, online
   * softmax). q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv]: dense, or laid out as `layouts` says.
   *   s_ij = scale * q_i · k_j + mask(b, h, i, j);  causal adds -Inf where j > i;  out_i = Σ_j softmax(s_i)_j v_j
   * mask: optional additive f32 buffer, indexed mask[b*mB + h*mH + i*mQ + j] (mB/mH/mQ may be 0 to
   * broadcast; -Inf masks out). out [B, H, Lq, Dv]; lse [B, H, Lq] (always dense) receives
   * log Σ_j exp(s_ij) (for the backward pass). A row with every key masked gets out = 0 and lse = -Inf.
   */
  attention(q: F32, k: F32, v: F32, B: number, H: number, Lq: number, Lk: number, D: number, Dv: number,
            scale: number, causal: boolean, mask: F32 | null, mB: number, mH: number, mQ: number,
            out: F32, lse: F32, layouts?: AttnLayouts | null): void;
  /**
   * Gradients of attention given out, lse and gout; gq, gk, gv are overwritten (every element their
   * layouts cover; an output layout must not overlap itself). No gradient for mask.
   */
  attentionBackward(q: F32, k: F32, v: F32, out: F32, lse: F32, gout: F32,
                    B: number, H: number, Lq: number, Lk: number, D: number, Dv: number,
                    scale: number, causal: boolean, mask: F32 | null, mB: number, mH: number, mQ: number,
                    gq: F32, gk: F32, gv: F32, layouts?: AttnGradLayouts | null): void;

  // ---------------------------------------------------------------- normalisation
  /**
   * Layer norm over the last `cols` elements of each of `rows` rows (biased variance).
   * w, b: [cols] or null. mean/rstd: [rows], written for the backward pass.
   */
  layerNorm(x: F32, w: F32 | null, b: F32 | null, rows: number, cols: number, eps: number,
            out: F32, mean: F32, rstd: F32): void;
  /** gx always; gw/gb when not null (overwritten, summed over rows). */
  layerNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32, rows: number, cols: number,
                    gx: F32, gw: F32 | null, gb: F32 | null): void;
  /**
   * Group norm of x [N, C, HW] in G groups (C % G === 0), biased variance, per-channel affine w/b [C]
   * (or null). mean/rstd: [N, G].
   */
  groupNorm(x: F32, w: F32 | null, b: F32 | null, N: number, C: number, HW: number, G: number, eps: number,
            out: F32, mean: F32, rstd: F32): void;
  groupNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32,
                    N: number, C: number, HW: number, G: number,
                    gx: F32, gw: F32 | null, gb: F32 | null): void;

  // ---------------------------------------------------------------- pooling and resampling (NCHW)
  /** out [N, C, OH, OW]; argmax [N, C, OH, OW] holds the flat index (h*W + w) within each plane. Padding is -Inf. */
  maxPool2d(x: F32, N: number, C: number, H: number, W: number, kh: number, kw: number,
            sh: number, sw: number, ph: number, pw: number, out: F32, argmax: Int32Array): void;
  maxPool2dBackward(gy: F32, argmax: Int32Array, N: number, C: number, H: number, W: number,
                    OH: number, OW: number, gx: F32): void;
  /** countIncludePad: divide by kh*kw (true) or by the number of in-bounds elements (false). */
  avgPool2d(x: F32, N: number, C: number, H: number, W: number, kh: number, kw: number,
            sh: number, sw: number, ph: number, pw: number, countIncludePad: boolean, out: F32): void;
  avgPool2dBackward(gy: F32, N: number, C: number, H: number, W: number, kh: number, kw: number,
                    sh: number, sw: number, ph: number, pw: number, countIncludePad: boolean, gx: F32): void;
  /**
   * Resize planes x [P, H, W] → out [P, OH, OW]. 'nearest' follows PyTorch's legacy nearest
   * (src = floor(dst * H / OH)); 'bilinear' follows PyTorch (align_corners false: src = (dst + 0.5) * H/OH - 0.5
   * clamped at 0; align_corners true: src = dst * (H-1)/(OH-1)).
   */
  interpolate(x: F32, P: number, H: number, W: number, OH: number, OW: number,
              mode: 'nearest' | 'bilinear', alignCorners: boolean, out: F32): void;
  /** Adjoint of interpolate: gx [P, H, W] from gy [P, OH, OW]. */
  interpolateBackward(gy: F32, P: number, H: number, W: number, OH: number, OW: number,
                      mode: 'nearest' | 'bilinear', alignCorners: boolean, gx: F32): void;

  // ---------------------------------------------------------------- optimiser updates
  /**
   * One Adam / AdamW step in place over dense arrays as long as p (PyTorch's single-tensor maths):
   *   g = grad + l2·p;  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
   *   with vMax (amsgrad): vMax ← max(vMax, v), used in place of v;
   *   p ← p·shrink − stepSize · m / (√v / bc2Sqrt + eps)
   */
  adamStep(p: F32, grad: F32, m: F32, v: F32, vMax: F32 | null, h: AdamStepHyper): void;
}

/** The scalars of one Adam step (bias corrections folded in by the optimiser). */
export interface AdamStepHyper {
  beta1: number;
  beta2: number;
  eps: number;
  /** lr / (1 − β1ᵗ) */
  stepSize: number;
  /** √(1 − β2ᵗ) */
  bc2Sqrt: number;
  /** 1 − lr·wd for AdamW's decoupled decay, else 1 */
  shrink: number;
  /** wd for Adam's L2 decay (added to the gradient), else 0 */
  l2: number;
}

/** Output size of a convolution / pooling window along one axis. */
export function convOutSize(size: number, kernel: number, stride: number, pad: number, dilation: number): number {
  return Math.floor((size + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1;
}
