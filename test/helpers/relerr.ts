/** Comparison helpers shared by the parity and gradient tests. */

/**
 * Norm-wise relative error ‖a − b‖ / ‖b‖ in float64. Positions where the reference b is not finite must match
 * exactly (same infinity, or both NaN) and are left out of the norms; a mismatch there gives Infinity.
 * When ‖b‖ = 0 the absolute error ‖a‖ is returned.
 */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relErr: lengths differ (${a.length} vs ${b.length})`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (!Number.isFinite(y)) {
      if (!(Object.is(x, y) || (Number.isNaN(x) && Number.isNaN(y)))) return Infinity;
      continue;
    }
    if (!Number.isFinite(x)) return Infinity;
    num += (x - y) * (x - y);
    den += y * y;
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

/** Largest |a − b| and where, for failure messages. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { diff: number; index: number } {
  let diff = 0, index = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > diff || (Number.isNaN(d) && index < 0)) { diff = d; index = i; }
  }
  return { diff, index };
}

export function shapeStr(s: readonly number[]): string { return `[${s.join(',')}]`; }

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A short human-readable account of where two arrays differ. */
export function describeDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): string {
  const { diff, index } = maxAbsDiff(actual, expected);
  const rel = relErr(actual, expected);
  return `rel err ${rel.toExponential(3)}, max |diff| ${diff.toExponential(3)} at flat index ${index}` +
    (index >= 0 ? ` (got ${actual[index]}, want ${expected[index]})` : '');
}
