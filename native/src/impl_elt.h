// Elementwise kernels: unary (+ backward), binary and where over strided views, strided copies and
// 16-bit conversions. Elementwise results never depend on how the work is split.

// Apply f to dense vectors: y[i] = f(x[i]); the tail uses a partial vector through the same f.
template <class F>
static inline void map1(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore(y + i, f(vload(x + i)));
  if (i < n) vstore_n(y + i, f(vload_n(x + i, (int)(n - i))), (int)(n - i));
}
template <class F>
static inline void map3(const float* a, const float* b, const float* c, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore(y + i, f(vload(a + i), vload(b + i), vload(c + i)));
  if (i < n) {
    int r = (int)(n - i);
    vstore_n(y + i, f(vload_n(a + i, r), vload_n(b + i, r), vload_n(c + i, r)), r);
  }
}
// Elementwise work is split in chunks of at least 16K floats; tiny calls never touch the pool.
template <class F>
static inline void par_elems(int64_t n, int64_t cost, F f) {
  if (n <= 16384 / cost) { f((int64_t)0, n); return; }
  par_range(n, cost, f);  // lanes are independent, so any split gives the same values
}

static inline float scalar_sin(float x) { return (float)__builtin_sin((double)x); }
static inline float scalar_cos(float x) { return (float)__builtin_cos((double)x); }
static inline float scalar_pow(float x, double a) { return (float)__builtin_pow((double)x, a); }

template <class F>
static inline V apply_scalar(V x, F f) {
  alignas(64) float t[W];
  vstore(t, x);
  for (int i = 0; i < W; i++) t[i] = f(t[i]);
  return vload(t);
}

static void unary(const EltArgs& e) {
  const float* x = e.x;
  float* y = e.out;
  const float al = (float)e.alpha, be = (float)e.beta;
  const V one = vset1(1.0f), zero = vzero();
  auto run = [&](auto f, int64_t cost) {
    par_elems(e.n, cost, [&](int64_t b, int64_t end) { map1(x + b, y + b, end - b, f); });
  };
  switch (e.op) {
    case U_NEG: run([](V v) { return vneg(v); }, 1); break;
    case U_EXP: run([](V v) { return vexp(v); }, 4); break;
    case U_LOG: run([](V v) { return vlog(v); }, 4); break;
    case U_SQRT: run([](V v) { return vsqrt(v); }, 2); break;
    case U_RSQRT: run([&](V v) { return vdiv(one, vsqrt(v)); }, 2); break;
    case U_ABS: run([](V v) { return vabs(v); }, 1); break;
    case U_SIN: run([](V v) { return apply_scalar(v, scalar_sin); }, 16); break;
    case U_COS: run([](V v) { return apply_scalar(v, scalar_cos); }, 16); break;
    case U_TANH: run([](V v) { return vtanh(v); }, 4); break;
    case U_SIGMOID: run([](V v) { return vsigmoid(v); }, 4); break;
    // v <= 0 ? 0 : v: keeps NaN and turns -0 into +0 (as PyTorch and the JS reference)
    case U_RELU: run([&](V v) { return vsel(vle(v, zero), zero, v); }, 1); break;
    case U_GELU: run([](V v) { return vmul(v, vnormcdf(v)); }, 8); break;
    case U_GELU_TANH:  // 0.5x(1 + tanh(u)) = x·σ(2u): no cancellation for negative x
      run([](V v) {
        V u = vmul(vset1(2.0f * 0.7978845608028654f), vfma(vmul(vset1(0.044715f), vmul(v, v)), v, v));
        return vmul(v, vsigmoid(u));
      }, 6);
      break;
    case U_QUICK_GELU: run([](V v) { return vmul(v, vsigmoid(vmul(vset1(1.702f), v))); }, 4); break;
    case U_SILU: run([](V v) { return vmul(v, vsigmoid(v)); }, 4); break;
    case U_ERF: run([](V v) { return verf(v); }, 8); break;
    case U_SQUARE: run([](V v) { return vmul(v, v); }, 1); break;
    case U_RECIPROCAL: run([&](V v) { return vdiv(one, v); }, 1); break;
    case U_POW_SCALAR:
      if (al == 2.0f) run([](V v) { return vmul(v, v); }, 1);
      else if (al == 1.0f) run([](V v) { return v; }, 1);
      else if (al == -1.0f) run([&](V v) { return vdiv(one, v); }, 1);
      else {
        const double a = e.alpha;
        run([a](V v) { return apply_scalar(v, [a](float t) { return scalar_pow(t, a); }); }, 16);
      }
      break;
    case U_CLAMP: {
      const V lo = vset1(al), hi = vset1(be);
      // min(max(x, lo), hi) with NaN propagating (Math.max/min, torch.clamp)
      run([&](V v) { V t = vsel(vlt(v, lo), lo, v); return vsel(vgt(t, hi), hi, t); }, 1);
      break;
    }
    case U_AFFINE: {
      const V a = vset1(al), b = vset1(be);
      run([&](V v) { return vfma(v, a, b); }, 1);
      break;
    }
    default: break;
  }
}

