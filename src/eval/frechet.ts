/**
 * The Fréchet distance between two sets of feature vectors, each summarised as a Gaussian (mean μ,
 * covariance Σ): the number behind FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
 * Rule…", eq. 6; Dowson & Landau 1982 for the closed form):
 *
 *   d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½)
 *
 * We use the symmetric form (Σ1^½ Σ2 Σ1^½)^½ rather than (Σ1 Σ2)^½: the product of two symmetric matrices
 * is not symmetric, and its square root needs a general (complex) eigensolver, while Σ1^½ Σ2 Σ1^½ is
 * symmetric positive semi-definite and has the same eigenvalues as Σ1 Σ2 (so its trace may as well be
 * taken with the roles swapped, Σ2^½ Σ1 Σ2^½). All we need is a symmetric eigendecomposition (Householder
 * tridiagonalisation + implicit QL: milliseconds at 128×128).
 *
 * Everything is float64: the features arrive as float32, but sums over 10 000 vectors and the square roots
 * of small eigenvalues lose digits that FID (a difference of large traces) needs.
 *
 * Matrices are dense row-major Float64Arrays of n×n values.
 */

/** A set of feature vectors summarised as a Gaussian. */
export interface FeatureStats {
  /** How many vectors went in. */
  count: number;
  dim: number;
  mean: Float64Array;
  /** Sample covariance (divided by count − 1), dim × dim row-major. */
  cov: Float64Array;
}

/**
 * Mean and covariance of feature vectors given batch by batch, in float64.
 *
 * Sums are taken around a shift (the first vector seen): Σ(x − k)(x − k)ᵀ stays small where Σ x xᵀ would
 * be large and cancel against n μ μᵀ at the end, losing digits when the features have a big mean.
 */
export class FeatureAccumulator {
  private n = 0;
  private shift: Float64Array | null = null;
  private readonly sum: Float64Array;
  /** Upper triangle (with diagonal) of Σ (x − k)(x − k)ᵀ, stored full for simple indexing. */
  private readonly outer: Float64Array;
  private readonly centred: Float64Array;

  constructor(readonly dim: number) {
    if (!Number.isInteger(dim) || dim < 1) throw new Error(`FeatureAccumulator: dim must be a positive integer, got ${dim}`);
    this.sum = new Float64Array(dim);
    this.outer = new Float64Array(dim * dim);
    this.centred = new Float64Array(dim);
  }

  get count(): number {
    return this.n;
  }

  /** Add `rows` vectors stored one after another in `features` (rows × dim values). */
  add(features: ArrayLike<number>, rows = features.length / this.dim): this {
    const d = this.dim;
    if (!Number.isInteger(rows) || rows * d !== features.length) {
      throw new Error(`FeatureAccumulator.add: ${features.length} values are not ${rows} rows of ${d}`);
    }
    if (rows === 0) return this;
    this.shift ??= Float64Array.from({ length: d }, (_, j) => features[j]);
    const k = this.shift, c = this.centred, s = this.sum, o = this.outer;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < d; j++) {
        const v = features[r * d + j];
        if (!Number.isFinite(v)) throw new Error(`FeatureAccumulator.add: feature ${j} of row ${this.n + r} is ${v}`);
        c[j] = v - k[j];
        s[j] += c[j];
      }
      for (let i = 0; i < d; i++) {
        const ci = c[i];
        if (ci === 0) continue; // post-activation features are often exactly 0
        const base = i * d;
        for (let j = i; j < d; j++) o[base + j] += ci * c[j];
      }
    }
    this.n += rows;
    return this;
  }

  /** The Gaussian of everything added so far (needs at least two vectors for a covariance). */
  stats(): FeatureStats {
    const n = this.n, d = this.dim;
    if (n < 2) throw new Error(`FeatureAccumulator: a covariance needs at least 2 vectors, got ${n}`);
    const k = this.shift!;
    const meanShifted = this.sum.map((v) => v / n);
    const mean = meanShifted.map((v, j) => v + k[j]);
    const cov = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = i; j < d; j++) {
        // Σ (x−k)(x−k)ᵀ − n m mᵀ with m the shifted mean: the centred sum of products.
        const v = (this.outer[i * d + j] - n * meanShifted[i] * meanShifted[j]) / (n - 1);
        cov[i * d + j] = v;
        cov[j * d + i] = v;
      }
    }
    return { count: n, dim: d, mean, cov };
  }
}

