/**
 * The rows of the engine benchmark. Each case knows how to set itself up on the VSS side (calling the
 * kernels directly, or the public API for the dispatch rows), how to ask its peer for the same work, and
 * how to spot-check a few output values against a float64 recomputation (so that a fast but wrong
 * kernel cannot go unnoticed in the table).
 */
import type { HalfKind, Kernels } from '../src/engine/backend/kernels.js';
import type { EngineApi } from './lib/vss.js';
import type { TrainingApi } from './lib/training.js';
import { filled, type TimeOptions } from './lib/timing.js';
import { inferVitCase, trainUnetCase, trainVitCase } from './train_cases.js';

export type Group = 'gemm' | 'conv' | 'attn' | 'norm' | 'dispatch' | 'train' | 'half';
export const GROUPS: readonly Group[] = ['gemm', 'conv', 'attn', 'norm', 'dispatch', 'train', 'half'];

export interface Ctx {
  K: Kernels;
  api: EngineApi | null;
  /** the modules the training rows use (null: they did not load, or no training row runs) */
  train: TrainingApi | null;
  /** the addon's GEMM precision switch (null: the addon is not loaded) */
  setMatmulPrecision: ((precision: 'f32' | 'bf16') => void) | null;
}

export interface Prepared {
  run: () => void;
  /** worst relative error over a few spot-checked outputs (after at least one run) */
  check?: () => number;
  /** parameters of the model a row runs, printed beside the peer's count */
  params?: number;
}

export type PeerSpec =
  | { kind: 'openblas'; arg: string }
  | { kind: 'torch'; spec: Record<string, unknown> }
  /** another VSS variant of the same work, run in this process (the half rows: the f32 GEMM) */
  | { kind: 'vss'; name: string; prepare: (ctx: Ctx) => Prepared };

export interface Case {
  id: string;
  group: Group;
  label: string;
  /** part of the --quick set */
  quick: boolean;
  /** floating-point operations per call (rate in GFLOPS) … */
  flops?: number;
  /** … or bytes moved per call at least (rate in GB/s) … */
  bytes?: number;
  /** … or images per call (rate in img/s); none of them: time per op only */
  items?: number;
  /** print the spot check's result under the row, described so (not only a failure) */
  checkLabel?: string;
  /** the largest check result that is not a failure (default 1e-3) */
  checkLimit?: number;
  /** overrides of the default timing options */
  timing?: Partial<TimeOptions>;
  /** only run with this many threads (the dispatch rows: 1) */
  onlyThreads?: number;
  vss: (ctx: Ctx) => Prepared;
  peer: PeerSpec | null;
}

// --------------------------------------------------------------------------------------------- gemm

