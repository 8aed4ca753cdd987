/** Convolution, pooling and resizing on NCHW tensors. */
import { emptyF32 } from '../dtype.js';
import { Tensor } from '../tensor.js';
import { K } from '../backend/index.js';
import { convOutSize } from '../backend/kernels.js';
import { fromOp, toDense, weightBuf } from './data.js';
import { contiguous, squeeze, unsqueeze } from './view.js';
import { sum } from './reduce.js';

type Pair = number | [number, number];
const pair = (v: Pair | undefined, dflt: number): [number, number] =>
  v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;

export interface Conv2dOptions { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number }

/** Accept unbatched [C, H, W] input like PyTorch. */
function batched(x: Tensor, op: string): [Tensor, boolean] {
  if (x.ndim === 3) return [unsqueeze(x, 0), true];
  if (x.ndim !== 4) throw new Error(`${op}: expected input [N, C, H, W] or [C, H, W], got [${x.shape}]`);
  return [x, false];
}

export function conv2d(input: Tensor, w: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const [x, unb] = batched(input, 'conv2d');
  const [sh, sw] = pair(opts.stride, 1), [ph, pw] = pair(opts.padding, 0), [dh, dw] = pair(opts.dilation, 1);
  const groups = opts.groups ?? 1;
  const [N, C, H, W] = x.shape;
  if (w.ndim !== 4) throw new Error(`conv2d: weight must be [O, C/groups, kh, kw], got [${w.shape}]`);
  const [O, Cg, kh, kw] = w.shape;
  if (C % groups || O % groups || Cg * groups !== C) {
    throw new Error(`conv2d: input has ${C} channels but weight [${w.shape}] with groups=${groups} expects ${Cg * groups}`);
  }
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== O)) throw new Error(`conv2d: bias must be [${O}], got [${bias.shape}]`);
  const OH = convOutSize(H, kh, sh, ph, dh), OW = convOutSize(W, kw, sw, pw, dw);
  if (OH <= 0 || OW <= 0) throw new Error(`conv2d: input ${H}×${W} is too small for kernel ${kh}×${kw} (dilation ${dh}, padding ${ph})`);
  const xd = toDense(x);
  const wb = weightBuf(w);
  const out = emptyF32(N * O * OH * OW);
  if (out.length) K.conv2d(xd, wb.buf, wb.dtype, bias ? toDense(bias) : null, N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups, out);
  const inputs = bias ? [x, w, bias] : [x, w];
  const y = fromOp(out, [N, O, OH, OW], inputs, 'conv2d', (g) => {
    const gd = toDense(g);
    let gx: Tensor | null = null, gw: Tensor | null = null;
    if (x.requiresGrad) {
      const buf = emptyF32(xd.length);
      K.conv2dBackwardInput(gd, wb.buf, wb.dtype, N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups, buf);
      gx = new Tensor(buf, x.shape, 'f32');
    }
    if (w.requiresGrad) {
      const buf = emptyF32(O * Cg * kh * kw);
      K.conv2dBackwardWeight(xd, gd, N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups, buf);
      gw = new Tensor(buf, w.shape, 'f32');
    }
    return [gx, gw, bias?.requiresGrad ? sum(g, [0, 2, 3]) : null];
  });
  return unb ? squeeze(y, 0) : y;
}

export interface ConvTranspose2dOptions extends Conv2dOptions { outputPadding?: Pair }

/**
 * Transposed convolution with weight [Cin, Cout/groups, kh, kw]. Its forward is exactly the input
 * gradient of a conv2d whose weight is that tensor, so both directions reuse the conv kernels.
 */
export function convTranspose2d(input: Tensor, w: Tensor, bias?: Tensor | null, opts: ConvTranspose2dOptions = {}): Tensor {
  const [x, unb] = batched(input, 'convTranspose2d');
  const [sh, sw] = pair(opts.stride, 1), [ph, pw] = pair(opts.padding, 0), [dh, dw] = pair(opts.dilation, 1);
  const [oph, opw] = pair(opts.outputPadding, 0);
  const groups = opts.groups ?? 1;
  const [N, Cin, H, W] = x.shape;
  if (w.ndim !== 4 || w.shape[0] !== Cin) {
    throw new Error(`convTranspose2d: weight must be [${Cin}, Cout/groups, kh, kw], got [${w.shape}]`);
  }
  const [, Coutg, kh, kw] = w.shape;
  const Cout = Coutg * groups;
  if (oph >= Math.max(sh, dh) || opw >= Math.max(sw, dw)) throw new Error('convTranspose2d: outputPadding must be smaller than stride or dilation');
  const OH = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1;
  const OW = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1;
  if (OH <= 0 || OW <= 0) throw new Error(`convTranspose2d: output size ${OH}×${OW} is not positive`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== Cout)) throw new Error(`convTranspose2d: bias must be [${Cout}], got [${bias.shape}]`);
  const xd = toDense(x);
  const wb = weightBuf(w);
  const out = emptyF32(N * Cout * OH * OW);
  // conv2d view: input [N, Cout, OH, OW] → output [N, Cin, H, W] with weight [Cin, Cout/g, kh, kw].
  if (out.length) K.conv2dBackwardInput(xd, wb.buf, wb.dtype, N, Cout, OH, OW, Cin, kh, kw, sh, sw, ph, pw, dh, dw, groups, out);
  if (bias) {
    const bd = toDense(bias), plane = OH * OW;
    for (let n = 0; n < N; n++) for (let c = 0; c < Cout; c++) {
      const base = (n * Cout + c) * plane, v = bd[c];
      for (let i = 0; i < plane; i++) out[base + i] += v;
    }
  }
  const inputs = bias ? [x, w, bias] : [x, w];
  const y = fromOp(out, [N, Cout, OH, OW], inputs, 'convTranspose2d', (g) => {
    const gd = toDense(g);
    let gx: Tensor | null = null, gw: Tensor | null = null;
    if (x.requiresGrad) {
      const buf = emptyF32(xd.length);
      K.conv2d(gd, wb.buf, wb.dtype, null, N, Cout, OH, OW, Cin, kh, kw, sh, sw, ph, pw, dh, dw, groups, buf);
      gx = new Tensor(buf, x.shape, 'f32');
    }
    if (w.requiresGrad) {
      const buf = emptyF32(w.numel);
      K.conv2dBackwardWeight(gd, xd, N, Cout, OH, OW, Cin, kh, kw, sh, sw, ph, pw, dh, dw, groups, buf);
      gw = new Tensor(buf, w.shape, 'f32');
    }
    return [gx, gw, bias?.requiresGrad ? sum(g, [0, 2, 3]) : null];
  });
  return unb ? squeeze(y, 0) : y;
}

