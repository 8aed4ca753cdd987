// Reductions, softmax and normalisation. Each output element is reduced by one thread in a fixed order
// (vector partial sums combined in a fixed tree; very long rows in fixed-size chunks), so results do not
// depend on the thread count.

// Sum of n contiguous floats: 4 vector accumulators, then a fixed combination.
static inline float vec_sum(const float* x, int64_t n) {
  V a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    a0 = vadd(a0, vload(x + i)); a1 = vadd(a1, vload(x + i + W));
    a2 = vadd(a2, vload(x + i + 2 * W)); a3 = vadd(a3, vload(x + i + 3 * W));
  }
  for (; i + W <= n; i += W) a0 = vadd(a0, vload(x + i));
  if (i < n) a1 = vadd(a1, vload_n(x + i, (int)(n - i)));
  return vhsum(vadd(vadd(a0, a1), vadd(a2, a3)));
}
// Σ (x - m)²
static inline float vec_sqdev(const float* x, int64_t n, float m) {
  const V vm = vset1(m);
  V a0 = vzero(), a1 = vzero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    V d0 = vsub(vload(x + i), vm), d1 = vsub(vload(x + i + W), vm);
    a0 = vfma(d0, d0, a0); a1 = vfma(d1, d1, a1);
  }
  for (; i + W <= n; i += W) { V d = vsub(vload(x + i), vm); a0 = vfma(d, d, a0); }
  if (i < n) {
    const int r = (int)(n - i);
    V d = vsel(vlt(vload(kIota), vset1((float)r)), vsub(vload_n(x + i, r), vm), vzero());
    a1 = vfma(d, d, a1);
  }
  return vhsum(vadd(a0, a1));
}
// Σ g·(x - m)
static inline float vec_dot_centered(const float* g, const float* x, float m, int64_t n) {
  const V vm = vset1(m);
  V a0 = vzero(), a1 = vzero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    a0 = vfma(vload(g + i), vsub(vload(x + i), vm), a0);
    a1 = vfma(vload(g + i + W), vsub(vload(x + i + W), vm), a1);
  }
  for (; i + W <= n; i += W) a0 = vfma(vload(g + i), vsub(vload(x + i), vm), a0);
  if (i < n) a1 = vfma(vload_n(g + i, (int)(n - i)), vsub(vload_n(x + i, (int)(n - i)), vm), a1);  // g tail is 0
  return vhsum(vadd(a0, a1));
}
// Σ a·b
static inline float vec_dot(const float* a, const float* b, int64_t n) {
  V a0 = vzero(), a1 = vzero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    a0 = vfma(vload(a + i), vload(b + i), a0);
    a1 = vfma(vload(a + i + W), vload(b + i + W), a1);
  }
  for (; i + W <= n; i += W) a0 = vfma(vload(a + i), vload(b + i), a0);
  if (i < n) a1 = vfma(vload_n(a + i, (int)(n - i)), vload_n(b + i, (int)(n - i)), a1);
  return vhsum(vadd(a0, a1));
}
static inline float vec_max(const float* x, int64_t n, bool& nan) {
  V a = vset1(-__builtin_inff());
  Mask bad = vne(a, a);
  int64_t i = 0;
  for (; i + W <= n; i += W) { V v = vload(x + i); bad = mor(bad, visnan(v)); a = vmax(a, v); }
  if (i < n) {
    V v = vsel(vlt(vload(kIota), vset1((float)(n - i))), vload_n(x + i, (int)(n - i)), vset1(-__builtin_inff()));
    bad = mor(bad, visnan(v)); a = vmax(a, v);
  }
  nan = many(bad);
  return vhmax(a);
}
static inline float vec_min(const float* x, int64_t n, bool& nan) {
  V a = vset1(__builtin_inff());
  Mask bad = vne(a, a);
  int64_t i = 0;
  for (; i + W <= n; i += W) { V v = vload(x + i); bad = mor(bad, visnan(v)); a = vmin(a, v); }
  if (i < n) {
    V v = vsel(vlt(vload(kIota), vset1((float)(n - i))), vload_n(x + i, (int)(n - i)), vset1(__builtin_inff()));
    bad = mor(bad, visnan(v)); a = vmin(a, v);
  }
  nan = many(bad);
  return vhmin(a);
}

