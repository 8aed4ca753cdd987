/**
 * The package entry (`import * as vss from 'vss'`, package.json "main"): each layer as a namespace, in the
 * order they depend on one another. Models, pipelines and the CLI are imported from their own modules
 * (`vss/dist/src/models/...`, `vss/dist/src/pipelines/...`).
 */
export * as engine from './engine/index.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * as data from './data/index.js';
export * as image from './image/index.js';
export * as io from './io/index.js';
export * as tokenizers from './tokenizers/index.js';