export interface Pool2dOptions { stride?: Pair; padding?: Pair; countIncludePad?: boolean }

function poolSetup(input: Tensor, kernel: Pair, opts: Pool2dOptions, op: string) {
  const [x, unb] = batched(input, op);
  const [kh, kw] = pair(kernel, 1);
  const [sh, sw] = pair(opts.stride, 0).map((s, i) => s || [kh, kw][i]) as [number, number];
  const [ph, pw] = pair(opts.padding, 0);
  if (ph * 2 > kh || pw * 2 > kw) throw new Error(`${op}: padding must be at most half the kernel size`);
  const [N, C, H, W] = x.shape;
  const OH = convOutSize(H, kh, sh, ph, 1), OW = convOutSize(W, kw, sw, pw, 1);
  if (OH <= 0 || OW <= 0) throw new Error(`${op}: input ${H}×${W} is too small for kernel ${kh}×${kw}`);
  return { x: contiguous(x), unb, kh, kw, sh, sw, ph, pw, N, C, H, W, OH, OW };
}

export function maxPool2d(input: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  const p = poolSetup(input, kernel, opts, 'maxPool2d');
  const out = emptyF32(p.N * p.C * p.OH * p.OW);
  const arg = new Int32Array(out.length);
  K.maxPool2d(toDense(p.x), p.N, p.C, p.H, p.W, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, out, arg);
  const y = fromOp(out, [p.N, p.C, p.OH, p.OW], [p.x], 'maxPool2d', (g) => {
    const gx = new Float32Array(p.x.numel);
    K.maxPool2dBackward(toDense(g), arg, p.N, p.C, p.H, p.W, p.OH, p.OW, gx);
    return [new Tensor(gx, p.x.shape, 'f32')];
  });
  return p.unb ? squeeze(y, 0) : y;
}

export function avgPool2d(input: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  const p = poolSetup(input, kernel, opts, 'avgPool2d');
  const cip = opts.countIncludePad ?? true;
  const out = emptyF32(p.N * p.C * p.OH * p.OW);
  K.avgPool2d(toDense(p.x), p.N, p.C, p.H, p.W, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, cip, out);
  const y = fromOp(out, [p.N, p.C, p.OH, p.OW], [p.x], 'avgPool2d', (g) => {
    const gx = new Float32Array(p.x.numel);
    K.avgPool2dBackward(toDense(g), p.N, p.C, p.H, p.W, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, cip, gx);
    return [new Tensor(gx, p.x.shape, 'f32')];
  });
  return p.unb ? squeeze(y, 0) : y;
}

export interface InterpolateOptions {
  size?: number | [number, number];
  scaleFactor?: number | [number, number];
  mode?: 'nearest' | 'bilinear';
  alignCorners?: boolean;
}

/** Resize the last two dims of [..., H, W]. */
export function interpolate(x: Tensor, opts: InterpolateOptions): Tensor {
  if (x.ndim < 2) throw new Error(`interpolate: expected [..., H, W], got [${x.shape}]`);
  const H = x.shape[x.ndim - 2], W = x.shape[x.ndim - 1];
  let OH: number, OW: number;
  if (opts.size !== undefined) [OH, OW] = pair(opts.size, 0);
  else if (opts.scaleFactor !== undefined) {
    const [fh, fw] = typeof opts.scaleFactor === 'number' ? [opts.scaleFactor, opts.scaleFactor] : opts.scaleFactor;
    OH = Math.floor(H * fh); OW = Math.floor(W * fw);
  } else throw new Error('interpolate: give size or scaleFactor');
  if (!(OH > 0 && OW > 0)) throw new Error(`interpolate: output size ${OH}×${OW} must be positive`);
  const mode = opts.mode ?? 'nearest', ac = opts.alignCorners ?? false;
  if (mode === 'nearest' && opts.alignCorners !== undefined) throw new Error('interpolate: alignCorners only applies to bilinear');
  const P = x.numel / (H * W) || 0;
  const xd = toDense(x);
  const out = emptyF32(P * OH * OW);
  if (out.length) K.interpolate(xd, P, H, W, OH, OW, mode, ac, out);
  return fromOp(out, [...x.shape.slice(0, -2), OH, OW], [x], 'interpolate', (g) => {
    const gx = emptyF32(xd.length);
    if (gx.length) K.interpolateBackward(toDense(g), P, H, W, OH, OW, mode, ac, gx);
    return [new Tensor(gx, x.shape, 'f32')];
  });
}
