/**
 * The native backend: maps the Kernels contract onto our C++ addon (build/Release/vss_native.node,
 * built by `npm install` through binding.gyp). Typed arrays go to C++ as they are (zero copy; C++ uses
 * their byteOffset), ops travel as small integer codes, and shapes/strides are packed into one reused
 * Float64Array, which keeps a small call at a fraction of a microsecond.
 *
 * Environment: VSS_SIMD=avx512|avx2|portable forces a kernel path (ignored, with a warning, when the CPU
 * cannot run it); VSS_NUM_THREADS sets the size of the addon's thread pool (default: number of cores).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  AdamStepHyper, ArgReduceOp, AttnGradLayouts, AttnLayouts, BinaryOp, F32, Half, HalfKind, Kernels, ReduceOp,
  UnaryOp, WeightBuf, WeightDtype,
} from './kernels.js';
import { BINARY_OPS, denseAttnLayout, UNARY_OPS } from './kernels.js';
import { jsKernels } from './js/index.js';

export type SimdPath = 'avx512' | 'avx2' | 'portable';

/** The addon's functions (see native/src/addon.cc for the argument order of each). */
interface Addon {
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
       A: WeightBuf, aDt: number, lda: number, strideA: number, B: WeightBuf, bDt: number, ldb: number,
       strideB: number, beta: number, C: F32, ldc: number, strideC: number, batch: number, bias?: F32 | null): void;
  conv2d(x: F32, w: WeightBuf, wDt: number, bias: F32 | null, out: F32, meta: Float64Array): void;
  conv2dBackwardInput(gy: F32, w: WeightBuf, wDt: number, gx: F32, meta: Float64Array): void;
  conv2dBackwardWeight(x: F32, gy: F32, gw: F32, meta: Float64Array): void;
  attention(q: F32, k: F32, v: F32, mask: F32 | null, out: F32, lse: F32, meta: Float64Array): void;
  attentionBackward(q: F32, k: F32, v: F32, out: F32, lse: F32, gout: F32, mask: F32 | null,
                    gq: F32, gk: F32, gv: F32, meta: Float64Array): void;
  unary(op: number, x: F32, out: F32, alpha: number, beta: number): void;
  unaryBackward(op: number, x: F32, y: F32, gy: F32, gx: F32, alpha: number, beta: number): void;
  binary(op: number, a: F32, b: F32, out: F32, meta: Float64Array): void;
  where(c: F32, a: F32, b: F32, out: F32, meta: Float64Array): void;
  stridedCopy(src: F32 | Half, dt: number, out: F32, meta: Float64Array): void;
  widen(src: Half, dt: number, out: F32): void;
  narrow(src: F32, dt: number, out: Half): void;
  reduce(op: number, x: F32, outer: number, n: number, inner: number, out: F32 | Int32Array): void;
  softmax(x: F32, rows: number, cols: number, log: boolean, out: F32): void;
  softmaxBackward(y: F32, gy: F32, rows: number, cols: number, log: boolean, gx: F32): void;
  layerNorm(x: F32, w: F32 | null, b: F32 | null, rows: number, cols: number, eps: number,
            out: F32, mean: F32, rstd: F32): void;
  layerNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32, rows: number, cols: number,
                    gx: F32, gw: F32 | null, gb: F32 | null): void;
  groupNorm(x: F32, w: F32 | null, b: F32 | null, N: number, C: number, HW: number, G: number, eps: number,
            out: F32, mean: F32, rstd: F32, act?: number): void;
  groupNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32, N: number, C: number, HW: number,
                    G: number, gx: F32, gw: F32 | null, gb: F32 | null): void;
  adamStep(p: F32, g: F32, m: F32, v: F32, vMax: F32 | null, beta1: number, beta2: number, eps: number,
           stepSize: number, bc2Sqrt: number, shrink: number, l2: number): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  getSimd(): SimdPath;
  setSimd(path: string): boolean;
  supportedSimd(): SimdPath[];
  opCounts(): [number, number];
  simdSelfTestFailure(): string | null;
  setConvWinograd?(on: boolean): boolean;
  setMatmulPrecision?(precision: string): void;
  getMatmulPrecision?(): 'f32' | 'bf16';
  mapFile?(file: string): ArrayBuffer | null;
  releasePages?(buf: ArrayBuffer, byteOffset: number, byteLength: number): number;
}

