// Fused attention (FlashAttention-style): tiles of queries x keys, online softmax, never an Lq x Lk
// matrix. All products run on the GEMM micro-kernel. The score tile is computed in whichever
// orientation makes it, as stored, the packed B operand of the next product:
//   forward / dQ pass:   Sᵀ (keys x queries) = K · Qᵀ, lanes = queries; Oᵀ += Vᵀ · Pᵀ, dQᵀ += Kᵀ · dSᵀ
//   dK,dV pass:          S (queries x keys)  = Q · Kᵀ, lanes = keys;    dVᵀ += dOᵀ · P, dKᵀ += Qᵀ · dS
// With at most kOnePassLk keys the dK,dV pass covers all keys in one tile and also forms dQ = dS · K from
// its dS blocks (repacked as A panels), so the dQ pass and its recomputation of S and dP are skipped.
// Operands shared by all tiles of a (batch, head) are packed once; the per-tile ones per task.
// Work splits: forward and dQ by (b, h, query tile), dK/dV by (b, h, key tile); each output element is
// accumulated by one task in a fixed order, so results do not depend on the thread count.
// Every operand has its own (batch, head, row) strides (AttnLayout): heads split from [B, L, H·D] are read
// and written in place.

// C (panels of NR columns: panel p at C + p*c_pstride, row r at + r*c_row) = alpha·A·B + beta·C, where
// A is MR-row panels a_pstride apart and B is NR-column panels b_pstride apart, both `depth` deep.
static inline void mm_panels(int64_t m, int64_t n, int64_t depth, const float* A, int64_t a_pstride,
                             const float* B, int64_t b_pstride, float* C, int64_t c_row, int64_t c_pstride,
                             float alpha, float beta) {
  for (int64_t p = 0; p * NR < n; p++) {
    const int nj = (int)imin<int64_t>(NR, n - p * NR);
    for (int64_t a = 0; a * MR < m; a++) {
      const int mi = (int)imin<int64_t>(MR, m - a * MR);
      ukernel(depth, A + a * a_pstride, B + p * b_pstride, C + p * c_pstride + a * MR * c_row, c_row, alpha, beta,
              mi, nj);
    }
  }
}

// Packs all panels of one operand: R-wide panels of `rows` rows, `depth` deep, panel stride R*depth.
template <int R>
static inline void pack_all(const float* src, int64_t ld, bool kmajor, int64_t rows, int64_t depth, float* dst) {
  for (int64_t r = 0; r < rows; r += R)
    pack_panel<R>(src, DT_F32, ld, kmajor, r, (int)imin<int64_t>(R, rows - r), 0, depth, dst + (r / R) * R * depth);
}
static inline int64_t panels_size(int64_t rows, int64_t depth, int R) { return ceil_div(rows, R) * R * depth; }

// Offset of (batch b, head h)'s first row in an operand of layout s.
static inline int64_t head_at(const AttnLayout& s, int64_t b, int64_t h) { return b * s.b + h * s.h; }

constexpr int64_t TQ = ((64 + NR - 1) / NR) * NR;      // query tile (lanes) in the Sᵀ orientation
constexpr int64_t TK = ((128 + MR - 1) / MR) * MR;     // key tile (rows) in the Sᵀ orientation
constexpr int64_t TK1 = ((64 + NR - 1) / NR) * NR;     // key tile (lanes) in the S orientation
constexpr int64_t TQ1 = ((128 + MR - 1) / MR) * MR;    // query tile (rows) in the S orientation
constexpr int64_t kAttnBudget = (int64_t)1 << 24;      // floats of shared packs per group of heads
constexpr int64_t kOnePassLk = 96;                     // up to this many keys the backward runs one pass

static inline V lane_index(int64_t base) { return vadd(vset1((float)base), vload(kIota)); }

// Additive mask values for one row of the Sᵀ orientation (key fixed, lanes = queries q0..q0+n).
static inline V mask_lanes_q(const float* mrow, int64_t mQ, int64_t key, int64_t q0, int n) {
  if (mQ == 0) return vset1(mrow[key]);
  alignas(64) float t[W];
  for (int i = 0; i < W; i++) t[i] = i < n ? mrow[(q0 + i) * mQ + key] : 0.0f;
  return vload(t);
}

// ------------------------------------------------------------------ short sequences
// When both sequences are short (a ViT's 17 tokens, a captioner's few image tokens), the tiled kernels
// below spend their time padding to whole tiles and packing per (batch, head). Small register-blocked
// products over the exact sizes instead, one task per (batch, head). Same conventions: additive mask,
// causal = key index > query index masked, fully masked rows give 0 and lse = −inf.
//
// Scores are formed transposed, Sᵀ [Lk][Lqp] = K · Qᵀ with the queries in the vector lanes (Lqp = Lq rounded
// up to whole vectors): each query's softmax then runs down a column — maxima, sums, lse and the backward's
// Δ and dS all lane-wise, with no horizontal reductions — and the products that need P or dS row-major read
// their scalars with a stride instead of a transposed copy (the row-major form needed four transposes
// per head in the backward, a fifth of its time).
constexpr int64_t kSmallAttn = 32;

static inline bool attn_is_small(const AttnArgs& a) { return a.Lq <= kSmallAttn && a.Lk <= kSmallAttn; }
static inline int64_t attn_small_lqp(const AttnArgs& a) { return round_up(a.Lq, W); }

