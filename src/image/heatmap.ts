/**
 * Heat maps: colour maps from our own tables of control points, heat-map rasters, overlays blended
 * onto an image, and grids of attention maps (one row per head, one column per token).
 */
import type { Tensor } from '../engine/index.js';
import { makeGrid, type GridOptions } from './grid.js';
import { type Pixels, type Raster, type Rgb, createRaster, parseColor, toRgb } from './raster.js';

export type ColormapName = 'viridis' | 'inferno' | 'magma' | 'gray';

// Each map sampled at 0, 0.1, …, 1; colours in between are interpolated linearly in RGB.
const CONTROL_POINTS: Record<ColormapName, readonly string[]> = {
  viridis: ['#440154', '#482475', '#414487', '#355f8d', '#2a788e', '#21918c', '#22a884', '#44bf70', '#7ad151', '#bddf26', '#fde725'],
  inferno: ['#000004', '#160b39', '#420a68', '#6a176e', '#932667', '#bc3754', '#dd513a', '#f37819', '#fca50a', '#f6d746', '#fcffa4'],
  magma: ['#000004', '#140e36', '#3b0f70', '#641a80', '#8c2981', '#b73779', '#de4968', '#f7705c', '#fe9f6d', '#fecf92', '#fcfdbf'],
  gray: ['#000000', '#ffffff'],
};

const lutCache = new Map<ColormapName, Uint8Array>();

/** A 256-entry RGB lookup table for a colour map. */
export function colormapTable(name: ColormapName): Uint8Array {
  const cached = lutCache.get(name);
  if (cached) return cached;
  const points = CONTROL_POINTS[name];
  if (!points) throw new Error(`unknown colour map ${JSON.stringify(name)} (have ${Object.keys(CONTROL_POINTS).join(', ')})`);
  const colors = points.map(parseColor);
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const pos = (i / 255) * (colors.length - 1);
    const k = Math.min(colors.length - 2, Math.floor(pos)), f = pos - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(colors[k][c] * (1 - f) + colors[k + 1][c] * f);
  }
  lutCache.set(name, lut);
  return lut;
}

/** The colour for t in [0, 1] (clamped; NaN counts as 0). */
export function colormapColor(name: ColormapName, t: number): Rgb {
  const lut = colormapTable(name);
  const i = t > 0 ? (t < 1 ? Math.round(t * 255) : 255) : 0;
  return [lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2]];
}

export interface HeatmapOptions {
  colormap?: ColormapName;
  /** Value shown as the bottom of the colour map; default the data's minimum. */
  min?: number;
  /** Value shown as the top; default the data's maximum. */
  max?: number;
}