const DT: Record<WeightDtype, number> = { f32: 0, f16: 1, bf16: 2 };
const UNARY_CODE = Object.fromEntries(UNARY_OPS.map((op, i) => [op, i])) as Record<UnaryOp, number>;
const BINARY_CODE = Object.fromEntries(BINARY_OPS.map((op, i) => [op, i])) as Record<BinaryOp, number>;
const REDUCE_CODE: Record<ReduceOp | ArgReduceOp, number> = { sum: 0, max: 1, min: 2, argmax: 3, argmin: 4 };

/** The package root: the first directory upwards holding package.json next to binding.gyp. */
function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

let addon: Addon | null | undefined;

function load(): Addon | null {
  if (addon !== undefined) return addon;
  addon = null;
  try {
    const root = packageRoot();
    if (!root) return null;
    const file = join(root, 'build', 'Release', 'vss_native.node');
    if (!existsSync(file)) return null;
    const a = createRequire(import.meta.url)(file) as Addon;
    const [nUnary, nBinary] = a.opCounts();
    if (nUnary !== UNARY_OPS.length || nBinary !== BINARY_OPS.length) {
      process.emitWarning('vss_native was built for another kernel contract (op lists differ); rebuild it', 'VSSNative');
      return null;
    }
    const failed = a.simdSelfTestFailure();
    if (failed) process.emitWarning(`vss_native: ${failed}; it is not used`, 'VSSNative');
    const want = process.env.VSS_SIMD;
    if (want !== undefined && want !== '' && a.getSimd() !== want) {
      process.emitWarning(`VSS_SIMD=${want} is not available on this CPU; using ${a.getSimd()}`, 'VSSNative');
    }
    addon = a;
  } catch {
    addon = null;
  }
  return addon;
}

/**
 * The whole file as an ArrayBuffer over a private (copy-on-write) memory mapping, or null when the addon is
 * not built or the platform has no mmap. Unmapped when the buffer is garbage-collected. See
 * native/src/mapping.cc; the file must not be truncated while mapped.
 */
export function mapFile(file: string): ArrayBuffer | null {
  const a = load();
  return a?.mapFile ? a.mapFile(file) : null;
}

/**
 * Give back the memory of the whole pages inside [byteOffset, byteOffset + byteLength) of a buffer made by
 * `mapFile`; the bytes stay readable (mapped again from the page cache on the next access). Returns the
 * bytes released. Throws for buffers that are not mapped files.
 */
export function releaseMappedPages(buf: ArrayBuffer, byteOffset: number, byteLength: number): number {
  const a = load();
  return a?.releasePages ? a.releasePages(buf, byteOffset, byteLength) : 0;
}

/**
 * Use Winograd F(2×2, 3×3) for 3×3 stride-1 forward convolutions (the default) or the direct implicit-GEMM
 * path, for comparisons. Returns the previous setting (false without the addon).
 */
export function setConvWinograd(on: boolean): boolean {
  const a = load();
  return a?.setConvWinograd ? a.setConvWinograd(on) : false;
}

/**
 * Switch the addon's GEMM between f32 and bf16 products (see setMatmulPrecision in backend/index.ts).
 * Throws with the reason when bf16 cannot run here.
 */
export function setNativeMatmulPrecision(precision: 'f32' | 'bf16'): void {
  const a = load();
  if (!a) {
    if (precision === 'f32') return;
    throw new Error('bf16 matmul is not available: the native addon is not loaded');
  }
  if (!a.setMatmulPrecision) {
    if (precision === 'f32') return;
    throw new Error('bf16 matmul is not available: this build of vss_native predates it (rebuild: npm install)');
  }
  a.setMatmulPrecision(precision);
}