constexpr int64_t kChunk = 32768;  // long rows are reduced in fixed chunks (then combined in order)

static inline float reduce_piece(int op, const float* x, int64_t n) {
  if (op == R_SUM) return vec_sum(x, n);
  bool nan;
  float r = op == R_MAX ? vec_max(x, n, nan) : vec_min(x, n, nan);
  return nan ? __builtin_nanf("") : r;
}
static inline float reduce_combine(int op, float a, float b) {
  if (op == R_SUM) return a + b;
  if (a != a || b != b) return __builtin_nanf("");
  return op == R_MAX ? (a > b ? a : b) : (a < b ? a : b);
}
static inline float reduce_identity(int op) {
  return op == R_SUM ? 0.0f : (op == R_MAX ? -__builtin_inff() : __builtin_inff());
}

static void reduce_f32(int op, const float* x, int64_t outer, int64_t n, int64_t inner, float* out) {
  if (inner == 1) {
    const int64_t nch = imax<int64_t>(1, ceil_div(n, kChunk));
    if (n == 0) { for (int64_t o = 0; o < outer; o++) out[o] = reduce_identity(op); return; }
    if (nch == 1) {
      par_range(outer, n, [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; o++) out[o] = reduce_piece(op, x + o * n, n);
      });
      return;
    }
    // long rows: partial results per (row, chunk), in parallel, then combined in chunk order
    float* part = static_cast<float*>(scratch(SLOT_OP0, (size_t)(outer * nch) * sizeof(float)));
    par_range(outer * nch, kChunk, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / nch, c = t % nch, b = c * kChunk;
        part[t] = reduce_piece(op, x + o * n + b, imin(kChunk, n - b));
      }
    });
    for (int64_t o = 0; o < outer; o++) {
      float r = part[o * nch];
      for (int64_t c = 1; c < nch; c++) r = reduce_combine(op, r, part[o * nch + c]);
      out[o] = r;
    }
    return;
  }
  // reduce the middle axis: vectors run along the contiguous inner axis
  const int64_t iblk = 8 * W;
  const int64_t nib = ceil_div(inner, iblk);
  par_range(outer * nib, n * iblk, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t o = t / nib, i0 = (t % nib) * iblk, cnt = imin(iblk, inner - i0);
      const float* base = x + o * n * inner + i0;
      float* dst = out + o * inner + i0;
      if (op == R_SUM && cnt == iblk) {
        // a whole block: eight running sums, each row read as one run of 8 vectors (one dependent add
        // chain at a time was latency-bound: a bias gradient over 2176 rows ran at 2.6 GB/s)
        V a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero(), a4 = vzero(), a5 = vzero(), a6 = vzero(), a7 = vzero();
        for (int64_t r = 0; r < n; r++) {
          const float* row = base + r * inner;
          a0 = vadd(a0, vload(row)); a1 = vadd(a1, vload(row + W)); a2 = vadd(a2, vload(row + 2 * W));
          a3 = vadd(a3, vload(row + 3 * W)); a4 = vadd(a4, vload(row + 4 * W)); a5 = vadd(a5, vload(row + 5 * W));
          a6 = vadd(a6, vload(row + 6 * W)); a7 = vadd(a7, vload(row + 7 * W));
        }
        vstore(dst, a0); vstore(dst + W, a1); vstore(dst + 2 * W, a2); vstore(dst + 3 * W, a3);
        vstore(dst + 4 * W, a4); vstore(dst + 5 * W, a5); vstore(dst + 6 * W, a6); vstore(dst + 7 * W, a7);
        continue;
      }
      for (int64_t i = 0; i < cnt; i += W) {
        const int m = (int)imin<int64_t>(W, cnt - i);
        V acc = vset1(reduce_identity(op));
        Mask bad = vne(acc, acc);
        for (int64_t r = 0; r < n; r++) {
          V v = vload_n(base + r * inner + i, m);
          if (op == R_SUM) acc = vadd(acc, v);
          else { bad = mor(bad, visnan(v)); acc = op == R_MAX ? vmax(acc, v) : vmin(acc, v); }
        }
        if (op != R_SUM) acc = vsel(bad, vset1(__builtin_nanf("")), acc);
        vstore_n(dst + i, acc, m);
      }
    }
  });
}