static void unary_bwd(const EltArgs& e) {
  const float al = (float)e.alpha, be = (float)e.beta;
  const V one = vset1(1.0f), zero = vzero();
  auto run = [&](auto f, int64_t cost) {  // f(x, y, gy)
    par_elems(e.n, cost, [&](int64_t b, int64_t end) {
      map3(e.x ? e.x + b : e.gy + b, e.y ? e.y + b : e.gy + b, e.gy + b, e.out + b, end - b, f);
    });
  };
  switch (e.op) {
    case U_NEG: run([](V, V, V g) { return vneg(g); }, 1); break;
    case U_EXP: run([](V, V y, V g) { return vmul(g, y); }, 1); break;
    case U_LOG: run([](V x, V, V g) { return vdiv(g, x); }, 1); break;
    case U_SQRT: run([](V, V y, V g) { return vdiv(g, vadd(y, y)); }, 1); break;
    case U_RSQRT: run([](V, V y, V g) { return vmul(vmul(vset1(-0.5f), g), vmul(y, vmul(y, y))); }, 1); break;
    case U_ABS:
      run([&](V x, V, V g) { return vsel(vgt(x, zero), g, vsel(vlt(x, zero), vneg(g), zero)); }, 1);
      break;
    case U_SIN: {
      auto f = [](V x, V, V g) { return vmul(g, apply_scalar(x, scalar_cos)); };
      run(f, 16);
      break;
    }
    case U_COS: {
      auto f = [](V x, V, V g) { return vneg(vmul(g, apply_scalar(x, scalar_sin))); };
      run(f, 16);
      break;
    }
    case U_TANH: run([&](V, V y, V g) { return vmul(g, vfnma(y, y, one)); }, 1); break;
    case U_SIGMOID: run([&](V, V y, V g) { return vmul(g, vmul(y, vsub(one, y))); }, 1); break;
    case U_RELU: run([&](V x, V, V g) { return vsel(vgt(x, zero), g, zero); }, 1); break;
    case U_GELU:
      run([](V x, V, V g) {
        V pdf = vmul(vset1(0.3989422804014327f), vexp_negsq(vabs(x), 0.5f));
        return vmul(g, vfma(x, pdf, vnormcdf(x)));
      }, 10);
      break;
    case U_GELU_TANH:
      run([&](V x, V, V g) {
        const V k = vset1(0.7978845608028654f), c = vset1(0.044715f);
        V x2 = vmul(x, x);
        V u2 = vmul(vset1(2.0f), vmul(k, vfma(vmul(c, x2), x, x)));
        V s = vsigmoid(u2);                                          // (1 + tanh u)/2
        V du2 = vmul(vset1(2.0f), vmul(k, vfma(vmul(vset1(3.0f), c), x2, one)));
        V ss = vmul(s, vsub(one, s));   // 0 in both tails, where du2 may be Inf: keep 0·Inf out
        V r = vsel(veq(ss, zero), s, vfma(vmul(x, ss), du2, s));
        return vmul(g, vsel(veq(vabs(x), vset1(__builtin_inff())), vset1(__builtin_nanf("")), r));  // ±Inf: NaN (0·Inf)
      }, 8);
      break;
    case U_QUICK_GELU:
      run([&](V x, V, V g) {
        const V k = vset1(1.702f);
        V s = vsigmoid(vmul(k, x));
        return vmul(g, vfma(vmul(k, x), vmul(s, vsub(one, s)), s));
      }, 6);
      break;
    case U_SILU:
      run([&](V x, V, V g) {
        V s = vsigmoid(x);
        return vmul(g, vmul(s, vfma(x, vsub(one, s), one)));
      }, 6);
      break;
    case U_ERF:
      run([](V x, V, V g) { return vmul(g, vmul(vset1(1.1283791670955126f), vexp_negsq(vabs(x)))); }, 6);
      break;
    case U_SQUARE: run([](V x, V, V g) { return vmul(g, vadd(x, x)); }, 1); break;
    case U_RECIPROCAL: run([](V, V y, V g) { return vneg(vmul(g, vmul(y, y))); }, 1); break;
    case U_POW_SCALAR: {
      const double a = e.alpha;
      if (al == 0.0f) run([&](V, V, V) { return zero; }, 1);  // x^0 has gradient 0, even at x = 0
      else if (al == 2.0f) run([](V x, V, V g) { return vmul(g, vadd(x, x)); }, 1);
      else if (al == 1.0f) run([](V, V, V g) { return g; }, 1);
      else {
        const float af = al;
        run([a, af](V x, V, V g) {
          return vmul(g, vmul(vset1(af), apply_scalar(x, [a](float t) { return scalar_pow(t, a - 1.0); })));
        }, 16);
      }
      break;
    }
    case U_CLAMP: {
      const V lo = vset1(al), hi = vset1(be);
      run([&](V x, V, V g) { return vsel(mand(vge(x, lo), vle(x, hi)), g, zero); }, 1);
      break;
    }
    case U_AFFINE: {
      const V a = vset1(al);
      run([&](V, V, V g) { return vmul(g, a); }, 1);
      break;
    }
    default: break;
  }
}

