/**
 * 16-bit float ⇄ f32 conversions (IEEE binary16 and bfloat16), bit-exact, round to nearest even.
 */
import type { F32, Half, HalfKind, WeightDtype } from '../kernels.js';

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Decode one binary16 pattern exactly (every f16 value is representable in f32). */
export function f16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** bfloat16 is the top half of an f32: put the bits back and reinterpret. */
export function bf16BitsToNumber(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

/** f32 bit pattern → binary16 bit pattern, round to nearest even, overflow → ±Inf, NaN stays (quiet) NaN. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  if (exp >= 143) return sign | 0x7c00; // ≥ 2^16: beyond every f16 even after rounding
  if (exp >= 113) {
    // Normal f16 range. A rounding carry out of the mantissa correctly bumps the exponent (up to Inf).
    let h = ((exp - 112) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++;
    return sign | h;
  }
  // Subnormal f16 (or underflow to zero): value / 2^-24 = (1.mant) * 2^(exp-126+23) >> …
  const shift = 126 - exp; // ≥ 14
  if (shift > 24) return sign;
  const full = mant | 0x800000;
  let h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (h & 1) !== 0)) h++; // a carry to 0x400 is the smallest normal
  return sign | h;
}

/** f32 bit pattern → bfloat16 bit pattern, round to nearest even, NaN stays (quiet) NaN. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) & 0xffff) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function numberToF16Bits(v: number): number {
  scratchF32[0] = v;
  return f32BitsToF16Bits(scratchU32[0]);
}

export function numberToBf16Bits(v: number): number {
  scratchF32[0] = v;
  return f32BitsToBf16Bits(scratchU32[0]);
}

// Full decode tables (256 KiB each, built on first use): widening is then one indexed load.
let f16Table: Float32Array | null = null;
let bf16Table: Float32Array | null = null;

export function halfTable(kind: HalfKind): Float32Array {
  if (kind === 'f16') {
    if (!f16Table) {
      f16Table = new Float32Array(65536);
      for (let i = 0; i < 65536; i++) f16Table[i] = f16BitsToNumber(i);
    }
    return f16Table;
  }
  if (!bf16Table) {
    bf16Table = new Float32Array(65536);
    const bits = new Uint32Array(bf16Table.buffer);
    for (let i = 0; i < 65536; i++) bits[i] = i << 16;
  }
  return bf16Table;
}

/** The decode table for a weight dtype, or null when the buffer already holds f32. */
export function tableFor(dtype: WeightDtype): Float32Array | null {
  return dtype === 'f32' ? null : halfTable(dtype);
}

export function widen(src: Half, kind: HalfKind, out: F32): void {
  const table = halfTable(kind);
  const n = src.length;
  for (let i = 0; i < n; i++) out[i] = table[src[i]];
}

export function narrow(src: F32, kind: HalfKind, out: Half): void {
  // Reinterpret the f32 payload in place: a Float32Array's byteOffset is always 4-aligned.
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  if (kind === 'f16') {
    for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(bits[i]);
  } else {
    for (let i = 0; i < n; i++) out[i] = f32BitsToBf16Bits(bits[i]);
  }
}