function gemmCase(ta: boolean, tb: boolean, M: number, N: number, Kd: number, quick: boolean): Case {
  const tag = `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;
  return {
    id: `gemm_${tag}_${M}x${N}x${Kd}`,
    group: 'gemm',
    label: `sgemm ${tag} ${M}×${N}×${Kd}`,
    quick,
    flops: 2 * M * N * Kd,
    vss: ({ K }) => {
      const A = filled(M * Kd, 1), B = filled(Kd * N, 2), C = new Float32Array(M * N);
      const lda = ta ? M : Kd, ldb = tb ? Kd : N;
      return {
        run: () => K.gemm(ta, tb, M, N, Kd, 1, A, 'f32', lda, 0, B, 'f32', ldb, 0, 0, C, N, 0, 1),
        check: () => {
          let worst = 0;
          for (let s = 0; s < 16; s++) {
            const i = (s * 7919 + 13) % M, j = (s * 104729 + 7) % N;
            let ref = 0, mag = 0;
            for (let k = 0; k < Kd; k++) {
              const a = A[ta ? k * lda + i : i * lda + k]!, b = B[tb ? j * ldb + k : k * ldb + j]!;
              ref += a * b;
              mag += Math.abs(a * b);
            }
            worst = Math.max(worst, Math.abs(C[i * N + j]! - ref) / (mag || 1));
          }
          return worst;
        },
      };
    },
    peer: { kind: 'openblas', arg: `${ta ? 'T' : 'N'},${tb ? 'T' : 'N'},${M},${N},${Kd}` },
  };
}

const GEMM_SHAPES: Array<[number, number, number, boolean]> = [
  // M, N, K, in the quick set (NN)
  [1024, 1024, 1024, true],
  [2048, 2048, 2048, false],
  [4096, 320, 320, true],
  [4096, 1280, 320, true],
  [4096, 320, 1280, true],
  [1024, 640, 640, true],
  [256, 1280, 1280, true],
];

// --------------------------------------------------------------------------------------------- half

/**
 * C = A·Bᵀ with the weights B stored [N, K] (as `linear` keeps them) in 16 bits: the GEMM widens B while
 * packing it, so f16/bf16 weights should cost about what f32 ones do (issue #3: ≥ 0.9× the f32 speed).
 * The peer is the same call with B in f32, so ratio = f32 time / half time. The check compares the whole
 * result with an f32 GEMM of the rounded weights (widened first), each error relative to Σ|a·b| of its
 * output (from a GEMM of |A| and |B|), which stays meaningful where the terms cancel.
 */
function halfGemmCase(M: number, N: number, Kd: number, half: HalfKind): Case {
  return {
    id: `gemm_NT_${M}x${N}x${Kd}_${half}`,
    group: 'half',
    label: `sgemm NT ${M}×${N}×${Kd}, B ${half}`,
    quick: true,
    flops: 2 * M * N * Kd,
    checkLabel: `max error vs f32 GEMM of the ${half}-rounded B (relative to Σ|a·b|)`,
    vss: ({ K }) => {
      const A = filled(M * Kd, 1), B = new Uint16Array(N * Kd), C = new Float32Array(M * N);
      K.narrow(filled(N * Kd, 2), half, B);
      const gemmNT = (a: Float32Array, b: Float32Array | Uint16Array, dtype: 'f32' | HalfKind, c: Float32Array): void =>
        K.gemm(false, true, M, N, Kd, 1, a, 'f32', Kd, 0, b, dtype, Kd, 0, 0, c, N, 0, 1);
      return {
        run: () => gemmNT(A, B, half, C),
        check: () => {
          const rounded = new Float32Array(N * Kd);
          K.widen(B, half, rounded);
          const ref = new Float32Array(M * N), mag = new Float32Array(M * N);
          gemmNT(A, rounded, 'f32', ref);
          gemmNT(A.map(Math.abs), rounded.map(Math.abs), 'f32', mag);
          let worst = 0;
          for (let i = 0; i < C.length; i++) worst = Math.max(worst, Math.abs(C[i]! - ref[i]!) / (mag[i]! || 1));
          return worst;
        },
      };
    },
    peer: {
      kind: 'vss',
      name: 'VSS f32',
      prepare: ({ K }) => {
        const A = filled(M * Kd, 1), B = filled(N * Kd, 2), C = new Float32Array(M * N);
        return { run: () => K.gemm(false, true, M, N, Kd, 1, A, 'f32', Kd, 0, B, 'f32', Kd, 0, 0, C, N, 0, 1) };
      },
    },
  };
}

/**
 * bf16 compute (setMatmulPrecision('bf16'): AVX512-BF16's VDPBF16PS, operands rounded to bf16 while
 * packing, products summed in f32). The peer is the same product in f32, so ratio = f32 time / bf16 time;
 * the check is the error the option costs, ‖C_bf16 − C_f32‖ / ‖C_f32‖ over the whole result.
 */
function bf16ComputeCase(M: number, N: number, Kd: number): Case {
  const product = ({ K }: Ctx) => {
    const A = filled(M * Kd, 1), B = filled(Kd * N, 2), C = new Float32Array(M * N);
    return { C, run: () => K.gemm(false, false, M, N, Kd, 1, A, 'f32', Kd, 0, B, 'f32', N, 0, 0, C, N, 0, 1) };
  };
  const precision = (ctx: Ctx) => {
    if (!ctx.setMatmulPrecision) throw new Error('the native addon is not loaded');
    return ctx.setMatmulPrecision;
  };
  return {
    id: `gemm_NN_${M}x${N}x${Kd}_bf16compute`,
    group: 'half',
    label: `sgemm NN ${M}×${N}×${Kd}, bf16 compute`,
    quick: true,
    flops: 2 * M * N * Kd,
    checkLabel: 'relative error vs the f32 product (‖C_bf16 − C_f32‖ / ‖C_f32‖)',
    checkLimit: 1e-2,   // bf16 keeps 8 significant bits: ~2e-3 on these products
    vss: (ctx) => {
      const set = precision(ctx), p = product(ctx);
      set('bf16');   // fails here, with the reason, where bf16 cannot run
      set('f32');
      return {
        run: () => { set('bf16'); try { p.run(); } finally { set('f32'); } },
        check: () => {
          const bf = p.C.slice();
          p.run();
          let num = 0, den = 0;
          for (let i = 0; i < bf.length; i++) { num += (bf[i]! - p.C[i]!) ** 2; den += p.C[i]! ** 2; }
          return Math.sqrt(num / den);
        },
      };
    },
    peer: { kind: 'vss', name: 'VSS f32', prepare: (ctx) => ({ run: product(ctx).run }) },
  };
}

/** Stable Diffusion's projection shapes, M×N×K: tokens × out × in. */
const HALF_GEMM_SHAPES: Array<[number, number, number]> = [
  [4096, 320, 320],
  [4096, 1280, 320],
  [1024, 640, 640],
];
const BF16_COMPUTE_SHAPES: Array<[number, number, number]> = [
  [1024, 1024, 1024],
  [4096, 1280, 320],
  [4096, 320, 1280],
  [256, 1280, 1280],
];

// --------------------------------------------------------------------------------------------- conv

type ConvPass = 'fwd' | 'bwd_input' | 'bwd_weight';

function convCase(N: number, C: number, H: number, W: number, pass: ConvPass, quick: boolean): Case {
  const O = C, kh = 3, kw = 3, pad = 1, OH = H, OW = W;
  const passLabel = { fwd: 'forward', bwd_input: 'backward-input', bwd_weight: 'backward-weight' }[pass];
  return {
    id: `conv_${pass}_${N}x${C}x${H}x${W}`,
    group: 'conv',
    label: `conv3×3 ${passLabel} N${N} C${C} ${H}×${W}`,
    quick,
    flops: 2 * N * O * OH * OW * C * kh * kw,
    vss: ({ K }) => {
      const x = filled(N * C * H * W, 3), w = filled(O * C * kh * kw, 4, 0.05), bias = filled(O, 5);
      const gy = filled(N * O * OH * OW, 6);
      const xAt = (n: number, c: number, y: number, xx: number): number =>
        y < 0 || y >= H || xx < 0 || xx >= W ? 0 : x[((n * C + c) * H + y) * W + xx]!;
      const gyAt = (n: number, o: number, y: number, xx: number): number =>
        y < 0 || y >= OH || xx < 0 || xx >= OW ? 0 : gy[((n * O + o) * OH + y) * OW + xx]!;
      const wAt = (o: number, c: number, ky: number, kx: number): number => w[((o * C + c) * kh + ky) * kw + kx]!;
      const pick = (s: number, n: number): number => (s * 7919 + 3 * s * s + 1) % n;
      if (pass === 'fwd') {
        const out = new Float32Array(N * O * OH * OW);
        return {
          run: () => K.conv2d(x, w, 'f32', bias, N, C, H, W, O, kh, kw, 1, 1, pad, pad, 1, 1, 1, out),
          check: () => {
            let worst = 0;
            for (let s = 0; s < 8; s++) {
              const n = pick(s, N), o = pick(s + 1, O), y = s === 0 ? 0 : pick(s + 2, OH), xx = s === 1 ? OW - 1 : pick(s + 3, OW);
              let ref = bias[o]!, mag = Math.abs(ref);
              for (let c = 0; c < C; c++) for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) {
                const t = xAt(n, c, y + ky - pad, xx + kx - pad) * wAt(o, c, ky, kx);
                ref += t; mag += Math.abs(t);
              }
              worst = Math.max(worst, Math.abs(out[((n * O + o) * OH + y) * OW + xx]! - ref) / (mag || 1));
            }
            return worst;
          },
        };
      }
      if (pass === 'bwd_input') {
        const gx = new Float32Array(N * C * H * W);
        return {
          run: () => K.conv2dBackwardInput(gy, w, 'f32', N, C, H, W, O, kh, kw, 1, 1, pad, pad, 1, 1, 1, gx),
          check: () => {
            let worst = 0;
            for (let s = 0; s < 8; s++) {
              const n = pick(s, N), c = pick(s + 1, C), y = s === 0 ? 0 : pick(s + 2, H), xx = s === 1 ? W - 1 : pick(s + 3, W);
              let ref = 0, mag = 0;
              for (let o = 0; o < O; o++) for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) {
                const t = gyAt(n, o, y - ky + pad, xx - kx + pad) * wAt(o, c, ky, kx);
                ref += t; mag += Math.abs(t);
              }
              worst = Math.max(worst, Math.abs(gx[((n * C + c) * H + y) * W + xx]! - ref) / (mag || 1));
            }
            return worst;
          },
        };
      }
      const gw = new Float32Array(O * C * kh * kw);
      return {
        run: () => K.conv2dBackwardWeight(x, gy, N, C, H, W, O, kh, kw, 1, 1, pad, pad, 1, 1, 1, gw),
        check: () => {
          let worst = 0;
          for (let s = 0; s < 8; s++) {
            const o = pick(s, O), c = pick(s + 1, C), ky = s % kh, kx = (s >> 1) % kw;
            let ref = 0, mag = 0;
            for (let n = 0; n < N; n++) for (let y = 0; y < OH; y++) for (let xx = 0; xx < OW; xx++) {
              const t = gy[((n * O + o) * OH + y) * OW + xx]! * xAt(n, c, y + ky - pad, xx + kx - pad);
              ref += t; mag += Math.abs(t);
            }
            worst = Math.max(worst, Math.abs(gw[((o * C + c) * kh + ky) * kw + kx]! - ref) / (mag || 1));
          }
          return worst;
        },
      };
    },
    peer: { kind: 'torch', spec: { kind: 'conv', N, C, H, W, O, kh, kw, pad, pass } },
  };
}

// ---------------------------------------------------------------------------------------- attention

function attnCase(Lk: number, pass: 'fwd' | 'bwd', quick: boolean, timing: Partial<TimeOptions>): Case {
  const B = 2, H = 8, Lq = 4096, D = 40, Dv = 40, scale = 1 / Math.sqrt(D);
  const kind = Lk === Lq ? 'self' : 'cross';
  // forward: QKᵀ and PV; backward: the four gradient matmuls (dV, dP, dQ, dK), recomputation not counted
  const fwdFlops = 2 * B * H * Lq * Lk * (D + Dv);
  return {
    id: `attn_${kind}_${pass}`,
    group: 'attn',
    label: `attention ${kind} ${pass === 'fwd' ? 'forward' : 'backward'} ${B}×${H}×${Lq}×${Lk} d${D}`,
    quick,
    flops: pass === 'fwd' ? fwdFlops : 2 * fwdFlops,
    timing,
    vss: ({ K }) => {
      const q = filled(B * H * Lq * D, 7), k = filled(B * H * Lk * D, 8), v = filled(B * H * Lk * Dv, 9);
      const out = new Float32Array(B * H * Lq * Dv), lse = new Float32Array(B * H * Lq);
      const fwd = (): void => K.attention(q, k, v, B, H, Lq, Lk, D, Dv, scale, false, null, 0, 0, 0, out, lse);
      if (pass === 'fwd') {
        return {
          run: fwd,
          check: () => {
            let worst = 0;
            for (let s = 0; s < 4; s++) {
              const bh = (s * 5 + 1) % (B * H), i = (s * 1237 + 11) % Lq;
              const sc = new Float64Array(Lk);
              let mx = -Infinity;
              for (let j = 0; j < Lk; j++) {
                let d = 0;
                for (let t = 0; t < D; t++) d += q[(bh * Lq + i) * D + t]! * k[(bh * Lk + j) * D + t]!;
                sc[j] = d * scale;
                mx = Math.max(mx, sc[j]!);
              }
              let sum = 0;
              for (let j = 0; j < Lk; j++) { sc[j] = Math.exp(sc[j]! - mx); sum += sc[j]!; }
              for (let t = 0; t < Dv; t++) {
                let ref = 0;
                for (let j = 0; j < Lk; j++) ref += sc[j]! * v[(bh * Lk + j) * Dv + t]!;
                ref /= sum;
                worst = Math.max(worst, Math.abs(out[(bh * Lq + i) * Dv + t]! - ref) / Math.max(1, Math.abs(ref)));
              }
              const lseRef = mx + Math.log(sum);
              worst = Math.max(worst, Math.abs(lse[bh * Lq + i]! - lseRef) / Math.max(1, Math.abs(lseRef)));
            }
            return worst;
          },
        };
      }
      fwd();
      const gout = filled(B * H * Lq * Dv, 10);
      const gq = new Float32Array(q.length), gk = new Float32Array(k.length), gv = new Float32Array(v.length);
      return {
        run: () => K.attentionBackward(q, k, v, out, lse, gout, B, H, Lq, Lk, D, Dv, scale, false, null, 0, 0, 0, gq, gk, gv),
      };
    },
    peer: { kind: 'torch', spec: { kind: 'attention', B, H, Lq, Lk, D, Dv, pass } },
  };
}

// -------------------------------------------------------------------------------------------- norms

const NORM_EPS = 1e-5;

function groupNormSiluCase(): Case {
  const N = 2, C = 320, HW = 64 * 64, G = 32, n = N * C * HW;
  return {
    id: 'groupnorm_silu',
    group: 'norm',
    label: `group_norm(32)+silu ${N}×${C}×64×64`,
    quick: true,
    bytes: 2 * 4 * n,
    vss: ({ K }) => {
      const x = filled(n, 11), w = filled(C, 12), b = filled(C, 13), out = new Float32Array(n);
      const mean = new Float32Array(N * G), rstd = new Float32Array(N * G);
      return {
        run: () => {
          K.groupNorm(x, w, b, N, C, HW, G, NORM_EPS, out, mean, rstd);
          K.unary('silu', out, out, 0, 0);
        },
        check: () => {
          let worst = 0;
          for (let s = 0; s < 3; s++) {
            const ni = s % N, g = (s * 13 + 5) % G, cpg = C / G, base = (ni * C + g * cpg) * HW, len = cpg * HW;
            let m = 0;
            for (let i = 0; i < len; i++) m += x[base + i]!;
            m /= len;
            let v = 0;
            for (let i = 0; i < len; i++) v += (x[base + i]! - m) ** 2;
            const r = 1 / Math.sqrt(v / len + NORM_EPS);
            for (let t = 0; t < 8; t++) {
              const i = (t * 977 + s) % len, c = g * cpg + Math.floor(i / HW);
              const y = (x[base + i]! - m) * r * w[c]! + b[c]!;
              const ref = y / (1 + Math.exp(-y));
              worst = Math.max(worst, Math.abs(out[base + i]! - ref) / Math.max(1, Math.abs(ref)));
            }
          }
          return worst;
        },
      };
    },
    peer: { kind: 'torch', spec: { kind: 'groupnorm_silu', N, C, HW, G } },
  };
}

function layerNormCase(): Case {
  const rows = 2 * 4096, cols = 320;
  return {
    id: 'layernorm',
    group: 'norm',
    label: `layer_norm 2×4096×${cols}`,
    quick: true,
    bytes: 2 * 4 * rows * cols,
    vss: ({ K }) => {
      const x = filled(rows * cols, 14), w = filled(cols, 15), b = filled(cols, 16);
      const out = new Float32Array(rows * cols), mean = new Float32Array(rows), rstd = new Float32Array(rows);
      return {
        run: () => K.layerNorm(x, w, b, rows, cols, NORM_EPS, out, mean, rstd),
        check: () => {
          let worst = 0;
          for (let s = 0; s < 8; s++) {
            const r = (s * 1031 + 3) % rows, o = r * cols;
            let m = 0;
            for (let i = 0; i < cols; i++) m += x[o + i]!;
            m /= cols;
            let v = 0;
            for (let i = 0; i < cols; i++) v += (x[o + i]! - m) ** 2;
            const rs = 1 / Math.sqrt(v / cols + NORM_EPS);
            for (let i = 0; i < cols; i += 37) {
              const ref = (x[o + i]! - m) * rs * w[i]! + b[i]!;
              worst = Math.max(worst, Math.abs(out[o + i]! - ref) / Math.max(1, Math.abs(ref)));
            }
          }
          return worst;
        },
      };
    },
    peer: { kind: 'torch', spec: { kind: 'layernorm', rows, cols } },
  };
}

/** 16384 rows of 4096: a quarter of the score matrix of SD's 64×64 self-attention (2·8·4096 rows). */
function softmaxCase(): Case {
  const rows = 16384, cols = 4096;
  return {
    id: 'softmax',
    group: 'norm',
    label: `softmax ${rows} rows × ${cols}`,
    quick: true,
    bytes: 2 * 4 * rows * cols,
    vss: ({ K }) => {
      const x = filled(rows * cols, 17, 8), out = new Float32Array(rows * cols);
      return {
        run: () => K.softmax(x, rows, cols, false, out),
        check: () => {
          let worst = 0;
          for (let s = 0; s < 4; s++) {
            const o = ((s * 4099 + 1) % rows) * cols;
            let mx = -Infinity;
            for (let i = 0; i < cols; i++) mx = Math.max(mx, x[o + i]!);
            let sum = 0;
            for (let i = 0; i < cols; i++) sum += Math.exp(x[o + i]! - mx);
            for (let i = 0; i < cols; i += 61) {
              const ref = Math.exp(x[o + i]! - mx) / sum;
              worst = Math.max(worst, Math.abs(out[o + i]! - ref) / ref);
            }
          }
          return worst;
        },
      };
    },
    peer: { kind: 'torch', spec: { kind: 'softmax', rows, cols } },
  };
}

// ----------------------------------------------------------------------------------------- dispatch

const DISPATCH_TIMING: Partial<TimeOptions> = { inner: 1000, reps: 30, minTime: 0.3 };

function dispatchApiCase(): Case {
  return {
    id: 'dispatch_add16_api',
    group: 'dispatch',
    label: 'add 16 elements, public API (per op)',
    quick: true,
    timing: DISPATCH_TIMING,
    onlyThreads: 1,
    vss: ({ api }) => {
      if (!api?.tensor || !api.add) throw new Error('the public API (src/engine/index.ts) is not available');
      const { tensor, add } = api;
      const a = tensor(Array.from(filled(16, 18))), b = tensor(Array.from(filled(16, 19)));
      let sink: unknown;
      return { run: () => { sink = add(a, b); void sink; } };
    },
    peer: { kind: 'torch', spec: { kind: 'add', n: 16, inner: 1000 } },
  };
}

function dispatchKernelCase(): Case {
  return {
    id: 'dispatch_add16_kernel',
    group: 'dispatch',
    label: 'add 16 elements, kernel call only (K.binary)',
    quick: true,
    timing: DISPATCH_TIMING,
    onlyThreads: 1,
    vss: ({ K }) => {
      const a = filled(16, 18), b = filled(16, 19), out = new Float32Array(16), st = [1] as const, shape = [16] as const;
      return { run: () => K.binary('add', a, 0, st, b, 0, st, shape, out) };
    },
    peer: null,
  };
}

// ------------------------------------------------------------------------------------------- all

/** Every row; `quick` shrinks the batches of the training rows (the other rows pick by `Case.quick`). */
export function allCases(quick = false): Case[] {
  const cases: Case[] = [];
  for (const [ta, tb] of [[false, false], [true, false], [false, true]] as const) {
    for (const [M, N, K, q] of GEMM_SHAPES) {
      cases.push(gemmCase(ta, tb, M, N, K, q && (!ta && !tb || M === 1024 && N === 1024)));
    }
  }
  for (const pass of ['fwd', 'bwd_input', 'bwd_weight'] as const) {
    cases.push(convCase(2, 320, 64, 64, pass, true));
    cases.push(convCase(2, 640, 32, 32, pass, false));
    cases.push(convCase(1, 128, 128, 128, pass, false));
  }
  const slow: Partial<TimeOptions> = { reps: 3, minTime: 0, warmup: 1 };
  cases.push(attnCase(4096, 'fwd', true, slow));
  cases.push(attnCase(4096, 'bwd', false, { reps: 2, minTime: 0, warmup: 1 }));
  cases.push(attnCase(77, 'fwd', true, {}));
  cases.push(attnCase(77, 'bwd', true, {}));
  cases.push(groupNormSiluCase(), layerNormCase(), softmaxCase());
  cases.push(dispatchApiCase(), dispatchKernelCase());
  cases.push(trainUnetCase(quick), trainVitCase(quick), inferVitCase(quick));
  for (const [M, N, K] of HALF_GEMM_SHAPES) {
    for (const half of ['f16', 'bf16'] as const) cases.push(halfGemmCase(M, N, K, half));
  }
  for (const [M, N, K] of BF16_COMPUTE_SHAPES) cases.push(bf16ComputeCase(M, N, K));
  return cases;
}