// Raw products of R rows of x (row stride ldx) with the NV·W columns of a transposed operand xt [n][ldt]:
// s_r = Σ_i x_r[i] · xt[i], summed over i in order. The R rows share every load of xt, and their R·NV
// independent sums keep the FMA units busy (one row at a time left them waiting on each sum's latency).
template <int R, int NV>
static inline void small_dots_block(const float* x, int64_t ldx, const float* xt, int64_t ldt, int64_t n, float* s,
                                    int64_t lds) {
  V acc[R][NV];
  for (int r = 0; r < R; r++) for (int j = 0; j < NV; j++) acc[r][j] = vzero();
  for (int64_t i = 0; i < n; i++) {
    V col[NV];
    for (int j = 0; j < NV; j++) col[j] = vload(xt + i * ldt + j * W);
    for (int r = 0; r < R; r++) {
      const V xi = vset1(x[r * ldx + i]);
      for (int j = 0; j < NV; j++) acc[r][j] = vfma(xi, col[j], acc[r][j]);
    }
  }
  for (int r = 0; r < R; r++) for (int j = 0; j < NV; j++) vstore(s + r * lds + j * W, acc[r][j]);
}
template <int NV>
static void small_dots_rows(int64_t rows, const float* x, int64_t ldx, const float* xt, int64_t ldt, int64_t n,
                            float* s, int64_t lds) {
  constexpr int R = NV <= 2 ? 4 : NV == 3 ? 3 : NV == 4 ? 2 : 1;   // R·NV sums + NV columns fit the registers
  int64_t i = 0;
  for (; i + R <= rows; i += R) small_dots_block<R, NV>(x + i * ldx, ldx, xt, ldt, n, s + i * lds, lds);
  for (; i < rows; i++) small_dots_block<1, NV>(x + i * ldx, ldx, xt, ldt, n, s + i * lds, lds);
}
// s [rows][ldt] = x [rows][n] · xt [n][ldt], ldt a whole number of vectors, at most kSmallAttn rounded up.
static void small_dots(int64_t rows, const float* x, int64_t ldx, const float* xt, int64_t ldt, int64_t n, float* s,
                       int64_t lds) {
  switch (ldt / W) {
    case 1: small_dots_rows<1>(rows, x, ldx, xt, ldt, n, s, lds); break;
    case 2: small_dots_rows<2>(rows, x, ldx, xt, ldt, n, s, lds); break;
    case 3: small_dots_rows<3>(rows, x, ldx, xt, ldt, n, s, lds); break;
    case 4: small_dots_rows<4>(rows, x, ldx, xt, ldt, n, s, lds); break;
    case 5: small_dots_rows<5>(rows, x, ldx, xt, ldt, n, s, lds); break;
    case 6: small_dots_rows<6>(rows, x, ldx, xt, ldt, n, s, lds); break;
    case 7: small_dots_rows<7>(rows, x, ldx, xt, ldt, n, s, lds); break;
    default: small_dots_rows<8>(rows, x, ldx, xt, ldt, n, s, lds); break;
  }
}

// Scores of key row k for the W queries from q0 (lanes): scale, additive mask, −inf where masked (causal:
// key past the query) and on lanes past Lq.
static inline V small_scores(const AttnArgs& a, const float* mrow, const float* st, int64_t k, int64_t q0) {
  const int nq = (int)imin<int64_t>(W, a.Lq - q0);
  const V ninf = vset1(-__builtin_inff());
  V v = vmul(vload(st), vset1(a.scale));
  if (mrow) v = vadd(v, mask_lanes_q(mrow, a.mQ, k, q0, nq));
  const V qidx = lane_index(q0);
  v = vsel(vlt(qidx, vset1((float)a.Lq)), v, ninf);
  if (a.causal) v = vsel(vgt(vset1((float)k), qidx), ninf, v);
  return v;
}

