export { Optimizer, SGD, Adam, AdamW, clipGradNorm } from './optimizer.js';
export type { GroupOptions, ParamGroup, ParamsArg, OptimizerStateDict, SGDOptions, AdamOptions } from './optimizer.js';
export { ConstantSchedule, LinearSchedule, CosineSchedule, constantLr, cosineLr } from './schedule.js';
export type { LrSchedule } from './schedule.js';
export { EMA } from './ema.js';
export type { EMAOptions, EMAStateDict } from './ema.js';
