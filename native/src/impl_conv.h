// Convolutions (NCHW, OIHW) as GEMMs whose B operand is packed straight from the image (implicit
// im2col: no column buffer). 1x1 stride-1 unpadded convolutions read the image as a plain matrix.
//   forward          y[n,g]  (Og x OH·OW) = W[g] (Og x Cg·kh·kw) · im2col(x[n,g])
//   backward input   stride 1: a convolution of gy with the flipped, transposed kernel (no scatter);
//                    stride > 1: Wᵀ · gy into a column buffer (in pixel chunks), then col2im
//   backward weight  gw[g] (Og x Cg·kh·kw) = Σ_n gy[n,g] (Og x OH·OW) · im2col(x[n,g])ᵀ
// 3x3 stride-1 forward convolutions on planes of some size use Winograd F(2x2, 3x3) instead (impl_winograd.h).

#include "impl_winograd.h"

struct ConvGeom {
  int64_t C, H, W;            // input planes (channels of this group) and size
  int64_t OH, OW;             // output size
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

// d[0, len) = row[iw0, iw0 + len) of an input row W floats long, 0 where that falls in the padding.
static inline void padded_run(const float* row, int64_t W_in, int64_t iw0, int64_t len, float* d) {
  const int64_t lo = imin(len, imax<int64_t>(0, -iw0)), hi = imax(lo, imin(len, W_in - iw0));
  int64_t t = 0;
  for (; t < lo; t++) d[t] = 0.0f;
  for (; t + W <= hi; t += W) vstore(d + t, vload(row + iw0 + t));
  for (; t < hi; t++) d[t] = row[iw0 + t];
  for (; t < len; t++) d[t] = 0.0f;
}

// B operand of the forward GEMM: element (k = (c, ki, kj), j = output pixel) = x[c, ih, iw] or 0.
struct Im2colPacker final : Packer {
  const float* x; ConvGeom g;
  void pack(int64_t j0, int nj, int64_t k0, int64_t kc, float* dst) const override {
    // split the panel's pixels into runs that share an output row
    int64_t seg_oh[NR + 1], seg_ow[NR + 1];
    int seg_j[NR + 1], seg_len[NR + 1], nseg = 0;
    for (int jj = 0; jj < nj;) {
      const int64_t p = j0 + jj, oh = p / g.OW, ow = p % g.OW;
      const int len = (int)imin<int64_t>(nj - jj, g.OW - ow);
      seg_oh[nseg] = oh; seg_ow[nseg] = ow; seg_j[nseg] = jj; seg_len[nseg] = len; nseg++;
      jj += len;
    }
    const int64_t khw = g.kh * g.kw;
    // A whole panel inside one output row with stride 1: each k row is NR consecutive input floats
    // (vector copies) unless it touches the padding.
    const bool one_run = nseg == 1 && nj == NR && g.sw == 1;
    // (c, ki, kj) of k0, then stepped per k: no divisions in the inner loop
    int64_t c = k0 / khw, ki = (k0 % khw) / g.kw, kj = k0 % g.kw;
    for (int64_t k = 0; k < kc; k++) {
      const float* xc = x + c * g.H * g.W;
      float* d = dst + k * NR;
      if (one_run) {
        const int64_t ih = seg_oh[0] * g.sh - g.ph + ki * g.dh, iw0 = seg_ow[0] - g.pw + kj * g.dw;
        if (ih >= 0 && ih < g.H && iw0 >= 0 && iw0 + NR <= g.W) {
          const float* src = xc + ih * g.W + iw0;
          for (int t = 0; t < NR; t += W) vstore(d + t, vload(src + t));
          goto next;
        }
      }
      for (int jj = nj; jj < NR; jj++) d[jj] = 0.0f;
      for (int s = 0; s < nseg; s++) {
        float* ds = d + seg_j[s];
        const int len = seg_len[s];
        const int64_t ih = seg_oh[s] * g.sh - g.ph + ki * g.dh;
        if (ih < 0 || ih >= g.H) { for (int t = 0; t < len; t++) ds[t] = 0.0f; continue; }
        const float* row = xc + ih * g.W;
        const int64_t iw0 = seg_ow[s] * g.sw - g.pw + kj * g.dw;
        if (g.sw == 1) {
          padded_run(row, g.W, iw0, len, ds);
        } else {
          for (int t = 0; t < len; t++) {
            const int64_t iw = iw0 + t * g.sw;
            ds[t] = (iw >= 0 && iw < g.W) ? row[iw] : 0.0f;
          }
        }
      }
    next:
      if (++kj == g.kw) { kj = 0; if (++ki == g.kh) { ki = 0; c++; } }
    }
  }
};

// Stride-1 im2col of a chunk of columns: per k, the chunk's pixels form a few contiguous runs of one
// input row each, copied in memory order into an L1 row buffer, then split into the NR-wide panels.
// (Panel by panel, the reads would hop between channel planes and defeat the prefetchers.)
constexpr int64_t kIm2colRow = 512;
struct Im2colChunkPacker final : Packer {
  const Im2colPacker* base;
  void pack(int64_t j0, int nj, int64_t k0, int64_t kc, float* dst) const override { base->pack(j0, nj, k0, kc, dst); }
  void pack_many(int64_t j0, int64_t n, int64_t k0, int64_t kc, float* dst, int R) const override {
    const ConvGeom& g = base->g;
    if (g.sw != 1 || n > kIm2colRow || R != NR) { Packer::pack_many(j0, n, k0, kc, dst, R); return; }
    int64_t seg_oh[kIm2colRow], seg_ow[kIm2colRow];
    int seg_j[kIm2colRow], seg_len[kIm2colRow], nseg = 0;
    for (int64_t jj = 0; jj < n;) {
      const int64_t p = j0 + jj, oh = p / g.OW, ow = p % g.OW;
      const int len = (int)imin<int64_t>(n - jj, g.OW - ow);
      seg_oh[nseg] = oh; seg_ow[nseg] = ow; seg_j[nseg] = (int)jj; seg_len[nseg] = len; nseg++;
      jj += len;
    }
    const int64_t np = ceil_div(n, (int64_t)NR);
    alignas(64) float row[kIm2colRow + NR];
    for (int64_t t = n; t < np * NR; t++) row[t] = 0.0f;
    const int64_t khw = g.kh * g.kw;
    int64_t c = k0 / khw, ki = (k0 % khw) / g.kw, kj = k0 % g.kw;
    for (int64_t k = 0; k < kc; k++) {
      const float* xc = base->x + c * g.H * g.W;
      for (int s = 0; s < nseg; s++) {
        float* ds = row + seg_j[s];
        const int len = seg_len[s];
        const int64_t ih = seg_oh[s] * g.sh - g.ph + ki * g.dh;
        if (ih < 0 || ih >= g.H) { for (int t = 0; t < len; t++) ds[t] = 0.0f; continue; }
        padded_run(xc + ih * g.W, g.W, seg_ow[s] - g.pw + kj * g.dw, len, ds);
      }
      float* d = dst + k * NR;
      for (int64_t p = 0; p < np; p++)
        for (int t = 0; t < NR; t += W) vstore(d + p * kc * NR + t, vload(row + p * NR + t));
      if (++kj == g.kw) { kj = 0; if (++ki == g.kh) { ki = 0; c++; } }
    }
  }
};

// Packs rows [0, nrows) (nrows <= R) x depth [0, kc) of an operand into one k-major panel of R lanes per k,
// given fill(i, k0, row, n): row i's n values from depth k0 on, into row[] (an L1 buffer), in memory order.
// W rows x W depth at a time then go through a register transpose (without one, a plain scatter); rows past
// nrows are zeros. Operands whose rows are contiguous runs in memory (pixels of an image row) pack this way
// at copy speed; filling the panel column by column hops between planes and is latency-bound.
template <int R, class Fill>
static void pack_staged(int nrows, int64_t kc, float* dst, Fill fill) {
  constexpr int64_t kChunk = 384;
  alignas(64) float stage[W][kChunk];
  for (int rb = 0; rb < R; rb += W) {
    const int rows = imin(W, R - rb), live = imin(rows, imax(0, nrows - rb));
    for (int64_t kb = 0; kb < kc; kb += kChunk) {
      const int64_t kl = imin(kChunk, kc - kb), kr = round_up(kl, W);
      for (int i = 0; i < live; i++) {
        fill(rb + i, kb, stage[i], kl);
        for (int64_t t = kl; t < kr; t++) stage[i][t] = 0.0f;
      }
#ifdef VSS_HAS_TRANSPOSE
      for (int64_t t0 = 0; t0 < kl; t0 += W) {
        V v[W];
        for (int i = 0; i < W; i++) v[i] = i < live ? vload(stage[i] + t0) : vzero();
        vtranspose(v);
        const int64_t k = kb + t0;
        for (int t = 0; t < W && k + t < kc; t++) {
          float* d = dst + (k + t) * R + rb;
          // a narrower first block (R < W) spills into the next k row, which it writes afterwards
          if (rows == W || (rb == 0 && k + t + 1 < kc)) vstore(d, v[t]);
          else vstore_n(d, v[t], rows);
        }
      }
#else
      for (int64_t t = 0; t < kl; t++)
        for (int i = 0; i < rows; i++) dst[(kb + t) * R + rb + i] = i < live ? stage[i][t] : 0.0f;
#endif
    }
  }
}

// A operand of the weight-gradient GEMM: element (r = (c, ki, kj), k = output pixel) = x[c, ih, iw] or 0, in
// R-tall panels, each row staged as the runs of input rows its output rows read (pack_staged).
template <int R>
struct Im2colTPacker final : Packer {
  const float* x; ConvGeom g;
  void pack(int64_t r0, int nr, int64_t k0, int64_t kc, float* dst) const override {
    const int64_t khw = g.kh * g.kw;
    pack_staged<R>(nr, kc, dst, [&](int64_t r, int64_t kb, float* d, int64_t n) {
      const int64_t kk = r0 + r, c = kk / khw, ki = (kk % khw) / g.kw, kj = kk % g.kw;
      for (int64_t t = 0; t < n;) {   // one output row's part at a time
        const int64_t p = k0 + kb + t, oh = p / g.OW, ow = p % g.OW, len = imin(n - t, g.OW - ow);
        const int64_t ih = oh * g.sh - g.ph + ki * g.dh, iw0 = ow * g.sw - g.pw + kj * g.dw;
        const float* row = x + (c * g.H + ih) * g.W;
        if (ih < 0 || ih >= g.H) {
          for (int64_t u = 0; u < len; u++) d[t + u] = 0.0f;
        } else if (g.sw == 1) {
          padded_run(row, g.W, iw0, len, d + t);
        } else {
          for (int64_t u = 0; u < len; u++) {
            const int64_t iw = iw0 + u * g.sw;
            d[t + u] = (iw >= 0 && iw < g.W) ? row[iw] : 0.0f;
          }
        }
        t += len;
      }
    });
  }
};

// A operand of the stride-1 input gradient: element (i = c, k = (o, ki, kj)) = w[o, c, kh-1-ki, kw-1-kj].
struct FlipPacker final : Packer {
  const void* w; int dt; int64_t Cg, kh, kw;
  void pack(int64_t i0, int mi, int64_t k0, int64_t kc, float* dst) const override {
    const int64_t khw = kh * kw;
    for (int64_t k = 0; k < kc; k++) {
      const int64_t kk = k0 + k, o = kk / khw, ki = (kk % khw) / kw, kj = kk % kw;
      const int64_t base = (o * Cg) * khw + (kh - 1 - ki) * kw + (kw - 1 - kj);
      float* d = dst + k * MR;
      for (int i = 0; i < mi; i++) d[i] = load_as_f32(w, dt, base + (i0 + i) * khw);
      for (int i = mi; i < MR; i++) d[i] = 0.0f;
    }
  }
};

// A operand packed once for a whole convolution (all K, MR-tall panels): the driver would otherwise
// re-pack (transpose, widen f16) the weights for every NC chunk of pixels, which on large planes is
// hundreds of times. Panels hold zeros past row M, so pack() is a plain copy of a k slice.
struct PrepackedA final : Packer {
  const float* buf = nullptr; int64_t K = 0;
  void pack(int64_t i0, int, int64_t k0, int64_t kc, float* dst) const override {
    __builtin_memcpy(dst, buf + (i0 / MR) * K * MR + k0 * MR, (size_t)(kc * MR) * sizeof(float));
  }
  const float* direct(int64_t i0, int64_t k0) const override { return buf + (i0 / MR) * K * MR + k0 * MR; }
};
static PrepackedA prepack_a(const Packer& src, int64_t M, int64_t K, int slot) {
  PrepackedA p;
  const int64_t np = ceil_div(M, MR);
  float* buf = static_cast<float*>(scratch(slot, (size_t)(np * K * MR) * sizeof(float)));
  for (int64_t a = 0; a < np; a++) src.pack(a * MR, (int)imin<int64_t>(MR, M - a * MR), 0, K, buf + a * K * MR);
  p.buf = buf; p.K = K;
  return p;
}

// GEMM with a prepacked A over many columns (the pixels of a large plane): each task takes a fixed chunk
// of CONV_NC columns and, per KC slice, packs just that slice of B into its own buffer (hot in L2 while it
// is used) — no B~ shared across threads, no barrier per chunk, threads split the pixels (also for N = 1).
// Same KC slices and micro-kernel as gemm_driver, so the bits match it at any thread count.
constexpr int64_t CONV_NC = 12 * 16;
static void conv_gemm(int64_t M, int64_t N, int64_t K, float beta, const PrepackedA& pa, const Packer& pb,
                      float* C, int64_t ldc, bool parallel) {
  const int64_t ncn = imax<int64_t>(NR, CONV_NC / NR * NR);
  const int64_t nchunks = ceil_div(N, ncn), npa = ceil_div(M, MR), kc_max = imin<int64_t>(K, KC);
  auto chunk = [&](int64_t t, int) {
    const int64_t j0 = t * ncn, nc = imin(ncn, N - j0), np = ceil_div(nc, NR);
    float* Bs = static_cast<float*>(scratch(SLOT_OP2, (size_t)(np * kc_max * NR) * sizeof(float)));
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = imin<int64_t>(KC, K - pc);
      pb.pack_many(j0, nc, pc, kc, Bs, NR);
      const float b_eff = pc == 0 ? beta : 1.0f;
      for (int64_t ia = 0; ia < npa; ia += MC / MR) {      // A block of MC rows stays in L2
        const int64_t ib = imin<int64_t>(npa, ia + MC / MR);
        for (int64_t p = 0; p < np; p++) {
          const int nr = (int)imin<int64_t>(NR, nc - p * NR);
          float* cp = C + j0 + p * NR;
          for (int64_t a = ia; a < ib; a++)
            ukernel(kc, pa.buf + a * K * MR + pc * MR, Bs + p * kc * NR, cp + a * MR * ldc, ldc, 1.0f, b_eff,
                    (int)imin<int64_t>(MR, M - a * MR), nr);
        }
      }
    }
  };
  if (parallel && num_threads() > 1 && nchunks > 1) par_for(nchunks, chunk);
  else for (int64_t t = 0; t < nchunks; t++) chunk(t, 0);
}

