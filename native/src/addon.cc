// N-API glue: argument decoding, bounds checks, SIMD path selection. Compiled without ISA flags.
//
// Uses the Node-API C interface directly (node_api.h): callbacks decode arguments into a stack array
// (no per-call allocation), typed arrays are used in place (napi_get_typedarray_info already applies
// byteOffset), and shapes/strides arrive packed in one Float64Array.
#include <node_api.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "common.h"

namespace vss {

// Memory-mapped weight files (mapping.cc).
napi_value MapFile(napi_env env, napi_callback_info info);
napi_value ReleasePages(napi_env env, napi_callback_info info);

namespace {

// ------------------------------------------------------------------------------------- SIMD path
const KernelTable* g_table = nullptr;
std::atomic<bool> g_gemm_bf16{false};   // setMatmulPrecision('bf16')

const char* g_selftest_failure = nullptr;   // last path rejected by its self-test, for native.ts to report

#if defined(__x86_64__)
bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}
bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}
// Self-test of a SIMD path against the portable one on small problems that reach every edge case of the
// micro-kernels and the vector math. Run once per path before first use: a path that disagrees (a
// compiler or ISA-header bug on a CPU we could not test on) is never used. Returns the failed check.
double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return 1e30;
    if (std::isnan(b[i])) continue;
    if (std::isinf(a[i]) || std::isinf(b[i])) { if (a[i] != b[i]) return 1e30; continue; }
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
// Largest relative error of t's GEMM (bf16 products when asked) against the portable f32 one, over all four
// transposes of an M x N x K product of seeded values in [-1, 1).
double gemm_vs_portable(const KernelTable* t, int64_t M, int64_t N, int64_t K, uint32_t seed, bool bf16) {
  std::vector<float> A(M * K), B(K * N), C1(M * N), C2(M * N);
  auto rnd = [&seed]() { seed = seed * 1664525u + 1013904223u; return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f; };
  for (float& v : A) v = rnd();
  for (float& v : B) v = rnd();
  double worst = 0;
  for (int tr = 0; tr < 4; tr++) {
    GemmArgs g{};
    g.transA = tr & 1; g.transB = tr & 2; g.M = M; g.N = N; g.K = K; g.alpha = 0.5f; g.beta = 0.0f;
    g.A = A.data(); g.adt = DT_F32; g.lda = g.transA ? M : K; g.B = B.data(); g.bdt = DT_F32; g.ldb = g.transB ? K : N;
    g.C = C1.data(); g.ldc = N; g.batch = 1; g.bf16_compute = bf16;
    t->gemm(g);
    g.C = C2.data(); g.bf16_compute = false;
    table_portable()->gemm(g);
    worst = std::max(worst, rel_err(C1.data(), C2.data(), (size_t)(M * N)));
  }
  return worst;
}