static void arg_reduce(int op, const float* x, int64_t outer, int64_t n, int64_t inner, int32_t* out) {
  const bool isMax = op == R_ARGMAX;
  par_range(outer * inner, imax<int64_t>(n, 1), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t o = t / inner, i = t % inner;
      const float* p = x + o * n * inner + i;
      if (n == 0) { out[t] = -1; continue; }  // no answer (as the JS reference)
      int32_t best = 0;
      float bv = p[0];
      if (bv == bv) {
        for (int64_t r = 1; r < n; r++) {
          float v = p[r * inner];
          if (v != v) { best = (int32_t)r; break; }   // NaN wins (as max/min propagate NaN)
          if (isMax ? v > bv : v < bv) { bv = v; best = (int32_t)r; }
        }
      }
      out[t] = best;
    }
  });
}

static void reduce(int op, const float* x, int64_t outer, int64_t n, int64_t inner, void* out) {
  if (outer <= 0 || inner <= 0) return;
  if (op == R_ARGMAX || op == R_ARGMIN) arg_reduce(op, x, outer, n, inner, static_cast<int32_t*>(out));
  else reduce_f32(op, x, outer, n, inner, static_cast<float*>(out));
}

// ------------------------------------------------------------------------------------- softmax
static void softmax(const float* x, int64_t rows, int64_t cols, bool log, float* out) {
  par_range(rows, cols * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * cols;
      float* yr = out + r * cols;
      bool nan;
      const float m = vec_max(xr, cols, nan);
      const V vm = vset1(nan ? __builtin_nanf("") : m);
      if (!log) {
        map1(xr, yr, cols, [&](V v) { return vexp(vsub(v, vm)); });
        const V inv = vset1(1.0f / vec_sum(yr, cols));
        map1(yr, yr, cols, [&](V v) { return vmul(v, inv); });
      } else {
        // Σ exp(x - m) without storing it: reuse out as scratch, then overwrite
        map1(xr, yr, cols, [&](V v) { return vexp(vsub(v, vm)); });
        const V lse = vset1((nan ? __builtin_nanf("") : m) + __builtin_logf(vec_sum(yr, cols)));
        map1(xr, yr, cols, [&](V v) { return vsub(v, lse); });
      }
    }
  });
}

static void softmax_bwd(const float* y, const float* gy, int64_t rows, int64_t cols, bool log, float* gx) {
  par_range(rows, cols * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* yr = y + r * cols;
      const float* gr = gy + r * cols;
      float* xr = gx + r * cols;
      if (!log) {
        const V s = vset1(vec_dot(gr, yr, cols));
        int64_t i = 0;
        for (; i + W <= cols; i += W) vstore(xr + i, vmul(vload(yr + i), vsub(vload(gr + i), s)));
        if (i < cols) { int n = (int)(cols - i); vstore_n(xr + i, vmul(vload_n(yr + i, n), vsub(vload_n(gr + i, n), s)), n); }
      } else {
        const V s = vset1(vec_sum(gr, cols));
        int64_t i = 0;
        for (; i + W <= cols; i += W) vstore(xr + i, vfnma(vexp(vload(yr + i)), s, vload(gr + i)));
        if (i < cols) { int n = (int)(cols - i); vstore_n(xr + i, vfnma(vexp(vload_n(yr + i, n)), s, vload_n(gr + i, n)), n); }
      }
    }
  });
}

