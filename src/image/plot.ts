/**
 * Plots drawn by our own code: training curves from the JSONL metrics log, and 2-D scatters of
 * embeddings projected by PCA. Each plot is planned once in pixel coordinates, then rendered either
 * as SVG text or as a raster (tick labels in the built-in bitmap font, so no system fonts are needed).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tensor } from '../engine/index.js';
import { CHAR_ADVANCE, LINE_HEIGHT, drawText, measureText } from './font.js';
import { encodePng, writeFileAtomic } from './io.js';
import {
  type Raster, type Rgb, WHITE, colorToHex, createRaster, drawLine, fillCircle, fillRect, parseColor,
} from './raster.js';

/** Ten distinct series colours (the familiar "category 10" set). */
export const SERIES_COLORS: readonly Rgb[] = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
].map(parseColor);

const AXIS_COLOR: Rgb = [60, 60, 60];
const GRID_COLOR: Rgb = [228, 228, 228];
const TEXT_COLOR: Rgb = [30, 30, 30];
// SVG text uses this size so that it takes about the room the 6×10 bitmap font does.
const SVG_FONT = 'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="10"';

// ---------------------------------------------------------------------------------------------------
// Metrics log

export type MetricRecord = Record<string, unknown>;

/**
 * Read a JSONL metrics log (one JSON object per line). Blank lines are skipped, and so is a torn last
 * line (a run still writing); any other bad line is an error naming the file and line.
 */
