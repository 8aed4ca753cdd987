export { Module, ModuleList, ModuleDict, Sequential, cloneTensor, copyValues } from './module.js';
export type { LoadStateDictOptions, LoadResult, UnaryModule } from './module.js';
export {
  Identity, Linear, Conv2d, ConvTranspose2d, GroupNorm, LayerNorm, Embedding, Dropout, MLP, activate,
  Act, ReLU, GELU, SiLU, Tanh, Sigmoid,
} from './layers.js';
export type { Conv2dOptions, Activation } from './layers.js';
export { Attention } from './attention.js';
export type { AttentionConfig, AttentionCallOptions } from './attention.js';
export * as init from './init.js';
export { withoutInit, isPlaceholder } from './init.js';
