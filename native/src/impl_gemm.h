// GEMM: packing + cache blocking + register-blocked micro-kernel (Goto/BLIS scheme).
//
//  for each chunk of NC columns of C:
//    pack B~ (all of K x NC, NR-wide k-major panels)             shared by every thread
//      (one thread: each KC slice of a panel is packed inside the first row block's sweep instead)
//    parallel over tiles (mb rows x nb columns) of C:
//      for each KC-deep slice pc of K:  pack A~ (mb x KC, MR-tall panels, per thread)
//        for each NR panel: for each MR panel: micro-kernel (B micro-panel stays in L1, A~ in L2)
//  (M within one row block on several threads: each thread runs the one-thread scheme on its own columns.)
//
// Determinism: every C element is produced by the same micro-kernel over the same KC slices in the same
// order whatever tile or thread computes it (K is never split across threads), so the result does not
// depend on the number of threads.

// Packs rows [r0, r0+nr) x depth [k0, k0+kc) of a matrix operand into a k-major panel of R floats per k
// (zero-padded for nr < R). Two layouts: element (r, k) at p[r*ld + k] ("row-major", a transposing pack)
// or at p[k*ld + r] ("k-major", a straight copy).
template <int R>
static void pack_panel(const void* p, int dt, int64_t ld, bool kmajor, int64_t r0, int nr, int64_t k0,
                       int64_t kc, float* dst) {
  if (kmajor) {
    for (int64_t k = 0; k < kc; k++) {
      int64_t base = (k0 + k) * ld + r0;
      float* d = dst + k * R;
      for (int c = 0; c < R; c += W) {
        int lanes = imin(W, R - c), valid = imax(0, imin(lanes, nr - c));
        V v = vload_dt_n(p, dt, base + c, valid);
        // A partial row (R not a multiple of W) is stored whole, spilling into the next row, which is
        // written afterwards; only the panel's last row needs a masked store (slow on AMD for AVX2).
        if (lanes == W || k + 1 < kc) vstore(d + c, v);
        else vstore_n(d + c, v, lanes);
      }
    }
    return;
  }
  int64_t kfast = 0;   // k below this were packed by the vector transpose
#ifdef VSS_HAS_TRANSPOSE
  // W rows x W k at a time, transposed in registers (rows past nr are zeros). A first block narrower than
  // W (R = 6 on AVX2, 14 on AVX-512) stores whole vectors that spill into the next k row, written
  // afterwards; the panel's last row (and any later narrow block) gets masked stores.
  kfast = kc / W * W;
  for (int rb = 0; rb < R; rb += W) {
    const int rows = imin(W, R - rb);
    for (int64_t k = 0; k < kfast; k += W) {
      V v[W];
      for (int i = 0; i < W; i++)
        v[i] = (i < rows && rb + i < nr) ? vload_dt_n(p, dt, (r0 + rb + i) * ld + k0 + k, W) : vzero();
      vtranspose(v);
      for (int t = 0; t < W; t++) {
        float* d = dst + (k + t) * R + rb;
        if (rows == W || (rb == 0 && k + t + 1 < kc)) vstore(d, v[t]);
        else vstore_n(d, v[t], rows);
      }
    }
  }
#endif
  // Transposing pack: read W consecutive k of one row as a vector, scatter into the panel.
  alignas(64) float tmp[W];
  for (int r = 0; r < nr; r++) {
    int64_t base = (r0 + r) * ld + k0;
    int64_t k = kfast;
    for (; k + W <= kc; k += W) {
      vstore(tmp, vload_dt_n(p, dt, base + k, W));
      for (int t = 0; t < W; t++) dst[(k + t) * R + r] = tmp[t];
    }
    if (k < kc) {
      int n = (int)(kc - k);
      vstore(tmp, vload_dt_n(p, dt, base + k, n));
      for (int t = 0; t < n; t++) dst[(k + t) * R + r] = tmp[t];
    }
  }
  for (int r = nr; r < R; r++)
    for (int64_t k = kfast; k < kc; k++) dst[k * R + r] = 0.0f;
}

// Where the source of a block of an operand lies: `rows` runs of `bytes` bytes, `stride` bytes apart.
struct SourceRegion { const char* p = nullptr; int64_t rows = 0, bytes = 0, stride = 0; };

