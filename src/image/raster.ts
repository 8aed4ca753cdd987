/**
 * 8-bit pixel buffers and the few drawing primitives the pictures need (rectangles, lines, blits,
 * nearest-neighbour scaling, alpha blending). Everything here is plain TypeScript over Uint8Arrays.
 */

/** Interleaved 8-bit pixels, row-major: grey (1), grey+alpha (2), RGB (3) or RGBA (4). */
export interface Pixels {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

/** The drawing surface: always RGB. */
export interface Raster extends Pixels {
  channels: 3;
}

export type Rgb = readonly [number, number, number];

export const WHITE: Rgb = [255, 255, 255];
export const BLACK: Rgb = [0, 0, 0];

export function createRaster(width: number, height: number, background: Rgb = WHITE): Raster {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`image size must be positive integers, got ${width}x${height}`);
  }
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i += 3) { data[i] = background[0]; data[i + 1] = background[1]; data[i + 2] = background[2]; }
  return { width, height, channels: 3, data };
}

/** Parse '#rgb' / '#rrggbb' into an Rgb triple. */
export function parseColor(hex: string): Rgb {
  const m = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(hex.trim());
  if (!m) throw new Error(`invalid colour ${JSON.stringify(hex)} (expected #rrggbb)`);
  const h = m[1].length === 3 ? m[1].replace(/./g, (c) => c + c) : m[1];
  return [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)];
}

export function colorToHex(c: Rgb): string {
  return '#' + c.map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
}

export function checkPixels(p: Pixels, what = 'image'): void {
  if (p.data.length !== p.width * p.height * p.channels) {
    throw new Error(`${what}: ${p.data.length} bytes do not make ${p.width}x${p.height}x${p.channels}`);
  }
}

/** Any Pixels as RGB; alpha is composited over `background`. Returns the input when already RGB. */
export function toRgb(p: Pixels, background: Rgb = WHITE): Raster {
  checkPixels(p);
  if (p.channels === 3) return p as Raster;
  const out = new Uint8Array(p.width * p.height * 3);
  const n = p.width * p.height;
  for (let i = 0; i < n; i++) {
    let r: number, g: number, b: number, a = 255;
    const s = i * p.channels;
    if (p.channels <= 2) { r = g = b = p.data[s]; if (p.channels === 2) a = p.data[s + 1]; }
    else { r = p.data[s]; g = p.data[s + 1]; b = p.data[s + 2]; a = p.data[s + 3]; }
    const o = i * 3;
    if (a === 255) { out[o] = r; out[o + 1] = g; out[o + 2] = b; }
    else {
      const t = a / 255;
      out[o] = Math.round(r * t + background[0] * (1 - t));
      out[o + 1] = Math.round(g * t + background[1] * (1 - t));
      out[o + 2] = Math.round(b * t + background[2] * (1 - t));
    }
  }
  return { width: p.width, height: p.height, channels: 3, data: out };
}

export function getPixel(r: Raster, x: number, y: number): Rgb {
  const i = (y * r.width + x) * 3;
  return [r.data[i], r.data[i + 1], r.data[i + 2]];
}

/** Set one pixel, blending with `alpha` (0..1); out-of-bounds writes are ignored. */
export function setPixel(r: Raster, x: number, y: number, c: Rgb, alpha = 1): void {
  if (x < 0 || y < 0 || x >= r.width || y >= r.height) return;
  const i = (y * r.width + x) * 3;
  if (alpha >= 1) { r.data[i] = c[0]; r.data[i + 1] = c[1]; r.data[i + 2] = c[2]; return; }
  if (alpha <= 0) return;
  for (let k = 0; k < 3; k++) r.data[i + k] = Math.round(r.data[i + k] * (1 - alpha) + c[k] * alpha);
}