// Pack a conv's weights (rows × K) once per call into kept scratch: always on large planes (conv_gemm needs
// it), else only up to 32 MB — SD's 1280-channel layers on 8×8 and 4×4 planes would keep 59–118 MB resident.
static inline bool keep_weights_packed(int64_t rows, int64_t K, int64_t plane) {
  return plane >= 4 * CONV_NC || 4.0 * round_up(rows, MR) * K <= 32.0 * (1 << 20);
}

static inline bool conv_is_pointwise(const ConvArgs& a) {
  return a.kh == 1 && a.kw == 1 && a.sh == 1 && a.sw == 1 && a.ph == 0 && a.pw == 0;
}
static inline const void* wptr(const void* w, int dt, int64_t off) {
  return static_cast<const char*>(w) + (size_t)off * (dt == DT_F32 ? 4 : 2);
}

// Run items [0, n) of equal cost: in parallel one per task when there are many small ones, else one
// after another with the GEMM itself parallel.
template <class F>
static void run_items(int64_t n, double flops_each, F item) {
  const int nt = num_threads();
  if (nt > 1 && n > 1 && (n >= 4 * nt || (n >= nt && flops_each < 3e7))) {
    auto body = [&](int64_t t, int) { item(t, false); };
    par_for(n, body);
  } else {
    for (int64_t t = 0; t < n; t++) item(t, nt > 1 && flops_each >= 2e5);
  }
}