export function nativeMatmulPrecision(): 'f32' | 'bf16' {
  return load()?.getMatmulPrecision?.() ?? 'f32';
}

/** Threads the addon's pool uses (1 when the addon is not loaded). */
export function getNumThreads(): number {
  return load()?.getNumThreads() ?? 1;
}

/** Resize the addon's persistent pool (results never depend on it: kernels are thread-count independent). */
export function setNumThreads(n: number): void {
  load()?.setNumThreads(n);
}

/** The kernel path in use, or null when the addon is not loaded. */
export function cpuFeatures(): SimdPath | null {
  return load()?.getSimd() ?? null;
}

/** Paths this CPU can run, best first (empty when the addon is not loaded). */
export function supportedSimdPaths(): SimdPath[] {
  return load()?.supportedSimd() ?? [];
}

/** A SIMD path this CPU has but that failed its self-test at load (then not offered), or null. */
export function simdSelfTestFailure(): string | null {
  return load()?.simdSelfTestFailure() ?? null;
}

/** Switch the kernel path at run time (tests, benchmarks). Returns false when the CPU cannot run it. */
export function setSimdPath(path: SimdPath): boolean {
  return load()?.setSimd(path) ?? false;
}

// Reused metadata buffer: [rank, shape…, then per operand: offset, strides…] or fixed geometry fields.
const meta = new Float64Array(64);

function packStrided(shape: readonly number[], ops: number, offsets: readonly number[],
                     strides: readonly (readonly number[])[]): Float64Array {
  const rank = shape.length;
  if (rank > 8) throw new RangeError(`native kernels support rank ≤ 8, got ${rank}`);
  meta[0] = rank;
  for (let d = 0; d < rank; d++) meta[1 + d] = shape[d];
  let at = 1 + rank;
  for (let k = 0; k < ops; k++) {
    meta[at++] = offsets[k];
    const s = strides[k];
    for (let d = 0; d < rank; d++) meta[at++] = s[d];
  }
  return meta;
}

function convMeta(N: number, C: number, H: number, W: number, O: number, kh: number, kw: number, sh: number,
                  sw: number, ph: number, pw: number, dh: number, dw: number, groups: number): Float64Array {
  meta[0] = N; meta[1] = C; meta[2] = H; meta[3] = W; meta[4] = O; meta[5] = kh; meta[6] = kw;
  meta[7] = sh; meta[8] = sw; meta[9] = ph; meta[10] = pw; meta[11] = dh; meta[12] = dw; meta[13] = groups;
  return meta;
}

// The addon takes 11 entries (dense operands) or 35 (then the layouts of q, k, v, out, gout, gq, gk, gv).
const attnMetaFull = new Float64Array(35);
const attnMetaDense = attnMetaFull.subarray(0, 11);

function attnMeta(B: number, H: number, Lq: number, Lk: number, D: number, Dv: number, scale: number,
                  causal: boolean, mB: number, mH: number, mQ: number,
                  layouts: AttnLayouts | AttnGradLayouts | null | undefined): Float64Array {
  const m = attnMetaFull;
  m[0] = B; m[1] = H; m[2] = Lq; m[3] = Lk; m[4] = D; m[5] = Dv; m[6] = scale;
  m[7] = causal ? 1 : 0; m[8] = mB; m[9] = mH; m[10] = mQ;
  if (!layouts) return attnMetaDense;
  const g = 'gout' in layouts ? layouts : null;
  const all = [layouts.q, layouts.k, layouts.v, layouts.out,
    g?.gout ?? denseAttnLayout(H, Lq, Dv), g?.gq ?? denseAttnLayout(H, Lq, D),
    g?.gk ?? denseAttnLayout(H, Lk, D), g?.gv ?? denseAttnLayout(H, Lk, Dv)];
  for (let i = 0; i < 8; i++) m.set(all[i]!, 11 + 3 * i);
  return m;
}