export function readMetricsLog(file: string): MetricRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read metrics log ${file}: ${(err as Error).message}`);
  }
  const lines = text.split('\n');
  const records: MetricRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      const value: unknown = JSON.parse(line);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
      records.push(value as MetricRecord);
    } catch (err) {
      const isLast = lines.slice(i + 1).every((l) => l.trim() === '');
      if (!isLast) throw new Error(`${file}:${i + 1}: not a JSON object (${(err as Error).message})`);
    }
  });
  return records;
}

export interface Series {
  name: string;
  x: number[];
  y: number[];
  color?: Rgb;
}

/** The numeric keys of a metrics log other than `xKey`, in first-seen order. */
export function metricKeys(records: readonly MetricRecord[], xKey = 'step'): string[] {
  const keys = new Set<string>();
  for (const r of records) for (const [k, v] of Object.entries(r)) if (k !== xKey && typeof v === 'number') keys.add(k);
  return [...keys];
}

/** One series per key: the records that have finite numbers for both `xKey` and the key. */
export function metricSeries(records: readonly MetricRecord[], keys: readonly string[], xKey = 'step'): Series[] {
  return keys.map((name) => {
    const x: number[] = [], y: number[] = [];
    records.forEach((r) => {
      const xv = r[xKey], yv = r[name];
      if (typeof xv === 'number' && typeof yv === 'number' && Number.isFinite(xv) && Number.isFinite(yv)) { x.push(xv); y.push(yv); }
    });
    return { name, x, y };
  });
}

/**
 * Exponential moving average with bias correction (as TensorBoard's smoothing slider): `weight` 0
 * leaves the values alone, 0.99 smooths heavily, and the first values are not pulled towards zero.
 */
export function emaSmooth(values: readonly number[], weight: number): number[] {
  if (!(weight >= 0 && weight < 1)) throw new Error(`smoothing must be in [0, 1), got ${weight}`);
  const out: number[] = [];
  let acc = 0, norm = 0;
  for (const v of values) {
    acc = acc * weight + (1 - weight) * v;
    norm = norm * weight + (1 - weight);
    out.push(acc / norm);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Axes: ranges, ticks, and the mapping from data to pixels

interface Tick { pos: number; label: string }

/** The plan shared by the raster and the SVG renderers; all positions are pixels. */
interface AxesPlan {
  width: number;
  height: number;
  box: { left: number; top: number; right: number; bottom: number };
  xTicks: Tick[];
  yTicks: Tick[];
  title?: string;
  xLabel?: string;
  yLabel?: string;
}

function niceStep(span: number, target: number): number {
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

/** Tick values on round numbers inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(hi > lo)) return [lo];
  const step = niceStep(hi - lo, target);
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

/** A compact tick label: 0.25, 1500, 20k, 1e-4. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return Number(v.toPrecision(3)).toExponential().replace('e+', 'e');
  if (a >= 1e4 && Number.isInteger(v / 1000)) return `${v / 1000}k`;
  return String(Number(v.toPrecision(4)));
}

/** Log-scale ticks: each decade, with 2 and 5 between them when the range spans few decades. */
function logTicks(lo: number, hi: number): number[] {
  const d0 = Math.floor(lo), d1 = Math.ceil(hi);
  const steps = d1 - d0 <= 3 ? [1, 2, 5] : [1];
  const every = Math.max(1, Math.ceil((d1 - d0) / 8));
  const ticks: number[] = [];
  for (let d = d0; d <= d1; d += every) for (const m of steps) {
    const v = Math.log10(m) + d;
    if (v >= lo - 1e-9 && v <= hi + 1e-9) ticks.push(v);
  }
  return ticks;
}

interface Range { lo: number; hi: number }

function paddedRange(values: Iterable<number>, padFraction: number): Range {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!Number.isFinite(lo)) return { lo: 0, hi: 1 };
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; return { lo: lo - d, hi: hi + d }; }
  const pad = (hi - lo) * padFraction;
  return { lo: lo - pad, hi: hi + pad };
}

interface AxesSpec {
  width: number;
  height: number;
  x: Range;
  y: Range;
  /** y values are log10 of the data. */
  logY?: boolean;
  title?: string;
  xLabel?: string;
  yLabel?: string;
}

interface Axes extends AxesPlan {
  px: (x: number) => number;
  py: (y: number) => number;
}

function planAxes(spec: AxesSpec): Axes {
  const yValues = spec.logY ? logTicks(spec.y.lo, spec.y.hi) : niceTicks(spec.y.lo, spec.y.hi, Math.max(2, Math.floor(spec.height / 60)));
  const yLabels = yValues.map((v) => formatTick(spec.logY ? 10 ** v : v));
  const yLabelW = Math.max(0, ...yLabels.map((l) => measureText(l).width));
  const box = {
    left: yLabelW + 10,
    top: (spec.title ? LINE_HEIGHT * 2 + 8 : 8) + (spec.yLabel ? LINE_HEIGHT + 4 : 0),
    right: spec.width - 12,
    bottom: spec.height - (LINE_HEIGHT + 10) - (spec.xLabel ? LINE_HEIGHT + 4 : 0),
  };
  if (box.right - box.left < 20 || box.bottom - box.top < 20) throw new Error(`plot size ${spec.width}x${spec.height} is too small`);
  const px = (x: number) => box.left + ((x - spec.x.lo) / (spec.x.hi - spec.x.lo)) * (box.right - box.left);
  const py = (y: number) => box.bottom - ((y - spec.y.lo) / (spec.y.hi - spec.y.lo)) * (box.bottom - box.top);
  const xMaxTicks = Math.max(2, Math.floor((box.right - box.left) / (CHAR_ADVANCE * 8)));
  const xTicks = niceTicks(spec.x.lo, spec.x.hi, Math.min(8, xMaxTicks)).map((v) => ({ pos: px(v), label: formatTick(v) }));
  return {
    width: spec.width, height: spec.height, box, px, py, xTicks,
    yTicks: yValues.map((v, i) => ({ pos: py(v), label: yLabels[i] })),
    title: spec.title, xLabel: spec.xLabel, yLabel: spec.yLabel,
  };
}

function drawAxesRaster(r: Raster, a: AxesPlan): void {
  const { left, top, right, bottom } = a.box;
  for (const t of a.xTicks) {
    const x = Math.round(t.pos);
    fillRect(r, x, top, 1, bottom - top, GRID_COLOR);
    fillRect(r, x, bottom, 1, 4, AXIS_COLOR);
    const w = measureText(t.label).width;
    drawText(r, Math.min(r.width - w - 1, Math.max(0, x - Math.floor(w / 2))), bottom + 6, t.label, { color: TEXT_COLOR });
  }
  for (const t of a.yTicks) {
    const y = Math.round(t.pos);
    fillRect(r, left, y, right - left, 1, GRID_COLOR);
    fillRect(r, left - 4, y, 4, 1, AXIS_COLOR);
    const w = measureText(t.label).width;
    drawText(r, left - 6 - w, y - 3, t.label, { color: TEXT_COLOR });
  }
  fillRect(r, left, top, 1, bottom - top + 1, AXIS_COLOR);
  fillRect(r, left, bottom, right - left + 1, 1, AXIS_COLOR);
  if (a.title) {
    const w = measureText(a.title, 2).width;
    drawText(r, Math.max(0, Math.round((a.width - w) / 2)), 4, a.title, { color: TEXT_COLOR, scale: 2 });
  }
  if (a.xLabel) {
    const w = measureText(a.xLabel).width;
    drawText(r, Math.round((left + right - w) / 2), a.height - LINE_HEIGHT - 2, a.xLabel, { color: TEXT_COLOR });
  }
  if (a.yLabel) drawText(r, 2, top - LINE_HEIGHT - 4, a.yLabel, { color: TEXT_COLOR });
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const fmt = (v: number) => String(Math.round(v * 100) / 100);

function axesSvg(a: AxesPlan): string[] {
  const { left, top, right, bottom } = a.box;
  const grid = (x1: number, y1: number, x2: number, y2: number, color: Rgb) =>
    `<line x1="${fmt(x1)}" y1="${fmt(y1)}" x2="${fmt(x2)}" y2="${fmt(y2)}" stroke="${colorToHex(color)}" stroke-width="1"/>`;
  const out: string[] = [];
  for (const t of a.xTicks) {
    out.push(grid(t.pos, top, t.pos, bottom, GRID_COLOR), grid(t.pos, bottom, t.pos, bottom + 4, AXIS_COLOR));
    out.push(`<text x="${fmt(t.pos)}" y="${bottom + 15}" text-anchor="middle" ${SVG_FONT} fill="${colorToHex(TEXT_COLOR)}">${escapeXml(t.label)}</text>`);
  }
  for (const t of a.yTicks) {
    out.push(grid(left, t.pos, right, t.pos, GRID_COLOR), grid(left - 4, t.pos, left, t.pos, AXIS_COLOR));
    out.push(`<text x="${left - 6}" y="${fmt(t.pos + 3.5)}" text-anchor="end" ${SVG_FONT} fill="${colorToHex(TEXT_COLOR)}">${escapeXml(t.label)}</text>`);
  }
  out.push(grid(left, top, left, bottom, AXIS_COLOR), grid(left, bottom, right, bottom, AXIS_COLOR));
  if (a.title) out.push(`<text x="${fmt(a.width / 2)}" y="20" text-anchor="middle" ${SVG_FONT.replace('font-size="10"', 'font-size="16"')} fill="${colorToHex(TEXT_COLOR)}">${escapeXml(a.title)}</text>`);
  if (a.xLabel) out.push(`<text x="${fmt((left + right) / 2)}" y="${a.height - 4}" text-anchor="middle" ${SVG_FONT} fill="${colorToHex(TEXT_COLOR)}">${escapeXml(a.xLabel)}</text>`);
  if (a.yLabel) out.push(`<text x="2" y="${top - 6}" ${SVG_FONT} fill="${colorToHex(TEXT_COLOR)}">${escapeXml(a.yLabel)}</text>`);
  return out;
}

function svgDocument(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Legend

interface LegendEntry { name: string; color: Rgb }

function legendBox(a: AxesPlan, entries: readonly LegendEntry[]): { x: number; y: number; w: number; h: number } {
  const w = Math.max(...entries.map((e) => measureText(e.name).width)) + 26;
  const h = entries.length * (LINE_HEIGHT + 2) + 6;
  return { x: a.box.right - w - 6, y: a.box.top + 6, w, h };
}

function drawLegendRaster(r: Raster, a: AxesPlan, entries: readonly LegendEntry[], marker: 'line' | 'dot'): void {
  if (entries.length === 0) return;
  const b = legendBox(a, entries);
  fillRect(r, b.x, b.y, b.w, b.h, WHITE, 0.85);
  entries.forEach((e, i) => {
    const y = b.y + 4 + i * (LINE_HEIGHT + 2);
    if (marker === 'line') fillRect(r, b.x + 4, y + 3, 14, 2, e.color);
    else fillCircle(r, b.x + 11, y + 3.5, 3, e.color);
    drawText(r, b.x + 22, y, e.name, { color: TEXT_COLOR });
  });
}

function legendSvg(a: AxesPlan, entries: readonly LegendEntry[], marker: 'line' | 'dot'): string[] {
  if (entries.length === 0) return [];
  const b = legendBox(a, entries);
  const out = [`<rect x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" fill="#ffffff" fill-opacity="0.85" stroke="#cccccc"/>`];
  entries.forEach((e, i) => {
    const y = b.y + 4 + i * (LINE_HEIGHT + 2);
    out.push(marker === 'line'
      ? `<rect x="${b.x + 4}" y="${y + 3}" width="14" height="2" fill="${colorToHex(e.color)}"/>`
      : `<circle cx="${b.x + 11}" cy="${y + 3.5}" r="3" fill="${colorToHex(e.color)}"/>`);
    out.push(`<text x="${b.x + 22}" y="${y + 8}" ${SVG_FONT} fill="${colorToHex(TEXT_COLOR)}">${escapeXml(e.name)}</text>`);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Line plots

export interface LinePlotOptions {
  width?: number;
  height?: number;
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Logarithmic y axis; values ≤ 0 are left out. */
  logY?: boolean;
  /** EMA weight in [0, 1): 0 (default) draws the values as they are. */
  smoothing?: number;
  /** With smoothing, also draw the raw values faintly behind (default true). */
  showRaw?: boolean;
}

interface PlannedLine { color: Rgb; points: [number, number][]; faint: boolean }
interface LinePlan { axes: Axes; lines: PlannedLine[]; legend: LegendEntry[] }

function planLinePlot(series: readonly Series[], opts: LinePlotOptions): LinePlan {
  const width = opts.width ?? 800, height = opts.height ?? 480;
  const smoothing = opts.smoothing ?? 0;
  const prepared = series.map((s, i) => {
    if (s.x.length !== s.y.length) throw new Error(`series ${s.name}: ${s.x.length} x values but ${s.y.length} y values`);
    const keep = s.y.map((v, k) => Number.isFinite(v) && Number.isFinite(s.x[k]) && (!opts.logY || v > 0));
    const x = s.x.filter((_, k) => keep[k]);
    const toAxis = (v: number) => (opts.logY ? Math.log10(v) : v);
    const raw = s.y.filter((_, k) => keep[k]);
    const smooth = smoothing > 0 ? emaSmooth(raw, smoothing) : raw;
    return { name: s.name, color: s.color ?? SERIES_COLORS[i % SERIES_COLORS.length], x, raw: raw.map(toAxis), smooth: smooth.map(toAxis) };
  });
  const drawRaw = smoothing > 0 && (opts.showRaw ?? true);
  const allX = prepared.flatMap((s) => s.x);
  const allY = prepared.flatMap((s) => (drawRaw ? [...s.raw, ...s.smooth] : s.smooth));
  const xr = paddedRange(allX, 0);
  const axes = planAxes({
    width, height, x: xr, y: paddedRange(allY, 0.05), logY: opts.logY,
    title: opts.title, xLabel: opts.xLabel ?? 'step', yLabel: opts.yLabel,
  });
  const lines: PlannedLine[] = [];
  for (const s of prepared) {
    const toPoints = (ys: number[]) => ys.map((y, k): [number, number] => [axes.px(s.x[k]), axes.py(y)]);
    if (drawRaw) lines.push({ color: s.color, points: toPoints(s.raw), faint: true });
    lines.push({ color: s.color, points: toPoints(s.smooth), faint: false });
  }
  const legend = prepared.filter((s) => s.name !== '').map((s) => ({ name: s.name, color: s.color }));
  return { axes, lines, legend };
}

/** Draw a line plot as a raster image. */
export function renderLinePlot(series: readonly Series[], opts: LinePlotOptions = {}): Raster {
  const plan = planLinePlot(series, opts);
  const r = createRaster(plan.axes.width, plan.axes.height);
  drawAxesRaster(r, plan.axes);
  for (const line of plan.lines) {
    const [w, alpha] = line.faint ? [1, 0.3] : [2, 1];
    if (line.points.length === 1) fillCircle(r, line.points[0][0], line.points[0][1], 2, line.color);
    for (let i = 1; i < line.points.length; i++) {
      const [x0, y0] = line.points[i - 1], [x1, y1] = line.points[i];
      drawLine(r, x0, y0, x1, y1, line.color, w, alpha);
    }
  }
  drawLegendRaster(r, plan.axes, plan.legend, 'line');
  return r;
}

/** Draw a line plot as SVG text. */
export function renderLinePlotSvg(series: readonly Series[], opts: LinePlotOptions = {}): string {
  const plan = planLinePlot(series, opts);
  const body = axesSvg(plan.axes);
  for (const line of plan.lines) {
    const points = line.points.map(([x, y]) => `${fmt(x)},${fmt(y)}`).join(' ');
    body.push(`<polyline points="${points}" fill="none" stroke="${colorToHex(line.color)}" stroke-width="${line.faint ? 1 : 2}"` +
      `${line.faint ? ' stroke-opacity="0.3"' : ''} stroke-linejoin="round"/>`);
  }
  body.push(...legendSvg(plan.axes, plan.legend, 'line'));
  return svgDocument(plan.axes.width, plan.axes.height, body);
}

// ---------------------------------------------------------------------------------------------------
// PCA and scatter plots

export interface Matrix {
  data: ArrayLike<number>;
  rows: number;
  cols: number;
}

/** Rows × cols from a tensor [n, d], nested arrays, or a Matrix. */
export function toMatrix(x: Tensor | readonly (readonly number[])[] | Matrix): Matrix {
  if (Array.isArray(x)) {
    const rows = x.length, cols = rows > 0 ? x[0].length : 0;
    const data = new Float64Array(rows * cols);
    x.forEach((row, i) => {
      if (row.length !== cols) throw new Error(`row ${i} has ${row.length} values, row 0 has ${cols}`);
      data.set(row, i * cols);
    });
    return { data, rows, cols };
  }
  if ('rows' in x) return x as Matrix;
  const t = x as Tensor;
  if (t.shape.length !== 2) throw new Error(`expected a 2-D tensor [n, d], got [${t.shape}]`);
  return { data: t.to('f32').contiguous().toFloat32Array(), rows: t.shape[0], cols: t.shape[1] };
}

export interface PcaResult {
  /** rows × k projections, row-major. */
  projected: Float64Array;
  /** k unit directions, each of length cols. */
  components: Float64Array[];
  /** Variance along each component. */
  variance: number[];
  /** Fraction of the total variance each component explains. */
  explainedRatio: number[];
  mean: Float64Array;
}

/**
 * Principal components by power iteration on the covariance, never formed: each step multiplies by
 * Xᵀ X through two passes over the centred data, and Gram–Schmidt against the components found
 * before gives the next ones (deflation). The start vector is fixed, so results are deterministic.
 */
export function pca(x: Matrix, k = 2, opts: { maxIterations?: number; tolerance?: number } = {}): PcaResult {
  const { rows: n, cols: d } = x;
  if (x.data.length !== n * d) throw new Error(`pca: ${x.data.length} values do not make ${n}x${d}`);
  if (n < 1 || d < 1) throw new Error('pca: no data');
  const maxIterations = opts.maxIterations ?? 500, tolerance = opts.tolerance ?? 1e-10;
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x.data[i * d + j] / n;
  const centred = new Float64Array(n * d);
  let total = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) {
    const v = x.data[i * d + j] - mean[j];
    centred[i * d + j] = v;
    total += v * v;
  }
  const denom = Math.max(1, n - 1);
  total /= denom;

  const components: Float64Array[] = [];
  const variance: number[] = [];
  const scores = new Float64Array(n);
  const covTimes = (v: Float64Array): Float64Array => {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += centred[i * d + j] * v[j];
      scores[i] = s;
    }
    const out = new Float64Array(d);
    for (let i = 0; i < n; i++) { const s = scores[i]; for (let j = 0; j < d; j++) out[j] += centred[i * d + j] * s; }
    for (let j = 0; j < d; j++) out[j] /= denom;
    return out;
  };
  const orthogonalise = (v: Float64Array) => {
    for (const c of components) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += v[j] * c[j];
      for (let j = 0; j < d; j++) v[j] -= dot * c[j];
    }
  };
  const normalise = (v: Float64Array): number => {
    let sq = 0;
    for (let j = 0; j < d; j++) sq += v[j] * v[j];
    const len = Math.sqrt(sq);
    if (len > 0) for (let j = 0; j < d; j++) v[j] /= len;
    return len;
  };

  for (let c = 0; c < k; c++) {
    // A fixed, irregular start so it is unlikely to be orthogonal to the leading direction.
    let v: Float64Array = Float64Array.from({ length: d }, (_, j) => 1 + 0.5 * Math.sin(1.7 * j + 0.9 * c + 0.3));
    orthogonalise(v);
    let lambda = 0;
    if (normalise(v) > 0) {
      for (let it = 0; it < maxIterations; it++) {
        const w = covTimes(v);
        orthogonalise(w);
        lambda = normalise(w);
        if (lambda <= 1e-300) break;
        let dot = 0;
        for (let j = 0; j < d; j++) dot += w[j] * v[j];
        v = w;
        if (1 - Math.abs(dot) < tolerance) break;
      }
    }
    if (!(lambda > 1e-12 * Math.max(total, 1e-300))) { v = new Float64Array(d); lambda = 0; }
    // Sign convention: the largest entry positive, so repeated runs agree.
    let big = 0;
    for (let j = 0; j < d; j++) if (Math.abs(v[j]) > Math.abs(v[big])) big = j;
    if (v[big] < 0) for (let j = 0; j < d; j++) v[j] = -v[j];
    components.push(v);
    variance.push(lambda);
  }
  const projected = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += centred[i * d + j] * components[c][j];
    projected[i * k + c] = s;
  }
  return { projected, components, variance, explainedRatio: variance.map((v) => (total > 0 ? v / total : 0)), mean };
}

