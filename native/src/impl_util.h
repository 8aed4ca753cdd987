// Small ISA-namespace utilities shared by the kernel implementations. Included inside the ISA namespace
// (after simd_*.h). No std:: templates here: each ISA file must own every out-of-line symbol it emits.

template <class T> static inline T imin(T a, T b) { return a < b ? a : b; }
template <class T> static inline T imax(T a, T b) { return a > b ? a : b; }
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// parallel_for over a lambda; the trampoline lives in this namespace so each ISA has its own.
template <class F> static inline void par_for(int64_t ntasks, F& f) {
  parallel_for(ntasks, [](void* ctx, int64_t t, int tid) { (*static_cast<F*>(ctx))(t, tid); }, &f);
}
template <class F> static inline void par_for(int64_t ntasks, F&& f) { par_for(ntasks, f); }

// Split [0, n) into chunks for parallel work: returns the chunk size (at least `grain`), giving about
// 4 chunks per thread when there is enough work, a single chunk when there is too little.
static inline int64_t chunk_size(int64_t n, int64_t grain) {
  int nt = num_threads();
  if (nt <= 1 || n <= grain) return n > 0 ? n : 1;
  int64_t c = ceil_div(n, 4 * (int64_t)nt);
  return imax(c, grain);
}
// Run f(begin, end) over [0, n) in chunks; costPerItem scales the grain (~16K cheap operations/chunk).
template <class F> static inline void par_range(int64_t n, int64_t costPerItem, F&& f) {
  if (n <= 0) return;
  int64_t grain = imax<int64_t>(1, (int64_t)16384 / imax<int64_t>(1, costPerItem));
  int64_t cs = chunk_size(n, grain);
  int64_t nchunks = ceil_div(n, cs);
  if (nchunks == 1) { f((int64_t)0, n); return; }
  auto body = [&](int64_t t, int) { int64_t b = t * cs; f(b, imin(n, b + cs)); };
  par_for(nchunks, body);
}

// Lane indices (for tail masks built by comparison).
alignas(64) static const float kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static inline float load_as_f32(const void* p, int dt, int64_t i) {
  if (dt == DT_F32) return static_cast<const float*>(p)[i];
  uint16_t h = static_cast<const uint16_t*>(p)[i];
  return dt == DT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}
// n (<= W) elements of any dtype as a vector, zeros beyond n.
VSS_INLINE V vload_dt_n(const void* p, int dt, int64_t i, int n) {
  if (dt == DT_F32) return vload_n(static_cast<const float*>(p) + i, n);
  if (dt == DT_F16) return vload_f16_n(static_cast<const uint16_t*>(p) + i, n);
  return vload_bf16_n(static_cast<const uint16_t*>(p) + i, n);
}

// dst[d][l] = src[l][d] for l < L and 0 for L <= l < Lpad, d < n (src rows ld apart, dst rows ldd apart).
// W x W blocks go through registers where the path has a transpose: element by element, the gathers from
// rows far apart took 40 % of the short-sequence attention backward.
static inline void transpose_padded(const float* src, int64_t ld, int64_t L, int64_t n, float* dst, int64_t ldd,
                                    int64_t Lpad) {
  int64_t dfast = 0;
#ifdef VSS_HAS_TRANSPOSE
  dfast = n / W * W;
  for (int64_t l0 = 0; l0 < Lpad; l0 += W) {
    const int m = (int)imin<int64_t>(W, Lpad - l0);
    for (int64_t d0 = 0; d0 < dfast; d0 += W) {
      V v[W];
      for (int i = 0; i < W; i++) v[i] = l0 + i < L ? vload(src + (l0 + i) * ld + d0) : vzero();
      vtranspose(v);
      if (m == W) for (int t = 0; t < W; t++) vstore(dst + (d0 + t) * ldd + l0, v[t]);
      else for (int t = 0; t < W; t++) vstore_n(dst + (d0 + t) * ldd + l0, v[t], m);   // only a ragged last block
    }
  }
#endif
  for (int64_t d = dfast; d < n; d++) {
    for (int64_t l = 0; l < L; l++) dst[d * ldd + l] = src[l * ld + d];
    for (int64_t l = L; l < Lpad; l++) dst[d * ldd + l] = 0.0f;
  }
}
