/**
 * Image grids: cells in rows and columns, with optional row labels (left), column labels (top),
 * per-cell captions (below each cell) and a title, all drawn with the built-in bitmap font.
 */
import { CHAR_ADVANCE, LINE_HEIGHT, drawText, measureText, wrapText } from './font.js';
import { type Pixels, type Raster, type Rgb, BLACK, WHITE, blit, createRaster, scaleNearest, upscaleFactor } from './raster.js';

export interface GridOptions {
  /** Cells per row; default: as many as column labels, else a square-ish layout. */
  columns?: number;
  rowLabels?: string[];
  columnLabels?: string[];
  /** One caption per image, drawn under its cell (wrapped to the cell width). */
  captions?: string[];
  title?: string;
  /** Pixels between cells and around the edge (default 2). */
  padding?: number;
  background?: Rgb;
  textColor?: Rgb;
  /**
   * Images whose larger side is under this many pixels are enlarged by a whole factor (nearest
   * neighbour) so that small images such as 28×28 stay readable. Default 96; 0 turns it off.
   */
  minCellSize?: number;
  /** Whole-number text scale; default 1, or more for large cells. */
  fontScale?: number;
  /** Most lines per caption (default 2). */
  captionLines?: number;
}

/** Lay images out in a grid. Images of different sizes are centred in cells of the largest size. */
export function makeGrid(images: readonly Pixels[], opts: GridOptions = {}): Raster {
  if (images.length === 0) throw new Error('makeGrid: no images');
  const pad = opts.padding ?? 2;
  const background = opts.background ?? WHITE;
  const textColor = opts.textColor ?? BLACK;
  const columns = Math.max(1, opts.columns ?? opts.columnLabels?.length ?? Math.ceil(Math.sqrt(images.length)));
  const rows = Math.ceil(images.length / columns);

  const maxW = Math.max(...images.map((p) => p.width)), maxH = Math.max(...images.map((p) => p.height));
  const factor = opts.minCellSize === 0 ? 1 : upscaleFactor(maxW, maxH, opts.minCellSize ?? 96);
  const cellW = maxW * factor, cellH = maxH * factor;
  const fontScale = Math.max(1, Math.floor(opts.fontScale ?? Math.min(3, Math.floor(cellW / 256) || 1)));
  const lineH = LINE_HEIGHT * fontScale;
  const charsPerCell = Math.max(1, Math.floor((cellW + fontScale) / (CHAR_ADVANCE * fontScale)));

  const captions = (opts.captions ?? []).map((c) => wrapText(c, charsPerCell, opts.captionLines ?? 2));
  const captionH = captions.length > 0 ? Math.max(...captions.map((c) => c.length)) * lineH + pad : 0;
  const columnLabels = (opts.columnLabels ?? []).map((l) => wrapText(l, charsPerCell, 2));
  const columnLabelH = columnLabels.length > 0 ? Math.max(...columnLabels.map((l) => l.length)) * lineH + pad : 0;
  const rowLabels = (opts.rowLabels ?? []).map((l) => wrapText(l, 24, 3).join('\n'));
  const rowLabelW = rowLabels.length > 0 ? Math.max(...rowLabels.map((l) => measureText(l, fontScale).width)) + 2 * pad : 0;

  const titleScale = fontScale + (opts.title ? 1 : 0);
  const titleH = opts.title ? LINE_HEIGHT * titleScale + pad : 0;
  const gridW = rowLabelW + columns * (cellW + pad) + pad;
  const titleW = opts.title ? measureText(opts.title, titleScale).width + 2 * pad : 0;
  const width = Math.max(gridW, titleW);
  const rowH = cellH + captionH + pad;
  const top = pad + titleH + columnLabelH;
  const height = top + rows * rowH;
  const out = createRaster(width, height, background);

  if (opts.title) drawText(out, Math.round((width - titleW) / 2) + pad, pad, opts.title, { color: textColor, scale: titleScale });
  const cellX = (col: number) => rowLabelW + pad + col * (cellW + pad);
  const cellY = (row: number) => top + row * rowH;

  columnLabels.forEach((lines, col) => {
    if (col >= columns) return;
    lines.forEach((line, i) => {
      const w = measureText(line, fontScale).width;
      drawText(out, cellX(col) + Math.floor((cellW - w) / 2), pad + titleH + i * lineH, line, { color: textColor, scale: fontScale });
    });
  });
  rowLabels.forEach((label, row) => {
    if (row >= rows) return;
    const h = measureText(label, fontScale).height;
    drawText(out, pad, cellY(row) + Math.max(0, Math.floor((cellH - h) / 2)), label, { color: textColor, scale: fontScale });
  });
  images.forEach((img, i) => {
    const row = Math.floor(i / columns), col = i % columns;
    const scaled = scaleNearest(img, factor);
    blit(out, scaled, cellX(col) + Math.floor((cellW - scaled.width) / 2), cellY(row) + Math.floor((cellH - scaled.height) / 2));
    const caption = captions[i];
    if (caption) {
      caption.forEach((line, k) => {
        const w = measureText(line, fontScale).width;
        drawText(out, cellX(col) + Math.floor((cellW - w) / 2), cellY(row) + cellH + Math.ceil(pad / 2) + k * lineH, line,
          { color: textColor, scale: fontScale });
      });
    }
  });
  return out;
}