static void conv2d(const ConvArgs& a) {
  if (conv_winograd_applies(a)) { conv2d_winograd(a); return; }
  const int64_t OH = (a.H + 2 * a.ph - a.dh * (a.kh - 1) - 1) / a.sh + 1;
  const int64_t OW = (a.W + 2 * a.pw - a.dw * (a.kw - 1) - 1) / a.sw + 1;
  if (OH <= 0 || OW <= 0 || a.N <= 0 || a.O <= 0) return;
  const int64_t Cg = a.C / a.groups, Og = a.O / a.groups, K = Cg * a.kh * a.kw, P = OH * OW;
  const ConvGeom geom{Cg, a.H, a.W, OH, OW, a.kh, a.kw, a.sh, a.sw, a.ph, a.pw, a.dh, a.dw};
  // One group: the weights are packed once for all images (the driver would re-pack them per image,
  // per pixel chunk and per N tile — the main cost on the small planes of a U-Net's inner levels).
  const bool share = a.groups == 1 && keep_weights_packed(Og, K, P);
  PrepackedA shared;
  if (share) {
    DensePacker<MR> pw(a.w, a.wdt, K, false);
    shared = prepack_a(pw, Og, K, SLOT_OP1);
  }
  run_items(a.N * a.groups, 2.0 * Og * P * K, [&](int64_t t, bool par) {
    const int64_t n = t / a.groups, g = t % a.groups;
    const float* x = a.x + (n * a.C + g * Cg) * a.H * a.W;
    float* y = a.out + (n * a.O + g * Og) * P;
    float beta = 0.0f;
    if (a.bias) {
      for (int64_t o = 0; o < Og; o++) {
        const V b = vset1(a.bias[g * Og + o]);
        float* r = y + o * P;
        for (int64_t i = 0; i < P; i += W) vstore_n(r + i, b, (int)imin<int64_t>(W, P - i));
      }
      beta = 1.0f;
    }
    DensePacker<MR> pw(wptr(a.w, a.wdt, g * Og * K), a.wdt, K, false);
    // worth it when the pixels span several NC chunks of the driver
    const bool pre = share || P >= 4 * CONV_NC;
    PrepackedA pp = shared;
    if (pre && !share) pp = prepack_a(pw, Og, K, SLOT_OP1);
    const Packer& pa = pre ? static_cast<const Packer&>(pp) : static_cast<const Packer&>(pw);
    if (conv_is_pointwise(a)) {
      DensePacker<NR> pb(x, DT_F32, a.H * a.W, true);
      gemm_driver(Og, P, K, 1.0f, beta, pa, pb, y, P, par);
    } else {
      Im2colPacker pb; pb.x = x; pb.g = geom;
      Im2colChunkPacker pbc; pbc.base = &pb;
      if (P >= 4 * CONV_NC) conv_gemm(Og, P, K, beta, pp, pbc, y, P, par);
      else gemm_driver(Og, P, K, 1.0f, beta, pa, pb, y, P, par);
    }
  });
}

