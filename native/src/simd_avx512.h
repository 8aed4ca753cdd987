// AVX-512 vector primitives (16 lanes). Included inside namespace vss::avx512 by isa_avx512.cc only.
// Every function is static inline inside the ISA namespace, so no symbol can leak to other paths.

#define VSS_ISA_NAME "avx512"
constexpr int W = 16;
typedef __m512 V;
typedef __mmask16 Mask;

static inline V vzero() { return _mm512_setzero_ps(); }
static inline V vset1(float a) { return _mm512_set1_ps(a); }
static inline V vload(const float* p) { return _mm512_loadu_ps(p); }
// even = p[0], p[2], …, p[2W−2]; odd = p[1], p[3], …, p[2W−1]
static inline void vdeinterleave2(const float* p, V& even, V& odd) {
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const V x = _mm512_loadu_ps(p), y = _mm512_loadu_ps(p + 16);
  even = _mm512_permutex2var_ps(x, ie, y);
  odd = _mm512_permutex2var_ps(x, io, y);
}
// lo = a0 b0 a1 b1 … (the first W of the interleaving), hi = the rest
static inline void vinterleave2(V a, V b, V& lo, V& hi) {
  const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  lo = _mm512_permutex2var_ps(a, il, b);
  hi = _mm512_permutex2var_ps(a, ih, b);
}
static inline V vloada(const float* p) { return _mm512_load_ps(p); }
// In-register W x W (16 x 16) transpose, used by the transposing packs instead of scalar scatters.
// unpack + shufps transpose the 4 x 4 blocks inside each 128-bit lane (u[4g + m], lane L: column 4L + m of
// rows 4g..4g+3); two rounds of 128-bit lane shuffles then gather lane L of u[m], u[4+m], u[8+m], u[12+m].
// (Four butterfly stages of vpermt2ps, 64 two-source permutes, were ~1.3x slower in the conv weight gradient.)
#define VSS_HAS_TRANSPOSE 1
VSS_INLINE void vtranspose(V r[16]) {
  V t[16], u[16];
  for (int i = 0; i < 16; i += 2) { t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]); t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); }
  for (int g = 0; g < 16; g += 4) {
    u[g + 0] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44); u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
    u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44); u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int m = 0; m < 4; m++) {
    const V a = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88), b = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);
    const V c = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88), d = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
    r[m] = _mm512_shuffle_f32x4(a, c, 0x88); r[8 + m] = _mm512_shuffle_f32x4(a, c, 0xDD);
    r[4 + m] = _mm512_shuffle_f32x4(b, d, 0x88); r[12 + m] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
}