function valueRange(values: ArrayLike<number>, opts: HeatmapOptions): [number, number] {
  let lo = Infinity, hi = -Infinity;
  if (opts.min === undefined || opts.max === undefined) {
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  lo = opts.min ?? (Number.isFinite(lo) ? lo : 0);
  hi = opts.max ?? (Number.isFinite(hi) ? hi : 1);
  return [lo, hi];
}

/** Colour each value of a width×height map. A constant map shows as the bottom colour. */
export function heatmap(values: ArrayLike<number>, width: number, height: number, opts: HeatmapOptions = {}): Raster {
  if (values.length !== width * height) throw new Error(`heatmap: ${values.length} values do not make ${width}x${height}`);
  const lut = colormapTable(opts.colormap ?? 'viridis');
  const [lo, hi] = valueRange(values, opts);
  const span = hi > lo ? hi - lo : 1;
  const out = createRaster(width, height);
  for (let i = 0; i < values.length; i++) {
    const t = (values[i] - lo) / span;
    const k = (t > 0 ? (t < 1 ? Math.round(t * 255) : 255) : 0) * 3;
    out.data[i * 3] = lut[k]; out.data[i * 3 + 1] = lut[k + 1]; out.data[i * 3 + 2] = lut[k + 2];
  }
  return out;
}

/** Resample a w×h map to W×H, bilinear with pixel centres aligned (smooth) or nearest. */
export function resizeMap(values: ArrayLike<number>, w: number, h: number, W: number, H: number, smooth = true): Float32Array {
  const out = new Float32Array(W * H);
  for (let y = 0; y < H; y++) {
    const sy = Math.min(h - 1, Math.max(0, ((y + 0.5) * h) / H - 0.5));
    const y0 = Math.floor(sy), y1 = Math.min(h - 1, y0 + 1), fy = sy - y0;
    for (let x = 0; x < W; x++) {
      if (!smooth) { out[y * W + x] = values[Math.min(h - 1, Math.floor((y * h) / H)) * w + Math.min(w - 1, Math.floor((x * w) / W))]; continue; }
      const sx = Math.min(w - 1, Math.max(0, ((x + 0.5) * w) / W - 0.5));
      const x0 = Math.floor(sx), x1 = Math.min(w - 1, x0 + 1), fx = sx - x0;
      const top = values[y0 * w + x0] * (1 - fx) + values[y0 * w + x1] * fx;
      const bottom = values[y1 * w + x0] * (1 - fx) + values[y1 * w + x1] * fx;
      out[y * W + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

export interface OverlayOptions extends HeatmapOptions {
  /** Weight of the heat map over the image, 0..1 (default 0.5). */
  alpha?: number;
  /** Bilinear (default) or blocky nearest upsampling of the map. */
  smooth?: boolean;
}

/** Blend a mapWidth×mapHeight heat map, stretched to the image's size, over the image. */
export function overlayHeatmap(image: Pixels, values: ArrayLike<number>, mapWidth: number, mapHeight: number, opts: OverlayOptions = {}): Raster {
  if (values.length !== mapWidth * mapHeight) throw new Error(`overlayHeatmap: ${values.length} values do not make ${mapWidth}x${mapHeight}`);
  const base = toRgb(image);
  const [lo, hi] = valueRange(values, opts);
  const resized = resizeMap(values, mapWidth, mapHeight, base.width, base.height, opts.smooth ?? true);
  const colored = heatmap(resized, base.width, base.height, { colormap: opts.colormap, min: lo, max: hi });
  const alpha = Math.min(1, Math.max(0, opts.alpha ?? 0.5));
  const out = createRaster(base.width, base.height);
  for (let i = 0; i < out.data.length; i++) out.data[i] = Math.round(base.data[i] * (1 - alpha) + colored.data[i] * alpha);
  return out;
}

/** Attention maps as plain numbers: heads × tokens maps of height × width, row-major in that order. */
export interface AttentionMaps {
  data: ArrayLike<number>;
  heads: number;
  tokens: number;
  height: number;
  width: number;
}

export interface AttentionGridOptions extends Omit<OverlayOptions, 'min' | 'max'>, Omit<GridOptions, 'columns' | 'rowLabels' | 'columnLabels'> {
  /** Column labels, one per token (e.g. the prompt's words). */
  tokenLabels?: string[];
  /** Row labels; default "head 0", "head 1", … */
  headLabels?: string[];
  /** Scale each map to its own range (default), or all maps to the common range. */
  normalize?: 'per-map' | 'global';
  /** Add a last row with the mean over heads (default true when there are several heads). */
  meanRow?: boolean;
  /** Show the plain image as the first column (default true). */
  includeImage?: boolean;
}

function toAttentionMaps(maps: Tensor | AttentionMaps): AttentionMaps {
  if ('heads' in maps) {
    if (maps.data.length !== maps.heads * maps.tokens * maps.height * maps.width) throw new Error('attention maps: data length does not match heads×tokens×height×width');
    return maps;
  }
  const s = maps.shape;
  if (s.length !== 4 && s.length !== 3) throw new Error(`attention maps must be [heads, tokens, h, w] or [tokens, h, w], got [${s}]`);
  const [heads, tokens, height, width] = s.length === 4 ? s : [1, ...s];
  return { data: maps.to('f32').contiguous().toFloat32Array(), heads, tokens, height, width };
}

/**
 * A grid of heat-map overlays: one row per head (plus an optional mean row), one column per token.
 * `maps` is a tensor [heads, tokens, h, w] (or [tokens, h, w]); for cross-attention probabilities
 * shaped [heads, h*w, tokens], permute to [heads, tokens, h*w] and reshape first.
 */
export function attentionGrid(image: Pixels, maps: Tensor | AttentionMaps, opts: AttentionGridOptions = {}): Raster {
  const m = toAttentionMaps(maps);
  const plane = m.height * m.width;
  const rowsOfMaps: Float32Array[][] = [];
  for (let h = 0; h < m.heads; h++) {
    const row: Float32Array[] = [];
    for (let t = 0; t < m.tokens; t++) row.push(Float32Array.from({ length: plane }, (_, i) => m.data[(h * m.tokens + t) * plane + i]));
    rowsOfMaps.push(row);
  }
  const rowLabels = Array.from({ length: m.heads }, (_, h) => opts.headLabels?.[h] ?? `head ${h}`);
  if (opts.meanRow ?? m.heads > 1) {
    rowsOfMaps.push(Array.from({ length: m.tokens }, (_, t) => {
      const mean = new Float32Array(plane);
      for (const row of rowsOfMaps.slice(0, m.heads)) for (let i = 0; i < plane; i++) mean[i] += row[t][i] / m.heads;
      return mean;
    }));
    rowLabels.push('mean');
  }
  let globalRange: HeatmapOptions = {};
  if (opts.normalize === 'global') {
    const [min, max] = valueRange(m.data, {});
    globalRange = { min, max };
  }
  const includeImage = opts.includeImage ?? true;
  const cells: Pixels[] = [];
  for (const row of rowsOfMaps) {
    if (includeImage) cells.push(image);
    for (const map of row) {
      cells.push(overlayHeatmap(image, map, m.width, m.height, { alpha: opts.alpha, colormap: opts.colormap, smooth: opts.smooth, ...globalRange }));
    }
  }
  const tokenLabels = Array.from({ length: m.tokens }, (_, t) => opts.tokenLabels?.[t] ?? `token ${t}`);
  return makeGrid(cells, {
    ...opts,
    columns: m.tokens + (includeImage ? 1 : 0),
    rowLabels,
    columnLabels: includeImage ? ['image', ...tokenLabels] : tokenLabels,
  });
}