export type Label = number | string;

export interface ScatterOptions {
  width?: number;
  height?: number;
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Names for numeric labels (e.g. class names), indexed by label. */
  labelNames?: readonly string[];
  pointRadius?: number;
}

interface ScatterPlan { axes: Axes; points: { x: number; y: number; color: Rgb }[]; legend: LegendEntry[]; radius: number }

function planScatter(points: ArrayLike<number>, labels: readonly Label[], opts: ScatterOptions): ScatterPlan {
  const n = labels.length;
  if (points.length !== 2 * n) throw new Error(`scatter: ${points.length / 2} points but ${n} labels`);
  const categories = [...new Set(labels)].sort((a, b) =>
    typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b)));
  const colorOf = new Map(categories.map((c, i) => [c, SERIES_COLORS[i % SERIES_COLORS.length]]));
  const xs = Array.from({ length: n }, (_, i) => points[2 * i]), ys = Array.from({ length: n }, (_, i) => points[2 * i + 1]);
  const axes = planAxes({
    width: opts.width ?? 640, height: opts.height ?? 480, x: paddedRange(xs, 0.05), y: paddedRange(ys, 0.05),
    title: opts.title, xLabel: opts.xLabel, yLabel: opts.yLabel,
  });
  return {
    axes,
    radius: opts.pointRadius ?? 2.5,
    points: xs.map((x, i) => ({ x: axes.px(x), y: axes.py(ys[i]), color: colorOf.get(labels[i])! })),
    legend: categories.map((c) => ({
      name: typeof c === 'number' && opts.labelNames?.[c] !== undefined ? opts.labelNames[c] : String(c),
      color: colorOf.get(c)!,
    })),
  };
}