// Cache lines of source regions handed out in runs to the micro-kernels, which ask for one line per k step
// (into L2): the operands of the next block come in from memory while this one is computed. In a training
// step the operands of most products are cold, and packing them was a memory-bound pass that nothing
// overlapped. Rows laid end to end (a dense block) are one run.
struct Prefetcher {
  SourceRegion r[2];
  int n = 0;
  int64_t row = 0, off = 0;   // cursor in r[0]: row, bytes from the row's first line
  void add(SourceRegion g) {
    if (!g.p || g.rows <= 0 || g.bytes <= 0 || n == 2) return;
    if (g.stride == g.bytes) { g.bytes *= g.rows; g.rows = 1; }
    r[n++] = g;
  }
  int64_t lines() const {
    int64_t t = 0;
    for (int i = 0; i < n; i++) t += r[i].rows * (r[i].bytes / 64 + 2);
    return t;
  }
  // The next run of at most `want` lines: its first line, and the count in `got` (0 when done).
  const char* take(int64_t want, int64_t& got) {
    got = 0;
    if (n == 0 || want <= 0) return nullptr;
    const SourceRegion& g = r[0];
    const char* run = g.p + row * g.stride;
    const char* first = reinterpret_cast<const char*>((uintptr_t)run & ~(uintptr_t)63);
    const int64_t total = (run + g.bytes - first + 63) / 64;
    const int64_t at = off / 64;
    got = imin(want, total - at);
    off += got * 64;
    if (at + got == total) {
      off = 0;
      if (++row == g.rows) { row = 0; r[0] = r[1]; n--; }
    }
    return first + at * 64;
  }
};

// An operand of the driver: packs MR-tall panels of A (rows = i) or NR-wide panels of B (rows = j).
struct Packer {
  virtual void pack(int64_t r0, int nr, int64_t k0, int64_t kc, float* dst) const = 0;
  // The source of rows [r0, r0+nr) x depth [k0, k0+kc), for prefetching; empty where unknown.
  virtual SourceRegion source(int64_t, int64_t, int64_t, int64_t) const { return {}; }
  // An already packed A panel (rows r0.., depth k0..), used in place by the driver; null: call pack().
  virtual const float* direct(int64_t, int64_t) const { return nullptr; }
  // Rows [r0, r0+n) as consecutive R-wide panels of kc each (B side, R = NR); packers whose source is
  // laid out along r override it to read memory in order across panels.
  virtual void pack_many(int64_t r0, int64_t n, int64_t k0, int64_t kc, float* dst, int R) const {
    for (int64_t p = 0; p * R < n; p++) pack(r0 + p * R, (int)imin<int64_t>(R, n - p * R), k0, kc, dst + p * kc * R);
  }
};

#ifdef VSS_HAS_BF16_DOT
// The bf16-compute layout of a panel (see ukernel_bf16): pair row q holds R 32-bit lanes, lane r = the two
// bf16 of k = 2q and 2q + 1 of row r (an odd kc pads the last pair with 0). Same sources as pack_panel.
template <int R>
static void pack_panel_bf16(const void* p, int dt, int64_t ld, bool kmajor, int64_t r0, int nr, int64_t k0,
                            int64_t kc, float* dst) {
  const int64_t kp = (kc + 1) / 2;
  if (kmajor) {
    for (int64_t q = 0; q < kp; q++) {
      const int64_t k = 2 * q;
      for (int c = 0; c < R; c += W) {
        const int lanes = imin(W, R - c), valid = imax(0, imin(lanes, nr - c));
        const V lo = vload_dt_n(p, dt, (k0 + k) * ld + r0 + c, valid);
        const V hi = k + 1 < kc ? vload_dt_n(p, dt, (k0 + k + 1) * ld + r0 + c, valid) : vzero();
        vstore_n(dst + q * R + c, _mm512_castsi512_ps(bf16_pairs(lo, hi)), lanes);
      }
    }
    return;
  }
  // Row-major source: the pairs of a row are adjacent, so 2W consecutive k of W rows convert to W x W
  // pairs, transposed in registers; the last < 2W k of each row go through a zero-padded buffer.
  const int64_t kfast = kc / (2 * W) * (2 * W);
  for (int rb = 0; rb < R; rb += W) {
    const int rows = imin(W, R - rb);
    for (int64_t k = 0; k < kfast; k += 2 * W) {
      V v[W];
      for (int i = 0; i < W; i++) {
        if (i >= rows || rb + i >= nr) { v[i] = vzero(); continue; }
        const int64_t base = (r0 + rb + i) * ld + k0 + k;
        v[i] = bf16_pairs_of_run(vload_dt_n(p, dt, base, W), vload_dt_n(p, dt, base + W, W));
      }
      vtranspose(v);
      for (int t = 0; t < W; t++) vstore_n(dst + (k / 2 + t) * R + rb, v[t], rows);
    }
    if (kfast < kc) {
      const int n = (int)(kc - kfast), pairs = (n + 1) / 2;
      for (int i = 0; i < rows; i++) {
        alignas(64) float run[2 * W], out[W];
        for (int t = 0; t < 2 * W; t++) run[t] = 0.0f;
        if (rb + i < nr) {
          const int64_t base = (r0 + rb + i) * ld + k0 + kfast;
          vstore(run, vload_dt_n(p, dt, base, imin(n, W)));
          if (n > W) vstore(run + W, vload_dt_n(p, dt, base + W, n - W));
        }
        vstore(out, bf16_pairs_of_run(vload(run), vload(run + W)));
        for (int t = 0; t < pairs; t++) dst[(kfast / 2 + t) * R + rb + i] = out[t];
      }
    }
  }
}
#endif