/** Mean and covariance of `rows` vectors of `dim` values stored one after another. */
export function featureStats(features: ArrayLike<number>, dim: number): FeatureStats {
  return new FeatureAccumulator(dim).add(features).stats();
}

/** C = A B for n×n row-major matrices. */
export function matmulSquare(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      const bRow = k * n, cRow = i * n;
      for (let j = 0; j < n; j++) c[cRow + j] += aik * b[bRow + j];
    }
  }
  return c;
}

function checkSquare(a: ArrayLike<number>, n: number, what: string): void {
  if (!Number.isInteger(n) || n < 1 || a.length !== n * n) throw new Error(`${what}: expected ${n}×${n} = ${n * n} values, got ${a.length}`);
}

export interface SymmetricEigen {
  /** Eigenvalues in descending order. */
  values: Float64Array;
  /** Eigenvectors as columns (n×n row-major): A = V diag(values) Vᵀ; empty when not asked for. */
  vectors: Float64Array;
  /** QL iterations it took (about two per eigenvalue). */
  iterations: number;
}

/**
 * Eigendecomposition of a symmetric matrix: Householder reduction to tridiagonal form, then the QL
 * algorithm with implicit shifts (EISPACK's tred2 and tql2, in the form of JAMA's EigenvalueDecomposition;
 * Golub & Van Loan, Matrix Computations, §8.3). About 10n³ flops, ten times fewer than cyclic Jacobi:
 * a few milliseconds at 128×128, and an evaluation takes one per class.
 *
 * Only the upper triangle of `a` is read (the matrix is symmetrised from it), so a nearly-symmetric input
 * from rounding is fine. `vectors: false` skips accumulating the QL rotations (a third of the work).
 */
export function symmetricEigen(a: ArrayLike<number>, n: number, opts: { vectors?: boolean } = {}): SymmetricEigen {
  checkSquare(a, n, 'symmetricEigen');
  const wantVectors = opts.vectors ?? true;
  // V starts as A and ends as the eigenvectors; d and e hold the diagonal and sub-diagonal in between.
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const v = a[i * n + j];
      if (!Number.isFinite(v)) throw new Error(`symmetricEigen: entry (${i}, ${j}) is ${v}`);
      V[i * n + j] = v;
      V[j * n + i] = v;
    }
  }
  const d = new Float64Array(n), e = new Float64Array(n);
  tridiagonalize(V, d, e, n);
  const iterations = tridiagonalQl(V, d, e, n, wantVectors);
  // Sort descending, moving the eigenvector columns along.
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => d[j] - d[i]);
  const values = Float64Array.from(order, (i) => d[i]);
  const vectors = new Float64Array(wantVectors ? n * n : 0);
  for (let r = 0; r < n && wantVectors; r++) for (let c = 0; c < n; c++) vectors[r * n + c] = V[r * n + order[c]];
  return { values, vectors, iterations };
}

/**
 * tred2: reduce the symmetric V (in place) to tridiagonal form by n − 2 Householder reflections, leaving the
 * diagonal in d, the sub-diagonal in e[1..n−1], and the product of the reflections in V.
 */