const char* self_test(const KernelTable* t) {
  const KernelTable* p = table_portable();
  if (t == p) return nullptr;
  // edge tiles in M and N, K within one KC block
  if (gemm_vs_portable(t, 61, 70, 45, 12345, false) > 1e-5) return "gemm";
  float A[61 * 45], B[45 * 70], C1[61 * 70], C2[61 * 70];   // inputs and outputs of the checks below
  uint32_t s = 12345;
  auto rnd = [&s]() { s = s * 1664525u + 1013904223u; return (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f; };
  for (float& v : A) v = rnd();
  for (float& v : B) v = rnd();
  uint16_t h[64];
  float w1[64], w2[64];
  for (int dt = DT_F16; dt <= DT_BF16; dt++) {
    t->narrow(A, dt, 64, h);
    uint16_t h2[64];
    p->narrow(A, dt, 64, h2);
    if (std::memcmp(h, h2, sizeof h)) return "narrow";
    t->widen(h, dt, 64, w1);
    p->widen(h, dt, 64, w2);
    if (std::memcmp(w1, w2, sizeof w1)) return "widen";
  }
  float x[100], y1[100], y2[100];
  for (int i = 0; i < 100; i++) x[i] = (float)(i - 50) * 0.37f;
  for (int op = 0; op < U_COUNT; op++) {
    if (op == U_SIN || op == U_COS || op == U_POW_SCALAR) continue;
    EltArgs e{};
    e.op = op; e.x = x; e.n = 100; e.alpha = 0.5; e.beta = 2.0;
    e.out = y1; t->unary(e);
    e.out = y2; p->unary(e);
    if (rel_err(y1, y2, 100) > 1e-5) return "unary";
  }
  for (int op = 0; op < B_COUNT; op++) {  // [10, 10] ∘ row-broadcast [10]
    NdArgs nd{};
    nd.op = op; nd.rank = 2; nd.shape[0] = 10; nd.shape[1] = 10;
    nd.in[0] = x; nd.st[0][0] = 10; nd.st[0][1] = 1;
    nd.in[1] = x + 45; nd.st[1][0] = 0; nd.st[1][1] = 1;
    nd.out = y1; t->binary(nd);
    nd.out = y2; p->binary(nd);
    if (rel_err(y1, y2, 100) > 1e-5) return "binary";
  }
  t->softmax(x, 4, 25, false, y1);
  p->softmax(x, 4, 25, false, y2);
  if (rel_err(y1, y2, 100) > 1e-5) return "softmax";
  float r1[3], r2[3];
  for (int op = R_SUM; op <= R_MIN; op++) {
    t->reduce(op, x, 3, 33, 1, r1);
    p->reduce(op, x, 3, 33, 1, r2);
    if (rel_err(r1, r2, 3) > 1e-5) return "reduce";
  }
  AttnArgs at{};
  float lse1[40], lse2[40];
  at.q = A; at.k = B; at.v = A + 1000; at.B = 1; at.H = 1; at.Lq = 40; at.Lk = 37; at.D = 20; at.Dv = 19;
  at.scale = 0.3f;
  at.sq = dense_layout(1, 40, 20); at.sk = dense_layout(1, 37, 20); at.sv = dense_layout(1, 37, 19);
  at.so = dense_layout(1, 40, 19);
  at.o = C1; at.l = lse1; t->attention(at);
  at.o = C2; at.l = lse2; p->attention(at);
  if (rel_err(C1, C2, 40 * 19) > 1e-5 || rel_err(lse1, lse2, 40) > 1e-5) return "attention";
  return nullptr;
}
const KernelTable* verified(const KernelTable* t) {
  if (!t) return nullptr;
  static const KernelTable* passed[3] = {nullptr, nullptr, nullptr};
  for (const KernelTable* q : passed) if (q == t) return t;
  if (const char* what = self_test(t)) {
    static char msg[96];
    std::snprintf(msg, sizeof msg, "%s path failed its %s self-test", t->name, what);
    g_selftest_failure = msg;
    return nullptr;
  }
  for (const KernelTable*& q : passed) if (!q) { q = t; break; }
  return t;
}
#endif  // __x86_64__

const KernelTable* table_by_name(const char* name) {
#if defined(__x86_64__)
  if (!std::strcmp(name, "avx512")) return cpu_has_avx512() ? verified(table_avx512()) : nullptr;
  if (!std::strcmp(name, "avx2")) return cpu_has_avx2() ? verified(table_avx2()) : nullptr;
#endif
  if (!std::strcmp(name, "portable")) return table_portable();
  return nullptr;
}
const KernelTable* best_table() {
  static const char* const order[] = {"avx512", "avx2"};
  for (const char* name : order)
    if (const KernelTable* t = table_by_name(name)) return t;
  return table_portable();
}

// ------------------------------------------------------------------------------------- arguments
constexpr size_t kMaxArgs = 24;

struct Args {
  napi_env env;
  napi_value v[kMaxArgs];
  size_t argc = kMaxArgs;
  bool failed = false;

  Args(napi_env e, napi_callback_info info) : env(e) {
    if (napi_get_cb_info(env, info, &argc, v, nullptr, nullptr) != napi_ok) fail("bad call");
  }
  void fail(const char* msg, bool range = false) {
    if (failed) return;
    failed = true;
    if (range) napi_throw_range_error(env, nullptr, msg);
    else napi_throw_type_error(env, nullptr, msg);
  }
  napi_value arg(size_t i) {
    if (i >= argc) { fail("missing argument"); return nullptr; }
    return v[i];
  }
  bool is_null(size_t i) {
    if (i >= argc) return true;
    napi_valuetype t;
    if (napi_typeof(env, v[i], &t) != napi_ok) return true;
    return t == napi_null || t == napi_undefined;
  }
  double num(size_t i) {
    napi_value a = arg(i);
    double d = 0;
    if (a && napi_get_value_double(env, a, &d) != napi_ok) fail("expected a number");
    return d;
  }
  int64_t i64(size_t i) {
    double d = num(i);
    if (!(d >= -9.0e15 && d <= 9.0e15) || d != std::floor(d)) { fail("expected an integer"); return 0; }
    return (int64_t)d;
  }
  bool flag(size_t i) {
    napi_value a = arg(i);
    bool b = false;
    if (a && napi_get_value_bool(env, a, &b) != napi_ok) fail("expected a boolean");
    return b;
  }
  // A typed array of the given type; len receives its element count.
  void* typed(size_t i, napi_typedarray_type want, size_t* len, const char* what) {
    napi_value a = arg(i);
    if (!a) return nullptr;
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    bool is = false;
    if (napi_is_typedarray(env, a, &is) != napi_ok || !is ||
        napi_get_typedarray_info(env, a, &type, &length, &data, nullptr, nullptr) != napi_ok || type != want) {
      fail(what);
      return nullptr;
    }
    *len = length;
    // An empty view may report a null pointer: hand out a valid dummy instead.
    static float dummy[16];
    return data ? data : (void*)dummy;
  }
  float* f32(size_t i, size_t* len) { return static_cast<float*>(typed(i, napi_float32_array, len, "expected a Float32Array")); }
  float* f32_or_null(size_t i, size_t* len) {
    if (is_null(i)) { *len = 0; return nullptr; }
    return f32(i, len);
  }
  uint16_t* u16(size_t i, size_t* len) { return static_cast<uint16_t*>(typed(i, napi_uint16_array, len, "expected a Uint16Array")); }
  int32_t* i32(size_t i, size_t* len) { return static_cast<int32_t*>(typed(i, napi_int32_array, len, "expected an Int32Array")); }
  double* f64(size_t i, size_t* len) { return static_cast<double*>(typed(i, napi_float64_array, len, "expected a Float64Array")); }
  // f32 or 16-bit data per dtype code
  const void* weight(size_t i, int dt, size_t* len) {
    if (dt == DT_F32) return f32(i, len);
    if (dt == DT_F16 || dt == DT_BF16) return u16(i, len);
    fail("bad dtype");
    return nullptr;
  }
  bool need(size_t have, double want, const char* what) {
    if (failed) return false;
    if (want > (double)have) { fail(what, true); return false; }
    return true;
  }
};

napi_value undefined(napi_env env) { napi_value u; napi_get_undefined(env, &u); return u; }

// Runs a kernel, turning allocation failure into a JS error.
template <class F>
napi_value guarded(napi_env env, F f) {
  try {
    f();
  } catch (const std::bad_alloc&) {
    napi_throw_error(env, nullptr, "vss_native: out of memory for kernel scratch");
  }
  return nullptr;
}

// Extent (1 + max index) of a strided view, or -1 for negative strides reaching below 0.
double extent(int64_t offset, int rank, const int64_t* shape, const int64_t* strides) {
  double hi = (double)offset, lo = (double)offset;
  for (int d = 0; d < rank; d++) {
    if (shape[d] == 0) return 0;
    double span = (double)(shape[d] - 1) * (double)strides[d];
    if (span > 0) hi += span; else lo += span;
  }
  return lo < 0 ? -1.0 : hi + 1;
}

// Coalesce a strided problem: drop size-1 dims, merge dims that are contiguous for every operand.
// Returns the new rank (0 when the shape is empty, i.e. has a zero dim).
int coalesce(int rank, int64_t* shape, int nops, int64_t (*st)[8]) {
  for (int d = 0; d < rank; d++) if (shape[d] == 0) return 0;
  int r = 0;
  for (int d = 0; d < rank; d++) {
    if (shape[d] == 1) continue;
    if (r > 0) {
      bool merge = true;
      for (int k = 0; k < nops; k++) merge = merge && st[k][r - 1] == st[k][d] * shape[d];
      if (merge) {
        shape[r - 1] *= shape[d];
        for (int k = 0; k < nops; k++) st[k][r - 1] = st[k][d];
        continue;
      }
    }
    shape[r] = shape[d];
    for (int k = 0; k < nops; k++) st[k][r] = st[k][d];
    r++;
  }
  if (r == 0) { shape[0] = 1; for (int k = 0; k < nops; k++) st[k][0] = 0; r = 1; }
  return r;
}

// ------------------------------------------------------------------------------------- kernels
// gemm(transA, transB, M, N, K, alpha, A, aDt, lda, strideA, B, bDt, ldb, strideB, beta, C, ldc, strideC, batch[, bias])
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  GemmArgs g{};
  g.transA = a.flag(0); g.transB = a.flag(1);
  g.M = a.i64(2); g.N = a.i64(3); g.K = a.i64(4);
  g.alpha = (float)a.num(5);
  g.adt = (int)a.i64(7); g.lda = a.i64(8); g.strideA = a.i64(9);
  g.bdt = (int)a.i64(11); g.ldb = a.i64(12); g.strideB = a.i64(13);
  g.beta = (float)a.num(14);
  g.ldc = a.i64(16); g.strideC = a.i64(17); g.batch = a.i64(18);
  size_t la = 0, lb = 0, lc = 0;
  g.A = a.weight(6, g.adt, &la);
  g.B = a.weight(10, g.bdt, &lb);
  g.C = a.f32(15, &lc);
  size_t lbias = 0;
  g.bias = a.f32_or_null(19, &lbias);
  if (a.failed) return nullptr;
  if (g.bias && !a.need(lbias, (double)g.N, "gemm: bias shorter than N")) return nullptr;
  if (g.M < 0 || g.N < 0 || g.K < 0 || g.batch < 0 || g.strideA < 0 || g.strideB < 0 || g.strideC < 0) {
    a.fail("gemm: negative size or stride", true);
    return nullptr;
  }
  if (g.batch == 0 || g.M == 0 || g.N == 0) return undefined(env);
  const double bm1 = (double)(g.batch - 1);
  if (g.K > 0) {
    const int64_t ar = g.transA ? g.K : g.M, ac = g.transA ? g.M : g.K;
    const int64_t br = g.transB ? g.N : g.K, bc = g.transB ? g.K : g.N;
    if (g.lda < ac || g.ldb < bc) { a.fail("gemm: lda/ldb too small", true); return nullptr; }
    if (!a.need(la, bm1 * g.strideA + (double)(ar - 1) * g.lda + ac, "gemm: A too short")) return nullptr;
    if (!a.need(lb, bm1 * g.strideB + (double)(br - 1) * g.ldb + bc, "gemm: B too short")) return nullptr;
  }
  if (g.ldc < g.N) { a.fail("gemm: ldc too small", true); return nullptr; }
  if (!a.need(lc, bm1 * g.strideC + (double)(g.M - 1) * g.ldc + g.N, "gemm: C too short")) return nullptr;
  g.bf16_compute = g_gemm_bf16.load(std::memory_order_relaxed) && g_table->bf16_dot;
  return guarded(env, [&] { g_table->gemm(g); });
}

