// Vectorised elementary functions, written on the primitives of simd_*.h. Accuracy target: a few ulp
// (≤ ~3e-7 relative) over the whole float range, with IEEE special values (±Inf, NaN, ±0) handled.
// Coefficients: Taylor series for exp/log/tanh; least-squares/Lawson minimax fits (computed for this
// project with mpmath) for erf on [0, 1] and erfc(x)·exp(x²) on [1, 12].

static inline V vexp(V x) {
  const V xc = vmin(vmax(x, vset1(-104.0f)), vset1(88.8f));  // beyond: 0 / Inf after scaling
  const V n = vround(vmul(xc, vset1(1.44269504088896341f)));
  V r = vfnma(n, vset1(0.693145751953125f), xc);             // ln2 split: hi has 12 bits, n·hi exact
  r = vfnma(n, vset1(1.42860682030941723e-06f), r);
  V p = vset1(1.0f / 5040.0f);                                // Taylor to r^7: error < 6e-9 on |r| ≤ ln2/2
  p = vfma(p, r, vset1(1.0f / 720.0f));
  p = vfma(p, r, vset1(1.0f / 120.0f));
  p = vfma(p, r, vset1(1.0f / 24.0f));
  p = vfma(p, r, vset1(1.0f / 6.0f));
  p = vfma(p, r, vset1(0.5f));
  p = vfma(p, r, vset1(1.0f));
  p = vfma(p, r, vset1(1.0f));
  return vsel(visnan(x), x, vldexp(p, n));
}

static inline V vlog(V x) {
  V m, e;
  vfrexp(vabs(x), m, e);                                      // m in [1, 2)
  const Mask big = vgt(m, vset1(1.41421356f));
  m = vsel(big, vmul(m, vset1(0.5f)), m);                     // m in [sqrt(1/2), sqrt(2)]
  e = vsel(big, vadd(e, vset1(1.0f)), e);
  const V s = vdiv(vsub(m, vset1(1.0f)), vadd(m, vset1(1.0f)));  // log m = 2 atanh(s), |s| ≤ 0.172
  const V s2 = vmul(s, s);
  V p = vset1(1.0f / 13.0f);
  p = vfma(p, s2, vset1(1.0f / 11.0f));
  p = vfma(p, s2, vset1(1.0f / 9.0f));
  p = vfma(p, s2, vset1(1.0f / 7.0f));
  p = vfma(p, s2, vset1(1.0f / 5.0f));
  p = vfma(p, s2, vset1(1.0f / 3.0f));
  const V ls = vfma(vmul(vadd(s, s), s2), p, vadd(s, s));   // 2s + 2s·s²·p
  V r = vfma(e, vset1(0.693145751953125f), vfma(e, vset1(1.42860682030941723e-06f), ls));
  const V inf = vset1(__builtin_inff());
  r = vsel(veq(x, vzero()), vneg(inf), r);
  r = vsel(veq(x, inf), inf, r);
  r = vsel(mor(vlt(x, vzero()), visnan(x)), vset1(__builtin_nanf("")), r);
  return r;
}

static inline V vsigmoid(V x) { return vdiv(vset1(1.0f), vadd(vset1(1.0f), vexp(vneg(x)))); }

static inline V vtanh(V x) {
  const V a = vabs(x);
  // |x| < 0.3: odd Taylor series to x^13 (error < 2e-9); else 1 - 2/(e^{2|x|} + 1).
  const V s = vmul(x, x);
  V p = vset1(21844.0f / 6081075.0f);
  p = vfma(p, s, vset1(-1382.0f / 155925.0f));
  p = vfma(p, s, vset1(62.0f / 2835.0f));
  p = vfma(p, s, vset1(-17.0f / 315.0f));
  p = vfma(p, s, vset1(2.0f / 15.0f));
  p = vfma(p, s, vset1(-1.0f / 3.0f));
  const V small = vfma(vmul(x, s), p, x);
  const V big = vsub(vset1(1.0f), vdiv(vset1(2.0f), vadd(vexp(vadd(a, a)), vset1(1.0f))));
  return vsel(vlt(a, vset1(0.3f)), small, vcopysign(big, x));
}

