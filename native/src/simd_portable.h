// Portable vector primitives (4 lanes) on GCC/Clang vector extensions: SSE2 on any x86-64, NEON on
// arm64, scalar code elsewhere. Included inside namespace vss::portable by isa_portable.cc only.

#define VSS_ISA_NAME "portable"
constexpr int W = 4;
typedef float V __attribute__((vector_size(16)));
typedef int32_t VI __attribute__((vector_size(16)));
typedef VI Mask;

static inline V vzero() { return V{0.0f, 0.0f, 0.0f, 0.0f}; }
static inline V vset1(float a) { return V{a, a, a, a}; }
static inline V vload(const float* p) { V v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline V vloada(const float* p) { return vload(p); }
static inline void vstore(float* p, V v) { __builtin_memcpy(p, &v, sizeof v); }
VSS_INLINE V vload_n(const float* p, int n) {
  if (n >= W) return vload(p);
  V v = vzero();
  for (int i = 0; i < n; i++) v[i] = p[i];
  return v;
}
VSS_INLINE void vstore_n(float* p, V v, int n) {
  if (n >= W) { vstore(p, v); return; }
  for (int i = 0; i < n; i++) p[i] = v[i];
}
static inline V vadd(V a, V b) { return a + b; }
static inline V vsub(V a, V b) { return a - b; }
// even = p[0], p[2], …, p[2W−2]; odd = p[1], p[3], …, p[2W−1]
static inline void vdeinterleave2(const float* p, V& even, V& odd) {
  for (int i = 0; i < W; i++) { even[i] = p[2 * i]; odd[i] = p[2 * i + 1]; }
}
// lo = a0 b0 a1 b1 … (the first W of the interleaving), hi = the rest
static inline void vinterleave2(V a, V b, V& lo, V& hi) {
  for (int i = 0; i < W / 2; i++) { lo[2 * i] = a[i]; lo[2 * i + 1] = b[i]; hi[2 * i] = a[W / 2 + i]; hi[2 * i + 1] = b[W / 2 + i]; }
}
static inline V vmul(V a, V b) { return a * b; }
static inline V vdiv(V a, V b) { return a / b; }
static inline V vfma(V a, V b, V c) { return a * b + c; }   // contracted to FMA where the target has it
static inline V vfnma(V a, V b, V c) { return c - a * b; }
static inline V vsel(Mask m, V a, V b) { return m ? a : b; }
// Exact low part of a·b given hi = fl(a·b): one fused op on arm64 (spelled out: written as a*b - hi the
// compiler reuses the rounded product and gets 0), Dekker's product from 12-bit halves elsewhere.
static inline V vprod_lo(V a, V b, V hi) {
#if defined(__aarch64__)
  return -(V)vfmsq_f32((float32x4_t)hi, (float32x4_t)a, (float32x4_t)b);   // -(hi - a·b), fused
#else
  const V k = V{4097.0f, 4097.0f, 4097.0f, 4097.0f};
  const V ca = k * a, cb = k * b;
  const V ah = ca - (ca - a), al = a - ah, bh = cb - (cb - b), bl = b - bh;
  return ((ah * bh - hi) + ah * bl + al * bh) + al * bl;
#endif
}
static inline V vmax(V a, V b) { return vsel(a > b, a, b); }   // b when either is NaN (like x86 maxps)
static inline V vmin(V a, V b) { return vsel(a < b, a, b); }
static inline V vsqrt(V a) {
  V r = a;
  for (int i = 0; i < W; i++) r[i] = __builtin_sqrtf(a[i]);
  return r;
}
static inline V vabs(V a) { VI u; __builtin_memcpy(&u, &a, 16); u &= 0x7fffffff; V r; __builtin_memcpy(&r, &u, 16); return r; }
static inline V vneg(V a) { return -a; }
static inline V vround(V a) {   // nearest, ties to even (the default rounding mode)
  V r = a;
  for (int i = 0; i < W; i++) r[i] = __builtin_nearbyintf(a[i]);
  return r;
}
static inline V vfloor(V a) {
  V r = a;
  for (int i = 0; i < W; i++) r[i] = __builtin_floorf(a[i]);
  return r;
}
static inline Mask vlt(V a, V b) { return a < b; }
static inline Mask vle(V a, V b) { return a <= b; }
static inline Mask vgt(V a, V b) { return a > b; }
static inline Mask vge(V a, V b) { return a >= b; }
static inline Mask veq(V a, V b) { return a == b; }
static inline Mask vne(V a, V b) { return a != b; }
static inline Mask visnan(V a) { return a != a; }
static inline Mask mand(Mask a, Mask b) { return a & b; }
static inline Mask mor(Mask a, Mask b) { return a | b; }
static inline Mask mnot(Mask a) { return ~a; }
static inline bool many(Mask a) { return (a[0] | a[1] | a[2] | a[3]) != 0; }
static inline V vmaskone(Mask m) { return vsel(m, vset1(1.0f), vzero()); }
static inline float vhsum(V a) { return (a[0] + a[2]) + (a[1] + a[3]); }
static inline float vhmax(V a) { float x = a[0] > a[2] ? a[0] : a[2], y = a[1] > a[3] ? a[1] : a[3]; return x > y ? x : y; }
static inline float vhmin(V a) { float x = a[0] < a[2] ? a[0] : a[2], y = a[1] < a[3] ? a[1] : a[3]; return x < y ? x : y; }
static inline V vcopysign(V mag, V sgn) {
  VI m, s; __builtin_memcpy(&m, &mag, 16); __builtin_memcpy(&s, &sgn, 16);
  m = (m & 0x7fffffff) | (s & (int32_t)0x80000000);
  V r; __builtin_memcpy(&r, &m, 16); return r;
}
static inline V vpow2i(VI n) {  // 2^n for n in [-126, 127]
  VI b = (n + 127) << 23; V r; __builtin_memcpy(&r, &b, 16); return r;
}
static inline V vldexp(V p, V n) {
  n = vmax(vmin(n, vset1(254.0f)), vset1(-252.0f));
  VI ni = __builtin_convertvector(n, VI);
  VI h = ni >> 1;
  return p * vpow2i(h) * vpow2i(ni - h);
}
static inline void vfrexp(V x, V& m, V& e) {
  Mask sub = x < vset1(1.17549435e-38f);
  x = vsel(sub, x * vset1(8388608.0f), x);
  VI u; __builtin_memcpy(&u, &x, 16);
  VI ei = ((u >> 23) & 0xff) - 127;
  e = __builtin_convertvector(ei, V) - vsel(sub, vset1(23.0f), vzero());
  VI mu = (u & 0x7fffff) | 0x3f800000;
  __builtin_memcpy(&m, &mu, 16);
}
VSS_INLINE V vload_f16_n(const uint16_t* p, int n) {
  V v = vzero();
  for (int i = 0; i < n && i < W; i++) v[i] = f16_to_f32(p[i]);
  return v;
}
VSS_INLINE V vload_bf16_n(const uint16_t* p, int n) {
  V v = vzero();
  for (int i = 0; i < n && i < W; i++) v[i] = bf16_to_f32(p[i]);
  return v;
}
static inline V vload_f16(const uint16_t* p) { return vload_f16_n(p, W); }
static inline V vload_bf16(const uint16_t* p) { return vload_bf16_n(p, W); }
static inline void vstore_f16_n(uint16_t* p, V v, int n) { for (int i = 0; i < n && i < W; i++) p[i] = f32_to_f16(v[i]); }
static inline void vstore_bf16_n(uint16_t* p, V v, int n) { for (int i = 0; i < n && i < W; i++) p[i] = f32_to_bf16(v[i]); }

// ------------------------------------------------------------------ GEMM micro-kernel: 6 x 8
constexpr int MR = 6;
constexpr int NR = 8;
constexpr int KC = 256;
constexpr int MC = 6 * 32;

// acc = A~(MR x kc) * B~(kc x NR); then C[0:mr, 0:nr] = the UkTail of acc.
static inline void ukernel_t(int64_t kc, const float* __restrict A, const float* __restrict B, float* C,
                             int64_t ldc, const UkTail* t, int mr, int nr) {
  V c[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) { c[i][0] = vzero(); c[i][1] = vzero(); }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    V b0 = vload(B), b1 = vload(B + 4);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      V a = vset1(A[i]);
      c[i][0] = vfma(a, b0, c[i][0]);
      c[i][1] = vfma(a, b1, c[i][1]);
    }
    A += MR; B += NR;
  }
  const float beta = t->beta;
  const V va = vset1(t->alpha), vb = vset1(beta);
  const int n0 = nr < 4 ? nr : 4, n1 = nr - 4 > 0 ? nr - 4 : 0;
  const V bias0 = t->bias ? vload_n(t->bias, n0) : vzero();
  const V bias1 = t->bias && n1 > 0 ? vload_n(t->bias + 4, n1) : vzero();
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    if (i >= mr) break;
    float* r = C + i * ldc;
    V o0, o1;   // alpha·acc + (beta·C + bias)
    if (beta == 0.0f && !t->bias) { o0 = c[i][0] * va; o1 = c[i][1] * va; }
    else if (beta == 0.0f) { o0 = vfma(c[i][0], va, bias0); o1 = vfma(c[i][1], va, bias1); }
    else if (beta == 1.0f) {
      o0 = vfma(c[i][0], va, vload_n(r, n0) + bias0);
      o1 = vfma(c[i][1], va, vload_n(r + 4, n1) + bias1);
    } else {
      o0 = vfma(c[i][0], va, vb * vload_n(r, n0) + bias0);
      o1 = vfma(c[i][1], va, vb * vload_n(r + 4, n1) + bias1);
    }
    vstore_n(r, o0, n0);
    if (n1 > 0) vstore_n(r + 4, o1, n1);
  }
}

static inline void ukernel(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, float alpha, float beta,
                           int mr, int nr, const float* bias = nullptr, const char* /*pf: AVX-512 only*/ = nullptr,
                           int64_t = 0) {
  const UkTail tail{alpha, beta, bias};
  ukernel_t(kc, A, B, C, ldc, &tail, mr, nr);
}
