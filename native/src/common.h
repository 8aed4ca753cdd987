// Shared declarations of the VSS native kernels: argument structs, the per-ISA kernel table, the thread
// pool and scratch memory. Included by every translation unit, including the ones compiled with
// AVX-512 / AVX2 flags, so it must not define any function with external linkage (the linker could keep
// an AVX-512 copy and hand it to the portable path): helpers here are `static inline` only.
#pragma once
#include <stddef.h>
#include <stdint.h>

// For the SIMD load/store helpers called per vector inside kernel loops: GCC's size heuristics leave
// some of them out of line in the large ISA translation units (a call per vector and a dtype switch).
#if defined(__GNUC__)
#define VSS_INLINE static inline __attribute__((always_inline))
#else
#define VSS_INLINE static inline
#endif

namespace vss {

enum DType : int { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 };

// ----------------------------------------------------------------------------------------- arguments
struct GemmArgs {
  bool transA, transB;
  int64_t M, N, K;
  float alpha, beta;
  const void* A; int adt; int64_t lda, strideA;
  const void* B; int bdt; int64_t ldb, strideB;
  float* C; int64_t ldc, strideC;
  int64_t batch;
  const float* bias = nullptr;   // [N] or null: added to every row of C (a linear layer's bias)
  // Products of bf16-rounded operands, summed in f32 (AVX512-BF16; only set when the table has bf16_dot).
  // Products with M <= 4 rows stay f32: they are bound by reading B, not by multiply-adds.
  bool bf16_compute = false;
};

// The end of a GEMM micro-kernel: C = alpha·acc + beta·C (beta = 0 ignores C's old contents) + bias[j]
// when bias is not null (a linear layer's bias, added while the tile is in registers: adding it to C first
// and then accumulating onto it made a 2176×128×128 product 16 % slower). Passed through memory
// and read after the k loop: in registers, alpha and beta stay live across it and GCC spills an
// accumulator instead (measured: 2x slower).
struct UkTail { float alpha, beta; const float* bias; };

struct ConvArgs {
  const float* x;      // forward / weight-grad: input; backward-input: unused
  const float* gy;     // backward passes: output gradient
  const void* w; int wdt;
  const float* bias;   // forward only, may be null
  float* out;          // y (forward), gx (backward input), gw (backward weight)
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups;
};

// Where row i of (batch b, head h) of an attention operand starts: b*b + h*h + i*l elements in (its
// last dim is dense). Dense [B, H, L, n] is {H*L*n, L*n, n}; the [B, L, H, n] a linear layer produces
// before the heads are split is {L*H*n, n, H*n}, which the kernels read in place.
struct AttnLayout { int64_t b, h, l; };
static inline AttnLayout dense_layout(int64_t H, int64_t L, int64_t n) { return {H * L * n, L * n, n}; }

struct AttnArgs {
  const float *q, *k, *v, *mask, *out, *lse, *gout;
  float *o, *l;             // forward outputs (out, lse); lse is dense [B, H, Lq]
  float *gq, *gk, *gv;      // backward outputs
  int64_t B, H, Lq, Lk, D, Dv, mB, mH, mQ;
  float scale;
  bool causal;
  AttnLayout sq, sk, sv, so, sgo, sgq, sgk, sgv;   // of q, k, v, o (= out), gout, gq, gk, gv
};

// Up to rank 8 after coalescing; strides in elements (may be 0).
struct StridedOperand { const float* p; int64_t strides[8]; };

struct AdamArgs {   // one Adam / AdamW step over n elements, in place (impl_optim.h)
  float *p, *m, *v, *vmax;   // vmax: null unless amsgrad
  const float* g;
  int64_t n;
  float beta1, beta2, c1, c2;   // c1 = 1 − β1, c2 = 1 − β2, rounded from double (1.0f − 0.999f is 1.3e-5 off)
  float eps, step_size, bc2_sqrt, shrink, l2;
};

struct EltArgs {
  int op;
  const float *x, *y, *gy;
  float* out;
  int64_t n;
  double alpha, beta;   // double so pow_scalar sees the exponent exactly as JS passed it
};

// Ops mirror the order of UNARY_OPS / BINARY_OPS in kernels.ts (native.ts maps names to these codes).
enum UnaryOp : int {
  U_NEG, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_ABS, U_SIN, U_COS, U_TANH, U_SIGMOID, U_RELU, U_GELU,
  U_GELU_TANH, U_QUICK_GELU, U_SILU, U_ERF, U_SQUARE, U_RECIPROCAL, U_POW_SCALAR, U_CLAMP, U_AFFINE,
  U_COUNT
};
enum BinaryOp : int {
  B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAXIMUM, B_MINIMUM, B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE, B_COUNT
};
enum ReduceOp : int { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN };

struct NdArgs {   // binary / where over a coalesced shape (row-major, innermost last)
  int op;
  int rank;
  int64_t shape[8];
  const float* in[3];
  int64_t st[3][8];
  float* out;
};

struct KernelTable {
  const char* name;
  void (*gemm)(const GemmArgs&);
  void (*conv2d)(const ConvArgs&);
  void (*conv2d_bwd_input)(const ConvArgs&);
  void (*conv2d_bwd_weight)(const ConvArgs&);
  void (*attention)(const AttnArgs&);
  void (*attention_bwd)(const AttnArgs&);
  void (*unary)(const EltArgs&);
  void (*unary_bwd)(const EltArgs&);
  void (*binary)(const NdArgs&);
  void (*where)(const NdArgs&);
  void (*reduce)(int op, const float* x, int64_t outer, int64_t n, int64_t inner, void* out);
  void (*softmax)(const float* x, int64_t rows, int64_t cols, bool log, float* out);
  void (*softmax_bwd)(const float* y, const float* gy, int64_t rows, int64_t cols, bool log, float* gx);
  void (*layer_norm)(const float* x, const float* w, const float* b, int64_t rows, int64_t cols, float eps,
                     float* out, float* mean, float* rstd);
  void (*layer_norm_bwd)(const float* x, const float* w, const float* mean, const float* rstd, const float* gy,
                         int64_t rows, int64_t cols, float* gx, float* gw, float* gb);
  // act: 0 none, 1 SiLU applied to the normalised output in the same pass (ResNet blocks' norm → act)
  void (*group_norm)(const float* x, const float* w, const float* b, int64_t N, int64_t C, int64_t HW,
                     int64_t G, float eps, float* out, float* mean, float* rstd, int act);
  void (*group_norm_bwd)(const float* x, const float* w, const float* mean, const float* rstd, const float* gy,
                         int64_t N, int64_t C, int64_t HW, int64_t G, float* gx, float* gw, float* gb);
  // Dense f32 gather from a strided (coalesced) view; src is f32 or 16-bit per dt.
  void (*strided_copy)(const void* src, int dt, int rank, const int64_t* shape, const int64_t* strides, float* out);
  void (*widen)(const uint16_t* src, int dt, int64_t n, float* out);
  void (*narrow)(const float* src, int dt, int64_t n, uint16_t* out);
  void (*adam_step)(const AdamArgs&);
  bool bf16_dot;   // gemm honours GemmArgs::bf16_compute (compiled with AVX512-BF16)
};

const KernelTable* table_portable();
#if defined(__x86_64__) || defined(_M_X64)
const KernelTable* table_avx2();
const KernelTable* table_avx512();
#endif

// ----------------------------------------------------------------------------------------- thread pool
// A persistent pool: parallel_for runs fn(ctx, task, tid) for task in [0, ntasks) with dynamic
// scheduling (the caller works too). Nested calls, or calls while another JS thread holds the pool, run
// inline on the caller. Kernels never let a result depend on which thread ran a task.
typedef void (*TaskFn)(void* ctx, int64_t task, int tid);
void parallel_for(int64_t ntasks, TaskFn fn, void* ctx);
int num_threads();          // threads parallel_for may use from the current thread (1 inside a task)
int pool_size();
void set_num_threads(int n);

// Per-thread scratch: a 64-byte aligned buffer per (thread, slot), grown on demand and kept.
enum ScratchSlot : int {
  SLOT_GEMM_A, SLOT_GEMM_B, SLOT_GEMM_T,      // gemm driver
  SLOT_OP0, SLOT_OP1, SLOT_OP2, SLOT_OP3,     // callers of the gemm driver (conv, attention, ...)
  SLOT_OP4, SLOT_OP5, SLOT_OP6, SLOT_OP7,
  SLOT_COUNT
};
void* scratch(int slot, size_t bytes);

// Winograd F(2x2, 3x3) for 3x3 stride-1 forward convolutions (on by default; off: the direct path, for
// comparisons). Process-wide.
bool conv_winograd_enabled();
void set_conv_winograd(bool on);

// ----------------------------------------------------------------------------------------- scalar helpers
static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else {  // subnormal: renormalise
      int e = -1;
      do { man <<= 1; e++; } while (!(man & 0x400));
      bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | man << 13;
  else bits = sign | (exp + 127 - 15) << 23 | man << 13;
  float f; __builtin_memcpy(&f, &bits, 4); return f;
}
static inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16; float f; __builtin_memcpy(&f, &bits, 4); return f;
}
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u; __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN, keep sign
  u += 0x7fffu + ((u >> 16) & 1);  // round to nearest even
  return (uint16_t)(u >> 16);
}
static inline uint16_t f32_to_f16(float f) {
  uint32_t u; __builtin_memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));  // NaN stays NaN
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  // rounds to ≥ 65520: overflow to Inf
  if (a < 0x38800000u) {  // below the smallest normal f16: produce a subnormal (or 0), RNE
    if (a < 0x33000000u) return (uint16_t)sign;  // < half the smallest subnormal (2^-25): ±0
    uint32_t man = (a & 0x7fffff) | 0x800000;
    int shift = 126 - (int)(a >> 23);  // 14..24 places to reach units of 2^-24
    uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15, still with 23 mantissa bits
  r += 0xfffu + ((r >> 13) & 1);
  return (uint16_t)(sign | (r >> 13));
}

}  // namespace vss