// Convolution geometry from meta: [N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups]
bool conv_meta(Args& a, size_t i, ConvArgs& c) {
  size_t len = 0;
  double* m = a.f64(i, &len);
  if (a.failed) return false;
  if (len < 14) { a.fail("conv: meta too short", true); return false; }
  int64_t* f[14] = {&c.N, &c.C, &c.H, &c.W, &c.O, &c.kh, &c.kw, &c.sh, &c.sw, &c.ph, &c.pw, &c.dh, &c.dw, &c.groups};
  for (int k = 0; k < 14; k++) *f[k] = (int64_t)m[k];
  if (c.N < 0 || c.C < 0 || c.H < 0 || c.W < 0 || c.O < 0 || c.kh < 1 || c.kw < 1 || c.sh < 1 || c.sw < 1 ||
      c.ph < 0 || c.pw < 0 || c.dh < 1 || c.dw < 1 || c.groups < 1 || c.C % c.groups || c.O % c.groups) {
    a.fail("conv: bad geometry", true);
    return false;
  }
  return true;
}
int64_t conv_out(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d) {
  int64_t num = size + 2 * p - d * (k - 1) - 1;
  return num < 0 ? 0 : num / s + 1;
}

// conv2d(x, w, wDt, bias|null, out, meta)
napi_value Conv2d(napi_env env, napi_callback_info info) {
  Args a(env, info);
  ConvArgs c{};
  if (!conv_meta(a, 5, c)) return nullptr;
  c.wdt = (int)a.i64(2);
  size_t lx = 0, lw = 0, lb = 0, lo = 0;
  c.x = a.f32(0, &lx);
  c.w = a.weight(1, c.wdt, &lw);
  c.bias = a.f32_or_null(3, &lb);
  c.out = a.f32(4, &lo);
  const int64_t OH = conv_out(c.H, c.kh, c.sh, c.ph, c.dh), OW = conv_out(c.W, c.kw, c.sw, c.pw, c.dw);
  if (!a.need(lx, (double)c.N * c.C * c.H * c.W, "conv2d: x too short") ||
      !a.need(lw, (double)c.O * (c.C / c.groups) * c.kh * c.kw, "conv2d: w too short") ||
      (c.bias && !a.need(lb, (double)c.O, "conv2d: bias too short")) ||
      !a.need(lo, (double)c.N * c.O * OH * OW, "conv2d: out too short"))
    return nullptr;
  return guarded(env, [&] { g_table->conv2d(c); });
}

// conv2dBackwardInput(gy, w, wDt, gx, meta)
napi_value Conv2dBwdInput(napi_env env, napi_callback_info info) {
  Args a(env, info);
  ConvArgs c{};
  if (!conv_meta(a, 4, c)) return nullptr;
  c.wdt = (int)a.i64(2);
  size_t lg = 0, lw = 0, lo = 0;
  c.gy = a.f32(0, &lg);
  c.w = a.weight(1, c.wdt, &lw);
  c.out = a.f32(3, &lo);
  const int64_t OH = conv_out(c.H, c.kh, c.sh, c.ph, c.dh), OW = conv_out(c.W, c.kw, c.sw, c.pw, c.dw);
  if (!a.need(lg, (double)c.N * c.O * OH * OW, "conv2dBackwardInput: gy too short") ||
      !a.need(lw, (double)c.O * (c.C / c.groups) * c.kh * c.kw, "conv2dBackwardInput: w too short") ||
      !a.need(lo, (double)c.N * c.C * c.H * c.W, "conv2dBackwardInput: gx too short"))
    return nullptr;
  return guarded(env, [&] { g_table->conv2d_bwd_input(c); });
}

// conv2dBackwardWeight(x, gy, gw, meta)
napi_value Conv2dBwdWeight(napi_env env, napi_callback_info info) {
  Args a(env, info);
  ConvArgs c{};
  if (!conv_meta(a, 3, c)) return nullptr;
  size_t lx = 0, lg = 0, lo = 0;
  c.x = a.f32(0, &lx);
  c.gy = a.f32(1, &lg);
  c.out = a.f32(2, &lo);
  const int64_t OH = conv_out(c.H, c.kh, c.sh, c.ph, c.dh), OW = conv_out(c.W, c.kw, c.sw, c.pw, c.dw);
  if (!a.need(lx, (double)c.N * c.C * c.H * c.W, "conv2dBackwardWeight: x too short") ||
      !a.need(lg, (double)c.N * c.O * OH * OW, "conv2dBackwardWeight: gy too short") ||
      !a.need(lo, (double)c.O * (c.C / c.groups) * c.kh * c.kw, "conv2dBackwardWeight: gw too short"))
    return nullptr;
  return guarded(env, [&] { g_table->conv2d_bwd_weight(c); });
}