/**
 * Problems of at most this many elements run the JS kernel instead: crossing into C++ costs ~0.3–1 µs
 * (more when V8 must first move a fresh small typed array off its heap, which it keeps ≤ 64-byte arrays
 * on), while JS finishes such a loop in ~0.1–0.3 µs.
 */
export const SMALL_IN_JS = 32;

function numel(shape: readonly number[]): number {
  let n = 1;
  for (let d = 0; d < shape.length; d++) n *= shape[d];
  return n;
}

/**
 * Fused kernels beyond the Kernels contract, present on the native backend only; ops look them up with
 * `nativeExtras(K)` and fall back to the unfused composition. Each returns false when it declines.
 */
export interface NativeExtras {
  /** groupNorm followed by the activation in one pass over the output (forward only: no autograd). */
  groupNormAct(x: F32, w: F32 | null, b: F32 | null, N: number, C: number, HW: number, G: number, eps: number,
               act: 'silu', out: F32, mean: F32, rstd: F32): boolean;
}

/** The fused extras of a kernel set, or null (JS backend). */
export function nativeExtras(k: object): NativeExtras | null {
  return typeof (k as Partial<NativeExtras>).groupNormAct === 'function' ? (k as NativeExtras) : null;
}

export interface NativeOptions {
  /** Run tiny elementwise / reduction / normalisation problems (≤ SMALL_IN_JS elements) in JS. Default true. */
  smallInJs?: boolean;
}

/**
 * The native kernels, or null when the addon cannot be loaded (not built, wrong platform, ABI mismatch).
 * Pooling and interpolation are not provided: they fall back to the JS kernels.
 */
