import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { fromTypedArray } from '../src/engine/index.js';
import {
  type Pixels, type Raster, type Rgb, CHAR_ADVANCE, LINE_HEIGHT, SERIES_COLORS, attentionGrid, colormapColor,
  createRaster, denoisingStrip, drawText, emaSmooth, encodeAnimation, getPixel, hasGlyph, heatmap, makeGrid,
  measureText, metricSeries, overlayHeatmap, parseColor, pca, pickEvenly, readMetricsLog, renderLinePlot,
  renderLinePlotSvg, renderScatter, saveAnimation, saveEmbeddingScatter, saveImage, saveLinePlot, wrapText,
} from '../src/image/index.js';

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-image-draw-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));
const tmp = (name: string) => path.join(tmpDir, name);

/** A w×h grey image filled with one value. */
function flat(w: number, h: number, value: number): Pixels {
  return { width: w, height: h, channels: 1, data: new Uint8Array(w * h).fill(value) };
}

function countColor(r: Raster, c: Rgb, tolerance = 0, region?: { x: number; y: number; w: number; h: number }): number {
  const { x, y, w, h } = region ?? { x: 0, y: 0, w: r.width, h: r.height };
  let n = 0;
  for (let yy = y; yy < y + h; yy++) for (let xx = x; xx < x + w; xx++) {
    const p = getPixel(r, xx, yy);
    if (Math.abs(p[0] - c[0]) <= tolerance && Math.abs(p[1] - c[1]) <= tolerance && Math.abs(p[2] - c[2]) <= tolerance) n++;
  }
  return n;
}

/** Decode a saved file back to RGB with sharp. */
async function decodeRgb(file: string): Promise<Raster> {
  const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data) };
}

test('font: every printable ASCII character has a glyph, and text leaves ink', () => {
  for (let c = 32; c < 127; c++) assert.ok(hasGlyph(String.fromCharCode(c)), `glyph for ${c}`);
  assert.deepEqual(measureText('abc'), { width: 3 * CHAR_ADVANCE - 1, height: LINE_HEIGHT });
  assert.deepEqual(measureText('ab\nc', 2), { width: (2 * CHAR_ADVANCE - 1) * 2, height: 2 * LINE_HEIGHT * 2 });
  const r = createRaster(40, 12);
  drawText(r, 1, 1, 'Hi 9');
  assert.ok(countColor(r, [0, 0, 0]) > 20);
  assert.equal(countColor(r, [0, 0, 0], 0, { x: 1 + 2 * CHAR_ADVANCE, y: 0, w: CHAR_ADVANCE, h: 12 }), 0); // the space
  assert.deepEqual(wrapText('a photo of a sneaker', 10), ['a photo of', 'a sneaker']);
  assert.deepEqual(wrapText('one two three four five', 9, 2), ['one two', 'three..']);
});

test('grid: 28×28 images upscaled, labels and captions drawn, saved PNG has the expected size', async () => {
  const images = Array.from({ length: 6 }, (_, i) => flat(28, 28, 40 * i));
  const grid = makeGrid(images, {
    columns: 3, padding: 2, rowLabels: ['top', 'bottom'], columnLabels: ['T-shirt', 'Trouser', 'Bag'],
    captions: images.map((_, i) => `image ${i}`),
  });
  // 28 → ×4 = 112 (the smallest whole factor reaching 96 pixels).
  const rowLabelW = measureText('bottom').width + 4;
  const expectedW = rowLabelW + 3 * (112 + 2) + 2;
  const expectedH = 2 + (LINE_HEIGHT + 2) + 2 * (112 + LINE_HEIGHT + 2 + 2);
  assert.deepEqual([grid.width, grid.height], [expectedW, expectedH]);

  const file = tmp('grid.png');
  await saveImage(file, grid);
  const back = await decodeRgb(file);
  assert.deepEqual([back.width, back.height], [expectedW, expectedH]);
  // Column label text above the first cell, row label text left of it, caption text under it.
  const cellX = rowLabelW + 2, cellY = 2 + LINE_HEIGHT + 2;
  assert.ok(countColor(back, [0, 0, 0], 0, { x: cellX, y: 0, w: 112, h: LINE_HEIGHT }) > 10, 'column label ink');
  assert.ok(countColor(back, [0, 0, 0], 0, { x: 0, y: cellY, w: rowLabelW, h: 112 }) > 10, 'row label ink');
  assert.ok(countColor(back, [0, 0, 0], 0, { x: cellX + 114, y: cellY + 112, w: 112, h: LINE_HEIGHT }) > 10, 'caption ink');
  // The second image (grey 40) fills its cell.
  assert.deepEqual(getPixel(back, cellX + 114 + 56, cellY + 56), [40, 40, 40]);
});

