/**
 * The op dispatch shared by the PyTorch parity test and the gradient checker: maps a case's op name and
 * torch-style attributes (see scripts/torch_fixtures.py) onto a call of the public engine API, and normalises
 * whatever it returns to a list of output tensors.
 */
import * as vss from '../../src/engine/index.js';

type Tensor = vss.Tensor;
export type Attrs = Record<string, any>;

export interface ViewStep {
  op: 'transpose' | 'permute' | 'slice' | 'expand' | 'cast';
  dims?: number[];
  dim?: number;
  start?: number;
  end?: number;
  step?: number;
  shape?: number[];
  dtype?: 'f16' | 'bf16';
}

/** Apply the view steps recorded in a fixture to a dense base tensor (the result shares its storage). */
export function applyView(t: Tensor, view: readonly ViewStep[]): Tensor {
  for (const v of view) {
    switch (v.op) {
      case 'transpose': t = t.transpose(v.dims![0], v.dims![1]); break;
      case 'permute': t = t.permute(v.dims!); break;
      case 'slice': t = t.slice(v.dim!, v.start, v.end, v.step ?? 1); break;
      case 'expand': t = t.expand(v.shape!); break;
      case 'cast': t = t.to(v.dtype!); break;
      default: throw new Error(`applyView: unknown view op ${(v as ViewStep).op}`);
    }
  }
  return t;
}

const UNARY: Record<string, (x: Tensor) => Tensor> = {
  neg: vss.neg, exp: vss.exp, log: vss.log, sqrt: vss.sqrt, rsqrt: vss.rsqrt, abs: vss.abs, sin: vss.sin,
  cos: vss.cos, tanh: vss.tanh, sigmoid: vss.sigmoid, relu: vss.relu, quickGelu: vss.quickGelu, silu: vss.silu,
  erf: vss.erf, square: vss.square, reciprocal: vss.reciprocal, logicalNot: vss.logicalNot,
};

type Binary = (a: Tensor | number, b: Tensor | number) => Tensor;
const BINARY: Record<string, Binary> = {
  add: vss.add, sub: vss.sub, mul: vss.mul, div: vss.div, pow: vss.pow, maximum: vss.maximum, minimum: vss.minimum,
  eq: vss.eq, ne: vss.ne, lt: vss.lt, le: vss.le, gt: vss.gt, ge: vss.ge,
};

const dimArg = (d: number | number[] | null | undefined): number | number[] | undefined => d ?? undefined;

/** Every op name runOp understands. */
export const KNOWN_OPS = new Set<string>([
  ...Object.keys(UNARY), ...Object.keys(BINARY), 'gelu', 'clamp', 'where',
  'sum', 'mean', 'max', 'min', 'logsumexp', 'var', 'std', 'argmax', 'argmin', 'maxDim', 'minDim', 'topk',
  'matmul', 'bmm', 'linear', 'conv2d', 'convTranspose2d', 'avgPool2d', 'maxPool2d', 'interpolate', 'pad',
  'cat', 'stack', 'split', 'chunk', 'gather', 'indexSelect', 'embedding', 'cumsum', 'flip', 'repeat',
  'softmax', 'logSoftmax', 'layerNorm', 'groupNorm', 'crossEntropy', 'mseLoss', 'scaledDotProductAttention',
]);

