/** Images and pictures: decode/encode, PNG generation parameters, grids, animations, heat maps, plots. */
export * from './raster.js';
export * from './png.js';
export * from './io.js';
export * from './font.js';
export * from './grid.js';
export * from './anim.js';
export * from './heatmap.js';
export * from './plot.js';
