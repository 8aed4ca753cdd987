/**
 * Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
 * Counter-based: the number at stream position i depends only on (seed, i), so results never depend on
 * how work is split over threads or calls. A generator is a seed plus a position; every draw advances
 * the position by a whole number of 4-word blocks.
 */
const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two u32 (JS numbers lose bits above 2^53, so split in halves). */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/** One Philox block: 4 u32 outputs for counter (c0..c3) and key (k0, k1), written to out[o..o+3]. */
export function philoxBlock(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number,
                     out: Uint32Array, o: number): void {
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0; c1 = lo1; c2 = (hi0 ^ c3 ^ k1) >>> 0; c3 = lo0;
    k0 = (k0 + W0) >>> 0; k1 = (k1 + W1) >>> 0;
  }
  out[o] = c0; out[o + 1] = c1; out[o + 2] = c2; out[o + 3] = c3;
}

export interface RngState { seed: number; offset: number }

export class Rng {
  private k0: number;
  private k1: number;
  /** Position in the stream, counted in 4-word blocks. */
  private block = 0;

  constructor(public readonly seed: number = 0) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`Rng seed must be a non-negative integer, got ${seed}`);
    this.k0 = seed >>> 0;
    this.k1 = Math.floor(seed / 4294967296) >>> 0;
  }

  getState(): RngState { return { seed: this.seed, offset: this.block }; }
  setState(s: RngState): void {
    if (s.seed !== this.seed) Object.assign(this, new Rng(s.seed));
    this.block = s.offset;
  }
  clone(): Rng { const r = new Rng(this.seed); r.block = this.block; return r; }

  /** n raw u32 words from consecutive blocks; advances by ceil(n/4) blocks. */
  uint32(n: number): Uint32Array {
    const blocks = Math.ceil(n / 4);
    const out = new Uint32Array(blocks * 4);
    for (let b = 0; b < blocks; b++) {
      const pos = this.block + b;
      philoxBlock(pos >>> 0, Math.floor(pos / 4294967296) >>> 0, 0, 0, this.k0, this.k1, out, b * 4);
    }
    this.block += blocks;
    return n === out.length ? out : out.subarray(0, n);
  }

  /** Uniform floats in the open interval (0, 1), 24 bits each. */
  uniform(n: number): Float32Array {
    const u = this.uint32(n);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = ((u[i] >>> 8) + 0.5) * 5.9604644775390625e-8;
    return out;
  }

  /** Standard normal floats (Box–Muller on pairs of uniforms). */
  normal(n: number): Float32Array {
    const m = n + (n & 1);
    const u = this.uint32(m);
    const out = new Float32Array(m);
    for (let i = 0; i < m; i += 2) {
      const u1 = ((u[i] >>> 8) + 0.5) * 5.9604644775390625e-8;
      const u2 = ((u[i + 1] >>> 8) + 0.5) * 5.9604644775390625e-8;
      const r = Math.sqrt(-2 * Math.log(u1)), th = 2 * Math.PI * u2;
      out[i] = r * Math.cos(th);
      out[i + 1] = r * Math.sin(th);
    }
    return n === m ? out : out.subarray(0, n);
  }

  /** Integers uniform in [low, high). */
  integers(n: number, low: number, high: number): Int32Array {
    const span = high - low;
    if (!(span > 0)) throw new Error(`randint: need low < high, got [${low}, ${high})`);
    const u = this.uint32(n);
    const out = new Int32Array(n);
    // 32 random bits scaled by span: bias is span / 2^32, negligible for the spans we use.
    for (let i = 0; i < n; i++) out[i] = low + Math.floor((u[i] / 4294967296) * span);
    return out;
  }
}

let defaultRng = new Rng(0);
/** The generator used when an op is not given one. */
export function getDefaultRng(): Rng { return defaultRng; }
export function manualSeed(seed: number): Rng { defaultRng = new Rng(seed); return defaultRng; }