static void conv2d_bwd_input(const ConvArgs& a) {
  const int64_t OH = (a.H + 2 * a.ph - a.dh * (a.kh - 1) - 1) / a.sh + 1;
  const int64_t OW = (a.W + 2 * a.pw - a.dw * (a.kw - 1) - 1) / a.sw + 1;
  const int64_t HW = a.H * a.W;
  if (a.N <= 0 || a.C <= 0 || HW <= 0) return;
  const int64_t Cg = a.C / a.groups, Og = a.O / a.groups, khw = a.kh * a.kw, K = Og * khw;
  if (OH <= 0 || OW <= 0) {
    par_range(a.N * a.C * HW, 1, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; i++) a.out[i] = 0.0f; });
    return;
  }
  const int64_t P = OH * OW;
  if (conv2d_bwd_input_winograd(a)) return;
  if (a.sh == 1 && a.sw == 1) {
    // gx[n,g] (Cg x H·W) = flip(W[g])ᵀ (Cg x Og·kh·kw) · im2col'(gy[n,g]) with padding dh(kh-1) - ph
    const ConvGeom geom{Og, OH, OW, a.H, a.W, a.kh, a.kw, 1, 1,
                        a.dh * (a.kh - 1) - a.ph, a.dw * (a.kw - 1) - a.pw, a.dh, a.dw};
    // one group: flipped weights packed once for all images
    const bool share = a.groups == 1 && !conv_is_pointwise(a) && keep_weights_packed(Cg, K, HW);
    PrepackedA shared;
    if (share) {
      FlipPacker pf; pf.w = a.w; pf.dt = a.wdt; pf.Cg = Cg; pf.kh = a.kh; pf.kw = a.kw;
      shared = prepack_a(pf, Cg, K, SLOT_OP1);
    }
    run_items(a.N * a.groups, 2.0 * Cg * HW * K, [&](int64_t t, bool par) {
      const int64_t n = t / a.groups, g = t % a.groups;
      const float* gy = a.gy + (n * a.O + g * Og) * P;
      float* gx = a.out + (n * a.C + g * Cg) * HW;
      const void* wg = wptr(a.w, a.wdt, g * Og * Cg * khw);
      if (conv_is_pointwise(a)) {
        // gx = Wᵀ · gy: A (i = c, k = o) = w[o, c], stored k-major
        DensePacker<MR> pa(wg, a.wdt, Cg, true);
        DensePacker<NR> pb(gy, DT_F32, P, true);
        gemm_driver(Cg, HW, Og, 1.0f, 0.0f, pa, pb, gx, HW, par);
      } else {
        FlipPacker pf; pf.w = wg; pf.dt = a.wdt; pf.Cg = Cg; pf.kh = a.kh; pf.kw = a.kw;
        const bool pre = share || HW >= 4 * CONV_NC;
        PrepackedA pp = shared;
        if (pre && !share) pp = prepack_a(pf, Cg, K, SLOT_OP1);
        const Packer& pa = pre ? static_cast<const Packer&>(pp) : static_cast<const Packer&>(pf);
        Im2colPacker pb; pb.x = gy; pb.g = geom;
        Im2colChunkPacker pbc; pbc.base = &pb;
        if (HW >= 4 * CONV_NC) conv_gemm(Cg, HW, K, 0.0f, pp, pbc, gx, HW, par);
        else gemm_driver(Cg, HW, K, 1.0f, 0.0f, pa, pb, gx, HW, par);
      }
    });
    return;
  }
  // Strided: columns = Wᵀ · gy for a chunk of output pixels, then scattered back (col2im). Pixel chunks
  // are fixed (not thread-dependent) and col2im is split by input channel, so sums keep their order.
  const int64_t Kc = Cg * khw;
  const int64_t chunk = imax<int64_t>(NR, imin<int64_t>(P, ((int64_t)1 << 21) / imax<int64_t>(Kc, 1) / NR * NR));
  for (int64_t n = 0; n < a.N; n++) {
    for (int64_t g = 0; g < a.groups; g++) {
      const float* gy = a.gy + (n * a.O + g * Og) * P;
      float* gx = a.out + (n * a.C + g * Cg) * HW;
      const void* wg = wptr(a.w, a.wdt, g * Og * Kc);
      par_range(Cg * HW, 1, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; i++) gx[i] = 0.0f; });
      float* col = static_cast<float*>(scratch(SLOT_OP0, (size_t)(Kc * chunk) * sizeof(float)));
      for (int64_t p0 = 0; p0 < P; p0 += chunk) {
        const int64_t np = imin(chunk, P - p0);
        DensePacker<MR> pa(wg, a.wdt, Kc, true);            // A (i = (c,ki,kj), k = o) = w[o, i]
        DensePacker<NR> pb(gy + p0, DT_F32, P, true);       // B (k = o, j = pixel) = gy[o, p0 + j]
        gemm_driver(Kc, np, Og, 1.0f, 0.0f, pa, pb, col, np, true);
        par_range(Cg, khw * np, [&](int64_t c0, int64_t c1) {
          for (int64_t c = c0; c < c1; c++) {
            float* plane = gx + c * HW;
            for (int64_t ki = 0; ki < a.kh; ki++)
              for (int64_t kj = 0; kj < a.kw; kj++) {
                const float* cr = col + ((c * a.kh + ki) * a.kw + kj) * np;
                for (int64_t q = 0; q < np; q++) {
                  const int64_t p = p0 + q, oh = p / OW, ow = p % OW;
                  const int64_t ih = oh * a.sh - a.ph + ki * a.dh, iw = ow * a.sw - a.pw + kj * a.dw;
                  if (ih >= 0 && ih < a.H && iw >= 0 && iw < a.W) plane[ih * a.W + iw] += cr[q];
                }
              }
          }
        });
      }
    }
  }
}

