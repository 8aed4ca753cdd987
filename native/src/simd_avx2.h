// AVX2 + FMA + F16C vector primitives (8 lanes). Included inside namespace vss::avx2 by isa_avx2.cc only.

#define VSS_ISA_NAME "avx2"
constexpr int W = 8;
typedef __m256 V;
typedef __m256 Mask;   // all-ones / all-zeros lanes

static const int32_t kTailTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
VSS_INLINE __m256i tailmask(int n) {
  n = n < 0 ? 0 : (n > 8 ? 8 : n);
  return _mm256_loadu_si256((const __m256i*)(kTailTable + 8 - n));
}
static inline V vzero() { return _mm256_setzero_ps(); }
// In-register W x W transpose (used by the transposing GEMM packs instead of scalar scatters).
#define VSS_HAS_TRANSPOSE 1
VSS_INLINE void vtranspose(V r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
static inline V vset1(float a) { return _mm256_set1_ps(a); }
static inline V vload(const float* p) { return _mm256_loadu_ps(p); }
static inline V vloada(const float* p) { return _mm256_load_ps(p); }
static inline void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
VSS_INLINE V vload_n(const float* p, int n) {
  if (n >= 8) return _mm256_loadu_ps(p);
  return _mm256_maskload_ps(p, tailmask(n));
}
VSS_INLINE void vstore_n(float* p, V v, int n) {
  if (n >= 8) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, tailmask(n), v);
}
static inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
// even = p[0], p[2], …, p[2W−2]; odd = p[1], p[3], …, p[2W−1]
static inline void vdeinterleave2(const float* p, V& even, V& odd) {
  const V x = _mm256_loadu_ps(p), y = _mm256_loadu_ps(p + 8);
  const V e = _mm256_shuffle_ps(x, y, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(x, y, _MM_SHUFFLE(3, 1, 3, 1));
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
}
// lo = a0 b0 a1 b1 … (the first W of the interleaving), hi = the rest
static inline void vinterleave2(V a, V b, V& lo, V& hi) {
  const V u = _mm256_unpacklo_ps(a, b), v = _mm256_unpackhi_ps(a, b);
  lo = _mm256_permute2f128_ps(u, v, 0x20);
  hi = _mm256_permute2f128_ps(u, v, 0x31);
}
static inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
static inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline V vprod_lo(V a, V b, V hi) { return _mm256_fmsub_ps(a, b, hi); }  // exact: a·b - fl(a·b)
static inline V vfnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
static inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
static inline V vsqrt(V a) { return _mm256_sqrt_ps(a); }
static inline V vabs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline V vneg(V a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
static inline V vround(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline V vfloor(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
static inline Mask vlt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline Mask vle(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
static inline Mask vgt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline Mask vge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
static inline Mask veq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
static inline Mask vne(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
static inline Mask visnan(V a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
static inline Mask mand(Mask a, Mask b) { return _mm256_and_ps(a, b); }
static inline Mask mor(Mask a, Mask b) { return _mm256_or_ps(a, b); }
static inline Mask mnot(Mask a) { return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
static inline bool many(Mask a) { return _mm256_movemask_ps(a) != 0; }
static inline V vsel(Mask m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
static inline V vmaskone(Mask m) { return _mm256_and_ps(m, _mm256_set1_ps(1.0f)); }
static inline float vhsum(V a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float vhmax(V a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float vhmin(V a) {
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  s = _mm_min_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline V vcopysign(V mag, V sgn) {
  const V s = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sgn));
}
static inline V vpow2i(__m256i n) {  // 2^n for n in [-126, 127]
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}
static inline V vldexp(V p, V n) {
  __m256i ni = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(n, _mm256_set1_ps(254.0f)), _mm256_set1_ps(-252.0f)));
  __m256i h = _mm256_srai_epi32(ni, 1);  // two steps keep each factor a normal number
  return _mm256_mul_ps(_mm256_mul_ps(p, vpow2i(h)), vpow2i(_mm256_sub_epi32(ni, h)));
}
static inline void vfrexp(V x, V& m, V& e) {
  const V tiny = _mm256_set1_ps(1.17549435e-38f);
  V sub = _mm256_cmp_ps(x, tiny, _CMP_LT_OQ);
  x = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(8388608.0f)), sub);
  __m256i u = _mm256_castps_si256(x);
  __m256i ei = _mm256_sub_epi32(_mm256_srli_epi32(u, 23), _mm256_set1_epi32(127));
  e = _mm256_sub_ps(_mm256_cvtepi32_ps(ei), _mm256_and_ps(sub, _mm256_set1_ps(23.0f)));
  m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffff)),
                                          _mm256_set1_epi32(0x3f800000)));
}
VSS_INLINE __m128i load_u16_n(const uint16_t* p, int n) {
  if (n >= 8) return _mm_loadu_si128((const __m128i*)p);
  alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n; i++) t[i] = p[i];
  return _mm_load_si128((const __m128i*)t);
}
VSS_INLINE V vload_f16_n(const uint16_t* p, int n) { return _mm256_cvtph_ps(load_u16_n(p, n)); }
VSS_INLINE V vload_bf16_n(const uint16_t* p, int n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load_u16_n(p, n)), 16));
}
static inline V vload_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
static inline V vload_bf16(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
static inline void store_u16_n(uint16_t* p, __m128i v, int n) {
  if (n >= 8) { _mm_storeu_si128((__m128i*)p, v); return; }
  alignas(16) uint16_t t[8];
  _mm_store_si128((__m128i*)t, v);
  for (int i = 0; i < n; i++) p[i] = t[i];
}
static inline void vstore_f16_n(uint16_t* p, V v, int n) {
  store_u16_n(p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), n);
}
static inline void vstore_bf16_n(uint16_t* p, V v, int n) {
  __m256i u = _mm256_castps_si256(v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(qnan), visnan(v)));
  // pack the low 16 bits of each 32-bit lane (values < 65536, so unsigned saturation is exact)
  __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
  store_u16_n(p, _mm_packus_epi32(lo, hi), n);
}