// ------------------------------------------------------------------------------------- layer norm
static void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t cols, float eps,
                       float* out, float* mean, float* rstd) {
  par_range(rows, cols * 3, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * cols;
      float* yr = out + r * cols;
      const float m = cols ? vec_sum(xr, cols) / (float)cols : 0.0f;
      const float var = cols ? vec_sqdev(xr, cols, m) / (float)cols : 0.0f;
      const float rs = 1.0f / __builtin_sqrtf(var + eps);
      mean[r] = m; rstd[r] = rs;
      const V vm = vset1(m), vr = vset1(rs);
      for (int64_t i = 0; i < cols; i += W) {
        const int n = (int)imin<int64_t>(W, cols - i);
        V v = vmul(vsub(vload_n(xr + i, n), vm), vr);
        if (w) v = vmul(v, vload_n(w + i, n));
        if (b) v = vadd(v, vload_n(b + i, n));
        vstore_n(yr + i, v, n);
      }
    }
  });
}

static void layer_norm_bwd(const float* x, const float* w, const float* mean, const float* rstd, const float* gy,
                           int64_t rows, int64_t cols, float* gx, float* gw, float* gb) {
  par_range(rows, cols * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * cols;
      const float* gr = gy + r * cols;
      float* dr = gx + r * cols;
      const V vm = vset1(mean[r]), vr = vset1(rstd[r]);
      V s1 = vzero(), s2 = vzero();   // Σ g, Σ g·xhat with g = gy·w
      for (int64_t i = 0; i < cols; i += W) {
        const int n = (int)imin<int64_t>(W, cols - i);
        V g = vload_n(gr + i, n);
        if (w) g = vmul(g, vload_n(w + i, n));
        V xh = vmul(vsub(vload_n(xr + i, n), vm), vr);   // lanes past n meet g = 0
        s1 = vadd(s1, g);
        s2 = vfma(g, xh, s2);
      }
      const float inv = 1.0f / (float)cols;
      const V a = vset1(vhsum(s1) * inv), c = vset1(vhsum(s2) * inv);
      for (int64_t i = 0; i < cols; i += W) {
        const int n = (int)imin<int64_t>(W, cols - i);
        V g = vload_n(gr + i, n);
        if (w) g = vmul(g, vload_n(w + i, n));
        V xh = vmul(vsub(vload_n(xr + i, n), vm), vr);
        vstore_n(dr + i, vmul(vr, vsub(vsub(g, a), vmul(xh, c))), n);
      }
    }
  });
  if (!gw && !gb) return;
  // column sums over rows: split by column blocks, rows in order
  const int64_t cblk = 4 * W;
  par_range(ceil_div(cols, cblk), rows * cblk * 2, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; bi++) {
      const int64_t c0 = bi * cblk, cn = imin(cblk, cols - c0);
      for (int64_t i = 0; i < cn; i += W) {
        const int n = (int)imin<int64_t>(W, cn - i);
        V aw = vzero(), ab = vzero();
        for (int64_t r = 0; r < rows; r++) {
          V g = vload_n(gy + r * cols + c0 + i, n);
          V xh = vmul(vsub(vload_n(x + r * cols + c0 + i, n), vset1(mean[r])), vset1(rstd[r]));
          aw = vfma(g, xh, aw);
          ab = vadd(ab, g);
        }
        if (gw) vstore_n(gw + c0 + i, aw, n);
        if (gb) vstore_n(gb + c0 + i, ab, n);
      }
    }
  });
}

