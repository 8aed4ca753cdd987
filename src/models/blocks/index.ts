/** Building blocks shared by the diffusion models (UNet2DConditionModel, UNet2DModel, AutoencoderKL). */
export { Ctx, act, shapeOnly, isShapeOnly, hasShapeOnly, ACT_FNS, type ActFn, type CtxOptions } from './layers.js';
export { TimestepEmbedding, sinusoidalEmbedding, timestepList } from './embeddings.js';
export { ResnetBlock2D, Downsample2D, Upsample2D, type ResnetSettings, type TimeScaleShift } from './resnet.js';
export {
  SpatialAttention, GEGLU, FeedForward, BasicTransformerBlock, Transformer2DModel,
  type SpatialAttentionOptions, type TransformerOptions,
} from './attention.js';
export {
  DownBlock, UpBlock, MidBlock, DOWN_BLOCKS, UP_BLOCKS, makeDownBlock, makeUpBlock, crossAttnMidBlock, spatialMidBlock,
  parseBlockTypes, type DownBlockConfig, type UpBlockConfig, type DownBlockType, type UpBlockType, type CrossAttnSettings,
  type DownGeometry, type UpGeometry,
} from './unet_blocks.js';
export { tiledApply, tileStarts, type TileOptions } from './tiling.js';
export {
  loadWeights, adoptStateDict, loadPretrained, findWeightFiles, renameLegacyAttention, WeightsError,
  type PretrainedOptions, type LoadWeightsOptions,
} from './weights.js';