// ------------------------------------------------------------------------------------- strided nd
// Iterate the outer dims (all but the last) of a coalesced shape from row index r0: offsets of up to
// three operands follow the multi-index.
struct NdRows {
  int rank;           // number of outer dims
  int64_t shape[8];
  int64_t idx[8];
  int64_t off[3];
  int64_t st[3][8];
  int nops;
  void init(const NdArgs& a, int nops_, int64_t r0) {
    nops = nops_;
    rank = a.rank - 1;
    for (int d = 0; d < rank; d++) shape[d] = a.shape[d];
    for (int k = 0; k < nops; k++) {
      off[k] = 0;
      for (int d = 0; d < rank; d++) st[k][d] = a.st[k][d];
    }
    for (int d = rank - 1; d >= 0; d--) {
      idx[d] = r0 % shape[d];
      r0 /= shape[d];
      for (int k = 0; k < nops; k++) off[k] += idx[d] * st[k][d];
    }
  }
  void next() {
    for (int d = rank - 1; d >= 0; d--) {
      for (int k = 0; k < nops; k++) off[k] += st[k][d];
      if (++idx[d] < shape[d]) return;
      for (int k = 0; k < nops; k++) off[k] -= st[k][d] * shape[d];
      idx[d] = 0;
    }
  }
};