// Bf16: the bf16-pair layout (only where the path has the bf16 dot product).
template <int R, bool Bf16 = false>
struct DensePacker final : Packer {
  const void* p; int dt; int64_t ld; bool kmajor;
  DensePacker(const void* p_, int dt_, int64_t ld_, bool kmajor_) : p(p_), dt(dt_), ld(ld_), kmajor(kmajor_) {}
  void pack(int64_t r0, int nr, int64_t k0, int64_t kc, float* dst) const override {
#ifdef VSS_HAS_BF16_DOT
    if constexpr (Bf16) { pack_panel_bf16<R>(p, dt, ld, kmajor, r0, nr, k0, kc, dst); return; }
#endif
    pack_panel<R>(p, dt, ld, kmajor, r0, nr, k0, kc, dst);
  }
  SourceRegion source(int64_t r0, int64_t nr, int64_t k0, int64_t kc) const override {
    const int64_t es = dt == DT_F32 ? 4 : 2;
    const char* base = static_cast<const char*>(p);
    if (kmajor) return {base + (k0 * ld + r0) * es, kc, nr * es, ld * es};
    return {base + (r0 * ld + k0) * es, nr, kc * es, ld * es};
  }
};

// Rows r0.. of another packer, read as rows from r0 + off (a column range of B given to one thread).
struct ShiftedPacker final : Packer {
  const Packer& p; int64_t off;
  ShiftedPacker(const Packer& p_, int64_t off_) : p(p_), off(off_) {}
  void pack(int64_t r0, int nr, int64_t k0, int64_t kc, float* dst) const override { p.pack(r0 + off, nr, k0, kc, dst); }
  SourceRegion source(int64_t r0, int64_t nr, int64_t k0, int64_t kc) const override {
    return p.source(r0 + off, nr, k0, kc);
  }
};

// C = beta·C (+ bias in every row when bias is not null); beta = 0 ignores C's old contents.
static void scale_rows(float* C, int64_t ldc, int64_t M, int64_t N, float beta, const float* bias = nullptr) {
  for (int64_t i = 0; i < M; i++) {
    float* r = C + i * ldc;
    if (beta == 0.0f) for (int64_t j = 0; j < N; j++) r[j] = 0.0f;
    else for (int64_t j = 0; j < N; j++) r[j] *= beta;
    if (bias) for (int64_t j = 0; j < N; j++) r[j] += bias[j];
  }
}

constexpr int64_t kBBudget = 3 << 19;   // floats of packed B~ per chunk (6 MiB)
constexpr int64_t kL2Bytes = 1 << 20;   // a core's L2 (Zen 4/5: 1 MiB; Skylake-SP and later Intel: 1-2 MiB)