// Attention meta: [B, H, Lq, Lk, D, Dv, scale, causal, mB, mH, mQ], then optionally the layouts
// (b, h, l strides) of q, k, v, out, gout, gq, gk, gv: 24 more; without them every operand is dense.
constexpr size_t kAttnMeta = 11, kAttnMetaLayouts = kAttnMeta + 24;
bool attn_meta(Args& a, size_t i, AttnArgs& t) {
  size_t len = 0;
  double* m = a.f64(i, &len);
  if (a.failed) return false;
  if (len != kAttnMeta && len != kAttnMetaLayouts) { a.fail("attention: meta needs 11 or 35 entries", true); return false; }
  t.B = (int64_t)m[0]; t.H = (int64_t)m[1]; t.Lq = (int64_t)m[2]; t.Lk = (int64_t)m[3];
  t.D = (int64_t)m[4]; t.Dv = (int64_t)m[5]; t.scale = (float)m[6]; t.causal = m[7] != 0;
  t.mB = (int64_t)m[8]; t.mH = (int64_t)m[9]; t.mQ = (int64_t)m[10];
  if (t.B < 0 || t.H < 0 || t.Lq < 0 || t.Lk < 0 || t.D < 0 || t.Dv < 0 || t.mB < 0 || t.mH < 0 || t.mQ < 0) {
    a.fail("attention: bad sizes", true);
    return false;
  }
  AttnLayout* layouts[8] = {&t.sq, &t.sk, &t.sv, &t.so, &t.sgo, &t.sgq, &t.sgk, &t.sgv};
  const int64_t rows[8] = {t.Lq, t.Lk, t.Lk, t.Lq, t.Lq, t.Lq, t.Lk, t.Lk};
  const int64_t width[8] = {t.D, t.D, t.Dv, t.Dv, t.Dv, t.D, t.D, t.Dv};
  for (int j = 0; j < 8; j++) {
    if (len == kAttnMeta) { *layouts[j] = dense_layout(t.H, rows[j], width[j]); continue; }
    const double* s = m + kAttnMeta + 3 * j;
    if (s[0] < 0 || s[1] < 0 || s[2] < 0) { a.fail("attention: negative layout stride", true); return false; }
    *layouts[j] = {(int64_t)s[0], (int64_t)s[1], (int64_t)s[2]};
  }
  return true;
}
// Elements an operand of layout s with L rows of n spans (0 when it is empty).
double attn_extent(const AttnArgs& t, const AttnLayout& s, int64_t L, int64_t n) {
  if (t.B == 0 || t.H == 0 || L == 0 || n == 0) return 0;
  return (double)(t.B - 1) * s.b + (double)(t.H - 1) * s.h + (double)(L - 1) * s.l + n;
}
// An output's layout must give every element its own place: threads write different heads at once.
bool attn_disjoint(const AttnArgs& t, const AttnLayout& s, int64_t L, int64_t n) {
  std::pair<int64_t, int64_t> dims[3] = {{s.b, t.B}, {s.h, t.H}, {s.l, L}};  // (stride, size)
  std::sort(dims, dims + 3);
  double span = (double)n;
  for (auto [stride, size] : dims) {
    if (size <= 1) continue;
    if ((double)stride < span) return false;
    span += (double)stride * (size - 1);
  }
  return true;
}
bool attn_output(Args& a, const AttnArgs& t, const AttnLayout& s, int64_t L, int64_t n, size_t len, const char* what) {
  if (a.failed) return false;
  // the messages are built only on failure: this runs on every attention call
  const char* problem = !attn_disjoint(t, s, L, n) ? ": layout overlaps itself"
                        : attn_extent(t, s, L, n) > (double)len ? " too short" : nullptr;
  if (problem) a.fail((std::string(what) + problem).c_str(), true);
  return problem == nullptr;
}
bool attn_check(Args& a, const AttnArgs& t, size_t lq, size_t lk, size_t lv, size_t lm) {
  if (!a.need(lq, attn_extent(t, t.sq, t.Lq, t.D), "attention: q too short") ||
      !a.need(lk, attn_extent(t, t.sk, t.Lk, t.D), "attention: k too short") ||
      !a.need(lv, attn_extent(t, t.sv, t.Lk, t.Dv), "attention: v too short"))
    return false;
  if (t.mask && t.B > 0 && t.H > 0 && t.Lq > 0 && t.Lk > 0 &&
      !a.need(lm, (double)(t.B - 1) * t.mB + (double)(t.H - 1) * t.mH + (double)(t.Lq - 1) * t.mQ + t.Lk,
              "attention: mask too short"))
    return false;
  return true;
}

// attention(q, k, v, mask|null, out, lse, meta)
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info);
  AttnArgs t{};
  if (!attn_meta(a, 6, t)) return nullptr;
  size_t lq = 0, lk = 0, lv = 0, lm = 0, lo = 0, ll = 0;
  t.q = a.f32(0, &lq); t.k = a.f32(1, &lk); t.v = a.f32(2, &lv);
  t.mask = a.f32_or_null(3, &lm);
  t.o = a.f32(4, &lo); t.l = a.f32(5, &ll);
  if (!attn_check(a, t, lq, lk, lv, lm)) return nullptr;
  if (!attn_output(a, t, t.so, t.Lq, t.Dv, lo, "attention: out") ||
      !a.need(ll, (double)t.B * t.H * t.Lq, "attention: lse too short"))
    return nullptr;
  return guarded(env, [&] { g_table->attention(t); });
}

// attentionBackward(q, k, v, out, lse, gout, mask|null, gq, gk, gv, meta)
napi_value AttentionBwd(napi_env env, napi_callback_info info) {
  Args a(env, info);
  AttnArgs t{};
  if (!attn_meta(a, 10, t)) return nullptr;
  size_t lq = 0, lk = 0, lv = 0, lo = 0, ll = 0, lg = 0, lm = 0, lgq = 0, lgk = 0, lgv = 0;
  t.q = a.f32(0, &lq); t.k = a.f32(1, &lk); t.v = a.f32(2, &lv);
  t.out = a.f32(3, &lo); t.lse = a.f32(4, &ll); t.gout = a.f32(5, &lg);
  t.mask = a.f32_or_null(6, &lm);
  t.gq = a.f32(7, &lgq); t.gk = a.f32(8, &lgk); t.gv = a.f32(9, &lgv);
  if (!attn_check(a, t, lq, lk, lv, lm)) return nullptr;
  if (!a.need(lo, attn_extent(t, t.so, t.Lq, t.Dv), "attentionBackward: out too short") ||
      !a.need(ll, (double)t.B * t.H * t.Lq, "attentionBackward: lse too short") ||
      !a.need(lg, attn_extent(t, t.sgo, t.Lq, t.Dv), "attentionBackward: gout too short") ||
      !attn_output(a, t, t.sgq, t.Lq, t.D, lgq, "attentionBackward: gq") ||
      !attn_output(a, t, t.sgk, t.Lk, t.D, lgk, "attentionBackward: gk") ||
      !attn_output(a, t, t.sgv, t.Lk, t.Dv, lgv, "attentionBackward: gv"))
    return nullptr;
  return guarded(env, [&] { g_table->attention_bwd(t); });
}