/** Run `op` on inputs `xs` (already viewed) with torch-style attrs; returns the outputs in torch's order. */
export function runOp(op: string, xs: Tensor[], a: Attrs): Tensor[] {
  if (op in UNARY) return [UNARY[op](xs[0])];
  if (op in BINARY) {
    const f = BINARY[op];
    if (a.scalar !== undefined) return [a.scalar_first ? f(a.scalar, xs[0]) : f(xs[0], a.scalar)];
    return [f(xs[0], xs[1])];
  }
  switch (op) {
    case 'gelu': return [vss.gelu(xs[0], a.approximate ?? 'none')];
    case 'clamp': return [vss.clamp(xs[0], a.min ?? undefined, a.max ?? undefined)];
    case 'where': return [a.scalar_other !== undefined ? vss.where(xs[0], xs[1], a.scalar_other) : vss.where(xs[0], xs[1], xs[2])];

    case 'sum': return [vss.sum(xs[0], dimArg(a.dim), a.keepdim ?? false)];
    case 'mean': return [vss.mean(xs[0], dimArg(a.dim), a.keepdim ?? false)];
    case 'max': return [vss.max(xs[0], dimArg(a.dim), a.keepdim ?? false)];
    case 'min': return [vss.min(xs[0], dimArg(a.dim), a.keepdim ?? false)];
    case 'logsumexp': return [vss.logsumexp(xs[0], dimArg(a.dim), a.keepdim ?? false)];
    case 'var': return [vss.variance(xs[0], dimArg(a.dim), { correction: a.correction, keepdim: a.keepdim ?? false })];
    case 'std': return [vss.std(xs[0], dimArg(a.dim), { correction: a.correction, keepdim: a.keepdim ?? false })];
    case 'argmax': return [vss.argmax(xs[0], a.dim ?? undefined, a.keepdim ?? false)];
    case 'argmin': return [vss.argmin(xs[0], a.dim ?? undefined, a.keepdim ?? false)];
    case 'maxDim': { const r = vss.maxDim(xs[0], a.dim, a.keepdim ?? false); return [r.values, r.indices]; }
    case 'minDim': { const r = vss.minDim(xs[0], a.dim, a.keepdim ?? false); return [r.values, r.indices]; }
    case 'topk': { const r = vss.topk(xs[0], a.k, a.dim, a.largest ?? true); return [r.values, r.indices]; }

    case 'matmul': return [vss.matmul(xs[0], xs[1])];
    case 'bmm': return [vss.bmm(xs[0], xs[1])];
    case 'linear': return [vss.linear(xs[0], xs[1], xs[2])];
    case 'conv2d':
      return [vss.conv2d(xs[0], xs[1], xs[2], {
        stride: a.stride, padding: a.padding, dilation: a.dilation, groups: a.groups,
      })];
    case 'convTranspose2d':
      return [vss.convTranspose2d(xs[0], xs[1], xs[2], {
        stride: a.stride, padding: a.padding, outputPadding: a.output_padding, dilation: a.dilation, groups: a.groups,
      })];
    case 'avgPool2d':
      return [vss.avgPool2d(xs[0], a.kernel_size, {
        stride: a.stride, padding: a.padding, countIncludePad: a.count_include_pad,
      })];
    case 'maxPool2d':
      return [vss.maxPool2d(xs[0], a.kernel_size, { stride: a.stride, padding: a.padding })];
    case 'interpolate':
      return [vss.interpolate(xs[0], {
        ...(a.size ? { size: a.size } : { scaleFactor: a.scale_factor }),
        mode: a.mode, ...(a.mode === 'bilinear' ? { alignCorners: a.align_corners } : {}),
      })];
    case 'pad': return [vss.pad(xs[0], a.pads, a.value)];

    case 'cat': return [vss.cat(xs, a.dim)];
    case 'stack': return [vss.stack(xs, a.dim)];
    case 'split': return vss.split(xs[0], a.split, a.dim);
    case 'chunk': return vss.chunk(xs[0], a.chunks, a.dim);
    case 'gather': return [vss.gather(xs[0], a.dim, xs[1])];
    case 'indexSelect': return [vss.indexSelect(xs[0], a.dim, xs[1])];
    case 'embedding': return [vss.embedding(xs[0], xs[1])];
    case 'cumsum': return [vss.cumsum(xs[0], a.dim)];
    case 'flip': return [vss.flip(xs[0], a.dims)];
    case 'repeat': return [vss.repeat(xs[0], a.sizes)];

    case 'softmax': return [vss.softmax(xs[0], a.dim)];
    case 'logSoftmax': return [vss.logSoftmax(xs[0], a.dim)];
    case 'layerNorm': return [vss.layerNorm(xs[0], a.normalized_shape, xs[1] ?? null, xs[2] ?? null, a.eps)];
    case 'groupNorm': return [vss.groupNorm(xs[0], a.num_groups, xs[1] ?? null, xs[2] ?? null, a.eps)];
    case 'crossEntropy':
      return [vss.crossEntropy(xs[0], xs[1], {
        labelSmoothing: a.label_smoothing, ignoreIndex: a.ignore_index, reduction: a.reduction,
      })];
    case 'mseLoss': return [vss.mseLoss(xs[0], xs[1], { reduction: a.reduction })];
    case 'scaledDotProductAttention':
      return [vss.scaledDotProductAttention(xs[0], xs[1], xs[2], {
        mask: xs[3], causal: a.causal ?? false, scale: a.scale,
      })];
  }
  throw new Error(`runOp: unknown op ${op}`);
}