static inline void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
VSS_INLINE __mmask16 tailmask(int n) { return (__mmask16)((n >= 16) ? 0xffff : ((1u << n) - 1)); }
VSS_INLINE V vload_n(const float* p, int n) { return _mm512_maskz_loadu_ps(tailmask(n), p); }
VSS_INLINE void vstore_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, tailmask(n), v); }
static inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
static inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
static inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
static inline V vprod_lo(V a, V b, V hi) { return _mm512_fmsub_ps(a, b, hi); }  // exact: a·b - fl(a·b)
static inline V vfnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
static inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }  // b when either is NaN
static inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
static inline V vsqrt(V a) { return _mm512_sqrt_ps(a); }
static inline V vabs(V a) { return _mm512_abs_ps(a); }
static inline V vneg(V a) { return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32((int)0x80000000))); }
static inline V vround(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline V vfloor(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
static inline Mask vlt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline Mask vle(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
static inline Mask vgt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline Mask vge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
static inline Mask veq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
static inline Mask vne(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
static inline Mask visnan(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
static inline Mask mand(Mask a, Mask b) { return (Mask)(a & b); }
static inline Mask mor(Mask a, Mask b) { return (Mask)(a | b); }
static inline Mask mnot(Mask a) { return (Mask)~a; }
static inline bool many(Mask a) { return a != 0; }
static inline V vsel(Mask m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }  // m ? a : b
static inline V vmaskone(Mask m) { return _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0f)); }  // 1.0 / 0.0
static inline float vhsum(V a) { return _mm512_reduce_add_ps(a); }
static inline float vhmax(V a) { return _mm512_reduce_max_ps(a); }
static inline float vhmin(V a) { return _mm512_reduce_min_ps(a); }
static inline V vcopysign(V mag, V sgn) {
  const __m512i s = _mm512_set1_epi32((int)0x80000000);
  return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(mag), _mm512_castps_si512(sgn), s, 0xd8));
}
// p * 2^n for integral n (any range: scalef handles overflow, underflow and subnormals).
static inline V vldexp(V p, V n) { return _mm512_scalef_ps(p, n); }
// x = m * 2^e with m in [1, 2), for finite positive x (subnormals included).
static inline void vfrexp(V x, V& m, V& e) {
  m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
  e = _mm512_getexp_ps(x);
}
VSS_INLINE V vload_f16_n(const uint16_t* p, int n) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tailmask(n), p));
}
VSS_INLINE V vload_bf16_n(const uint16_t* p, int n) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(tailmask(n), p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline V vload_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
static inline V vload_bf16(const uint16_t* p) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline void vstore_f16_n(uint16_t* p, V v, int n) {
  _mm256_mask_storeu_epi16(p, tailmask(n), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline void vstore_bf16_n(uint16_t* p, V v, int n) {
  __m512i u = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __m512i qnan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  r = _mm512_mask_mov_epi32(r, visnan(v), qnan);
  _mm256_mask_storeu_epi16(p, tailmask(n), _mm512_cvtepi32_epi16(r));
}

// ------------------------------------------------------------------ GEMM micro-kernel: 14 x 32
constexpr int MR = 14;
constexpr int NR = 32;
constexpr int KC = 384;       // depth of a packed block: B micro-panel 48 KiB... see gemm notes
constexpr int MC = 14 * 24;   // rows of a packed A block (336 x KC in L2)

// Zeroed accumulators, and C's rows on their way into the cache: the start of both micro-kernels.
// R: the rows computed (MR, or fewer for a short last panel; see ukernel).
template <int R>
VSS_INLINE void ukernel_start(__m512 (&c)[R][2], const float* C, int64_t ldc) {
#pragma GCC unroll 14
  for (int i = 0; i < R; i++) { c[i][0] = _mm512_setzero_ps(); c[i][1] = _mm512_setzero_ps(); }
  for (int i = 0; i < R; i++) _mm_prefetch((const char*)(C + i * ldc), _MM_HINT_T0);
}
// One row of the tail: alpha·acc + (beta·C + bias); Full: all NR columns (plain loads and stores).
template <bool Full>
VSS_INLINE void ukernel_store_row(__m512 c0, __m512 c1, float* r, float beta, __m512 va, __m512 vb, bool bias,
                                  __m512 bias0, __m512 bias1, __mmask16 m0, __mmask16 m1) {
  __m512 o0, o1;
  if (beta == 0.0f) {
    o0 = bias ? _mm512_fmadd_ps(c0, va, bias0) : _mm512_mul_ps(c0, va);
    o1 = bias ? _mm512_fmadd_ps(c1, va, bias1) : _mm512_mul_ps(c1, va);
  } else {
    __m512 old0 = Full ? _mm512_loadu_ps(r) : _mm512_maskz_loadu_ps(m0, r);
    __m512 old1 = Full ? _mm512_loadu_ps(r + 16) : _mm512_maskz_loadu_ps(m1, r + 16);
    if (beta != 1.0f) { old0 = _mm512_mul_ps(vb, old0); old1 = _mm512_mul_ps(vb, old1); }
    if (bias) { old0 = _mm512_add_ps(old0, bias0); old1 = _mm512_add_ps(old1, bias1); }
    o0 = _mm512_fmadd_ps(c0, va, old0);
    o1 = _mm512_fmadd_ps(c1, va, old1);
  }
  if (Full) { _mm512_storeu_ps(r, o0); _mm512_storeu_ps(r + 16, o1); }
  else { _mm512_mask_storeu_ps(r, m0, o0); _mm512_mask_storeu_ps(r + 16, m1, o1); }
}
// C[0:mr, 0:nr] = the UkTail of acc, the end of both micro-kernels.
template <int R>
VSS_INLINE void ukernel_store(__m512 (&c)[R][2], float* C, int64_t ldc, const UkTail* t, int mr, int nr) {
  const float beta = t->beta;
  const __m512 va = _mm512_set1_ps(t->alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = tailmask(nr), m1 = tailmask(nr - 16 > 0 ? nr - 16 : 0);
  const bool bias = t->bias != nullptr;
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, t->bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, t->bias + 16) : _mm512_setzero_ps();
  if (nr == NR) {
    _Pragma("GCC unroll 16") for (int i = 0; i < R; i++) {
      if (i >= mr) break;
      ukernel_store_row<true>(c[i][0], c[i][1], C + i * ldc, beta, va, vb, bias, bias0, bias1, m0, m1);
    }
  } else {
    _Pragma("GCC unroll 16") for (int i = 0; i < R; i++) {
      if (i >= mr) break;
      ukernel_store_row<false>(c[i][0], c[i][1], C + i * ldc, beta, va, vb, bias, bias0, bias1, m0, m1);
    }
  }
}


// acc = A~(R x kc) * B~(kc x NR); then C[0:mr, 0:nr] = the UkTail of acc (mr <= R <= MR).
// A~ is k-major with MR floats per k (the first R read); B~ is k-major with NR floats per k (64-byte aligned).
// Meanwhile asks for pf_lines (<= kc) cache lines from pf on, one per k step (see Prefetcher).
// Kept out of line: inlined into the GEMM driver's loops it ran 6 % slower (register pressure there).
template <int R>
__attribute__((noinline)) static void ukernel_t(int64_t kc, const float* __restrict A, const float* __restrict B,
                                                float* C, int64_t ldc, const UkTail* tail, int mr, int nr,
                                                const char* pf, int64_t pf_lines) {
  __m512 c[R][2];
  ukernel_start(c, C, ldc);
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; k++) {
    if (k < pf_lines) _mm_prefetch(pf + k * 64, _MM_HINT_T1);
    __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16);
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) {
      __m512 a = _mm512_set1_ps(A[i]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
    A += MR; B += NR;
  }
  ukernel_store(c, C, ldc, tail, mr, nr);
}

// A short last panel (M = 128 leaves 2 of 14 rows) runs a kernel of fewer rows, not 14 rows of zeros:
// 9 % of the multiply-adds of a 128-row weight gradient. The choice is made out of line, so the callers'
// loops keep one plain call to the 14-row kernel (with all three calls inlined there they ran 4-5 % slower).
__attribute__((noinline)) static void ukernel_short(int64_t kc, const float* A, const float* B, float* C,
                                                   int64_t ldc, const UkTail* tail, int mr, int nr, const char* pf,
                                                   int64_t pf_lines) {
  if (mr > 8) ukernel_t<MR>(kc, A, B, C, ldc, tail, mr, nr, pf, pf_lines);
  else if (mr > 4) ukernel_t<8>(kc, A, B, C, ldc, tail, mr, nr, pf, pf_lines);
  else ukernel_t<4>(kc, A, B, C, ldc, tail, mr, nr, pf, pf_lines);
}
static inline void ukernel(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, float alpha, float beta,
                           int mr, int nr, const float* bias = nullptr, const char* pf = nullptr,
                           int64_t pf_lines = 0) {
  const UkTail tail{alpha, beta, bias};
  if (__builtin_expect(mr == MR, 1)) ukernel_t<MR>(kc, A, B, C, ldc, &tail, mr, nr, pf, pf_lines);
  else ukernel_short(kc, A, B, C, ldc, &tail, mr, nr, pf, pf_lines);
}

#ifdef __AVX512BF16__
// bf16 compute (AVX512-BF16, an opt-in of gemm): operands rounded to bf16 while packing, k taken in pairs —
// each 32-bit element of a packed panel holds (k, k+1) as two bf16 — and VDPBF16PS adds both products of
// a pair to the f32 accumulators: twice the multiply-adds per instruction of the f32 kernel, f32 sums.
#define VSS_HAS_BF16_DOT 1
// lane r of the result = bf16(lo[r]) | bf16(hi[r]) << 16 (round to nearest even)
struct PairIndex {   // 16-bit lanes: 0, 16, 1, 17, … (interleaves the two halves)
  int16_t w[32];
  constexpr PairIndex() : w() {
    for (int r = 0; r < 16; r++) { w[2 * r] = (int16_t)r; w[2 * r + 1] = (int16_t)(16 + r); }
  }
};
static inline __m512i bf16_pairs(V lo, V hi) {
  static constexpr PairIndex idx{};
  // cvtne2ps puts bf16(lo) in the low 16 words, bf16(hi) in the high 16
  return _mm512_permutexvar_epi16(_mm512_loadu_si512(idx.w), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}
// 32 consecutive k of one row (lo = the first 16) as 16 pairs
static inline V bf16_pairs_of_run(V lo, V hi) { return _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo)); }

// Same contract as ukernel_t with A~, B~ packed as bf16 pairs: ceil(kc / 2) pair rows of MR / NR lanes.
static inline void ukernel_bf16_t(int64_t kc, const float* __restrict A, const float* __restrict B, float* C,
                                  int64_t ldc, const UkTail* tail, int mr, int nr) {
  __m512 c[MR][2];
  ukernel_start(c, C, ldc);
  const int32_t* Ap = reinterpret_cast<const int32_t*>(A);
  const int64_t kp = (kc + 1) / 2;
#pragma GCC unroll 2
  for (int64_t q = 0; q < kp; q++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(B), b1 = (__m512bh)_mm512_load_si512(B + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(Ap[i]);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], a, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], a, b1);
    }
    Ap += MR; B += NR;
  }
  ukernel_store(c, C, ldc, tail, mr, nr);
}
static inline void ukernel_bf16(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, float alpha,
                                float beta, int mr, int nr, const float* bias = nullptr) {
  const UkTail tail{alpha, beta, bias};
  ukernel_bf16_t(kc, A, B, C, ldc, &tail, mr, nr);
}
#endif