// dst (cols x rows) = srcᵀ for a dense src (rows x cols), split over threads by blocks of columns (element
// by element and on one thread, the strided walk of a 5760 x 640 gradient cost a third of its product).
static void transpose_into(const float* src, int64_t rows, int64_t cols, float* dst, bool parallel) {
  auto cols_block = [&](int64_t c0, int64_t c1) { transpose_padded(src + c0, cols, rows, c1 - c0, dst + c0 * rows, rows, rows); };
  if (!parallel || num_threads() <= 1 || rows * cols < (1 << 16)) { cols_block(0, cols); return; }
  par_range(ceil_div(cols, (int64_t)W), rows * W, [&](int64_t b0, int64_t b1) { cols_block(b0 * W, imin(cols, b1 * W)); });
}

// Stride-1 weight gradient without im2col. In the zero-padded input's flat pixel index (row stride
// Wp = W + 2·pw), output pixel q = oh·Wp + ow reads tap (ki, kj) at q + δ, δ = ki·dh·Wp + kj·dw, so
//   gw[:, :, ki, kj] (Og x Cg) = Σ_q gy'[:, q] · xpad[:, q + δ]ᵀ
// where gy' is gy spread over rows of Wp (zeros in the columns past OW: Wp/OW more multiply-adds). Per KC
// slice of q, gy' is packed once (MR-row panels) and xpad once over the slice plus the largest shift
// (NR-channel panels, k-major); each tap's GEMM reads the packed x δ rows further on. Every input element is
// packed about once instead of kh·kw times, which pays where im2col's packing outweighs its use: few output
// channels (each packed element is used Og times) on wide planes (few padded columns). Per slice the panels
// are packed in parallel, then the (tap, channel panel) products run, each C element by one task, slices in
// order (the same bits at any thread count).
static inline bool wgrad_shifted_pays(const ConvArgs& a, int64_t OW) {
  const int64_t Og = a.O / a.groups;
  return a.sh == 1 && a.sw == 1 && a.kh * a.kw > 1 && Og <= 128 && (a.W + 2 * a.pw) * 25 <= OW * 26;
}
static void conv2d_bwd_weight_shifted(const ConvArgs& a, int64_t OH, int64_t OW) {
  const int64_t Cg = a.C / a.groups, Og = a.O / a.groups, taps = a.kh * a.kw;
  const int64_t Wp = a.W + 2 * a.pw, Kq = OH * Wp;
  const int64_t reach = (a.kh - 1) * a.dh * Wp + (a.kw - 1) * a.dw;
  const int64_t npa = ceil_div(Og, MR), npb = ceil_div(Cg, NR), kc_max = imin<int64_t>(Kq, KC);
  const int64_t kb_max = kc_max + reach;
  float* T = static_cast<float*>(scratch(SLOT_OP0, (size_t)(taps * Og * Cg) * sizeof(float)));   // [tap][o][c]
  float* Ap = static_cast<float*>(scratch(SLOT_OP1, (size_t)(npa * kc_max * MR) * sizeof(float)));
  float* Bp = static_cast<float*>(scratch(SLOT_OP2, (size_t)(npb * kb_max * NR) * sizeof(float)));
  for (int64_t g = 0; g < a.groups; g++) {
    for (int64_t n = 0; n < a.N; n++) {
      const float* gy = a.gy + (n * a.O + g * Og) * OH * OW;
      const float* x = a.x + (n * a.C + g * Cg) * a.H * a.W;
      for (int64_t pc = 0; pc < Kq; pc += KC) {
        const int64_t kc = imin<int64_t>(KC, Kq - pc), kb = kc + reach;
        // gy'[o, q]: runs of one output row, zeros past OW
        auto fill_gy = [&](int64_t o, int64_t k0, float* row, int64_t nk) {
          for (int64_t t = 0; t < nk;) {
            const int64_t q = pc + k0 + t, oh = q / Wp, ow = q % Wp, len = imin(nk - t, Wp - ow);
            const int64_t valid = oh < OH ? imax<int64_t>(0, imin(len, OW - ow)) : 0;
            const float* src = gy + o * OH * OW + oh * OW + ow;
            for (int64_t u = 0; u < valid; u++) row[t + u] = src[u];
            for (int64_t u = valid; u < len; u++) row[t + u] = 0.0f;
            t += len;
          }
        };
        // xpad[c, q']: runs of one padded input row
        auto fill_x = [&](int64_t c, int64_t k0, float* row, int64_t nk) {
          for (int64_t t = 0; t < nk;) {
            const int64_t q = pc + k0 + t, hp = q / Wp, wp = q % Wp, len = imin(nk - t, Wp - wp);
            const int64_t ih = hp - a.ph, iw0 = wp - a.pw;
            if (ih < 0 || ih >= a.H) { for (int64_t u = 0; u < len; u++) row[t + u] = 0.0f; t += len; continue; }
            padded_run(x + (c * a.H + ih) * a.W, a.W, iw0, len, row + t);
            t += len;
          }
        };
        auto pack = [&](int64_t i, int) {   // the larger x panels first, so the threads finish together
          if (i < npb) {
            const int64_t c0 = i * NR;
            pack_staged<NR>((int)imin<int64_t>(NR, Cg - c0), kb, Bp + i * kb * NR,
                            [&](int64_t r, int64_t k0, float* row, int64_t nk) { fill_x(c0 + r, k0, row, nk); });
          } else {
            const int64_t o0 = (i - npb) * MR;
            pack_staged<MR>((int)imin<int64_t>(MR, Og - o0), kc, Ap + (i - npb) * kc * MR,
                            [&](int64_t r, int64_t k0, float* row, int64_t nk) { fill_gy(o0 + r, k0, row, nk); });
          }
        };
        const bool par = num_threads() > 1;
        if (par) par_for(npa + npb, pack); else for (int64_t i = 0; i < npa + npb; i++) pack(i, 0);
        const float beta = n == 0 && pc == 0 ? 0.0f : 1.0f;
        auto product = [&](int64_t task, int) {
          const int64_t t = task / npb, p = task % npb;
          const int64_t delta = (t / a.kw) * a.dh * Wp + (t % a.kw) * a.dw;
          const int nr = (int)imin<int64_t>(NR, Cg - p * NR);
          float* C = T + t * Og * Cg + p * NR;
          for (int64_t i = 0; i < npa; i++)
            ukernel(kc, Ap + i * kc * MR, Bp + p * kb * NR + delta * NR, C + i * MR * Cg, Cg, 1.0f, beta,
                    (int)imin<int64_t>(MR, Og - i * MR), nr);
        };
        if (par) par_for(taps * npb, product); else for (int64_t i = 0; i < taps * npb; i++) product(i, 0);
      }
    }
    float* gw = a.out + g * Og * Cg * taps;   // [o][c][tap]
    par_range(Og, Cg * taps, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; o++)
        for (int64_t c = 0; c < Cg; c++)
          for (int64_t t = 0; t < taps; t++) gw[(o * Cg + c) * taps + t] = T[(t * Og + o) * Cg + c];
    });
  }
}