// One row of length n: operand k starts at p[k] with stride s[k] (0, 1 or anything).
template <int NOPS, class F>
static inline void nd_row(const float* const* p, const int64_t* s, float* y, int64_t n, F f) {
  bool contig = true;
  for (int k = 0; k < NOPS; k++) contig = contig && (s[k] == 0 || s[k] == 1);
  if (contig) {
    V bc[NOPS];
    for (int k = 0; k < NOPS; k++) bc[k] = s[k] == 0 ? vset1(p[k][0]) : vzero();
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      V v[NOPS];
      for (int k = 0; k < NOPS; k++) v[k] = s[k] ? vload(p[k] + i) : bc[k];
      vstore(y + i, f(v));
    }
    if (i < n) {
      int r = (int)(n - i);
      V v[NOPS];
      for (int k = 0; k < NOPS; k++) v[k] = s[k] ? vload_n(p[k] + i, r) : bc[k];
      vstore_n(y + i, f(v), r);
    }
    return;
  }
  alignas(64) float t[NOPS][W];
  for (int64_t i = 0; i < n; i += W) {
    int r = (int)imin<int64_t>(W, n - i);
    V v[NOPS];
    for (int k = 0; k < NOPS; k++) {
      for (int j = 0; j < r; j++) t[k][j] = p[k][(i + j) * s[k]];
      v[k] = vload_n(t[k], r);
    }
    vstore_n(y + i, f(v), r);
  }
}

template <int NOPS, class F>
static void nd_apply(const NdArgs& a, int64_t cost, F f) {
  int64_t rows = 1;
  for (int d = 0; d + 1 < a.rank; d++) rows *= a.shape[d];
  const int64_t n = a.rank ? a.shape[a.rank - 1] : 1;
  int64_t s[NOPS];
  for (int k = 0; k < NOPS; k++) s[k] = a.rank ? a.st[k][a.rank - 1] : 0;
  if (rows == 1) {
    par_elems(n, cost, [&](int64_t b, int64_t e) {
      const float* p[NOPS];
      for (int k = 0; k < NOPS; k++) p[k] = a.in[k] + b * s[k];
      nd_row<NOPS>(p, s, a.out + b, e - b, f);
    });
    return;
  }
  auto rowsfn = [&](int64_t r0, int64_t r1) {
    NdRows it;
    it.init(a, NOPS, r0);
    for (int64_t r = r0; r < r1; r++) {
      const float* p[NOPS];
      for (int k = 0; k < NOPS; k++) p[k] = a.in[k] + it.off[k];
      nd_row<NOPS>(p, s, a.out + r * n, n, f);
      it.next();
    }
  };
  if (rows * n * cost <= 16384) rowsfn(0, rows);
  else par_range(rows, n * cost, rowsfn);
}

static void binary(const NdArgs& a) {
  const V zero = vzero();
  (void)zero;
  switch (a.op) {
    case B_ADD: nd_apply<2>(a, 1, [](const V* v) { return vadd(v[0], v[1]); }); break;
    case B_SUB: nd_apply<2>(a, 1, [](const V* v) { return vsub(v[0], v[1]); }); break;
    case B_MUL: nd_apply<2>(a, 1, [](const V* v) { return vmul(v[0], v[1]); }); break;
    case B_DIV: nd_apply<2>(a, 1, [](const V* v) { return vdiv(v[0], v[1]); }); break;
    case B_POW:
      nd_apply<2>(a, 16, [](const V* v) {
        alignas(64) float x[W], y[W];
        vstore(x, v[0]); vstore(y, v[1]);
        for (int i = 0; i < W; i++) x[i] = (float)__builtin_pow((double)x[i], (double)y[i]);
        return vload(x);
      });
      break;
    case B_MAXIMUM:
      nd_apply<2>(a, 1, [](const V* v) { return vsel(visnan(v[0]), v[0], vsel(vgt(v[0], v[1]), v[0], v[1])); });
      break;
    case B_MINIMUM:
      nd_apply<2>(a, 1, [](const V* v) { return vsel(visnan(v[0]), v[0], vsel(vlt(v[0], v[1]), v[0], v[1])); });
      break;
    case B_EQ: nd_apply<2>(a, 1, [](const V* v) { return vmaskone(veq(v[0], v[1])); }); break;
    case B_NE: nd_apply<2>(a, 1, [](const V* v) { return vmaskone(vne(v[0], v[1])); }); break;
    case B_LT: nd_apply<2>(a, 1, [](const V* v) { return vmaskone(vlt(v[0], v[1])); }); break;
    case B_LE: nd_apply<2>(a, 1, [](const V* v) { return vmaskone(vle(v[0], v[1])); }); break;
    case B_GT: nd_apply<2>(a, 1, [](const V* v) { return vmaskone(vgt(v[0], v[1])); }); break;
    case B_GE: nd_apply<2>(a, 1, [](const V* v) { return vmaskone(vge(v[0], v[1])); }); break;
    default: break;
  }
}