// ------------------------------------------------------------------ GEMM micro-kernel: 6 x 16
constexpr int MR = 6;
constexpr int NR = 16;
constexpr int KC = 256;
constexpr int MC = 6 * 40;

// One row of the tail: alpha·acc + (beta·C + bias); Full: all NR columns, else n0 + n1 of them.
// Always inlined: as a lambda GCC kept it out of line, a call per row.
template <bool Full>
VSS_INLINE void ukernel_store_row(__m256 c0, __m256 c1, float* r, float beta, __m256 va, __m256 vb, bool bias,
                                  __m256 bias0, __m256 bias1, int n0, int n1) {
  __m256 o0, o1;
  if (beta == 0.0f) {
    o0 = bias ? _mm256_fmadd_ps(c0, va, bias0) : _mm256_mul_ps(c0, va);
    o1 = bias ? _mm256_fmadd_ps(c1, va, bias1) : _mm256_mul_ps(c1, va);
  } else {
    __m256 old0 = Full ? _mm256_loadu_ps(r) : vload_n(r, n0);
    __m256 old1 = Full ? _mm256_loadu_ps(r + 8) : vload_n(r + 8, n1);
    if (beta != 1.0f) { old0 = _mm256_mul_ps(vb, old0); old1 = _mm256_mul_ps(vb, old1); }
    if (bias) { old0 = _mm256_add_ps(old0, bias0); old1 = _mm256_add_ps(old1, bias1); }
    o0 = _mm256_fmadd_ps(c0, va, old0);
    o1 = _mm256_fmadd_ps(c1, va, old1);
  }
  if (Full) { _mm256_storeu_ps(r, o0); _mm256_storeu_ps(r + 8, o1); }
  else { vstore_n(r, o0, n0); if (n1 > 0) vstore_n(r + 8, o1, n1); }
}

// acc = A~(MR x kc) * B~(kc x NR); then C[0:mr, 0:nr] = the UkTail of acc.
static inline void ukernel_t(int64_t kc, const float* __restrict A, const float* __restrict B, float* C,
                             int64_t ldc, const UkTail* t, int mr, int nr) {
  __m256 c[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) { c[i][0] = _mm256_setzero_ps(); c[i][1] = _mm256_setzero_ps(); }
  for (int i = 0; i < MR; i++) _mm_prefetch((const char*)(C + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      __m256 a = _mm256_broadcast_ss(A + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
    A += MR; B += NR;
  }
  const float beta = t->beta;
  const __m256 va = _mm256_set1_ps(t->alpha), vb = _mm256_set1_ps(beta);
  const int n0 = nr < 8 ? nr : 8, n1 = nr - 8 > 0 ? nr - 8 : 0;
  const bool bias = t->bias != nullptr;
  const __m256 bias0 = bias ? vload_n(t->bias, n0) : _mm256_setzero_ps();
  const __m256 bias1 = bias && n1 > 0 ? vload_n(t->bias + 8, n1) : _mm256_setzero_ps();
  if (nr == NR) {
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {
      if (i >= mr) break;
      ukernel_store_row<true>(c[i][0], c[i][1], C + i * ldc, beta, va, vb, bias, bias0, bias1, n0, n1);
    }
  } else {
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {
      if (i >= mr) break;
      ukernel_store_row<false>(c[i][0], c[i][1], C + i * ldc, beta, va, vb, bias, bias0, bias1, n0, n1);
    }
  }
}

static inline void ukernel(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, float alpha, float beta,
                           int mr, int nr, const float* bias = nullptr, const char* /*pf: AVX-512 only*/ = nullptr,
                           int64_t = 0) {
  const UkTail tail{alpha, beta, bias};
  ukernel_t(kc, A, B, C, ldc, &tail, mr, nr);
}
