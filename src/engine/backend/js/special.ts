/**
 * Scalar special functions in float64 for the reference kernels. erf/erfc are accurate to ~1e-13
 * relative (erfc keeps that relative accuracy deep into its tail, which exact gelu needs for x ≪ 0).
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

/** erf by series / continued fraction: exact to ~1e-15 but tens of iterations; builds the table below. */
function erfDirect(x: number): number {
  if (x !== x) return NaN;
  const ax = Math.abs(x);
  if (ax < SERIES_LIMIT) return erfSeries(x);
  if (ax > 6) return x > 0 ? 1 : -1; // erfc(6) ≈ 2e-17 is below half an ulp of 1
  const r = 1 - erfcContinuedFraction(ax);
  return x > 0 ? r : -r;
}

function erfcDirect(x: number): number {
  if (x !== x) return NaN;
  if (x < SERIES_LIMIT) return 1 - erfDirect(x); // x < 0: no cancellation; 0 ≤ x < 2.5: erfc ≥ 4e-4 keeps 1e-12
  if (x > 27) return 0; // e^{-x²} underflows
  return erfcContinuedFraction(x);
}

/*
 * Fast path: Taylor expansion around grid points x₀ = k/64 on [0, 10]. The derivatives of erf are
 *   dⁿ/dxⁿ erf(x) = (2/√π) (-1)ⁿ⁻¹ Hₙ₋₁(x) e^{-x²}   (physicists' Hermite polynomials),
 * so with |t| ≤ 1/128 ten terms leave a truncation error below 1e-13 relative even for erfc near x = 10.
 * erf(x₀ + t) = erf(x₀) + Σ cₙ tⁿ and erfc(x₀ + t) = erfc(x₀) - Σ cₙ tⁿ share the coefficients.
 */
const GRID_STEP = 1 / 64;
const GRID_POINTS = 641; // x₀ up to 10; beyond, erf is ±1 and erfc falls back to the continued fraction
const TAYLOR_TERMS = 10;
const erfAtGrid = new Float64Array(GRID_POINTS);
const erfcAtGrid = new Float64Array(GRID_POINTS);
/** taylor[k*TAYLOR_TERMS + n - 1] = cₙ at grid point k. */
const taylor = new Float64Array(GRID_POINTS * TAYLOR_TERMS);
{
  for (let k = 0; k < GRID_POINTS; k++) {
    const x0 = k * GRID_STEP;
    erfAtGrid[k] = erfDirect(x0);
    erfcAtGrid[k] = erfcDirect(x0);
    const scale = TWO_OVER_SQRT_PI * Math.exp(-x0 * x0);
    let hPrev = 0, h = 1; // H₋₁ (unused), H₀
    let factorial = 1;
    for (let n = 1; n <= TAYLOR_TERMS; n++) {
      factorial *= n;
      taylor[k * TAYLOR_TERMS + n - 1] = (scale * (n % 2 === 1 ? h : -h)) / factorial;
      // H_n = 2x H_{n-1} - 2(n-1) H_{n-2}
      const hNext = 2 * x0 * h - 2 * (n - 1) * hPrev;
      hPrev = h;
      h = hNext;
    }
  }
}

/** Σ_{n=1..TAYLOR_TERMS} cₙ tⁿ for grid point k (Horner). */
function taylorSum(k: number, t: number): number {
  const base = k * TAYLOR_TERMS;
  let s = taylor[base + TAYLOR_TERMS - 1];
  for (let n = TAYLOR_TERMS - 2; n >= 0; n--) s = s * t + taylor[base + n];
  return s * t;
}

export function erf(x: number): number {
  const ax = Math.abs(x);
  if (!(ax < (GRID_POINTS - 1) * GRID_STEP)) return x !== x ? NaN : x > 0 ? 1 : -1;
  const k = Math.round(ax / GRID_STEP);
  const r = erfAtGrid[k] + taylorSum(k, ax - k * GRID_STEP);
  return x < 0 ? -r : r;
}

export function erfc(x: number): number {
  if (x !== x) return NaN;
  if (x < 0) return 1 + erf(-x);
  if (x >= (GRID_POINTS - 1) * GRID_STEP) return erfcDirect(x);
  const k = Math.round(x / GRID_STEP);
  return erfcAtGrid[k] - taylorSum(k, x - k * GRID_STEP);
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
