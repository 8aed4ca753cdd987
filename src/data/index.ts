/** Datasets (Fashion-MNIST, Shapes, image folders), the IDX reader and the DataLoader. */
export * from './types.js';
export * from './idx.js';
export * from './fashion_mnist.js';
export * from './shapes.js';
export * from './image_folder.js';
export { collate, type RawBatch } from './collate.js';
export * from './loader.js';
export * from './registry.js';
export * from './fashion_captions.js';
export * from './shapes_captions.js';