export function loadNativeKernels(options: NativeOptions = {}): Partial<Kernels> | null {
  const a = load();
  if (!a) return null;
  const small = options.smallInJs === false ? -1 : SMALL_IN_JS;
  const js = jsKernels;
  const kernels: Partial<Kernels> = {
    name: 'native',

    stridedCopy(src: F32 | Half, srcDtype: WeightDtype, offset: number, shape: readonly number[],
                strides: readonly number[], out: F32): void {
      if (numel(shape) <= small) { js.stridedCopy(src, srcDtype, offset, shape, strides, out); return; }
      a.stridedCopy(src, DT[srcDtype], out, packStrided(shape, 1, [offset], [strides]));
    },
    widen(src: Half, kind: HalfKind, out: F32): void {
      if (src.length <= small) js.widen(src, kind, out);
      else a.widen(src, DT[kind], out);
    },
    narrow(src: F32, kind: HalfKind, out: Half): void {
      if (src.length <= small) js.narrow(src, kind, out);
      else a.narrow(src, DT[kind], out);
    },

    unary(op: UnaryOp, x: F32, out: F32, alpha: number, beta: number): void {
      if (x.length <= small) js.unary(op, x, out, alpha, beta);
      else a.unary(UNARY_CODE[op], x, out, alpha ?? 0, beta ?? 0);
    },
    unaryBackward(op: UnaryOp, x: F32, y: F32, gy: F32, gx: F32, alpha: number, beta: number): void {
      if (gy.length <= small) js.unaryBackward(op, x, y, gy, gx, alpha, beta);
      else a.unaryBackward(UNARY_CODE[op], x, y, gy, gx, alpha ?? 0, beta ?? 0);
    },
    binary(op: BinaryOp, x: F32, aOffset: number, aStrides: readonly number[], y: F32, bOffset: number,
           bStrides: readonly number[], shape: readonly number[], out: F32): void {
      if (numel(shape) <= small) js.binary(op, x, aOffset, aStrides, y, bOffset, bStrides, shape, out);
      else a.binary(BINARY_CODE[op], x, y, out, packStrided(shape, 2, [aOffset, bOffset], [aStrides, bStrides]));
    },
    where(cond: F32, cOffset: number, cStrides: readonly number[], x: F32, aOffset: number,
          aStrides: readonly number[], y: F32, bOffset: number, bStrides: readonly number[],
          shape: readonly number[], out: F32): void {
      if (numel(shape) <= small) js.where(cond, cOffset, cStrides, x, aOffset, aStrides, y, bOffset, bStrides, shape, out);
      else a.where(cond, x, y, out, packStrided(shape, 3, [cOffset, aOffset, bOffset], [cStrides, aStrides, bStrides]));
    },

    reduce(op: ReduceOp, x: F32, outer: number, n: number, inner: number, out: F32): void {
      if (outer * n * inner <= small) js.reduce(op, x, outer, n, inner, out);
      else a.reduce(REDUCE_CODE[op], x, outer, n, inner, out);
    },
    argReduce(op: ArgReduceOp, x: F32, outer: number, n: number, inner: number, out: Int32Array): void {
      if (outer * n * inner <= small) js.argReduce(op, x, outer, n, inner, out);
      else a.reduce(REDUCE_CODE[op], x, outer, n, inner, out);
    },
    softmax(x: F32, rows: number, cols: number, log: boolean, out: F32): void {
      if (rows * cols <= small) js.softmax(x, rows, cols, log, out);
      else a.softmax(x, rows, cols, log, out);
    },
    softmaxBackward(y: F32, gy: F32, rows: number, cols: number, log: boolean, gx: F32): void {
      if (rows * cols <= small) js.softmaxBackward(y, gy, rows, cols, log, gx);
      else a.softmaxBackward(y, gy, rows, cols, log, gx);
    },

    gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
         A: WeightBuf, aDtype: WeightDtype, lda: number, strideA: number,
         B: WeightBuf, bDtype: WeightDtype, ldb: number, strideB: number,
         beta: number, C: F32, ldc: number, strideC: number, batch: number, bias?: F32 | null): void {
      a.gemm(transA, transB, M, N, K, alpha, A, DT[aDtype], lda, strideA, B, DT[bDtype], ldb, strideB,
             beta, C, ldc, strideC, batch, bias ?? null);
    },

    conv2d(x: F32, w: WeightBuf, wDtype: WeightDtype, bias: F32 | null, N: number, C: number, H: number,
           W: number, O: number, kh: number, kw: number, sh: number, sw: number, ph: number, pw: number,
           dh: number, dw: number, groups: number, out: F32): void {
      a.conv2d(x, w, DT[wDtype], bias, out, convMeta(N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups));
    },
    conv2dBackwardInput(gy: F32, w: WeightBuf, wDtype: WeightDtype, N: number, C: number, H: number,
                        W: number, O: number, kh: number, kw: number, sh: number, sw: number, ph: number,
                        pw: number, dh: number, dw: number, groups: number, gx: F32): void {
      a.conv2dBackwardInput(gy, w, DT[wDtype], gx, convMeta(N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups));
    },
    conv2dBackwardWeight(x: F32, gy: F32, N: number, C: number, H: number, W: number, O: number, kh: number,
                         kw: number, sh: number, sw: number, ph: number, pw: number, dh: number, dw: number,
                         groups: number, gw: F32): void {
      a.conv2dBackwardWeight(x, gy, gw, convMeta(N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups));
    },

    attention(q: F32, k: F32, v: F32, B: number, H: number, Lq: number, Lk: number, D: number, Dv: number,
              scale: number, causal: boolean, mask: F32 | null, mB: number, mH: number, mQ: number,
              out: F32, lse: F32, layouts?: AttnLayouts | null): void {
      a.attention(q, k, v, mask, out, lse, attnMeta(B, H, Lq, Lk, D, Dv, scale, causal, mB, mH, mQ, layouts));
    },
    attentionBackward(q: F32, k: F32, v: F32, out: F32, lse: F32, gout: F32, B: number, H: number,
                      Lq: number, Lk: number, D: number, Dv: number, scale: number, causal: boolean,
                      mask: F32 | null, mB: number, mH: number, mQ: number, gq: F32, gk: F32, gv: F32,
                      layouts?: AttnGradLayouts | null): void {
      a.attentionBackward(q, k, v, out, lse, gout, mask, gq, gk, gv,
                          attnMeta(B, H, Lq, Lk, D, Dv, scale, causal, mB, mH, mQ, layouts));
    },

    layerNorm(x: F32, w: F32 | null, b: F32 | null, rows: number, cols: number, eps: number,
              out: F32, mean: F32, rstd: F32): void {
      if (rows * cols <= small) js.layerNorm(x, w, b, rows, cols, eps, out, mean, rstd);
      else a.layerNorm(x, w, b, rows, cols, eps, out, mean, rstd);
    },
    layerNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32, rows: number, cols: number,
                      gx: F32, gw: F32 | null, gb: F32 | null): void {
      if (rows * cols <= small) js.layerNormBackward(x, w, mean, rstd, gy, rows, cols, gx, gw, gb);
      else a.layerNormBackward(x, w, mean, rstd, gy, rows, cols, gx, gw, gb);
    },
    groupNorm(x: F32, w: F32 | null, b: F32 | null, N: number, C: number, HW: number, G: number, eps: number,
              out: F32, mean: F32, rstd: F32): void {
      if (N * C * HW <= small) js.groupNorm(x, w, b, N, C, HW, G, eps, out, mean, rstd);
      else a.groupNorm(x, w, b, N, C, HW, G, eps, out, mean, rstd);
    },
    groupNormBackward(x: F32, w: F32 | null, mean: F32, rstd: F32, gy: F32, N: number, C: number, HW: number,
                      G: number, gx: F32, gw: F32 | null, gb: F32 | null): void {
      if (N * C * HW <= small) js.groupNormBackward(x, w, mean, rstd, gy, N, C, HW, G, gx, gw, gb);
      else a.groupNormBackward(x, w, mean, rstd, gy, N, C, HW, G, gx, gw, gb);
    },
    adamStep(p: F32, grad: F32, m: F32, v: F32, vMax: F32 | null, h: AdamStepHyper): void {
      if (p.length <= small) js.adamStep(p, grad, m, v, vMax, h);
      else a.adamStep(p, grad, m, v, vMax, h.beta1, h.beta2, h.eps, h.stepSize, h.bc2Sqrt, h.shrink, h.l2);
    },
  };
  // Nearest ×2 (every decoder/U-Net upsample): each input value fills a 2×2 block. The generic JS kernel
  // spends ~12 ns per output on the bilinear-shaped formula; this is a plain copy (same values).
  kernels.interpolate = (x: F32, P: number, H: number, W: number, OH: number, OW: number,
                         mode: 'nearest' | 'bilinear', alignCorners: boolean, out: F32): void => {
    if (mode !== 'nearest' || OH !== 2 * H || OW !== 2 * W) { js.interpolate(x, P, H, W, OH, OW, mode, alignCorners, out); return; }
    for (let r = 0, rows = P * H; r < rows; r++) {
      const xi = r * W, o = 4 * xi;
      for (let c = 0; c < W; c++) { const v = x[xi + c]; out[o + 2 * c] = v; out[o + 2 * c + 1] = v; }
      out.copyWithin(o + OW, o, o + OW);
    }
  };
  const extras: NativeExtras = {
    groupNormAct(x: F32, w: F32 | null, b: F32 | null, N: number, C: number, HW: number, G: number, eps: number,
                 act: 'silu', out: F32, mean: F32, rstd: F32): boolean {
      if (N * C * HW <= small) return false;
      a.groupNorm(x, w, b, N, C, HW, G, eps, out, mean, rstd, act === 'silu' ? 1 : 0);
      return true;
    },
  };
  return Object.assign(kernels, extras);
}