// C[M x N] (row stride ldc) = alpha * A * B + beta * C (+ bias[N] in every row) with A, B given by packers.
// parallel=false keeps everything on the calling thread (used inside parallel regions).
// The bias is added by the micro-kernels of the first KC slice, to sums still in registers (UkTail).
// Bf16: the packers write bf16 pairs (DensePacker<R, true>) and ukernel_bf16 runs; a KC slice then fills
// ceil(kc / 2) rows of a panel (KC is even, so slices start on a pair).
template <bool Bf16 = false>
static void gemm_driver(int64_t M, int64_t N, int64_t K, float alpha, float beta, const Packer& pa,
                        const Packer& pb, float* C, int64_t ldc, bool parallel, const float* bias = nullptr) {
  constexpr int64_t ku = Bf16 ? 2 : 1;   // k per packed row
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { scale_rows(C, ldc, M, N, beta, bias); return; }
  const int nt = parallel ? num_threads() : 1;
  // A single row block on several threads: each thread takes its own range of columns and packs its own B
  // panels, as one thread would. Sharing B~ between threads (tiles split along M) made each thread read
  // panels packed on the other core: 1.45x slower at 256x1280x1280 whenever the VM's two vCPUs sat on
  // different core complexes (a 320 ns round trip between them instead of 55), where OpenBLAS lost 10 %.
  // A is then packed by every thread (M x K, small next to the columns' share of the work).
  if (nt > 1 && M <= MC && pa.direct(0, 0) == nullptr && ceil_div(N, NR) >= 2 * nt) {
    const int64_t np = ceil_div(N, NR), per = ceil_div(np, (int64_t)nt) * NR;
    auto part = [&](int64_t t, int) {
      const int64_t j0 = t * per, n = imin(N - j0, per);
      if (n <= 0) return;
      ShiftedPacker pbt(pb, j0);
      gemm_driver<Bf16>(M, n, K, alpha, beta, pa, pbt, C + j0, ldc, false, bias ? bias + j0 : nullptr);
    };
    par_for(nt, part);
    return;
  }
  // Chunks of about equal width: a budget-sized chunk and a sliver (1216 + 64 columns at N = K = 1280)
  // would pack A and run the tile loop again for a few panels.
  const int64_t nc_budget = imax<int64_t>(NR, (kBBudget / K) / NR * NR);
  const int64_t nc_max = round_up(ceil_div(N, ceil_div(N, nc_budget)), NR);
  const int64_t kc_max = imin<int64_t>(K, KC);
  for (int64_t jc = 0; jc < N; jc += nc_max) {
    const int64_t nc = imin(nc_max, N - jc);
    const int64_t np = ceil_div(nc, NR);
    float* Bt = static_cast<float*>(scratch(SLOT_GEMM_B, (size_t)(np * K * NR) * sizeof(float)));
    // One thread: B~ is packed slice by slice inside the first row block's sweep, right before its
    // micro-kernels read it (still in cache), instead of in a pass of its own over all of B.
    const bool lazy_b = nt == 1;
    // ---- pack B~
    if (!lazy_b) {
      auto packB = [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; p++) {
          int64_t j = p * NR;
          pb.pack(jc + j, (int)imin<int64_t>(NR, nc - j), 0, K, Bt + p * K * NR);
        }
      };
      if (nt > 1 && np > 1 && np * K * NR >= 32768) {
        int64_t per = imax<int64_t>(1, ceil_div(np, 4 * (int64_t)nt));
        auto body = [&](int64_t t, int) { packB(t * per, imin(np, (t + 1) * per)); };
        par_for(ceil_div(np, per), body);
      } else {
        packB(0, np);
      }
    }
    // ---- tiles of C: split M first (B~ is shared, so smaller mb costs nothing but A~ re-use),
    // then N, until there are ~4 tiles per thread.
    int64_t mpan = ceil_div(M, MR);
    int64_t tm = ceil_div(M, MC), tn = 1;
    if (nt > 1) {
      const int64_t want = 4 * (int64_t)nt;
      while (tm * tn < want) {
        if (ceil_div(mpan, tm + 1) >= 4 && tm < mpan) tm++;
        else if (ceil_div(np, tn + 1) >= 2 && tn < np) tn++;
        else break;
      }
    }
    int64_t mb = ceil_div(mpan, tm) * MR;            // rows per tile (multiple of MR)
    const int64_t nbp = ceil_div(np, tn);             // NR panels per tile
    tm = ceil_div(M, mb); tn = ceil_div(np, nbp);
    // Equal tiles in a count that is not a multiple of the thread count leave threads idle at the end
    // (9 tiles of M = 2048 on 2 threads: one thread runs 5, the other 4): split M a little finer.
    for (int64_t t = tm + 1; nt > 1 && (tm * tn) % nt != 0 && t <= tm + nt && ceil_div(mpan, t) >= 4; t++) {
      const int64_t mb2 = ceil_div(mpan, t) * MR, tm2 = ceil_div(M, mb2);
      if ((tm2 * tn) % nt == 0) { mb = mb2; tm = tm2; }
    }
    auto tile = [&](int64_t t, int) {
      const int64_t im = t % tm, in = t / tm;
      const int64_t i0 = im * mb, i1 = imin(M, i0 + mb);
      const int64_t p0 = in * nbp, p1 = imin(np, p0 + nbp);
      const int64_t npan_a = ceil_div(i1 - i0, MR);
      const bool dir = pa.direct(i0, 0) != nullptr;
      const bool pack_b = lazy_b && im == 0;
      float* Ap = dir ? nullptr : static_cast<float*>(scratch(SLOT_GEMM_A, (size_t)(npan_a * kc_max * MR) * sizeof(float)));
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = imin<int64_t>(KC, K - pc), kcu = ceil_div(kc, ku);
        for (int64_t a = 0; a < npan_a && !dir; a++) {
          int64_t i = i0 + a * MR;
          pa.pack(i, (int)imin<int64_t>(MR, i1 - i), pc, kc, Ap + a * kcu * MR);
        }
        // What is packed next on its way in meanwhile: this tile's next slice of A (and of B while B~ is
        // packed lazily), or after the last slice the next row block's first (tiles in order: one thread).
        Prefetcher pf;
        if (pc + KC < K) {
          const int64_t kn = imin<int64_t>(KC, K - pc - KC);
          if (!dir) pf.add(pa.source(i0, i1 - i0, pc + KC, kn));
          if (pack_b) pf.add(pb.source(jc + p0 * NR, imin<int64_t>(nc, p1 * NR) - p0 * NR, pc + KC, kn));
        } else if (lazy_b && !dir && im + 1 < tm) {
          pf.add(pa.source(i1, imin(M, i1 + mb) - i1, 0, imin<int64_t>(KC, K)));
        }
        // Only what fits in L2 beside the packed A block being computed: on larger blocks the lines would
        // push out that block (1-2 % slower on 2048^3 and 256x1280x1280).
        const int64_t calls = npan_a * (p1 - p0);
        const bool pf_fits = (pf.lines() * 64 + npan_a * kcu * MR * 4) <= kL2Bytes;
        const int64_t pf_per_call = calls > 0 && pf_fits ? imin<int64_t>(kc, ceil_div(pf.lines(), calls)) : 0;
        const float b_eff = pc == 0 ? beta : 1.0f;
        for (int64_t p = p0; p < p1; p++) {
          const int64_t j = p * NR;
          const int nr = (int)imin<int64_t>(NR, nc - j);
          // With a single row block nothing reads a B~ panel again: each is packed into one panel-sized
          // buffer that stays in cache, not into B~'s place for later row blocks (megabytes written back to
          // memory for nothing at M = 256, N = K = 1280).
          float* bp = lazy_b && tm == 1 ? Bt : Bt + p * K * NR + pc / ku * NR;
          if (pack_b) pb.pack(jc + j, nr, pc, kc, bp);
          float* cp = C + jc + j;
          const float* bias_j = bias && pc == 0 ? bias + jc + j : nullptr;   // added with the first KC slice
          for (int64_t a = 0; a < npan_a; a++) {
            int64_t i = i0 + a * MR;
            const float* ap = dir ? pa.direct(i, pc) : Ap + a * kcu * MR;
            const int mr = (int)imin<int64_t>(MR, i1 - i);
            int64_t pf_lines = 0;
            const char* pf_at = pf.take(pf_per_call, pf_lines);
#ifdef VSS_HAS_BF16_DOT
            if constexpr (Bf16) { ukernel_bf16(kc, ap, bp, cp + i * ldc, ldc, alpha, b_eff, mr, nr, bias_j); continue; }
#endif
            ukernel(kc, ap, bp, cp + i * ldc, ldc, alpha, b_eff, mr, nr, bias_j, pf_at, pf_lines);
          }
        }
      }
    };
    if (lazy_b) for (int64_t t = 0; t < tm * tn; t++) tile(t, 0);  // in order: row block 0 packs B~
    else if (tm * tn == 1) tile(0, 0);
    else par_for(tm * tn, tile);
  }
}