// unary(op, x, out, alpha, beta)
napi_value Unary(napi_env env, napi_callback_info info) {
  Args a(env, info);
  EltArgs e{};
  e.op = (int)a.i64(0);
  size_t lx = 0, lo = 0;
  e.x = a.f32(1, &lx);
  e.out = a.f32(2, &lo);
  e.alpha = a.num(3); e.beta = a.num(4);
  if (a.failed) return nullptr;
  if (e.op < 0 || e.op >= U_COUNT) { a.fail("unary: unknown op", true); return nullptr; }
  if (!a.need(lo, (double)lx, "unary: out shorter than x")) return nullptr;
  e.n = (int64_t)lx;
  return guarded(env, [&] { g_table->unary(e); });
}

// unaryBackward(op, x, y, gy, gx, alpha, beta)
napi_value UnaryBwd(napi_env env, napi_callback_info info) {
  Args a(env, info);
  EltArgs e{};
  e.op = (int)a.i64(0);
  size_t lx = 0, ly = 0, lg = 0, lo = 0;
  e.x = a.f32_or_null(1, &lx);
  e.y = a.f32_or_null(2, &ly);
  e.gy = a.f32(3, &lg);
  e.out = a.f32(4, &lo);
  e.alpha = a.num(5); e.beta = a.num(6);
  if (a.failed) return nullptr;
  if (e.op < 0 || e.op >= U_COUNT) { a.fail("unaryBackward: unknown op", true); return nullptr; }
  e.n = (int64_t)lg;
  if (!a.need(lo, (double)lg, "unaryBackward: gx shorter than gy") ||
      (e.x && !a.need(lx, (double)lg, "unaryBackward: x shorter than gy")) ||
      (e.y && !a.need(ly, (double)lg, "unaryBackward: y shorter than gy")))
    return nullptr;
  return guarded(env, [&] { g_table->unary_bwd(e); });
}

// Strided meta: [rank, shape[rank], then per operand: offset, strides[rank]]
bool nd_meta(Args& a, size_t i, int nops, NdArgs& nd, int64_t* offsets) {
  size_t len = 0;
  double* m = a.f64(i, &len);
  if (a.failed) return false;
  if (len < 1) { a.fail("bad strided meta", true); return false; }
  const int rank = (int)m[0];
  if (rank < 0 || rank > 8 || len < (size_t)(1 + rank + nops * (1 + rank))) { a.fail("bad strided meta", true); return false; }
  nd.rank = rank;
  for (int d = 0; d < rank; d++) {
    nd.shape[d] = (int64_t)m[1 + d];
    if (nd.shape[d] < 0) { a.fail("negative dimension", true); return false; }
  }
  for (int k = 0; k < nops; k++) {
    const double* o = m + 1 + rank + k * (1 + rank);
    offsets[k] = (int64_t)o[0];
    for (int d = 0; d < rank; d++) nd.st[k][d] = (int64_t)o[1 + d];
  }
  return true;
}
int64_t numel(const NdArgs& nd) {
  int64_t n = 1;
  for (int d = 0; d < nd.rank; d++) n *= nd.shape[d];
  return n;
}

// binary(op, a, b, out, meta)
napi_value Binary(napi_env env, napi_callback_info info) {
  Args a(env, info);
  NdArgs nd{};
  int64_t off[3];
  nd.op = (int)a.i64(0);
  size_t la = 0, lb = 0, lo = 0;
  const float* pa = a.f32(1, &la);
  const float* pb = a.f32(2, &lb);
  nd.out = a.f32(3, &lo);
  if (!nd_meta(a, 4, 2, nd, off)) return nullptr;
  if (nd.op < 0 || nd.op >= B_COUNT) { a.fail("binary: unknown op", true); return nullptr; }
  const int64_t n = numel(nd);
  if (n == 0) return undefined(env);
  if (!a.need(lo, (double)n, "binary: out too short") ||
      !a.need(la, extent(off[0], nd.rank, nd.shape, nd.st[0]), "binary: a view out of range") ||
      !a.need(lb, extent(off[1], nd.rank, nd.shape, nd.st[1]), "binary: b view out of range"))
    return nullptr;
  if (extent(off[0], nd.rank, nd.shape, nd.st[0]) < 0 || extent(off[1], nd.rank, nd.shape, nd.st[1]) < 0) {
    a.fail("binary: view out of range", true);
    return nullptr;
  }
  nd.in[0] = pa + off[0]; nd.in[1] = pb + off[1];
  nd.rank = coalesce(nd.rank, nd.shape, 2, nd.st);
  return guarded(env, [&] { g_table->binary(nd); });
}

// where(cond, a, b, out, meta)
napi_value Where(napi_env env, napi_callback_info info) {
  Args a(env, info);
  NdArgs nd{};
  int64_t off[3];
  size_t lc = 0, la = 0, lb = 0, lo = 0;
  const float* pc = a.f32(0, &lc);
  const float* pa = a.f32(1, &la);
  const float* pb = a.f32(2, &lb);
  nd.out = a.f32(3, &lo);
  if (!nd_meta(a, 4, 3, nd, off)) return nullptr;
  const int64_t n = numel(nd);
  if (n == 0) return undefined(env);
  const size_t lens[3] = {lc, la, lb};
  for (int k = 0; k < 3; k++) {
    const double e = extent(off[k], nd.rank, nd.shape, nd.st[k]);
    if (e < 0 || !a.need(lens[k], e, "where: view out of range")) {
      a.fail("where: view out of range", true);
      return nullptr;
    }
  }
  if (!a.need(lo, (double)n, "where: out too short")) return nullptr;
  nd.in[0] = pc + off[0]; nd.in[1] = pa + off[1]; nd.in[2] = pb + off[2];
  nd.rank = coalesce(nd.rank, nd.shape, 3, nd.st);
  return guarded(env, [&] { g_table->where(nd); });
}

// stridedCopy(src, dt, out, meta)
napi_value StridedCopy(napi_env env, napi_callback_info info) {
  Args a(env, info);
  NdArgs nd{};
  int64_t off[1];
  const int dt = (int)a.i64(1);
  size_t ls = 0, lo = 0;
  const void* src = a.weight(0, dt, &ls);
  float* out = a.f32(2, &lo);
  if (!nd_meta(a, 3, 1, nd, off)) return nullptr;
  const int64_t n = numel(nd);
  if (n == 0) return undefined(env);
  const double e = extent(off[0], nd.rank, nd.shape, nd.st[0]);
  if (e < 0 || !a.need(ls, e, "stridedCopy: view out of range")) {
    a.fail("stridedCopy: view out of range", true);
    return nullptr;
  }
  if (!a.need(lo, (double)n, "stridedCopy: out too short")) return nullptr;
  nd.rank = coalesce(nd.rank, nd.shape, 1, nd.st);
  const void* base = dt == DT_F32 ? (const void*)(static_cast<const float*>(src) + off[0])
                                  : (const void*)(static_cast<const uint16_t*>(src) + off[0]);
  return guarded(env, [&] { g_table->strided_copy(base, dt, nd.rank, nd.shape, nd.st[0], out); });
}

