/** The public engine API: tensors, autograd, ops, random numbers, backend selection. */
export { Tensor, type Shape, type TensorLike, contiguousStrides, numelOf, sameShape } from './tensor.js';
export { type DType, DTYPES, itemSize, isFloat, isHalf } from './dtype.js';
export { noGrad, withGrad, isGradEnabled, type GradFn } from './autograd.js';
export { Rng, type RngState, manualSeed, getDefaultRng } from './rng.js';
export {
  setBackend, backendName, nativeAvailable, setMatmulPrecision, getMatmulPrecision, type BackendName,
  type MatmulPrecision,
} from './backend/index.js';

export {
  tensor, fromTypedArray, full, zeros, ones, zerosLike, onesLike, fullLike, arange, linspace, eye,
  randn, rand, randint, randnLike, type CreateOptions, type RandomOptions,
} from './ops/creation.js';
export {
  contiguous, clone, reshape, reshape as view, permute, transpose, narrow, slice, select, expand, squeeze,
  unsqueeze, flatten, cast,
} from './ops/view.js';
export {
  add, sub, mul, div, pow, neg, exp, log, sqrt, rsqrt, abs, sin, cos, tanh, sigmoid, relu, gelu, quickGelu,
  silu, erf, square, reciprocal, clamp, affine, maximum, minimum, eq, ne, lt, le, gt, ge, logicalNot, where,
} from './ops/elementwise.js';
export {
  sum, mean, max, min, variance as var, variance, std, argmax, argmin, maxDim, minDim, logsumexp, sumTo,
  type VarOptions,
} from './ops/reduce.js';
export { matmul, bmm, linear } from './ops/linalg.js';
export {
  conv2d, convTranspose2d, maxPool2d, avgPool2d, interpolate,
  type Conv2dOptions, type ConvTranspose2dOptions, type Pool2dOptions, type InterpolateOptions,
} from './ops/conv.js';
export { cat, stack, split, chunk, gather, indexSelect, embedding, cumsum, flip, repeat, pad } from './ops/shape.js';
export {
  softmax, logSoftmax, layerNorm, groupNorm, dropout, crossEntropy, mseLoss, scaledDotProductAttention,
  type AttentionOptions, type CrossEntropyOptions, type Reduction,
} from './ops/nn.js';
export { topk, multinomial } from './ops/sampling.js';
export { adamUpdate, type AdamStepHyper } from './ops/optim.js';
