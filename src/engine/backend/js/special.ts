/**
 * Scalar special functions in float64, accurate to ~1e-15 relative, for the reference kernels.
 */

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const ONE_OVER_SQRT_PI = 0.5641895835477563;
/** Below this |x| the series is used for erf; above it erfc's continued fraction (both converge fast there). */
const SERIES_LIMIT = 2.5;

/** 1 / (2n + 3) for the series' term ratio, precomputed so the loop only multiplies. */
const SERIES_RATIO = Float64Array.from({ length: 80 }, (_, n) => 1 / (2 * n + 3));

/**
 * erf(x) = 2/√π · x · e^{-x²} · Σ_{n≥0} (2x²)ⁿ / (1·3·…·(2n+1)). All terms are positive, so unlike the
 * Maclaurin series there is no cancellation.
 */
function erfSeries(x: number): number {
  const x2 = x * x;
  const twoX2 = 2 * x2;
  let term = 1;
  let sum = 1;
  for (let n = 0; n < SERIES_RATIO.length; n++) {
    term *= twoX2 * SERIES_RATIO[n];
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return TWO_OVER_SQRT_PI * x * Math.exp(-x2) * sum;
}

/**
 * erfc(x) for x ≥ SERIES_LIMIT from Laplace's continued fraction
 *   √π e^{x²} erfc(x) = 1 / (x + (1/2) / (x + (2/2) / (x + (3/2) / (x + …)))),
 * evaluated forward with the modified Lentz method.
 */
function erfcContinuedFraction(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 200; n++) {
    const a = n * 0.5;
    d = x + a * d;
    if (d === 0) d = tiny;
    c = x + a / c;
    if (c === 0) c = tiny;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return (ONE_OVER_SQRT_PI * Math.exp(-x * x)) / f;
}

export function erf(x: number): number {
  if (x !== x) return NaN;
  const ax = Math.abs(x);
  if (ax < SERIES_LIMIT) return erfSeries(x);
  if (ax > 6) return x > 0 ? 1 : -1; // erfc(6) ≈ 2e-17 is below half an ulp of 1
  const r = 1 - erfcContinuedFraction(ax);
  return x > 0 ? r : -r;
}

export function erfc(x: number): number {
  if (x !== x) return NaN;
  if (x < SERIES_LIMIT) return 1 - erf(x); // x < 0: no cancellation; 0 ≤ x < 2.5: erfc ≥ 4e-4 keeps 1e-12
  if (x > 27) return 0; // e^{-x²} underflows
  return erfcContinuedFraction(x);
}

export function sigmoid(x: number): number {
  // Written so that neither branch overflows exp.
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/**
 * C/IEEE pow, which PyTorch follows: 1^y = 1 and (-1)^±∞ = 1 even for NaN / infinite y, where JS's
 * Math.pow gives NaN.
 */
export function powIeee(a: number, b: number): number {
  if (a === 1) return 1;
  if (a === -1 && (b === Infinity || b === -Infinity)) return 1;
  return Math.pow(a, b);
}