// widen(src, dt, out)
napi_value Widen(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t ls = 0, lo = 0;
  const uint16_t* s = a.u16(0, &ls);
  const int dt = (int)a.i64(1);
  float* o = a.f32(2, &lo);
  if (a.failed) return nullptr;
  if (dt != DT_F16 && dt != DT_BF16) { a.fail("widen: bad kind", true); return nullptr; }
  if (!a.need(lo, (double)ls, "widen: out too short")) return nullptr;
  return guarded(env, [&] { g_table->widen(s, dt, (int64_t)ls, o); });
}

// narrow(src, dt, out)
napi_value Narrow(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t ls = 0, lo = 0;
  const float* s = a.f32(0, &ls);
  const int dt = (int)a.i64(1);
  uint16_t* o = a.u16(2, &lo);
  if (a.failed) return nullptr;
  if (dt != DT_F16 && dt != DT_BF16) { a.fail("narrow: bad kind", true); return nullptr; }
  if (!a.need(lo, (double)ls, "narrow: out too short")) return nullptr;
  return guarded(env, [&] { g_table->narrow(s, dt, (int64_t)ls, o); });
}

// reduce(op, x, outer, n, inner, out) — out is Float32Array (sum/max/min) or Int32Array (argmax/argmin)
napi_value Reduce(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int op = (int)a.i64(0);
  size_t lx = 0, lo = 0;
  const float* x = a.f32(1, &lx);
  const int64_t outer = a.i64(2), n = a.i64(3), inner = a.i64(4);
  void* out = nullptr;
  if (op == R_ARGMAX || op == R_ARGMIN) out = a.i32(5, &lo);
  else if (op >= R_SUM && op <= R_MIN) out = a.f32(5, &lo);
  else a.fail("reduce: unknown op", true);
  if (a.failed) return nullptr;
  if (outer < 0 || n < 0 || inner < 0) { a.fail("reduce: negative size", true); return nullptr; }
  if (!a.need(lx, (double)outer * n * inner, "reduce: x too short") ||
      !a.need(lo, (double)outer * inner, "reduce: out too short"))
    return nullptr;
  return guarded(env, [&] { g_table->reduce(op, x, outer, n, inner, out); });
}

// softmax(x, rows, cols, log, out)
napi_value Softmax(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t lx = 0, lo = 0;
  const float* x = a.f32(0, &lx);
  const int64_t rows = a.i64(1), cols = a.i64(2);
  const bool lg = a.flag(3);
  float* out = a.f32(4, &lo);
  if (a.failed) return nullptr;
  if (rows < 0 || cols < 0) { a.fail("softmax: negative size", true); return nullptr; }
  if (!a.need(lx, (double)rows * cols, "softmax: x too short") || !a.need(lo, (double)rows * cols, "softmax: out too short"))
    return nullptr;
  return guarded(env, [&] { g_table->softmax(x, rows, cols, lg, out); });
}

// adamStep(p, g, m, v, vmax|null, beta1, beta2, eps, stepSize, bc2Sqrt, shrink, l2)
napi_value AdamStep(napi_env env, napi_callback_info info) {
  Args a(env, info);
  AdamArgs s{};
  size_t lp = 0, lg = 0, lm = 0, lv = 0, lx = 0;
  s.p = a.f32(0, &lp);
  s.g = a.f32(1, &lg);
  s.m = a.f32(2, &lm);
  s.v = a.f32(3, &lv);
  s.vmax = a.f32_or_null(4, &lx);
  const double beta1 = a.num(5), beta2 = a.num(6);
  s.beta1 = (float)beta1; s.beta2 = (float)beta2; s.c1 = (float)(1.0 - beta1); s.c2 = (float)(1.0 - beta2);
  s.eps = (float)a.num(7);
  s.step_size = (float)a.num(8); s.bc2_sqrt = (float)a.num(9); s.shrink = (float)a.num(10); s.l2 = (float)a.num(11);
  if (a.failed) return nullptr;
  if (!a.need(lg, (double)lp, "adamStep: grad shorter than the parameter") ||
      !a.need(lm, (double)lp, "adamStep: exp_avg shorter than the parameter") ||
      !a.need(lv, (double)lp, "adamStep: exp_avg_sq shorter than the parameter") ||
      (s.vmax && !a.need(lx, (double)lp, "adamStep: max_exp_avg_sq shorter than the parameter")))
    return nullptr;
  s.n = (int64_t)lp;
  return guarded(env, [&] { g_table->adam_step(s); });
}

// softmaxBackward(y, gy, rows, cols, log, gx)
napi_value SoftmaxBwd(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t ly = 0, lg = 0, lo = 0;
  const float* y = a.f32(0, &ly);
  const float* gy = a.f32(1, &lg);
  const int64_t rows = a.i64(2), cols = a.i64(3);
  const bool lgm = a.flag(4);
  float* gx = a.f32(5, &lo);
  if (a.failed) return nullptr;
  const double n = (double)rows * cols;
  if (rows < 0 || cols < 0) { a.fail("softmaxBackward: negative size", true); return nullptr; }
  if (!a.need(ly, n, "softmaxBackward: y too short") || !a.need(lg, n, "softmaxBackward: gy too short") ||
      !a.need(lo, n, "softmaxBackward: gx too short"))
    return nullptr;
  return guarded(env, [&] { g_table->softmax_bwd(y, gy, rows, cols, lgm, gx); });
}

// layerNorm(x, w|null, b|null, rows, cols, eps, out, mean, rstd)
napi_value LayerNorm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t lx = 0, lw = 0, lb = 0, lo = 0, lm = 0, lr = 0;
  const float* x = a.f32(0, &lx);
  const float* w = a.f32_or_null(1, &lw);
  const float* b = a.f32_or_null(2, &lb);
  const int64_t rows = a.i64(3), cols = a.i64(4);
  const float eps = (float)a.num(5);
  float* out = a.f32(6, &lo);
  float* mean = a.f32(7, &lm);
  float* rstd = a.f32(8, &lr);
  if (a.failed) return nullptr;
  const double n = (double)rows * cols;
  if (rows < 0 || cols < 0) { a.fail("layerNorm: negative size", true); return nullptr; }
  if (!a.need(lx, n, "layerNorm: x too short") || !a.need(lo, n, "layerNorm: out too short") ||
      (w && !a.need(lw, (double)cols, "layerNorm: w too short")) || (b && !a.need(lb, (double)cols, "layerNorm: b too short")) ||
      !a.need(lm, (double)rows, "layerNorm: mean too short") || !a.need(lr, (double)rows, "layerNorm: rstd too short"))
    return nullptr;
  return guarded(env, [&] { g_table->layer_norm(x, w, b, rows, cols, eps, out, mean, rstd); });
}