// gw[g] (Og x Kc) = Σ_n gy[n,g] (Og x P) · im2col(x[n,g])ᵀ, computed transposed: gw[g]ᵀ (Kc x Og) =
// Σ_n im2col(x[n,g]) · gy[n,g]ᵀ in a scratch buffer, then transposed into gw. The long im2col operand is
// then the A side, packed per KC slice into a buffer that stays in L2 (as B it was one large buffer
// written out and read back: a fifth of the time), and Kc (1152 at 128 channels) fills the micro-panels
// where Og (128) left a 2-row one. Images accumulate in order (beta = 1 after the first).
static void conv2d_bwd_weight(const ConvArgs& a) {
  const int64_t OH = (a.H + 2 * a.ph - a.dh * (a.kh - 1) - 1) / a.sh + 1;
  const int64_t OW = (a.W + 2 * a.pw - a.dw * (a.kw - 1) - 1) / a.sw + 1;
  const int64_t Cg = a.C / a.groups, Og = a.O / a.groups, khw = a.kh * a.kw, Kc = Cg * khw;
  const int64_t total = a.O * Kc;
  if (total <= 0) return;
  if (OH <= 0 || OW <= 0 || a.N <= 0) { for (int64_t i = 0; i < total; i++) a.out[i] = 0.0f; return; }
  const int64_t P = OH * OW;
  if (wgrad_shifted_pays(a, OW)) { conv2d_bwd_weight_shifted(a, OH, OW); return; }
  const ConvGeom geom{Cg, a.H, a.W, OH, OW, a.kh, a.kw, a.sh, a.sw, a.ph, a.pw, a.dh, a.dw};
  run_items(a.groups, 2.0 * Og * Kc * P * a.N, [&](int64_t g, bool par) {
    float* gwt = static_cast<float*>(scratch(SLOT_OP0, (size_t)(Kc * Og) * sizeof(float)));
    for (int64_t n = 0; n < a.N; n++) {
      const float* gy = a.gy + (n * a.O + g * Og) * P;
      const float* x = a.x + (n * a.C + g * Cg) * a.H * a.W;
      DensePacker<NR> pb(gy, DT_F32, P, false);             // B (k = pixel, j = o) = gy[o, p]
      const float beta = n == 0 ? 0.0f : 1.0f;
      if (conv_is_pointwise(a)) {
        DensePacker<MR> pa(x, DT_F32, a.H * a.W, false);  // A (i = c, k = pixel) = x[c, p]
        gemm_driver(Kc, Og, P, 1.0f, beta, pa, pb, gwt, Og, par);
      } else {
        Im2colTPacker<MR> pa; pa.x = x; pa.g = geom;
        gemm_driver(Kc, Og, P, 1.0f, beta, pa, pb, gwt, Og, par);
      }
    }
    transpose_into(gwt, Kc, Og, a.out + g * Og * Kc, par);
  });
}