function tridiagonalize(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    // Scale the row to avoid under/overflow in the norm.
    let scale = 0, h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      // The Householder vector u (in d[0..i−1]) that zeroes row i left of the sub-diagonal.
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = f > 0 ? -Math.sqrt(h) : Math.sqrt(h);
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // p = A u / h (in e), then K = uᵀp / 2h, q = p − K u; A ← A − q uᵀ − u qᵀ.
      for (let j = 0; j < i; j++) {
        f = d[j];
        V[j * n + i] = f;
        g = e[j] + V[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j] * d[k];
          e[k] += V[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) V[k * n + j] -= f * e[k] + g * d[k];
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the reflections into V.
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i];
    V[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1] * V[k * n + j];
        for (let k = 0; k <= i; k++) V[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j];
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/**
 * tql2: eigenvalues (into d) of the tridiagonal matrix (d, e) by QL steps with Wilkinson-like implicit
 * shifts, applying every rotation to V's columns when `wantVectors`. Returns the number of QL steps.
 */
function tridiagonalQl(V: Float64Array, d: Float64Array, e: Float64Array, n: number, wantVectors: boolean): number {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0, tst1 = 0, iterations = 0;
  const eps = Number.EPSILON;
  for (let l = 0; l < n; l++) {
    // A sub-diagonal entry at rounding level splits the matrix: d[l] is then an eigenvalue.
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]) > eps * tst1) m++;
    if (m > l) {
      do {
        if (++iterations > 60 * n) throw new Error('symmetricEigen: the QL iteration did not converge');
        // Shift by the eigenvalue of the leading 2×2 block nearer d[l].
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        // The implicit QL step: a chase of Givens rotations from m up to l.
        p = d[m];
        let c = 1, c2 = c, c3 = c, s = 0, s2 = 0;
        const el1 = e[l + 1];
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (wantVectors) {
            for (let k = 0; k < n; k++) {
              const vk = k * n;
              h = V[vk + i + 1];
              V[vk + i + 1] = s * V[vk + i] + c * h;
              V[vk + i] = c * V[vk + i] - s * h;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  return iterations;
}

/**
 * The square root of a symmetric positive semi-definite matrix: V diag(√λ) Vᵀ. Eigenvalues a little below
 * zero (rounding; a covariance of fewer vectors than dimensions is singular) are taken as 0.
 */
export function sqrtPsd(a: ArrayLike<number>, n: number): Float64Array {
  const { values, vectors: V } = symmetricEigen(a, n);
  const roots = values.map((l) => Math.sqrt(Math.max(l, 0)));
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += V[i * n + k] * roots[k] * V[j * n + k];
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  }
  return out;
}

export interface FrechetResult {
  /** d², the number reported as FID. */
  distance: number;
  /** ‖μ1 − μ2‖²: how far apart the centres are. */
  meanTerm: number;
  /** Tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½): how different the spreads are. */
  covTerm: number;
}

/**
 * Square roots of covariances already taken, by covariance array: an evaluation compares many sample sets
 * with one reference, whose root is then taken once. (A covariance changed in place after use would get a
 * stale root; FeatureStats are never changed in place here.)
 */
const rootCache = new WeakMap<Float64Array, Float64Array>();

function cachedRoot(cov: Float64Array, n: number): Float64Array {
  let root = rootCache.get(cov);
  if (!root) {
    root = sqrtPsd(cov, n);
    rootCache.set(cov, root);
  }
  return root;
}

/**
 * The Fréchet distance between two Gaussians (see the file comment), split into its two terms. The trace
 * term is symmetric in Σ1 and Σ2, so the square root is taken of the second covariance: pass the fixed
 * reference second and its root is computed only once.
 */
export function frechetDistance(s1: FeatureStats, s2: FeatureStats): FrechetResult {
  const n = s1.dim;
  if (s2.dim !== n) throw new Error(`frechetDistance: feature sizes differ (${s1.dim} vs ${s2.dim})`);
  checkSquare(s1.cov, n, 'frechetDistance (first covariance)');
  checkSquare(s2.cov, n, 'frechetDistance (second covariance)');
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (s1.mean[i] - s2.mean[i]) ** 2;

  // Tr((Σ1^½ Σ2 Σ1^½)^½) = Tr((Σ2^½ Σ1 Σ2^½)^½): both inner matrices are similar to Σ1 Σ2.
  const root2 = cachedRoot(s2.cov, n);
  const inner = matmulSquare(matmulSquare(root2, s1.cov, n), root2, n);
  // Tr(M^½) = Σ √λ(M): the eigenvalues are all we need of the inner square root.
  const { values } = symmetricEigen(inner, n, { vectors: false });
  let traceRoot = 0;
  for (const l of values) traceRoot += Math.sqrt(Math.max(l, 0));
  let traces = 0;
  for (let i = 0; i < n; i++) traces += s1.cov[i * n + i] + s2.cov[i * n + i];
  // Rounding can leave a tiny negative trace term for identical sets; the true value is ≥ 0.
  const covTerm = Math.max(0, traces - 2 * traceRoot);
  return { distance: meanTerm + covTerm, meanTerm, covTerm };
}