// layerNormBackward(x, w|null, mean, rstd, gy, rows, cols, gx, gw|null, gb|null)
napi_value LayerNormBwd(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t lx = 0, lw = 0, lm = 0, lr = 0, lg = 0, lo = 0, lgw = 0, lgb = 0;
  const float* x = a.f32(0, &lx);
  const float* w = a.f32_or_null(1, &lw);
  const float* mean = a.f32(2, &lm);
  const float* rstd = a.f32(3, &lr);
  const float* gy = a.f32(4, &lg);
  const int64_t rows = a.i64(5), cols = a.i64(6);
  float* gx = a.f32(7, &lo);
  float* gw = a.f32_or_null(8, &lgw);
  float* gb = a.f32_or_null(9, &lgb);
  if (a.failed) return nullptr;
  const double n = (double)rows * cols;
  if (rows < 0 || cols < 0) { a.fail("layerNormBackward: negative size", true); return nullptr; }
  if (!a.need(lx, n, "layerNormBackward: x too short") || !a.need(lg, n, "layerNormBackward: gy too short") ||
      !a.need(lo, n, "layerNormBackward: gx too short") || (w && !a.need(lw, (double)cols, "layerNormBackward: w too short")) ||
      !a.need(lm, (double)rows, "layerNormBackward: mean too short") || !a.need(lr, (double)rows, "layerNormBackward: rstd too short") ||
      (gw && !a.need(lgw, (double)cols, "layerNormBackward: gw too short")) ||
      (gb && !a.need(lgb, (double)cols, "layerNormBackward: gb too short")))
    return nullptr;
  return guarded(env, [&] { g_table->layer_norm_bwd(x, w, mean, rstd, gy, rows, cols, gx, gw, gb); });
}

bool gn_sizes(Args& a, int64_t N, int64_t C, int64_t HW, int64_t G) {
  if (N < 0 || C < 0 || HW < 0 || G < 1 || C % G) { a.fail("groupNorm: bad sizes", true); return false; }
  return true;
}

// groupNorm(x, w|null, b|null, N, C, HW, G, eps, out, mean, rstd[, act])
napi_value GroupNorm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t lx = 0, lw = 0, lb = 0, lo = 0, lm = 0, lr = 0;
  const float* x = a.f32(0, &lx);
  const float* w = a.f32_or_null(1, &lw);
  const float* b = a.f32_or_null(2, &lb);
  const int64_t N = a.i64(3), C = a.i64(4), HW = a.i64(5), G = a.i64(6);
  const float eps = (float)a.num(7);
  float* out = a.f32(8, &lo);
  float* mean = a.f32(9, &lm);
  float* rstd = a.f32(10, &lr);
  if (a.failed || !gn_sizes(a, N, C, HW, G)) return nullptr;
  const double n = (double)N * C * HW;
  if (!a.need(lx, n, "groupNorm: x too short") || !a.need(lo, n, "groupNorm: out too short") ||
      (w && !a.need(lw, (double)C, "groupNorm: w too short")) || (b && !a.need(lb, (double)C, "groupNorm: b too short")) ||
      !a.need(lm, (double)N * G, "groupNorm: mean too short") || !a.need(lr, (double)N * G, "groupNorm: rstd too short"))
    return nullptr;
  const int64_t act = a.is_null(11) ? 0 : a.i64(11);  // optional: 1 = SiLU after the affine
  if (a.failed) return nullptr;
  if (act < 0 || act > 1) { a.fail("groupNorm: bad activation", true); return nullptr; }
  return guarded(env, [&] { g_table->group_norm(x, w, b, N, C, HW, G, eps, out, mean, rstd, (int)act); });
}

// groupNormBackward(x, w|null, mean, rstd, gy, N, C, HW, G, gx, gw|null, gb|null)
napi_value GroupNormBwd(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t lx = 0, lw = 0, lm = 0, lr = 0, lg = 0, lo = 0, lgw = 0, lgb = 0;
  const float* x = a.f32(0, &lx);
  const float* w = a.f32_or_null(1, &lw);
  const float* mean = a.f32(2, &lm);
  const float* rstd = a.f32(3, &lr);
  const float* gy = a.f32(4, &lg);
  const int64_t N = a.i64(5), C = a.i64(6), HW = a.i64(7), G = a.i64(8);
  float* gx = a.f32(9, &lo);
  float* gw = a.f32_or_null(10, &lgw);
  float* gb = a.f32_or_null(11, &lgb);
  if (a.failed || !gn_sizes(a, N, C, HW, G)) return nullptr;
  const double n = (double)N * C * HW;
  if (!a.need(lx, n, "groupNormBackward: x too short") || !a.need(lg, n, "groupNormBackward: gy too short") ||
      !a.need(lo, n, "groupNormBackward: gx too short") || (w && !a.need(lw, (double)C, "groupNormBackward: w too short")) ||
      !a.need(lm, (double)N * G, "groupNormBackward: mean too short") ||
      !a.need(lr, (double)N * G, "groupNormBackward: rstd too short") ||
      (gw && !a.need(lgw, (double)C, "groupNormBackward: gw too short")) ||
      (gb && !a.need(lgb, (double)C, "groupNormBackward: gb too short")))
    return nullptr;
  return guarded(env, [&] { g_table->group_norm_bwd(x, w, mean, rstd, gy, N, C, HW, G, gx, gw, gb); });
}