static void where(const NdArgs& a) {
  nd_apply<3>(a, 1, [](const V* v) { return vsel(vne(v[0], vzero()), v[1], v[2]); });
}

// ------------------------------------------------------------------------------------- copies
static inline void copy_row(const void* src, int dt, int64_t off, int64_t stride, int64_t n, float* y) {
  if (stride == 1) {
    int64_t i = 0;
    if (dt == DT_F32) {
      const float* s = static_cast<const float*>(src) + off;
      for (; i + W <= n; i += W) vstore(y + i, vload(s + i));
    } else if (dt == DT_F16) {
      const uint16_t* s = static_cast<const uint16_t*>(src) + off;
      for (; i + W <= n; i += W) vstore(y + i, vload_f16(s + i));
    } else {
      const uint16_t* s = static_cast<const uint16_t*>(src) + off;
      for (; i + W <= n; i += W) vstore(y + i, vload_bf16(s + i));
    }
    if (i < n) vstore_n(y + i, vload_dt_n(src, dt, off + i, (int)(n - i)), (int)(n - i));
  } else if (stride == 0) {
    const V v = vset1(load_as_f32(src, dt, off));
    int64_t i = 0;
    for (; i + W <= n; i += W) vstore(y + i, v);
    if (i < n) vstore_n(y + i, v, (int)(n - i));
  } else {
    if (dt == DT_F32) {
      const float* s = static_cast<const float*>(src) + off;
      for (int64_t i = 0; i < n; i++) y[i] = s[i * stride];
    } else {
      for (int64_t i = 0; i < n; i++) y[i] = load_as_f32(src, dt, off + i * stride);
    }
  }
}

static void strided_copy(const void* src, int dt, int rank, const int64_t* shape, const int64_t* strides, float* out) {
  NdArgs a;
  a.rank = rank;
  for (int d = 0; d < rank; d++) { a.shape[d] = shape[d]; a.st[0][d] = strides[d]; }
  const int64_t n = rank ? shape[rank - 1] : 1;
  const int64_t s = rank ? strides[rank - 1] : 0;
  int64_t rows = 1;
  for (int d = 0; d + 1 < rank; d++) rows *= shape[d];
  if (rows == 1) {
    par_elems(n, 1, [&](int64_t b, int64_t e) { copy_row(src, dt, b * s, s, e - b, out + b); });
    return;
  }
  auto rowsfn = [&](int64_t r0, int64_t r1) {
    NdRows it;
    it.init(a, 1, r0);
    for (int64_t r = r0; r < r1; r++) {
      copy_row(src, dt, it.off[0], s, n, out + r * n);
      it.next();
    }
  };
  if (rows * n <= 16384) rowsfn(0, rows);
  else par_range(rows, n, rowsfn);
}

static void widen(const uint16_t* src, int dt, int64_t n, float* out) {
  par_elems(n, 1, [&](int64_t b, int64_t e) { copy_row(src, dt, b, 1, e - b, out + b); });
}

static void narrow(const float* src, int dt, int64_t n, uint16_t* out) {
  par_elems(n, 1, [&](int64_t b, int64_t e) {
    int64_t i = b;
    if (dt == DT_F16) {
      for (; i < e; i += W) vstore_f16_n(out + i, vload_n(src + i, (int)imin<int64_t>(W, e - i)), (int)imin<int64_t>(W, e - i));
    } else {
      for (; i < e; i += W) vstore_bf16_n(out + i, vload_n(src + i, (int)imin<int64_t>(W, e - i)), (int)imin<int64_t>(W, e - i));
    }
  });
}
