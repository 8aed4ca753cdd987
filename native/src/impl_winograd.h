// Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions (Lavin & Gray 2016, "Fast Algorithms for
// Convolutional Neural Networks"). Each 2×2 output tile is
//     Y = Aᵀ [ Σ_c U_c ⊙ V_c ] A,   U_c = G g_c Gᵀ (4×4, per output/input channel), V_c = Bᵀ d_c B
// over the tile's 4×4 input patch d_c: 16 multiplies per tile and channel pair instead of 36. Grouped by
// the 16 points ξ of the 4×4 domain, the sum is 16 GEMMs  M_ξ (O × tiles) = U_ξ (O × C) · V_ξ (C × tiles),
// run on the GEMM micro-kernel. The transforms only add, subtract and halve, so the error stays at the
// direct method's level (F(4×4, 3×3) would save more multiplies but loses digits).
//
// Layout: U is packed once per call as 16 MR-row A operands (K = C); the tiles of all images are cut into
// chunks of NR-wide panels, and per chunk each thread transforms its input patches into 16 packed B
// operands, runs the 16 GEMMs into M, and transforms M back into the output. A tile's result does not
// depend on which chunk or thread computed it.
//
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]   G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]   Aᵀ = [1 1 1 0; 0 1 −1 −1]

static inline bool conv_winograd_applies(const ConvArgs& a) {
  if (!conv_winograd_enabled() || a.ph < 0 || a.pw < 0) return false;
  if (a.groups != 1 || a.kh != 3 || a.kw != 3 || a.sh != 1 || a.sw != 1 || a.dh != 1 || a.dw != 1) return false;
  const int64_t OH = a.H + 2 * a.ph - 2, OW = a.W + 2 * a.pw - 2;
  if (OH < 2 || OW < 2 || a.C < 8 || a.O < 8) return false;
  const int64_t tiles = a.N * ((OH + 1) / 2) * ((OW + 1) / 2);
  // Few tiles: transforming the weights (16 × O × C floats written) costs about what the multiplies save
  // (measured on SD's 1280-channel layers at 8×8, batch 2: slower than direct).
  return tiles >= 128;
}

// The transformed weights of a block of output channels (16 × Ob × C floats) stay under this, so the
// scratch kept for them is bounded; wider layers run block by block (the input transform is redone per
// block, a small cost next to the GEMMs).
constexpr double kWinogradUBytes = 24.0 * (1 << 20);

// U_ξ of output channels [ob, ob + Ob), packed like prepack_a: panel a holds rows [a·MR, a·MR + MR) as
// [c][MR]; rows past the block are zero. flip_t: the kernel is stored as w[c][o][3][3] and used rotated by
// 180° (the input gradient's kernel).
static void winograd_weights(const ConvArgs& a, float* U, bool flip_t, int64_t ob, int64_t Ob) {
  const int64_t C = a.C, O = a.O, np = ceil_div(Ob, MR), plane = np * C * MR;
  auto rows = [&](int64_t o0, int64_t o1) {
    for (int64_t o = ob + o0; o < ob + o1; o++) {
      const int64_t panel = (o - ob) / MR, r = (o - ob) % MR;
      for (int64_t c = 0; c < C; c++) {
        float g[9];
        if (flip_t) {
          const int64_t base = (c * O + o) * 9;
          for (int i = 0; i < 9; i++) g[i] = load_as_f32(a.w, a.wdt, base + 8 - i);
        } else {
          const int64_t base = (o * C + c) * 9;
          for (int i = 0; i < 9; i++) g[i] = load_as_f32(a.w, a.wdt, base + i);
        }
        float t[4][3];  // G g (4×3)
        for (int j = 0; j < 3; j++) {
          const float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
          t[0][j] = g0;
          t[1][j] = 0.5f * (g0 + g1 + g2);
          t[2][j] = 0.5f * (g0 - g1 + g2);
          t[3][j] = g2;
        }
        float* dst = U + panel * C * MR + c * MR + r;
        for (int i = 0; i < 4; i++) {  // (G g) Gᵀ
          const float t0 = t[i][0], t1 = t[i][1], t2 = t[i][2];
          dst[(4 * i + 0) * plane] = t0;
          dst[(4 * i + 1) * plane] = 0.5f * (t0 + t1 + t2);
          dst[(4 * i + 2) * plane] = 0.5f * (t0 - t1 + t2);
          dst[(4 * i + 3) * plane] = t2;
        }
      }
    }
  };
  // zero the padding rows of the last panel
  if (Ob % MR) {
    for (int xi = 0; xi < 16; xi++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t r = Ob % MR; r < MR; r++) U[xi * plane + (np - 1) * C * MR + c * MR + r] = 0.0f;
  }
  par_range(Ob, 9 * C * 16, rows);
}