// ------------------------------------------------------------------------------------- control
napi_value SetNumThreads(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = a.i64(0);
  if (a.failed) return nullptr;
  if (n < 1 || n > 1024) { a.fail("setNumThreads: expected 1..1024", true); return nullptr; }
  set_num_threads((int)n);
  return undefined(env);
}
// setConvWinograd(on) → the previous setting
napi_value SetConvWinograd(napi_env env, napi_callback_info info) {
  Args a(env, info);
  bool on = true;
  if (napi_get_value_bool(env, a.arg(0), &on) != napi_ok) { a.fail("setConvWinograd: expected a boolean"); return nullptr; }
  const bool was = conv_winograd_enabled();
  set_conv_winograd(on);
  napi_value r;
  napi_get_boolean(env, was, &r);
  return r;
}
const char* bf16_self_test();
// Why bf16 matmuls cannot run here (null: they can): the path must be built with AVX512-BF16, the CPU must
// have it, and a small product must come out within bf16 rounding of the portable f32 result.
const char* bf16_unavailable() {
  if (!g_table->bf16_dot) return "the active kernel path has no bf16 dot product (it needs the avx512 path, built with AVX512-BF16)";
#if defined(__x86_64__) || defined(_M_X64)
  if (!__builtin_cpu_supports("avx512bf16")) return "this CPU has no AVX512-BF16";
#endif
  // the product check runs once per kernel path (its answer cannot change); worker threads may ask too
  static std::mutex lock;
  static const KernelTable* checked = nullptr;
  static const char* verdict = nullptr;
  std::lock_guard<std::mutex> guard(lock);
  if (checked == g_table) return verdict;
  verdict = bf16_self_test();
  checked = g_table;
  return verdict;
}
const char* bf16_self_test() {
  // odd K (a half-empty last pair), edge tiles
  return gemm_vs_portable(g_table, 37, 45, 53, 777, true) > 1e-2 ? "the bf16 GEMM failed its self-test against f32" : nullptr;
}
// setMatmulPrecision('f32' | 'bf16'): how gemm multiplies (process-wide, like PyTorch's
// set_float32_matmul_precision); throws, naming the reason, when bf16 cannot run here.
napi_value SetMatmulPrecision(napi_env env, napi_callback_info info) {
  Args a(env, info);
  char name[16] = {0};
  size_t len = 0;
  napi_value s = a.arg(0);
  if (!s || napi_get_value_string_utf8(env, s, name, sizeof name, &len) != napi_ok) {
    a.fail("setMatmulPrecision: expected 'f32' or 'bf16'");
    return nullptr;
  }
  if (std::strcmp(name, "f32") == 0) { g_gemm_bf16 = false; return undefined(env); }
  if (std::strcmp(name, "bf16") != 0) { a.fail("setMatmulPrecision: expected 'f32' or 'bf16'", true); return nullptr; }
  if (const char* why = bf16_unavailable()) {
    napi_throw_error(env, nullptr, (std::string("bf16 matmul is not available: ") + why).c_str());
    return nullptr;
  }
  g_gemm_bf16 = true;
  return undefined(env);
}
napi_value GetMatmulPrecision(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_string_utf8(env, g_gemm_bf16 && g_table->bf16_dot ? "bf16" : "f32", NAPI_AUTO_LENGTH, &r);
  return r;
}
napi_value GetNumThreads(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_int32(env, pool_size(), &r);
  return r;
}
napi_value GetSimd(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_string_utf8(env, g_table->name, NAPI_AUTO_LENGTH, &r);
  return r;
}
// setSimd(name) -> boolean (false when this CPU cannot run that path)
napi_value SetSimd(napi_env env, napi_callback_info info) {
  Args a(env, info);
  napi_value s = a.arg(0);
  char name[32] = {0};
  size_t len = 0;
  if (!s || napi_get_value_string_utf8(env, s, name, sizeof name, &len) != napi_ok) {
    a.fail("setSimd: expected a string");
    return nullptr;
  }
  const KernelTable* t = table_by_name(name);
  if (t) g_table = t;
  if (t && !t->bf16_dot) g_gemm_bf16 = false;   // a path without bf16 falls back to f32 matmuls
  napi_value r;
  napi_get_boolean(env, t != nullptr, &r);
  return r;
}
// supportedSimd() -> string[] (best first)
napi_value SupportedSimd(napi_env env, napi_callback_info) {
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t i = 0;
  const char* names[] = {"avx512", "avx2", "portable"};
  for (const char* n : names) {
    if (!table_by_name(n)) continue;
    napi_value s;
    napi_create_string_utf8(env, n, NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, i++, s);
  }
  return arr;
}

// simdSelfTestFailure() -> string | null: a SIMD path this CPU has but that failed its self-test.
napi_value SelfTestFailure(napi_env env, napi_callback_info) {
  napi_value r;
  if (g_selftest_failure) napi_create_string_utf8(env, g_selftest_failure, NAPI_AUTO_LENGTH, &r);
  else napi_get_null(env, &r);
  return r;
}

// opCounts() -> [unary ops, binary ops]: native.ts checks them against kernels.ts before trusting codes.
napi_value OpCounts(napi_env env, napi_callback_info) {
  napi_value arr, u, b;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, U_COUNT, &u);
  napi_create_int32(env, B_COUNT, &b);
  napi_set_element(env, arr, 0, u);
  napi_set_element(env, arr, 1, b);
  return arr;
}

// Tensor data lives in ArrayBuffers that V8 gets from calloc. glibc's defaults serve each large one
// (from 128 KiB, rising with frees) with fresh pages from mmap and give them back when it is freed, so
// every op output pays a page fault per 4 KiB (~0.4 ms per MiB allocated and touched, measured here).
// Serving buffers up to 32 MiB from the heap and trimming it only past 256 MiB of free space lets the
// next op reuse the memory the last one freed (a small ViT's training step: a third of the page faults,
// ~5 % faster). Environment settings (glibc's MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_) win.
static void tune_malloc_for_tensors() {
#if defined(__GLIBC__)
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_")) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

napi_value Init(napi_env env, napi_value exports) {
  if (!g_table) {
    tune_malloc_for_tensors();
    g_table = best_table();
    if (const char* want = std::getenv("VSS_SIMD")) {
      if (const KernelTable* t = table_by_name(want)) g_table = t;
    }
  }
  struct Fn { const char* name; napi_callback cb; };
  const Fn fns[] = {
      {"gemm", Gemm}, {"conv2d", Conv2d}, {"conv2dBackwardInput", Conv2dBwdInput},
      {"conv2dBackwardWeight", Conv2dBwdWeight}, {"attention", Attention}, {"attentionBackward", AttentionBwd},
      {"unary", Unary}, {"unaryBackward", UnaryBwd}, {"binary", Binary}, {"where", Where},
      {"stridedCopy", StridedCopy}, {"widen", Widen}, {"narrow", Narrow}, {"reduce", Reduce},
      {"softmax", Softmax}, {"softmaxBackward", SoftmaxBwd}, {"layerNorm", LayerNorm},
      {"layerNormBackward", LayerNormBwd}, {"groupNorm", GroupNorm}, {"groupNormBackward", GroupNormBwd},
      {"setNumThreads", SetNumThreads}, {"getNumThreads", GetNumThreads}, {"getSimd", GetSimd},
      {"setSimd", SetSimd}, {"supportedSimd", SupportedSimd}, {"opCounts", OpCounts},
      {"simdSelfTestFailure", SelfTestFailure}, {"mapFile", MapFile}, {"releasePages", ReleasePages},
      {"setConvWinograd", SetConvWinograd}, {"adamStep", AdamStep},
      {"setMatmulPrecision", SetMatmulPrecision}, {"getMatmulPrecision", GetMatmulPrecision},
  };
  for (const Fn& f : fns) {
    napi_value fn;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn) != napi_ok) return nullptr;
    if (napi_set_named_property(env, exports, f.name, fn) != napi_ok) return nullptr;
  }
  return exports;
}

}  // namespace
}  // namespace vss

NAPI_MODULE(NODE_GYP_MODULE_NAME, vss::Init)