/** Fill a rectangle, clipped to the raster. */
export function fillRect(r: Raster, x: number, y: number, w: number, h: number, c: Rgb, alpha = 1): void {
  const x0 = Math.max(0, Math.floor(x)), y0 = Math.max(0, Math.floor(y));
  const x1 = Math.min(r.width, Math.floor(x + w)), y1 = Math.min(r.height, Math.floor(y + h));
  for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) setPixel(r, xx, yy, c, alpha);
}

/** A one-pixel rectangle outline. */
export function strokeRect(r: Raster, x: number, y: number, w: number, h: number, c: Rgb): void {
  fillRect(r, x, y, w, 1, c);
  fillRect(r, x, y + h - 1, w, 1, c);
  fillRect(r, x, y, 1, h, c);
  fillRect(r, x + w - 1, y, 1, h, c);
}

/** A straight line (Bresenham) stamped with a square brush of `width` pixels. */
export function drawLine(r: Raster, x0: number, y0: number, x1: number, y1: number, c: Rgb, width = 1, alpha = 1): void {
  x0 = Math.round(x0); y0 = Math.round(y0); x1 = Math.round(x1); y1 = Math.round(y1);
  const dx = Math.abs(x1 - x0), dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  const lo = -Math.floor((width - 1) / 2), hi = lo + width;
  let err = dx + dy;
  for (;;) {
    if (width === 1) setPixel(r, x0, y0, c, alpha);
    else fillRect(r, x0 + lo, y0 + lo, hi - lo, hi - lo, c, alpha);
    if (x0 === x1 && y0 === y1) break;
    const e2 = 2 * err;
    if (e2 >= dy) { err += dy; x0 += sx; }
    if (e2 <= dx) { err += dx; y0 += sy; }
  }
}

/** A filled disc of radius `radius` centred on (cx, cy). */
export function fillCircle(r: Raster, cx: number, cy: number, radius: number, c: Rgb, alpha = 1): void {
  const r2 = radius * radius;
  for (let y = Math.floor(cy - radius); y <= Math.ceil(cy + radius); y++) {
    for (let x = Math.floor(cx - radius); x <= Math.ceil(cx + radius); x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r2) setPixel(r, x, y, c, alpha);
    }
  }
}

/** Copy `src` (converted to RGB) into `dst` with its top-left corner at (x, y), clipped. */
export function blit(dst: Raster, src: Pixels, x: number, y: number): void {
  const rgb = toRgb(src);
  for (let sy = 0; sy < rgb.height; sy++) {
    const dy = y + sy;
    if (dy < 0 || dy >= dst.height) continue;
    const sx0 = Math.max(0, -x), sx1 = Math.min(rgb.width, dst.width - x);
    if (sx1 <= sx0) continue;
    dst.data.set(rgb.data.subarray((sy * rgb.width + sx0) * 3, (sy * rgb.width + sx1) * 3), (dy * dst.width + x + sx0) * 3);
  }
}

/** Enlarge by an integer factor, each pixel becoming a factor×factor block (keeps small images crisp). */
export function scaleNearest<P extends Pixels>(p: P, factor: number): P {
  if (!Number.isInteger(factor) || factor < 1) throw new Error(`scale factor must be a positive integer, got ${factor}`);
  if (factor === 1) return p;
  const { width, height, channels } = p;
  const w = width * factor;
  const out = new Uint8Array(w * height * factor * channels);
  for (let y = 0; y < height; y++) {
    const row = new Uint8Array(w * channels);
    for (let x = 0; x < width; x++) {
      const s = (y * width + x) * channels;
      for (let k = 0; k < factor; k++) row.set(p.data.subarray(s, s + channels), (x * factor + k) * channels);
    }
    for (let k = 0; k < factor; k++) out.set(row, (y * factor + k) * w * channels);
  }
  return { ...p, width: w, height: height * factor, data: out };
}

/** The integer factor that brings the larger side of a w×h image to at least `minSize` pixels. */
export function upscaleFactor(width: number, height: number, minSize: number): number {
  const side = Math.max(width, height);
  return side >= minSize ? 1 : Math.ceil(minSize / side);
}