// ------------------------------------------------------------------------------------------ few rows of A
// With M < MR (a decoder's one new token, a batch of a few), packing all of B for a micro-kernel that
// fills one of its MR rows costs far more than the product itself. These paths read B once, in place
// (f16/bf16 widened on load), with every row of A held at once; A is first copied to f32 rows.
// Each C element is one fixed reduction over k, and threads split columns only, so the result does not
// depend on the thread count.
constexpr int kSmallM = 4;

// B stored N x K (transB, e.g. Linear weights [out, in]): C(i, j) = dot(a_i, B_j), vectorised along k.
template <int M_, int J_>
static void small_m_dot(const float* a, int64_t K, const void* B, int bdt, int64_t ldb, int64_t j0, int64_t j1,
                        float alpha, float beta, float* C, int64_t ldc) {
  int64_t j = j0;
  for (; j + J_ <= j1; j += J_) {
    V acc[M_][J_];
    for (int i = 0; i < M_; i++) for (int c = 0; c < J_; c++) acc[i][c] = vzero();
    int64_t k = 0;
    for (; k + W <= K; k += W) {
      V b[J_];
      for (int c = 0; c < J_; c++) b[c] = vload_dt_n(B, bdt, (j + c) * ldb + k, W);
      for (int i = 0; i < M_; i++) {
        V av = vload(a + i * K + k);
        for (int c = 0; c < J_; c++) acc[i][c] = vfma(av, b[c], acc[i][c]);
      }
    }
    if (k < K) {
      const int n = (int)(K - k);
      V b[J_];
      for (int c = 0; c < J_; c++) b[c] = vload_dt_n(B, bdt, (j + c) * ldb + k, n);
      for (int i = 0; i < M_; i++) {
        V av = vload_n(a + i * K + k, n);
        for (int c = 0; c < J_; c++) acc[i][c] = vfma(av, b[c], acc[i][c]);
      }
    }
    for (int i = 0; i < M_; i++)
      for (int c = 0; c < J_; c++) {
        float* out = C + i * ldc + j + c;
        *out = alpha * vhsum(acc[i][c]) + (beta == 0.0f ? 0.0f : beta * *out);
      }
  }
  if (j < j1) small_m_dot<M_, 1>(a, K, B, bdt, ldb, j, j1, alpha, beta, C, ldc);
}