test('denoising strip and animated GIF / WebP frame counts', async () => {
  const frames = Array.from({ length: 5 }, (_, i) => flat(16, 16, 50 * i));
  assert.deepEqual(pickEvenly([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 4), [0, 3, 6, 9]);
  const strip = denoisingStrip(frames, { labels: ['t=4', 't=3', 't=2', 't=1', 't=0'], maxFrames: 3, minCellSize: 0 });
  assert.equal(strip.width, 3 * (16 + 2) + 2);

  const gif = tmp('run.gif');
  await saveAnimation(gif, frames, { delayMs: 80 });
  const meta = await sharp(gif).metadata();
  assert.equal(meta.format, 'gif');
  assert.equal(meta.pages, 5);
  assert.equal(meta.width, 128); // 16 → ×8 to reach the 128-pixel minimum
  assert.deepEqual(meta.delay, [80, 80, 80, 80, 1080]);

  const webp = await sharp(await encodeAnimation(frames, 'webp', { minSize: 0 })).metadata();
  assert.equal(webp.pages, 5);
  await assert.rejects(encodeAnimation([flat(4, 4, 0), flat(5, 4, 0)], 'gif'), /share one size/);
});

test('heat maps: colour map ends, overlay blending, per-head per-token attention grid', async () => {
  assert.deepEqual(colormapColor('viridis', 0), parseColor('#440154'));
  assert.deepEqual(colormapColor('viridis', 1), parseColor('#fde725'));
  assert.deepEqual(colormapColor('inferno', 2), parseColor('#fcffa4')); // clamped

  const hm = heatmap([0, 1, 2, 3], 2, 2);
  assert.deepEqual(getPixel(hm, 0, 0), parseColor('#440154'));
  assert.deepEqual(getPixel(hm, 1, 1), parseColor('#fde725'));

  const base = { width: 8, height: 8, channels: 3 as const, data: new Uint8Array(8 * 8 * 3).fill(200) };
  assert.deepEqual(getPixel(overlayHeatmap(base, [0, 1, 1, 0], 2, 2, { alpha: 0 }), 3, 3), [200, 200, 200]);
  const full = overlayHeatmap(base, [0, 0, 0, 1], 2, 2, { alpha: 1, smooth: false });
  assert.deepEqual(getPixel(full, 0, 0), parseColor('#440154'));
  assert.deepEqual(getPixel(full, 7, 7), parseColor('#fde725'));

  // 2 heads × 3 tokens of 4×4 maps, as a tensor.
  const maps = fromTypedArray(Float32Array.from({ length: 2 * 3 * 16 }, (_, i) => (i % 16) / 15), [2, 3, 4, 4]);
  const grid = attentionGrid(base, maps, { tokenLabels: ['a', 'red', 'cube'], minCellSize: 32, padding: 1 });
  // Columns: image + 3 tokens; rows: 2 heads + mean. Cells are 8×4 = 32 pixels.
  const rowLabelW = measureText('head 0').width + 2;
  assert.equal(grid.width, rowLabelW + 4 * 33 + 1);
  assert.equal(grid.height, 1 + LINE_HEIGHT + 1 + 3 * 33);
  const file = tmp('attention.png');
  await saveImage(file, grid);
  assert.equal((await sharp(file).metadata()).width, grid.width);
});

test('line plot from a metrics log: PNG and SVG, smoothing, log scale', async () => {
  const log = tmp('metrics.jsonl');
  const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ step: i * 10, loss: 2 / (1 + i), lr: 1e-3 }));
  fs.writeFileSync(log, lines.join('\n') + '\n{"step": 500, "lo'); // a torn last line, as from a running job
  const records = readMetricsLog(log);
  assert.equal(records.length, 50);
  fs.writeFileSync(tmp('bad.jsonl'), '{"step":1}\nnot json\n{"step":2}\n');
  assert.throws(() => readMetricsLog(tmp('bad.jsonl')), /bad\.jsonl:2: not a JSON object/);

  assert.deepEqual(emaSmooth([3, 3, 3], 0.9).map((v) => +v.toFixed(9)), [3, 3, 3]); // bias-corrected
  const series = metricSeries(records, ['loss']);
  assert.equal(series[0].x.length, 50);

  const png = renderLinePlot(series, { width: 320, height: 200, title: 'loss', smoothing: 0.6, logY: true });
  assert.deepEqual([png.width, png.height], [320, 200]);
  assert.ok(countColor(png, SERIES_COLORS[0]) > 50, 'series colour drawn');
  assert.ok(countColor(png, [30, 30, 30], 0, { x: 0, y: 0, w: 320, h: 24 }) > 20, 'title text drawn');

  const file = tmp('loss.png');
  await saveLinePlot(file, series, { width: 320, height: 200 });
  const back = await decodeRgb(file);
  assert.deepEqual([back.width, back.height], [320, 200]);
  assert.ok(countColor(back, SERIES_COLORS[0]) > 50);

  const svg = renderLinePlotSvg([...series, { name: 'val & <test>', x: [0, 490], y: [2, 0.1] }], { width: 320, height: 200 });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="320" height="200"/);
  assert.equal((svg.match(/<polyline /g) ?? []).length, 2);
  assert.match(svg, /val &amp; &lt;test&gt;/);
  const svgFile = tmp('loss.svg');
  await saveLinePlot(svgFile, series, { width: 320, height: 200 });
  assert.equal((await sharp(svgFile).metadata()).width, 320); // well-formed enough for librsvg
});