// V = Bᵀ d B for W lanes (tiles): d[4r + s] holds element (r, s) of each lane's 4×4 patch; V_ξ goes to
// dst + ξ·vplane.
static inline void winograd_input_lanes(const V d[16], float* dst, int64_t vplane) {
  V t[16];
  for (int s = 0; s < 4; s++) {  // Bᵀ d: combine rows
    t[s] = vsub(d[s], d[8 + s]); t[4 + s] = vadd(d[4 + s], d[8 + s]);
    t[8 + s] = vsub(d[8 + s], d[4 + s]); t[12 + s] = vsub(d[4 + s], d[12 + s]);
  }
  for (int r = 0; r < 4; r++) {  // (Bᵀ d) B: combine columns
    const V e0 = t[4 * r], e1 = t[4 * r + 1], e2 = t[4 * r + 2], e3 = t[4 * r + 3];
    vstore(dst + (int64_t)(4 * r + 0) * vplane, vsub(e0, e2));
    vstore(dst + (int64_t)(4 * r + 1) * vplane, vadd(e1, e2));
    vstore(dst + (int64_t)(4 * r + 2) * vplane, vsub(e2, e1));
    vstore(dst + (int64_t)(4 * r + 3) * vplane, vsub(e1, e3));
  }
}

static void conv2d_winograd(const ConvArgs& a, bool flip_t = false) {
  const int64_t C = a.C, O = a.O, H = a.H, Wd = a.W;
  const int64_t OH = H + 2 * a.ph - 2, OW = Wd + 2 * a.pw - 2;
  const int64_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, TI = TH * TW, T = a.N * TI;
  // output channels in blocks whose transformed weights fit kWinogradUBytes
  int64_t Ob = O;
  if (16.0 * round_up(O, MR) * C * sizeof(float) > kWinogradUBytes)
    Ob = imax<int64_t>(MR, (int64_t)(kWinogradUBytes / (16.0 * C * sizeof(float))) / MR * MR);
  const int64_t npa_max = ceil_div(Ob, MR);
  float* U = static_cast<float*>(scratch(SLOT_OP3, (size_t)(16 * npa_max * C * MR) * sizeof(float)));

  // Chunks of whole panels: up to 4 panels (U is streamed once per chunk), fewer when that leaves
  // threads idle. Results do not depend on the chunking.
  const int nt = num_threads();
  const int64_t npanels = ceil_div(T, (int64_t)NR);
  const int64_t per = imax<int64_t>(1, imin<int64_t>(4, ceil_div(npanels, 2 * (int64_t)nt)));
  const int64_t nchunks = ceil_div(npanels, per);
  const int64_t P = OH * OW;

  int64_t ob = 0, Obk = Ob, npa = npa_max, uplane = npa_max * C * MR;  // the current block
  auto chunk = [&](int64_t ci, int) {
    const int64_t p0 = ci * per, pn = imin(per, npanels - p0), Tc = pn * NR, t0 = p0 * NR;
    const int64_t vplane = pn * C * NR;  // one ξ of V: pn panels of [c][NR]
    float* Vb = static_cast<float*>(scratch(SLOT_OP4, (size_t)(16 * vplane) * sizeof(float)));
    float* Mb = static_cast<float*>(scratch(SLOT_OP5, (size_t)(16 * Obk * Tc) * sizeof(float)));

    // 1. input transform, panel by panel: lanes are tiles
    for (int64_t p = 0; p < pn; p++) {
      int64_t src[NR];   // offset of each lane's patch in channel 0 (images included)
      int64_t img[NR], ih0[NR], iw0[NR];
      bool inside = true;
      for (int l = 0; l < NR; l++) {
        const int64_t t = t0 + p * NR + l;
        if (t >= T) { img[l] = -1; ih0[l] = iw0[l] = src[l] = 0; inside = false; continue; }
        const int64_t n = t / TI, r = t % TI;
        img[l] = n; ih0[l] = 2 * (r / TW) - a.ph; iw0[l] = 2 * (r % TW) - a.pw;
        src[l] = (n * C * H + ih0[l]) * Wd + iw0[l];
        if (ih0[l] < 0 || iw0[l] < 0 || ih0[l] + 4 > H || iw0[l] + 4 > Wd) inside = false;
      }
      // all lanes in one row of tiles: each patch row is one contiguous run of 2·NR + 2 floats
      const bool one_row = inside && src[NR - 1] - src[0] == 2 * (NR - 1);
      for (int64_t c = 0; c < C; c++) {
        alignas(64) float d[16][NR];
        const int64_t cHW = c * H * Wd;
        float* dst = Vb + p * C * NR + c * NR;
        if (one_row) {
          // lane l's patch column s is row element 2l + s: split each row into even and odd elements
          const float* base = a.x + src[0] + cHW;
          for (int l = 0; l < NR; l += W) {
            V dv[16];
            for (int r = 0; r < 4; r++) {
              vdeinterleave2(base + r * Wd + 2 * l, dv[4 * r], dv[4 * r + 1]);
              vdeinterleave2(base + r * Wd + 2 * l + 2, dv[4 * r + 2], dv[4 * r + 3]);
            }
            winograd_input_lanes(dv, dst + l, vplane);
          }
          continue;
        } else if (inside) {
          for (int l = 0; l < NR; l++) {
            const float* sp = a.x + src[l] + cHW;
            for (int r = 0; r < 4; r++)
              for (int s = 0; s < 4; s++) d[4 * r + s][l] = sp[r * Wd + s];
          }
        } else {
          for (int l = 0; l < NR; l++) {
            if (img[l] < 0) { for (int k = 0; k < 16; k++) d[k][l] = 0.0f; continue; }
            const float* xc = a.x + (img[l] * C + c) * H * Wd;
            for (int r = 0; r < 4; r++) {
              const int64_t ih = ih0[l] + r;
              for (int s = 0; s < 4; s++) {
                const int64_t iw = iw0[l] + s;
                d[4 * r + s][l] = (ih >= 0 && ih < H && iw >= 0 && iw < Wd) ? xc[ih * Wd + iw] : 0.0f;
              }
            }
          }
        }
        for (int l = 0; l < NR; l += W) {
          V dv[16];
          for (int k = 0; k < 16; k++) dv[k] = vload(&d[k][l]);
          winograd_input_lanes(dv, dst + l, vplane);
        }
      }
    }

    // 2. sixteen GEMMs M_ξ (O × Tc) = U_ξ · V_ξ, K = C in KC slices; an MC-row block of U_ξ stays in L2
    for (int xi = 0; xi < 16; xi++) {
      const float* Ux = U + xi * uplane;
      const float* Vx = Vb + xi * vplane;
      float* Mx = Mb + xi * Obk * Tc;
      for (int64_t k0 = 0; k0 < C; k0 += KC) {
        const int64_t kc = imin<int64_t>(KC, C - k0);
        const float beta = k0 == 0 ? 0.0f : 1.0f;
        for (int64_t ia = 0; ia < npa; ia += MC / MR) {
          const int64_t ib = imin<int64_t>(npa, ia + MC / MR);
          for (int64_t p = 0; p < pn; p++)
            for (int64_t ap = ia; ap < ib; ap++)
              ukernel(kc, Ux + ap * C * MR + k0 * MR, Vx + p * C * NR + k0 * NR, Mx + ap * MR * Tc + p * NR, Tc,
                      1.0f, beta, (int)imin<int64_t>(MR, Obk - ap * MR), NR);
        }
      }
    }

    // 3. output transform Aᵀ M A (+ bias), scattered into the 2×2 output blocks; where each tile goes is
    //    worked out once per chunk (divisions), not per output channel
    int64_t* dst_off = static_cast<int64_t*>(scratch(SLOT_OP6, (size_t)Tc * sizeof(int64_t)));
    const int64_t valid = imin<int64_t>(Tc, T - t0);
    for (int64_t l = 0; l < valid; l++) {
      const int64_t t = t0 + l, n = t / TI, r = t % TI, oh = 2 * (r / TW), ow = 2 * (r % TW);
      // offset of out[n, 0, oh, ow]; the low two bits say whether the block has a right column / lower row
      dst_off[l] = ((n * O * P + oh * OW + ow) << 2) | (ow + 1 < OW ? 1 : 0) | (oh + 1 < OH ? 2 : 0);
    }
    // groups of W lanes whose 2×2 blocks sit side by side in full: two vector stores per output row
    bool* full_row = reinterpret_cast<bool*>(scratch(SLOT_OP7, (size_t)(Tc / W + 1)));
    for (int64_t l0 = 0; l0 < valid; l0 += W) {
      bool ok = l0 + W <= valid;
      for (int l = 0; ok && l < W; l++)
        ok = (dst_off[l0 + l] & 3) == 3 && (dst_off[l0 + l] >> 2) == (dst_off[l0] >> 2) + 2 * l;
      full_row[l0 / W] = ok;
    }
    for (int64_t o = 0; o < Obk; o++) {
      const V vb = vset1(a.bias ? a.bias[ob + o] : 0.0f);
      float* out_o = a.out + (ob + o) * P;
      for (int64_t l0 = 0; l0 < valid; l0 += W) {
        V m[16];
        for (int xi = 0; xi < 16; xi++) m[xi] = vload(Mb + (xi * Obk + o) * Tc + l0);
        V s0[4], s1[4];
        for (int j = 0; j < 4; j++) {  // Aᵀ M: combine rows
          s0[j] = vadd(vadd(m[j], m[4 + j]), m[8 + j]);
          s1[j] = vsub(vsub(m[4 + j], m[8 + j]), m[12 + j]);
        }
        const V y00 = vadd(vadd(vadd(s0[0], s0[1]), s0[2]), vb), y01 = vadd(vsub(vsub(s0[1], s0[2]), s0[3]), vb);
        const V y10 = vadd(vadd(vadd(s1[0], s1[1]), s1[2]), vb), y11 = vadd(vsub(vsub(s1[1], s1[2]), s1[3]), vb);
        if (full_row[l0 / W]) {
          float* q = out_o + (dst_off[l0] >> 2);
          V lo, hi;
          vinterleave2(y00, y01, lo, hi); vstore(q, lo); vstore(q + W, hi);
          vinterleave2(y10, y11, lo, hi); vstore(q + OW, lo); vstore(q + OW + W, hi);
          continue;
        }
        alignas(64) float y[4][W];
        vstore(y[0], y00); vstore(y[1], y01); vstore(y[2], y10); vstore(y[3], y11);
        const int nl = (int)imin<int64_t>(W, valid - l0);
        for (int l = 0; l < nl; l++) {
          const int64_t code = dst_off[l0 + l];
          float* q = out_o + (code >> 2);
          q[0] = y[0][l];
          if (code & 1) q[1] = y[1][l];
          if (code & 2) { q[OW] = y[2][l]; if (code & 1) q[OW + 1] = y[3][l]; }
        }
      }
    }
  };
  for (ob = 0; ob < O; ob += Ob) {
    Obk = imin(Ob, O - ob);
    npa = ceil_div(Obk, MR);
    uplane = npa * C * MR;
    winograd_weights(a, U, flip_t, ob, Obk);
    if (nt > 1 && nchunks > 1) par_for(nchunks, chunk);
    else for (int64_t ci = 0; ci < nchunks; ci++) chunk(ci, 0);
  }
}

// The stride-1 input gradient is the convolution of gy with the kernel rotated by 180° and its channel
// axes swapped, padded by 2 − p: the same Winograd path. Returns false when it does not apply.
static bool conv2d_bwd_input_winograd(const ConvArgs& a) {
  ConvArgs b = a;
  b.C = a.O; b.O = a.C;
  b.H = a.H + 2 * a.ph - 2; b.W = a.W + 2 * a.pw - 2;  // gy's plane
  b.ph = 2 - a.ph; b.pw = 2 - a.pw;                     // so that b's output is a.H × a.W again
  b.x = a.gy; b.out = a.out; b.bias = nullptr;
  if (!conv_winograd_applies(b)) return false;          // also checks 3×3, stride 1, dilation 1, one group
  conv2d_winograd(b, true);
  return true;
}