// out_r[d0, d0 + C·W) = inv_r · Σ_k p(r, k) · M[k][…] for R rows, p(r, k) at p[r·prs + k·pks] (a row-major P
// or, with prs = 1, a transposed one), summed over k in order in registers; the last of the C vectors holds
// m ≤ W lanes. Accumulating in `out` itself would put a store-to-load round trip on every step of the sum.
template <int R, int C>
static inline void small_pv_block(const float* p, int64_t prs, int64_t pks, int64_t L, const float* M, int64_t ldm,
                                  int64_t d0, int m, const float* inv, float* out, int64_t ldo) {
  V acc[R][C];
  for (int r = 0; r < R; r++) for (int c = 0; c < C; c++) acc[r][c] = vzero();
  for (int64_t k = 0; k < L; k++) {
    const float* mr = M + k * ldm + d0;
    V row[C];
    for (int c = 0; c < C; c++) row[c] = c == C - 1 && m < W ? vload_n(mr + c * W, m) : vload(mr + c * W);
    for (int r = 0; r < R; r++) {
      const V vp = vset1(p[r * prs + k * pks]);
      for (int c = 0; c < C; c++) acc[r][c] = vfma(vp, row[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++) {
    float* o = out + r * ldo + d0;
    const V vi = vset1(inv ? inv[r] : 1.0f);
    for (int c = 0; c < C; c++) {
      const V v = inv ? vmul(acc[r][c], vi) : acc[r][c];
      if (c == C - 1 && m < W) vstore_n(o + c * W, v, m);
      else vstore(o + c * W, v);
    }
  }
}
template <int R>
static inline void small_pv_rows_r(const float* p, int64_t prs, int64_t pks, int64_t L, const float* M, int64_t ldm,
                                   int64_t n, const float* inv, float* out, int64_t ldo) {
  int64_t d0 = 0;
  for (; d0 + 4 * W <= n; d0 += 4 * W) small_pv_block<R, 4>(p, prs, pks, L, M, ldm, d0, W, inv, out, ldo);
  const int64_t rest = n - d0;
  const int m = (int)(rest % W) ? (int)(rest % W) : W;
  switch (ceil_div(rest, W)) {
    case 1: small_pv_block<R, 1>(p, prs, pks, L, M, ldm, d0, m, inv, out, ldo); break;
    case 2: small_pv_block<R, 2>(p, prs, pks, L, M, ldm, d0, m, inv, out, ldo); break;
    case 3: small_pv_block<R, 3>(p, prs, pks, L, M, ldm, d0, m, inv, out, ldo); break;
    default: break;
  }
}
// out [rows][n] (row stride ldo) = diag(inv) · P · M [L][n], P(r, k) at p[r·prs + k·pks]; inv null means 1.
static void small_pv_rows(int64_t rows, const float* p, int64_t prs, int64_t pks, int64_t L, const float* M,
                          int64_t ldm, int64_t n, const float* inv, float* out, int64_t ldo) {
  constexpr int R = W >= 16 ? 4 : 2;   // R·4 sums + 4 row vectors fit the registers
  int64_t i = 0;
  for (; i + R <= rows; i += R)
    small_pv_rows_r<R>(p + i * prs, prs, pks, L, M, ldm, n, inv ? inv + i : nullptr, out + i * ldo, ldo);
  for (; i < rows; i++)
    small_pv_rows_r<1>(p + i * prs, prs, pks, L, M, ldm, n, inv ? inv + i : nullptr, out + i * ldo, ldo);
}

// Asks for the rows of the next head while this one is computed: a head's rows are short runs far apart
// (token-major [B, L, H, D] memory: 128 bytes every 512 at D = 32), too few to train the hardware
// prefetcher, and in a training step they come from memory (2x the warm time without this).
// Write = 1 for rows about to be written.
template <int Write>
VSS_INLINE void prefetch_head(const float* base, const AttnLayout& s, int64_t b, int64_t h, int64_t rows, int64_t n) {
  const float* p = base + head_at(s, b, h);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < n; c += 16) __builtin_prefetch(p + r * s.l + c, Write);
}
// Head bh's operands of a forward (q, k, v read, o written) or backward pass (also out, gout read; gq, gk,
// gv written).
template <bool Backward>
VSS_INLINE void prefetch_next_head(const AttnArgs& a, int64_t bh) {
  const int64_t b = bh / a.H, h = bh % a.H;
  prefetch_head<0>(a.q, a.sq, b, h, a.Lq, a.D);
  prefetch_head<0>(a.k, a.sk, b, h, a.Lk, a.D);
  prefetch_head<0>(a.v, a.sv, b, h, a.Lk, a.Dv);
  if (!Backward) { prefetch_head<1>(a.o, a.so, b, h, a.Lq, a.Dv); return; }
  prefetch_head<0>(a.out, a.so, b, h, a.Lq, a.Dv);
  prefetch_head<0>(a.gout, a.sgo, b, h, a.Lq, a.Dv);
  prefetch_head<1>(a.gq, a.sgq, b, h, a.Lq, a.D);
  prefetch_head<1>(a.gk, a.sgk, b, h, a.Lk, a.D);
  prefetch_head<1>(a.gv, a.sgv, b, h, a.Lk, a.Dv);
}

// Per head: Sᵀ = K · Qᵀ, each query's column finished and exponentiated (max, sum and lse lane-wise), then
// O = diag(1/l) · P · V reading P from Pᵀ.
static void attn_forward_small(const AttnArgs& a) {
  const int64_t D = a.D, Dv = a.Dv, Lq = a.Lq, Lk = a.Lk;
  par_range(a.B * a.H, Lq * Lk * (D + Dv), [&](int64_t bh0, int64_t bh1) {
    const int64_t Lqp = attn_small_lqp(a);
    // Qᵀ [D][Lqp], Sᵀ [Lk][Lqp], 1/l [Lqp]
    float* buf = static_cast<float*>(scratch(SLOT_OP6, (size_t)((D + Lk + 1) * Lqp + 16) * sizeof(float)));
    float *qt = buf, *St = qt + D * Lqp, *inv = St + Lk * Lqp;
    const V ninf = vset1(-__builtin_inff());
    for (int64_t bh = bh0; bh < bh1; bh++) {
      const int64_t b = bh / a.H, h = bh % a.H;
      if (bh + 1 < bh1) prefetch_next_head<false>(a, bh + 1);
      const float* mrow = a.mask ? a.mask + b * a.mB + h * a.mH : nullptr;
      transpose_padded(a.q + head_at(a.sq, b, h), a.sq.l, Lq, D, qt, Lqp, Lqp);
      small_dots(Lk, a.k + head_at(a.sk, b, h), a.sk.l, qt, Lqp, D, St, Lqp);
      for (int64_t q0 = 0; q0 < Lqp; q0 += W) {
        V mx = ninf;
        for (int64_t k = 0; k < Lk; k++) {
          const V s = small_scores(a, mrow, St + k * Lqp + q0, k, q0);
          vstore(St + k * Lqp + q0, s);
          mx = vmax(s, mx);   // a NaN score leaves the maximum as it was
        }
        const Mask empty = veq(mx, ninf);   // every key masked (and the lanes past Lq): output 0, lse −inf
        const V muse = vsel(empty, vzero(), mx);
        V l = vzero();
        for (int64_t k = 0; k < Lk; k++) {
          const V e = vexp(vsub(vload(St + k * Lqp + q0), muse));
          vstore(St + k * Lqp + q0, e);
          l = vadd(l, e);
        }
        vstore(inv + q0, vsel(empty, vzero(), vdiv(vset1(1.0f), l)));
        const V lse = vsel(empty, ninf, vadd(mx, vlog(l)));
        const int nq = (int)imin<int64_t>(W, Lq - q0);
        vstore_n(a.l + bh * Lq + q0, lse, nq);
      }
      float* O = a.o + head_at(a.so, b, h);
      small_pv_rows(Lq, St, 1, Lqp, Lk, a.v + head_at(a.sv, b, h), a.sv.l, Dv, inv, O, a.so.l);
      for (int64_t q = 0; q < Lq; q++)   // fully masked queries: exact zeros even where V holds inf or NaN
        if (a.l[bh * Lq + q] == -__builtin_inff()) for (int64_t d = 0; d < Dv; d++) O[q * a.so.l + d] = 0.0f;
    }
  });
}

// Per head, in the transposed orientation: Pᵀ from Sᵀ = K·Qᵀ and the saved lse, dPᵀ = V·dOᵀ,
// dSᵀ = Pᵀ ∘ (dPᵀ − Δ) · scale; then dV = Pᵀ·dO and dK = dSᵀ·Q row by row, and dQ = dS·K reading dS from dSᵀ.
static void attn_backward_small(const AttnArgs& a) {
  const int64_t D = a.D, Dv = a.Dv, Lq = a.Lq, Lk = a.Lk;
  par_range(a.B * a.H, 3 * Lq * Lk * (D + Dv), [&](int64_t bh0, int64_t bh1) {
    const int64_t Lqp = attn_small_lqp(a);
    // Qᵀ [D][Lqp], dOᵀ [Dv][Lqp], Pᵀ and dSᵀ [Lk][Lqp], lse and Δ [Lqp]
    float* buf = static_cast<float*>(
        scratch(SLOT_OP6, (size_t)((D + Dv + 2 * Lk + 2) * Lqp + 16) * sizeof(float)));
    float *qt = buf, *dot = qt + D * Lqp, *Pt = dot + Dv * Lqp, *dSt = Pt + Lk * Lqp, *lse = dSt + Lk * Lqp,
          *delta = lse + Lqp;
    const V vscale = vset1(a.scale), ninf = vset1(-__builtin_inff());
    for (int64_t bh = bh0; bh < bh1; bh++) {
      const int64_t b = bh / a.H, h = bh % a.H;
      if (bh + 1 < bh1) prefetch_next_head<true>(a, bh + 1);
      const float* Q = a.q + head_at(a.sq, b, h);
      const float* K = a.k + head_at(a.sk, b, h);
      const float* O = a.out + head_at(a.so, b, h);
      const float* dO = a.gout + head_at(a.sgo, b, h);
      const int64_t ldq = a.sq.l, ldgo = a.sgo.l;
      const float* mrow = a.mask ? a.mask + b * a.mB + h * a.mH : nullptr;
      transpose_padded(Q, ldq, Lq, D, qt, Lqp, Lqp);
      transpose_padded(dO, ldgo, Lq, Dv, dot, Lqp, Lqp);
      small_dots(Lk, K, a.sk.l, qt, Lqp, D, Pt, Lqp);
      small_dots(Lk, a.v + head_at(a.sv, b, h), a.sv.l, dot, Lqp, Dv, dSt, Lqp);   // dPᵀ
      for (int64_t q = 0; q < Lqp; q++) {
        lse[q] = q < Lq ? a.lse[bh * Lq + q] : -__builtin_inff();
        delta[q] = q < Lq ? vec_dot(dO + q * ldgo, O + q * a.so.l, Dv) : 0.0f;   // Σ_d dO·O = Σ_k P·dP
      }
      for (int64_t q0 = 0; q0 < Lqp; q0 += W) {
        const V l = vload(lse + q0), dl = vload(delta + q0);
        const Mask dead = veq(l, ninf);   // fully masked query (or a lane past Lq): no gradient
        const V luse = vsel(dead, vzero(), l);
        for (int64_t k = 0; k < Lk; k++) {
          float* p = Pt + k * Lqp + q0;
          float* ds = dSt + k * Lqp + q0;
          const V pv = vsel(dead, vzero(), vexp(vsub(small_scores(a, mrow, p, k, q0), luse)));
          vstore(p, pv);
          // dS = P ∘ (dP − Δ) · scale; exactly 0 where P is
          vstore(ds, vsel(veq(pv, vzero()), vzero(), vmul(vmul(pv, vsub(vload(ds), dl)), vscale)));
        }
      }
      small_pv_rows(Lq, dSt, 1, Lqp, Lk, K, a.sk.l, D, nullptr, a.gq + head_at(a.sgq, b, h), a.sgq.l);
      small_pv_rows(Lk, dSt, Lqp, 1, Lq, Q, ldq, D, nullptr, a.gk + head_at(a.sgk, b, h), a.sgk.l);
      small_pv_rows(Lk, Pt, Lqp, 1, Lq, dO, ldgo, Dv, nullptr, a.gv + head_at(a.sgv, b, h), a.sgv.l);
    }
  });
}

// Softmax-side work on one Sᵀ panel row block. Forward variant: online softmax update.
static void attn_forward(const AttnArgs& a) {
  const int64_t BH = a.B * a.H, D = a.D, Dv = a.Dv, Lq = a.Lq, Lk = a.Lk;
  if (BH <= 0 || Lq <= 0) return;
  if (attn_is_small(a)) { attn_forward_small(a); return; }
  const int64_t per_bh = panels_size(Lk, D, MR) + panels_size(Dv, Lk, MR);
  const int64_t group = imax<int64_t>(1, kAttnBudget / imax<int64_t>(1, per_bh));
  const int64_t nqt = ceil_div(Lq, TQ);
  for (int64_t g0 = 0; g0 < BH; g0 += group) {
    const int64_t gn = imin(group, BH - g0);
    float* shared = static_cast<float*>(scratch(SLOT_OP0, (size_t)(gn * per_bh + 16) * sizeof(float)));
    auto prepack = [&](int64_t t, int) {
      const int64_t bh = g0 + t / 2, b = bh / a.H, h = bh % a.H;
      float* KA = shared + (t / 2) * per_bh;
      if (t % 2 == 0) pack_all<MR>(a.k + head_at(a.sk, b, h), a.sk.l, false, Lk, D, KA);
      else pack_all<MR>(a.v + head_at(a.sv, b, h), a.sv.l, true, Dv, Lk, KA + panels_size(Lk, D, MR));
    };
    par_for(gn * 2, prepack);

    auto task = [&](int64_t t, int) {
      const int64_t bhl = t / nqt, bh = g0 + bhl, q0 = (t % nqt) * TQ;
      const int64_t b = bh / a.H, h = bh % a.H;
      const int nq = (int)imin<int64_t>(TQ, Lq - q0);
      const float* KA = shared + bhl * per_bh;
      const float* VtA = KA + panels_size(Lk, D, MR);
      const float* Q = a.q + head_at(a.sq, b, h);
      const float* mrow = a.mask ? a.mask + b * a.mB + h * a.mH : nullptr;
      // per-task buffers: QtB [TQ/NR][D][NR], ST [TQ/NR][TK][NR], OT [Dv][TQ], m, l [TQ]
      const int64_t szQ = TQ * D, szS = TQ * TK, szO = Dv * TQ;
      float* buf = static_cast<float*>(scratch(SLOT_OP4, (size_t)(szQ + szS + szO + 2 * TQ) * sizeof(float)));
      float *QtB = buf, *ST = QtB + szQ, *OT = ST + szS, *M = OT + szO, *L = M + TQ;
      for (int64_t p = 0; p * NR < nq; p++)
        pack_panel<NR>(Q, DT_F32, a.sq.l, false, q0 + p * NR, (int)imin<int64_t>(NR, nq - p * NR), 0, D, QtB + p * D * NR);
      for (int64_t i = 0; i < TQ; i++) { M[i] = -__builtin_inff(); L[i] = 0.0f; }
      for (int64_t i = 0; i < szO; i++) OT[i] = 0.0f;
      const int64_t kend = a.causal ? imin<int64_t>(Lk, q0 + nq) : Lk;
      for (int64_t k0 = 0; k0 < kend; k0 += TK) {
        const int64_t nk = imin<int64_t>(TK, kend - k0);
        mm_panels(nk, nq, D, KA + (k0 / MR) * D * MR, D * MR, QtB, D * NR, ST, NR, TK * NR, a.scale, 0.0f);
        const bool need_causal = a.causal && k0 + nk - 1 > q0;
        for (int64_t p = 0; p * NR < nq; p++) {
          float* SP = ST + p * TK * NR;
          for (int v = 0; v < NR / W; v++) {
            const int64_t lane0 = p * NR + v * W;
            const int nv = (int)imax<int64_t>(0, imin<int64_t>(W, nq - lane0));
            if (nv == 0) break;
            const Mask valid = vlt(vload(kIota), vset1((float)nv));
            const V qidx = lane_index(q0 + lane0);
            V mx = vset1(-__builtin_inff());
            for (int64_t r = 0; r < nk; r++) {
              float* sp = SP + r * NR + v * W;
              V s = vload(sp);
              if (mrow) s = vadd(s, mask_lanes_q(mrow, a.mQ, k0 + r, q0 + lane0, nv));
              if (need_causal) s = vsel(vgt(vset1((float)(k0 + r)), qidx), vset1(-__builtin_inff()), s);
              s = vsel(valid, s, vset1(-__builtin_inff()));
              vstore(sp, s);
              mx = vmax(mx, s);
            }
            const V mold = vload(M + lane0);
            const V mnew = vmax(mold, mx);
            const V muse = vsel(veq(mnew, vset1(-__builtin_inff())), vzero(), mnew);
            const V corr = vexp(vsub(mold, muse));
            V sum = vzero();
            for (int64_t r = 0; r < nk; r++) {
              float* sp = SP + r * NR + v * W;
              V pr = vexp(vsub(vload(sp), muse));
              vstore(sp, pr);
              sum = vadd(sum, pr);
            }
            vstore(L + lane0, vfma(vload(L + lane0), corr, sum));
            vstore(M + lane0, mnew);
            for (int64_t d = 0; d < Dv; d++) {
              float* o = OT + d * TQ + lane0;
              vstore(o, vmul(vload(o), corr));
            }
          }
        }
        mm_panels(Dv, nq, nk, VtA + k0 * MR, Lk * MR, ST, TK * NR, OT, TQ, NR, 1.0f, 1.0f);
      }
      float* out = a.o + head_at(a.so, b, h) + q0 * a.so.l;
      float* lse = a.l + bh * Lq + q0;
      for (int q = 0; q < nq; q++) {
        const float l = L[q];
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int64_t d = 0; d < Dv; d++) out[q * a.so.l + d] = OT[d * TQ + q] * inv;
        lse[q] = l > 0.0f ? M[q] + __builtin_logf(l) : -__builtin_inff();
      }
    };
    par_for(gn * nqt, task);
  }
}

static void attn_backward(const AttnArgs& a) {
  const int64_t BH = a.B * a.H, D = a.D, Dv = a.Dv, Lq = a.Lq, Lk = a.Lk;
  if (BH <= 0) return;
  if (Lq <= 0 || Lk <= 0) {
    auto zero = [&](float* p, const AttnLayout& s, int64_t L, int64_t n) {
      for (int64_t bh = 0; bh < BH; bh++)
        for (int64_t i = 0; i < L; i++)
          for (int64_t d = 0; d < n; d++) p[head_at(s, bh / a.H, bh % a.H) + i * s.l + d] = 0.0f;
    };
    zero(a.gq, a.sgq, Lq, D); zero(a.gk, a.sgk, Lk, D); zero(a.gv, a.sgv, Lk, Dv);
    return;
  }
  if (attn_is_small(a)) { attn_backward_small(a); return; }
  // shared packs per (b,h): pass 1: QA, dOP, dOtA, QtA; pass 2: KA, VA, KtA; and Δ = rowsum(dO ∘ O)
  const int64_t sQA = panels_size(Lq, D, MR), sdOP = panels_size(Lq, Dv, MR);
  const int64_t sdOtA = panels_size(Dv, Lq, MR), sQtA = panels_size(D, Lq, MR);
  const int64_t sKA = panels_size(Lk, D, MR), sVA = panels_size(Lk, Dv, MR), sKtA = panels_size(D, Lk, MR);
  const int64_t per_bh = sQA + sdOP + sdOtA + sQtA + sKA + sVA + sKtA + round_up(Lq, 16);
  const int64_t group = imax<int64_t>(1, kAttnBudget / per_bh);
  // Short key sequences (cross-attention's 77 text tokens) fit one pass-1 key tile: pass 1 then also forms
  // dQ = dS·K from its dS blocks, and pass 2 (which recomputes S and dP for dQ) does not run.
  const bool one_pass = Lk <= kOnePassLk;
  const int64_t tk1 = one_pass ? round_up(Lk, NR) : TK1;
  const int64_t nkt1 = ceil_div(Lk, tk1), nqt2 = ceil_div(Lq, TQ);
  const float NEG_INF = -__builtin_inff();
  for (int64_t g0 = 0; g0 < BH; g0 += group) {
    const int64_t gn = imin(group, BH - g0);
    float* shared = static_cast<float*>(scratch(SLOT_OP0, (size_t)(gn * per_bh + 16) * sizeof(float)));
    struct Packs { float *QA, *dOP, *dOtA, *QtA, *KA, *VA, *KtA, *Dl; };
    auto packs = [&](int64_t bhl) {
      Packs P;
      P.QA = shared + bhl * per_bh; P.dOP = P.QA + sQA; P.dOtA = P.dOP + sdOP; P.QtA = P.dOtA + sdOtA;
      P.KA = P.QtA + sQtA; P.VA = P.KA + sKA; P.KtA = P.VA + sVA; P.Dl = P.KtA + sKtA;
      return P;
    };
    auto prepack = [&](int64_t t, int) {
      const int64_t bhl = t / 8, bh = g0 + bhl, b = bh / a.H, h = bh % a.H;
      const Packs P = packs(bhl);
      const float* Q = a.q + head_at(a.sq, b, h);
      const float* K = a.k + head_at(a.sk, b, h);
      const float* Vv = a.v + head_at(a.sv, b, h);
      const float* dO = a.gout + head_at(a.sgo, b, h);
      switch (t % 8) {
        case 0: pack_all<MR>(Q, a.sq.l, false, Lq, D, P.QA); break;
        case 1: pack_all<MR>(dO, a.sgo.l, false, Lq, Dv, P.dOP); break;
        case 2: pack_all<MR>(dO, a.sgo.l, true, Dv, Lq, P.dOtA); break;
        case 3: pack_all<MR>(Q, a.sq.l, true, D, Lq, P.QtA); break;
        case 4: if (!one_pass) pack_all<MR>(K, a.sk.l, false, Lk, D, P.KA); break;
        case 5: if (!one_pass) pack_all<MR>(Vv, a.sv.l, false, Lk, Dv, P.VA); break;
        case 6: if (!one_pass) pack_all<MR>(K, a.sk.l, true, D, Lk, P.KtA); break;
        case 7: {
          const float* O = a.out + head_at(a.so, b, h);
          for (int64_t q = 0; q < Lq; q++) P.Dl[q] = vec_dot(dO + q * a.sgo.l, O + q * a.so.l, Dv);
          break;
        }
      }
    };
    par_for(gn * 8, prepack);

    // ---- pass 1: dK, dV per key tile (S orientation: rows = queries, lanes = keys)
    auto pass1 = [&](int64_t t, int) {
      const int64_t bhl = t / nkt1, bh = g0 + bhl, k0 = (t % nkt1) * tk1;
      const int64_t b = bh / a.H, h = bh % a.H;
      const int nk = (int)imin<int64_t>(tk1, Lk - k0);
      const Packs P = packs(bhl);
      const float* lse = a.lse + bh * Lq;
      const float* mrow = a.mask ? a.mask + b * a.mB + h * a.mH : nullptr;
      const int64_t szK = tk1 * D, szV = tk1 * Dv, szS = TQ1 * tk1;
      // one pass: dS as MR-row A panels (depth = keys) and K as NR-column B panels (depth = keys)
      const int64_t szdSA = one_pass ? TQ1 * tk1 : 0, szKB = one_pass ? panels_size(D, Lk, NR) : 0;
      float* buf = static_cast<float*>(scratch(
          SLOT_OP4, (size_t)(szK + szV + 2 * szS + Dv * tk1 + D * tk1 + szdSA + szKB) * sizeof(float)));
      float *KtB = buf, *VtB = KtB + szK, *SB = VtB + szV, *DB = SB + szS, *dVt = DB + szS, *dKt = dVt + Dv * tk1;
      float *dSA = dKt + D * tk1, *KB = dSA + szdSA;
      const float* K = a.k + head_at(a.sk, b, h);
      const float* Vv = a.v + head_at(a.sv, b, h);
      for (int64_t p = 0; p * NR < nk; p++) {
        const int nj = (int)imin<int64_t>(NR, nk - p * NR);
        pack_panel<NR>(K, DT_F32, a.sk.l, false, k0 + p * NR, nj, 0, D, KtB + p * D * NR);
        pack_panel<NR>(Vv, DT_F32, a.sv.l, false, k0 + p * NR, nj, 0, Dv, VtB + p * Dv * NR);
      }
      if (one_pass)
        for (int64_t d0 = 0; d0 < D; d0 += NR)
          pack_panel<NR>(K, DT_F32, a.sk.l, true, d0, (int)imin<int64_t>(NR, D - d0), 0, Lk, KB + (d0 / NR) * Lk * NR);
      float* gq = a.gq + head_at(a.sgq, b, h);
      for (int64_t i = 0; i < Dv * tk1; i++) dVt[i] = 0.0f;
      for (int64_t i = 0; i < D * tk1; i++) dKt[i] = 0.0f;
      const int64_t qstart = a.causal ? (k0 / TQ1) * TQ1 : 0;
      for (int64_t q0 = qstart; q0 < Lq; q0 += TQ1) {
        const int64_t nq = imin<int64_t>(TQ1, Lq - q0);
        mm_panels(nq, nk, D, P.QA + (q0 / MR) * D * MR, D * MR, KtB, D * NR, SB, NR, TQ1 * NR, a.scale, 0.0f);
        mm_panels(nq, nk, Dv, P.dOP + (q0 / MR) * Dv * MR, Dv * MR, VtB, Dv * NR, DB, NR, TQ1 * NR, 1.0f, 0.0f);
        const bool need_causal = a.causal && k0 + nk - 1 > q0;
        for (int64_t p = 0; p * NR < nk; p++) {
          for (int v = 0; v < NR / W; v++) {
            const int64_t lane0 = p * NR + v * W;
            const int nv = (int)imax<int64_t>(0, imin<int64_t>(W, nk - lane0));
            if (nv == 0) break;
            const Mask valid = vlt(vload(kIota), vset1((float)nv));
            const V kidx = lane_index(k0 + lane0);
            for (int64_t r = 0; r < nq; r++) {
              const int64_t q = q0 + r;
              float* sp = SB + p * TQ1 * NR + r * NR + v * W;
              float* dp = DB + p * TQ1 * NR + r * NR + v * W;
              V s = vload(sp);
              if (mrow) s = vadd(s, vload_n(mrow + q * a.mQ + k0 + lane0, nv));
              if (need_causal) s = vsel(vgt(kidx, vset1((float)q)), vset1(NEG_INF), s);
              const float l = lse[q];
              V pr = l == NEG_INF ? vzero() : vexp(vsub(s, vset1(l)));
              pr = vsel(valid, pr, vzero());
              vstore(sp, pr);
              vstore(dp, vmul(pr, vsub(vload(dp), vset1(P.Dl[q]))));
            }
          }
        }
        mm_panels(Dv, nk, nq, P.dOtA + q0 * MR, Lq * MR, SB, TQ1 * NR, dVt, tk1, NR, 1.0f, 1.0f);
        mm_panels(D, nk, nq, P.QtA + q0 * MR, Lq * MR, DB, TQ1 * NR, dKt, tk1, NR, a.scale, 1.0f);
        if (one_pass) {
          // dQ rows q0.. = scale · dS · K over all keys at once (k0 = 0, nk = Lk)
          for (int64_t i0 = 0; i0 < nq; i0 += MR) {
            float* dst = dSA + (i0 / MR) * nk * MR;
            const int64_t mi = imin<int64_t>(MR, nq - i0);
            for (int64_t k = 0; k < nk; k++) {
              const float* src = DB + (k / NR) * TQ1 * NR + i0 * NR + k % NR;
              for (int64_t i = 0; i < MR; i++) dst[k * MR + i] = i < mi ? src[i * NR] : 0.0f;
            }
          }
          mm_panels(nq, D, nk, dSA, nk * MR, KB, Lk * NR, gq + q0 * a.sgq.l, a.sgq.l, NR, a.scale, 0.0f);
        }
      }
      float* gk = a.gk + head_at(a.sgk, b, h) + k0 * a.sgk.l;
      float* gv = a.gv + head_at(a.sgv, b, h) + k0 * a.sgv.l;
      for (int j = 0; j < nk; j++) {
        for (int64_t d = 0; d < D; d++) gk[j * a.sgk.l + d] = dKt[d * tk1 + j];
        for (int64_t d = 0; d < Dv; d++) gv[j * a.sgv.l + d] = dVt[d * tk1 + j];
      }
    };
    par_for(gn * nkt1, pass1);
    if (one_pass) continue;

    // ---- pass 2: dQ per query tile (Sᵀ orientation: rows = keys, lanes = queries)
    auto pass2 = [&](int64_t t, int) {
      const int64_t bhl = t / nqt2, bh = g0 + bhl, q0 = (t % nqt2) * TQ;
      const int64_t b = bh / a.H, h = bh % a.H;
      const int nq = (int)imin<int64_t>(TQ, Lq - q0);
      const Packs P = packs(bhl);
      const float* mrow = a.mask ? a.mask + b * a.mB + h * a.mH : nullptr;
      const int64_t szQ = TQ * D, szO = TQ * Dv, szS = TQ * TK;
      float* buf = static_cast<float*>(scratch(SLOT_OP4, (size_t)(szQ + szO + 2 * szS + D * TQ + 2 * TQ) * sizeof(float)));
      float *QtB = buf, *dOtB = QtB + szQ, *ST = dOtB + szO, *DT = ST + szS, *dQt = DT + szS, *LS = dQt + D * TQ,
            *DL = LS + TQ;
      const float* Q = a.q + head_at(a.sq, b, h);
      const float* dO = a.gout + head_at(a.sgo, b, h);
      for (int64_t p = 0; p * NR < nq; p++) {
        const int nj = (int)imin<int64_t>(NR, nq - p * NR);
        pack_panel<NR>(Q, DT_F32, a.sq.l, false, q0 + p * NR, nj, 0, D, QtB + p * D * NR);
        pack_panel<NR>(dO, DT_F32, a.sgo.l, false, q0 + p * NR, nj, 0, Dv, dOtB + p * Dv * NR);
      }
      for (int64_t i = 0; i < TQ; i++) {
        LS[i] = i < nq ? a.lse[bh * Lq + q0 + i] : NEG_INF;
        DL[i] = i < nq ? P.Dl[q0 + i] : 0.0f;
      }
      for (int64_t i = 0; i < D * TQ; i++) dQt[i] = 0.0f;
      const int64_t kend = a.causal ? imin<int64_t>(Lk, q0 + nq) : Lk;
      for (int64_t k0 = 0; k0 < kend; k0 += TK) {
        const int64_t nk = imin<int64_t>(TK, kend - k0);
        mm_panels(nk, nq, D, P.KA + (k0 / MR) * D * MR, D * MR, QtB, D * NR, ST, NR, TK * NR, a.scale, 0.0f);
        mm_panels(nk, nq, Dv, P.VA + (k0 / MR) * Dv * MR, Dv * MR, dOtB, Dv * NR, DT, NR, TK * NR, 1.0f, 0.0f);
        const bool need_causal = a.causal && k0 + nk - 1 > q0;
        for (int64_t p = 0; p * NR < nq; p++) {
          for (int v = 0; v < NR / W; v++) {
            const int64_t lane0 = p * NR + v * W;
            const int nv = (int)imax<int64_t>(0, imin<int64_t>(W, nq - lane0));
            if (nv == 0) break;
            const Mask valid = vlt(vload(kIota), vset1((float)nv));
            const V qidx = lane_index(q0 + lane0);
            const V l = vload(LS + lane0), dl = vload(DL + lane0);
            const Mask dead = veq(l, vset1(NEG_INF));
            const V luse = vsel(dead, vzero(), l);
            for (int64_t r = 0; r < nk; r++) {
              float* sp = ST + p * TK * NR + r * NR + v * W;
              float* dp = DT + p * TK * NR + r * NR + v * W;
              V s = vload(sp);
              if (mrow) s = vadd(s, mask_lanes_q(mrow, a.mQ, k0 + r, q0 + lane0, nv));
              if (need_causal) s = vsel(vgt(vset1((float)(k0 + r)), qidx), vset1(NEG_INF), s);
              V pr = vsel(mand(valid, mnot(dead)), vexp(vsub(s, luse)), vzero());
              vstore(dp, vmul(pr, vsub(vload(dp), dl)));
            }
          }
        }
        mm_panels(D, nq, nk, P.KtA + k0 * MR, Lk * MR, DT, TK * NR, dQt, TQ, NR, a.scale, 1.0f);
      }
      float* gq = a.gq + head_at(a.sgq, b, h) + q0 * a.sgq.l;
      for (int q = 0; q < nq; q++)
        for (int64_t d = 0; d < D; d++) gq[q * a.sgq.l + d] = dQt[d * TQ + q];
    };
    par_for(gn * nqt2, pass2);
  }
}