// B stored K x N (k-major in j): row k of B scaled by a(i, k) is added to C's row i, a block of JB columns
// at a time kept in L1 (whole vectors: the block is padded to W). Reading B row by row in contiguous
// runs, not one cache line per k, is what keeps this at memory speed for large K.
constexpr int64_t kSmallJB = 512;
template <int M_>
static void small_m_axpy(const float* a, int64_t K, const void* B, int bdt, int64_t ldb, int64_t j0, int64_t j1,
                         float alpha, float beta, float* C, int64_t ldc) {
  alignas(64) float acc[M_][kSmallJB];
  for (int64_t jb = j0; jb < j1; jb += kSmallJB) {
    const int64_t n = imin<int64_t>(kSmallJB, j1 - jb);
    for (int i = 0; i < M_; i++) for (int64_t t = 0; t < n; t += W) vstore(acc[i] + t, vzero());
    for (int64_t k = 0; k < K; k++) {
      V av[M_];
      for (int i = 0; i < M_; i++) av[i] = vset1(a[i * K + k]);
      const int64_t row = k * ldb + jb;
      for (int64_t t = 0; t < n; t += W) {
        const V b = vload_dt_n(B, bdt, row + t, (int)imin<int64_t>(W, n - t));
        for (int i = 0; i < M_; i++) vstore(acc[i] + t, vfma(av[i], b, vload(acc[i] + t)));
      }
    }
    for (int i = 0; i < M_; i++) {
      float* out = C + i * ldc + jb;
      for (int64_t t = 0; t < n; t++) out[t] = alpha * acc[i][t] + (beta == 0.0f ? 0.0f : beta * out[t]);
    }
  }
}

template <int M_>
static void small_m_columns(const float* a, int64_t K, const void* B, int bdt, int64_t ldb, bool transB, int64_t j0,
                            int64_t j1, float alpha, float beta, float* C, int64_t ldc) {
  if (transB) small_m_dot<M_, (M_ <= 2 ? 4 : 2)>(a, K, B, bdt, ldb, j0, j1, alpha, beta, C, ldc);
  else small_m_axpy<M_>(a, K, B, bdt, ldb, j0, j1, alpha, beta, C, ldc);
}

