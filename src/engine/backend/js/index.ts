/**
 * The pure TypeScript kernels: the reference every other backend is checked against, and the fallback
 * for any kernel the native addon does not provide.
 */
import type { Kernels } from '../kernels.js';
import { attention, attentionBackward } from './attention.js';
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight } from './conv.js';
import { stridedCopy } from './copy.js';
import { binary, unary, unaryBackward, where } from './elementwise.js';
import { gemm } from './gemm.js';
import { narrow, widen } from './half.js';
import { adamStep } from './optim.js';
import { groupNorm, groupNormBackward, layerNorm, layerNormBackward } from './norm.js';
import { avgPool2d, avgPool2dBackward, interpolate, interpolateBackward, maxPool2d, maxPool2dBackward } from './pool.js';
import { argReduce, reduce, softmax, softmaxBackward } from './reduce.js';

export const jsKernels: Kernels = {
  name: 'js',
  stridedCopy, widen, narrow,
  unary, unaryBackward, binary, where,
  reduce, argReduce, softmax, softmaxBackward,
  gemm,
  conv2d, conv2dBackwardInput, conv2dBackwardWeight,
  attention, attentionBackward,
  layerNorm, layerNormBackward, groupNorm, groupNormBackward,
  maxPool2d, maxPool2dBackward, avgPool2d, avgPool2dBackward, interpolate, interpolateBackward,
  adamStep,
};