// exp(-c·a²) for a ≥ 0, with a² split exactly (a² = hi + lo) so large a keeps its relative accuracy.
// a is clamped to 17 (erfc and the Gaussian tail are 0 in float well before) so hi stays finite.
static inline V vexp_negsq(V a, float c = 1.0f) {
  a = vmin(vset1(17.0f), a);  // (operand order keeps NaN: min returns its second operand then)
  const V hi = vmul(a, a);
  const V lo = vprod_lo(a, a, hi);
  const V vc = vset1(c);
  return vmul(vexp(vneg(vmul(vc, hi))), vfnma(vc, lo, vset1(1.0f)));
}
// erf(a)/a on [0, 1] as a polynomial in a².
static inline V verf_small_ratio(V s) {
  V p = vset1(7.854026318e-05f);
  p = vfma(p, s, vset1(-8.010247657e-04f));
  p = vfma(p, s, vset1(5.188334502e-03f));
  p = vfma(p, s, vset1(-2.685381607e-02f));
  p = vfma(p, s, vset1(1.128358527e-01f));
  p = vfma(p, s, vset1(-3.761262584e-01f));
  p = vfma(p, s, vset1(1.128379166e+00f));
  return p;
}
// erfc(a) for a ≥ 1 (underflows to 0 past ~10): e · G(1 / (1 + a/2)), where e = exp(-a²).
static inline V verfc_large(V a, V e) {
  const V t = vdiv(vset1(1.0f), vfma(a, vset1(0.5f), vset1(1.0f)));
  V g = vset1(-5.439324956e-02f);
  g = vfma(g, t, vset1(2.785035164e-01f));
  g = vfma(g, t, vset1(-4.964279541e-01f));
  g = vfma(g, t, vset1(3.039609454e-01f));
  g = vfma(g, t, vset1(-5.091164120e-02f));
  g = vfma(g, t, vset1(2.147538964e-01f));
  g = vfma(g, t, vset1(2.396466410e-01f));
  g = vfma(g, t, vset1(2.829417932e-01f));
  g = vfma(g, t, vset1(2.820377722e-01f));
  g = vfma(g, t, vset1(1.668073165e-06f));
  return vmul(e, g);
}
// erfc(a) for a ≥ 0, given e = exp(-a²).
static inline V verfc_pos(V a, V e) {
  const V small = vfnma(a, verf_small_ratio(vmul(a, a)), vset1(1.0f));
  return vsel(vlt(a, vset1(1.0f)), small, verfc_large(vmax(a, vset1(1.0f)), e));
}
static inline V verf(V x) {
  const V a = vabs(x);
  const V small = vmul(x, verf_small_ratio(vmul(x, x)));
  const V big = vsub(vset1(1.0f), verfc_large(vmax(a, vset1(1.0f)), vexp_negsq(a)));
  const V r = vsel(vlt(a, vset1(1.0f)), small, vcopysign(big, x));
  return vsel(visnan(x), x, r);
}
// Φ(x) = (1 + erf(x/√2)) / 2 without cancellation for negative x. exp(-z²) is taken as exp(-x²/2) from
// x itself: the rounding of z = x/√2 would cost ~z²·1e-7 relative in the tail.
static inline V vnormcdf(V x) {
  const V z = vmul(x, vset1(0.70710678118654752f));
  const V c = verfc_pos(vabs(z), vexp_negsq(vabs(x), 0.5f));  // erfc(|z|)
  const V r = vmul(vset1(0.5f), vsel(vlt(z, vzero()), c, vsub(vset1(2.0f), c)));
  return vsel(visnan(x), x, r);
}