// ------------------------------------------------------------------------------------- group norm
static void group_norm(const float* x, const float* w, const float* b, int64_t N, int64_t C, int64_t HW,
                       int64_t G, float eps, float* out, float* mean, float* rstd, int act) {
  const int64_t Cg = C / G, blk = Cg * HW;
  par_range(N * G, blk * 3, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xb = x + t * blk;
      float* yb = out + t * blk;
      const float m = blk ? vec_sum(xb, blk) / (float)blk : 0.0f;
      const float var = blk ? vec_sqdev(xb, blk, m) / (float)blk : 0.0f;
      const float rs = 1.0f / __builtin_sqrtf(var + eps);
      mean[t] = m; rstd[t] = rs;
      const int64_t g = t % G;
      for (int64_t c = 0; c < Cg; c++) {
        const int64_t ch = g * Cg + c;
        // (x - mean)·(rstd·w) + b: centring first avoids the cancellation of x·a - mean·a
        const V vs = vset1(rs * (w ? w[ch] : 1.0f)), vh = vset1(b ? b[ch] : 0.0f), vm = vset1(m);
        if (act == 1)  // same vector SiLU as the unary kernel, so fused and unfused agree bit for bit
          map1(xb + c * HW, yb + c * HW, HW, [&](V v) { V y = vfma(vsub(v, vm), vs, vh); return vmul(y, vsigmoid(y)); });
        else
          map1(xb + c * HW, yb + c * HW, HW, [&](V v) { return vfma(vsub(v, vm), vs, vh); });
      }
    }
  });
}

static void group_norm_bwd(const float* x, const float* w, const float* mean, const float* rstd, const float* gy,
                           int64_t N, int64_t C, int64_t HW, int64_t G, float* gx, float* gw, float* gb) {
  const int64_t Cg = C / G, blk = Cg * HW;
  par_range(N * G, blk * 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xb = x + t * blk;
      const float* gb_ = gy + t * blk;
      float* db = gx + t * blk;
      const int64_t g = t % G;
      const float m = mean[t], rs = rstd[t];
      // Σ g·w and Σ g·w·xhat over the group, channel by channel (fixed order)
      float s1 = 0.0f, s2 = 0.0f;
      for (int64_t c = 0; c < Cg; c++) {
        const float wc = w ? w[g * Cg + c] : 1.0f;
        s1 += wc * vec_sum(gb_ + c * HW, HW);
        s2 += wc * vec_dot_centered(gb_ + c * HW, xb + c * HW, m, HW) * rs;
      }
      const float inv = 1.0f / (float)blk;
      const float a = s1 * inv, cc = s2 * inv;
      for (int64_t c = 0; c < Cg; c++) {
        const float wc = w ? w[g * Cg + c] : 1.0f;
        // gx = rs·(g·w - a - xhat·cc) = (rs·w)·g - rs·cc·rs·x + rs·(cc·rs·m - a)
        const V k1 = vset1(rs * wc), k2 = vset1(-rs * cc * rs), k3 = vset1(rs * (cc * rs * m - a));
        const float* gp = gb_ + c * HW;
        const float* xp = xb + c * HW;
        float* dp = db + c * HW;
        for (int64_t i = 0; i < HW; i += W) {
          const int n = (int)imin<int64_t>(W, HW - i);
          vstore_n(dp + i, vfma(vload_n(gp + i, n), k1, vfma(vload_n(xp + i, n), k2, k3)), n);
        }
      }
    }
  });
  if (!gw && !gb) return;
  par_range(C, N * HW * 2, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      const int64_t g = c / Cg;
      float aw = 0.0f, ab = 0.0f;
      for (int64_t n = 0; n < N; n++) {
        const float* gp = gy + (n * C + c) * HW;
        const float* xp = x + (n * C + c) * HW;
        const float m = mean[n * G + g], rs = rstd[n * G + g];
        aw += vec_dot_centered(gp, xp, m, HW) * rs;
        ab += vec_sum(gp, HW);
      }
      if (gw) gw[c] = aw;
      if (gb) gb[c] = ab;
    }
  });
}