/** A 2-D scatter (points as x0, y0, x1, y1, …) coloured by label, with a legend, as a raster. */
export function renderScatter(points: ArrayLike<number>, labels: readonly Label[], opts: ScatterOptions = {}): Raster {
  const plan = planScatter(points, labels, opts);
  const r = createRaster(plan.axes.width, plan.axes.height);
  drawAxesRaster(r, plan.axes);
  for (const p of plan.points) fillCircle(r, p.x, p.y, plan.radius, p.color, 0.8);
  drawLegendRaster(r, plan.axes, plan.legend, 'dot');
  return r;
}

/** The same scatter as SVG text. */
export function renderScatterSvg(points: ArrayLike<number>, labels: readonly Label[], opts: ScatterOptions = {}): string {
  const plan = planScatter(points, labels, opts);
  const body = axesSvg(plan.axes);
  for (const p of plan.points) body.push(`<circle cx="${fmt(p.x)}" cy="${fmt(p.y)}" r="${plan.radius}" fill="${colorToHex(p.color)}" fill-opacity="0.8"/>`);
  body.push(...legendSvg(plan.axes, plan.legend, 'dot'));
  return svgDocument(plan.axes.width, plan.axes.height, body);
}

/** Project embeddings [n, d] onto their first two principal components: points and axis titles. */
export function projectEmbeddings(embeddings: Tensor | readonly (readonly number[])[] | Matrix): { points: Float64Array; xLabel: string; yLabel: string; pca: PcaResult } {
  const m = toMatrix(embeddings);
  const result = pca(m, 2);
  const pct = (r: number) => `${(r * 100).toFixed(1)}%`;
  return { points: result.projected, xLabel: `PC1 (${pct(result.explainedRatio[0])})`, yLabel: `PC2 (${pct(result.explainedRatio[1])})`, pca: result };
}

// ---------------------------------------------------------------------------------------------------
// Saving

async function savePlot(file: string, raster: () => Raster, svg: () => string): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg') writeFileAtomic(file, svg());
  else if (ext === '.png') writeFileAtomic(file, await encodePng(raster()));
  else throw new Error(`a plot is saved as .png or .svg, not ${file}`);
}

/** Save a line plot as .png or .svg (by extension). */
export function saveLinePlot(file: string, series: readonly Series[], opts: LinePlotOptions = {}): Promise<void> {
  return savePlot(file, () => renderLinePlot(series, opts), () => renderLinePlotSvg(series, opts));
}

/** Save a PCA scatter of embeddings [n, d] coloured by label, as .png or .svg. */
export function saveEmbeddingScatter(file: string, embeddings: Tensor | readonly (readonly number[])[] | Matrix, labels: readonly Label[],
  opts: ScatterOptions = {}): Promise<void> {
  const p = projectEmbeddings(embeddings);
  const o = { xLabel: p.xLabel, yLabel: p.yLabel, ...opts };
  return savePlot(file, () => renderScatter(p.points, labels, o), () => renderScatterSvg(p.points, labels, o));
}
