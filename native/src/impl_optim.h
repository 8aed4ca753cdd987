// Optimiser updates: elementwise over dense f32 arrays, each element on its own, so the thread split never
// changes a result.

// One Adam / AdamW step in place, PyTorch's single-tensor maths in f32:
//   g = grad + l2·p;  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;  amsgrad: vmax ← max(vmax, v), used as v;
//   p ← p·shrink − step_size · m / (√v / bc2_sqrt + eps)
static inline void adam_block(const AdamArgs& a, int64_t i, int n) {
  const V b1 = vset1(a.beta1), c1 = vset1(a.c1), b2 = vset1(a.beta2), c2 = vset1(a.c2);
  V p = vload_n(a.p + i, n), g = vload_n(a.g + i, n);
  g = vfma(vset1(a.l2), p, g);
  const V m = vfma(b1, vload_n(a.m + i, n), vmul(c1, g));
  const V v = vfma(b2, vload_n(a.v + i, n), vmul(vmul(c2, g), g));
  vstore_n(a.m + i, m, n);
  vstore_n(a.v + i, v, n);
  V second = v;
  if (a.vmax) {
    second = vmax(v, vload_n(a.vmax + i, n));
    vstore_n(a.vmax + i, second, n);
  }
  const V denom = vadd(vdiv(vsqrt(second), vset1(a.bc2_sqrt)), vset1(a.eps));
  p = vsub(vmul(p, vset1(a.shrink)), vdiv(vmul(vset1(a.step_size), m), denom));
  vstore_n(a.p + i, p, n);
}

static void adam_step(const AdamArgs& a) {
  par_range(ceil_div(a.n, W), 8 * W, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) adam_block(a, b * W, (int)imin<int64_t>(W, a.n - b * W));
  });
}