test('PCA by power iteration finds the main direction; scatter coloured by label', async () => {
  // Points spread along (1, 1, 0)/√2, with a little spread along z that is uncorrelated with it.
  const rows = Array.from({ length: 40 }, (_, i) => {
    const t = (i - 20) / 4, z = 0.1 * [1, -1, -1, 1][i % 4];
    return [t + 5, t - 3, z];
  });
  const result = pca({ data: rows.flat(), rows: 40, cols: 3 }, 2);
  const [c0] = result.components;
  assert.ok(Math.abs(c0[0] - Math.SQRT1_2) < 1e-5 && Math.abs(c0[1] - Math.SQRT1_2) < 1e-5 && Math.abs(c0[2]) < 1e-5, `${[...c0]}`);
  assert.ok(result.explainedRatio[0] > 0.99);
  let dot = 0;
  for (let j = 0; j < 3; j++) dot += result.components[0][j] * result.components[1][j];
  assert.ok(Math.abs(dot) < 1e-9, 'components orthogonal');

  const labels = rows.map((_, i) => i % 2);
  const r = renderScatter(result.projected, labels, { width: 300, height: 220, labelNames: ['cat', 'dog'] });
  assert.deepEqual([r.width, r.height], [300, 220]);
  // Points are drawn at 80% opacity, so allow for the blend with the white background.
  assert.ok(countColor(r, SERIES_COLORS[0], 50) > 30 && countColor(r, SERIES_COLORS[1], 50) > 30, 'both classes drawn');

  const file = tmp('scatter.png');
  await saveEmbeddingScatter(file, rows, labels, { width: 300, height: 220, labelNames: ['cat', 'dog'] });
  assert.equal((await sharp(file).metadata()).height, 220);
});