static void gemm_small_m(int64_t M, int64_t N, int64_t K, float alpha, const void* A, int adt, int64_t lda, bool transA,
                         const void* B, int bdt, int64_t ldb, bool transB, float beta, float* C, int64_t ldc, bool parallel) {
  if (K <= 0) { scale_rows(C, ldc, M, N, beta); return; }
  float* a = static_cast<float*>(scratch(SLOT_GEMM_A, (size_t)(M * K) * sizeof(float)));
  for (int64_t i = 0; i < M; i++)
    for (int64_t k = 0; k < K; k++) a[i * K + k] = load_as_f32(A, adt, transA ? k * lda + i : i * lda + k);
  auto columns = [&](int64_t j0, int64_t j1) {
    switch (M) {
      case 1: small_m_columns<1>(a, K, B, bdt, ldb, transB, j0, j1, alpha, beta, C, ldc); break;
      case 2: small_m_columns<2>(a, K, B, bdt, ldb, transB, j0, j1, alpha, beta, C, ldc); break;
      case 3: small_m_columns<3>(a, K, B, bdt, ldb, transB, j0, j1, alpha, beta, C, ldc); break;
      default: small_m_columns<4>(a, K, B, bdt, ldb, transB, j0, j1, alpha, beta, C, ldc); break;
    }
  };
  // Column blocks of 2W keep the k-major path's vector groups whole whatever the split.
  const int64_t blocks = ceil_div(N, 2 * W);
  if (!parallel || num_threads() <= 1 || N * K * M < (1 << 16)) { columns(0, N); return; }
  par_range(blocks, K * M * 2 * W / 4, [&](int64_t b0, int64_t b1) { columns(b0 * 2 * W, imin(N, b1 * 2 * W)); });
}

// ------------------------------------------------------------------------------------------ public gemm
static void gemm_one(const GemmArgs& g, int64_t p, bool parallel) {
  const size_t ea = g.adt == DT_F32 ? 4 : 2, eb = g.bdt == DT_F32 ? 4 : 2;
  const void* A = static_cast<const char*>(g.A) + (size_t)(p * g.strideA) * ea;
  const void* B = static_cast<const char*>(g.B) + (size_t)(p * g.strideB) * eb;
  // A~ rows are i: A stored M x K (row-major in i) or K x M when transA (k-major).
  if (g.M <= kSmallM && g.M < MR) {
    float* C = g.C + p * g.strideC;
    float beta = g.beta;
    if (g.bias) { scale_rows(C, g.ldc, g.M, g.N, beta, g.bias); beta = 1.0f; }
    gemm_small_m(g.M, g.N, g.K, g.alpha, A, g.adt, g.lda, g.transA, B, g.bdt, g.ldb, g.transB, beta, C, g.ldc, parallel);
    return;
  }
#ifdef VSS_HAS_BF16_DOT
  if (g.bf16_compute) {
    DensePacker<MR, true> pa(A, g.adt, g.lda, g.transA);
    DensePacker<NR, true> pb(B, g.bdt, g.ldb, !g.transB);
    gemm_driver<true>(g.M, g.N, g.K, g.alpha, g.beta, pa, pb, g.C + p * g.strideC, g.ldc, parallel, g.bias);
    return;
  }
#endif
  DensePacker<MR> pa(A, g.adt, g.lda, g.transA);
  // B~ rows are j: B stored K x N (k-major in j) or N x K when transB.
  DensePacker<NR> pb(B, g.bdt, g.ldb, !g.transB);
  gemm_driver(g.M, g.N, g.K, g.alpha, g.beta, pa, pb, g.C + p * g.strideC, g.ldc, parallel, g.bias);
}

static void gemm(const GemmArgs& g) {
  if (g.batch <= 0 || g.M <= 0 || g.N <= 0) return;
  const int nt = num_threads();
  const double flops = 2.0 * (double)g.M * (double)g.N * (double)g.K;
  // Many small products: one per task (each on one thread). Writes must not overlap (strideC != 0).
  const bool outer = nt > 1 && g.batch > 1 && g.strideC != 0 &&
                     (g.batch >= 4 * nt || (g.batch >= nt && flops < 3e7));
  if (outer) {
    auto body = [&](int64_t p, int) { gemm_one(g, p, false); };
    par_for(g.batch, body);
  } else {
    for (int64_t p = 0; p < g.batch; p++) gemm_one(g, p, nt > 1 && flops >= 2e5);
  }
}
