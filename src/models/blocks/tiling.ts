/**
 * Tiled application of an image-to-image function (VAE encode/decode on images too large to run whole).
 *
 * The input is cut into overlapping tiles, each tile goes through `fn`, and the outputs are averaged with
 * weights that ramp linearly from ~0 to 1 across each overlap (a feathered blend, so no seam shows). Tiles sit
 * on a regular grid with the last row/column pushed back to end exactly at the border (no sliver tiles).
 * Weights are only ramped on sides that touch another tile; with a single tile the output is `fn(x)` itself.
 * Norm layers see one tile at a time, so tiled output is close to, not equal to, the untiled one.
 */
import { Tensor, fromTypedArray, noGrad } from '../../engine/index.js';

export interface TileOptions {
  /** Tile edge in input pixels (latent pixels when decoding). */
  tile: number;
  /** Overlap between neighbouring tiles, in input pixels. */
  overlap: number;
}

/** Tile starts along one axis of length n. */
export function tileStarts(n: number, tile: number, overlap: number, align = 1): number[] {
  if (n <= tile) return [0];
  if (n % align) throw new Error(`tiling: size ${n} must be a multiple of ${align}`);
  const stride = tile - overlap;
  if (stride <= 0 || stride % align || tile % align) {
    throw new Error(`tiling: tile ${tile} and overlap ${overlap} must leave a positive stride, all multiples of ${align}`);
  }
  const starts: number[] = [];
  for (let s = 0; s + tile < n; s += stride) starts.push(s);
  const last = Math.floor((n - tile) / align) * align;
  if (!starts.length || last > starts[starts.length - 1]) starts.push(last);
  return starts;
}

/** Per-position blend weights of one tile of `len` outputs: ramps on the sides that have neighbours. */
function ramp(len: number, blend: number, left: boolean, right: boolean): Float32Array {
  const w = new Float32Array(len).fill(1);
  if (blend <= 0) return w;
  for (let i = 0; i < len; i++) {
    if (left) w[i] = Math.min(w[i], (i + 0.5) / blend);
    if (right) w[i] = Math.min(w[i], (len - i - 0.5) / blend);
  }
  return w;
}

/**
 * out = blend of fn(tile) over tiles of x [B, C, H, W]. `scale` is the output/input size ratio (8 for a VAE
 * decoder, 1/8 for an encoder); `align` keeps tile starts on multiples of it (the encoder's downsampling).
 */
export function tiledApply(x: Tensor, fn: (tile: Tensor) => Tensor, o: TileOptions & { scale: number; align?: number }): Tensor {
  const [B, , H, W] = x.shape;
  const align = o.align ?? 1;
  const ys = tileStarts(H, o.tile, o.overlap, align), xs = tileStarts(W, o.tile, o.overlap, align);
  if (ys.length === 1 && xs.length === 1) return fn(x);
  return noGrad(() => {
    const OH = Math.round(H * o.scale), OW = Math.round(W * o.scale);
    const blend = o.overlap * o.scale;
    let out: Float32Array | null = null;
    let C = 0;
    const wsum = new Float32Array(OH * OW);
    for (const [yi, y0] of ys.entries()) {
      for (const [xi, x0] of xs.entries()) {
        const th = Math.min(o.tile, H - y0), tw = Math.min(o.tile, W - x0);
        const y = fn(x.narrow(2, y0, th).narrow(3, x0, tw)); // [B, C, th·scale, tw·scale]
        const [, c, oh, ow] = y.shape;
        if (!out) { C = c; out = new Float32Array(B * C * OH * OW); }
        const oy = Math.round(y0 * o.scale), ox = Math.round(x0 * o.scale);
        if (oh !== Math.round(th * o.scale) || ow !== Math.round(tw * o.scale) || c !== C) {
          throw new Error(`tiling: a ${th}×${tw} tile gave [${y.shape}], expected ${Math.round(th * o.scale)}×${Math.round(tw * o.scale)} with ${C} channels`);
        }
        const wy = ramp(oh, blend, yi > 0, yi < ys.length - 1), wx = ramp(ow, blend, xi > 0, xi < xs.length - 1);
        const src = y.toFloat32Array();
        for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) wsum[(oy + i) * OW + ox + j] += wy[i] * wx[j];
        for (let bc = 0; bc < B * C; bc++) {
          for (let i = 0; i < oh; i++) {
            const srow = (bc * oh + i) * ow, drow = (bc * OH + oy + i) * OW + ox;
            for (let j = 0; j < ow; j++) out[drow + j] += wy[i] * wx[j] * src[srow + j];
          }
        }
      }
    }
    const res = out!;
    const plane = OH * OW;
    for (let bc = 0; bc < B * C; bc++) for (let p = 0; p < plane; p++) res[bc * plane + p] /= wsum[p];
    return fromTypedArray(res, [B, C, OH, OW], 'f32') as Tensor;
  });
}
