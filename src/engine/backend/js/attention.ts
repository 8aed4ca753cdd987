/**
 * Fused scaled-dot-product attention, FlashAttention style: keys are visited in tiles and each query row
 * keeps a running max, running denominator and running output (online softmax), so the Lq×Lk score
 * matrix never exists: forward scratch is O(QUERY_BLOCK·(KEY_TILE + Dv)). The backward pass recomputes
 * the probabilities tile by tile from the saved log-sum-exp. Every dot product and accumulator is
 * float64; the block products use 4×4 register blocking, which is what makes them fast in JS.
 */
import { denseAttnLayout, type AttnGradLayouts, type AttnLayouts, type F32 } from '../kernels.js';

const QUERY_BLOCK = 32; // query rows sharing one pass over a key tile (the tile stays in cache)
const KEY_TILE = 64;

let f64Scratch = new Float64Array(0);
function scratch(n: number): Float64Array {
  if (f64Scratch.length < n) f64Scratch = new Float64Array(n);
  return f64Scratch;
}

/**
 * out[r*KEY_TILE + c] = Σ_{d<n} x[xBase + r*xs + d] · y[yBase + c*ys + d] for r < rows, c < cols: a block
 * of dot products between rows of length n, xs / ys apart (q·k for scores, gout·v for dP).
 */
function rowDots(x: F32, xBase: number, xs: number, rows: number, y: F32, yBase: number, ys: number, cols: number,
                 n: number, out: Float64Array): void {
  const rows4 = rows & ~3, cols4 = cols & ~3;
  for (let r = 0; r < rows4; r += 4) {
    const x0 = xBase + r * xs, x1 = x0 + xs, x2 = x1 + xs, x3 = x2 + xs;
    const o0 = r * KEY_TILE, o1 = o0 + KEY_TILE, o2 = o1 + KEY_TILE, o3 = o2 + KEY_TILE;
    for (let c = 0; c < cols4; c += 4) {
      const y0 = yBase + c * ys, y1 = y0 + ys, y2 = y1 + ys, y3 = y2 + ys;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let d = 0; d < n; d++) {
        const a0 = x[x0 + d], a1 = x[x1 + d], a2 = x[x2 + d], a3 = x[x3 + d];
        const b0 = y[y0 + d], b1 = y[y1 + d], b2 = y[y2 + d], b3 = y[y3 + d];
        s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
        s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
        s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
        s30 += a3 * b0; s31 += a3 * b1; s32 += a3 * b2; s33 += a3 * b3;
      }
      out[o0 + c] = s00; out[o0 + c + 1] = s01; out[o0 + c + 2] = s02; out[o0 + c + 3] = s03;
      out[o1 + c] = s10; out[o1 + c + 1] = s11; out[o1 + c + 2] = s12; out[o1 + c + 3] = s13;
      out[o2 + c] = s20; out[o2 + c + 1] = s21; out[o2 + c + 2] = s22; out[o2 + c + 3] = s23;
      out[o3 + c] = s30; out[o3 + c + 1] = s31; out[o3 + c + 2] = s32; out[o3 + c + 3] = s33;
    }
    for (let c = cols4; c < cols; c++) {
      const y0 = yBase + c * ys;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let d = 0; d < n; d++) {
        const b = y[y0 + d];
        s0 += x[x0 + d] * b; s1 += x[x1 + d] * b; s2 += x[x2 + d] * b; s3 += x[x3 + d] * b;
      }
      out[o0 + c] = s0; out[o1 + c] = s1; out[o2 + c] = s2; out[o3 + c] = s3;
    }
  }
  for (let r = rows4; r < rows; r++) {
    const x0 = xBase + r * xs;
    for (let c = 0; c < cols; c++) {
      const y0 = yBase + c * ys;
      let s = 0;
      for (let d = 0; d < n; d++) s += x[x0 + d] * y[y0 + d];
      out[r * KEY_TILE + c] = s;
    }
  }
}

/**
 * acc[accBase + r*n + d] += Σ_{c<inner} p[r*pRow + c*pCol] · y[yBase + c*ys + d] for r < rows, d < n.
 * The strides on p let the same routine multiply by a probability tile or by its transpose.
 */
function accumulateProducts(p: Float64Array, pRow: number, pCol: number, rows: number, inner: number,
                            y: F32, yBase: number, ys: number, n: number, acc: Float64Array, accBase: number): void {
  const rows4 = rows & ~3, n4 = n & ~3;
  for (let r = 0; r < rows4; r += 4) {
    const p0 = r * pRow, p1 = p0 + pRow, p2 = p1 + pRow, p3 = p2 + pRow;
    const a0 = accBase + r * n, a1 = a0 + n, a2 = a1 + n, a3 = a2 + n;
    for (let d = 0; d < n4; d += 4) {
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let c = 0; c < inner; c++) {
        const pc = c * pCol;
        const w0 = p[p0 + pc], w1 = p[p1 + pc], w2 = p[p2 + pc], w3 = p[p3 + pc];
        const yr = yBase + c * ys + d;
        const b0 = y[yr], b1 = y[yr + 1], b2 = y[yr + 2], b3 = y[yr + 3];
        s00 += w0 * b0; s01 += w0 * b1; s02 += w0 * b2; s03 += w0 * b3;
        s10 += w1 * b0; s11 += w1 * b1; s12 += w1 * b2; s13 += w1 * b3;
        s20 += w2 * b0; s21 += w2 * b1; s22 += w2 * b2; s23 += w2 * b3;
        s30 += w3 * b0; s31 += w3 * b1; s32 += w3 * b2; s33 += w3 * b3;
      }
      acc[a0 + d] += s00; acc[a0 + d + 1] += s01; acc[a0 + d + 2] += s02; acc[a0 + d + 3] += s03;
      acc[a1 + d] += s10; acc[a1 + d + 1] += s11; acc[a1 + d + 2] += s12; acc[a1 + d + 3] += s13;
      acc[a2 + d] += s20; acc[a2 + d + 1] += s21; acc[a2 + d + 2] += s22; acc[a2 + d + 3] += s23;
      acc[a3 + d] += s30; acc[a3 + d + 1] += s31; acc[a3 + d + 2] += s32; acc[a3 + d + 3] += s33;
    }
    for (let d = n4; d < n; d++) {
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let c = 0; c < inner; c++) {
        const pc = c * pCol;
        const b = y[yBase + c * ys + d];
        s0 += p[p0 + pc] * b; s1 += p[p1 + pc] * b; s2 += p[p2 + pc] * b; s3 += p[p3 + pc] * b;
      }
      acc[a0 + d] += s0; acc[a1 + d] += s1; acc[a2 + d] += s2; acc[a3 + d] += s3;
    }
  }
  for (let r = rows4; r < rows; r++) {
    const a0 = accBase + r * n;
    for (let c = 0; c < inner; c++) {
      const w = p[r * pRow + c * pCol];
      const yr = yBase + c * ys;
      for (let d = 0; d < n; d++) acc[a0 + d] += w * y[yr + d];
    }
  }
}

export function attention(q: F32, k: F32, v: F32, B: number, H: number, Lq: number, Lk: number, D: number,
                          Dv: number, scale: number, causal: boolean, mask: F32 | null,
                          mB: number, mH: number, mQ: number, out: F32, lse: F32, layouts?: AttnLayouts | null): void {
  const [qB, qH, qs] = layouts?.q ?? denseAttnLayout(H, Lq, D), [kB, kH, ks] = layouts?.k ?? denseAttnLayout(H, Lk, D);
  const [vB, vH, vs] = layouts?.v ?? denseAttnLayout(H, Lk, Dv), [oB, oH, os] = layouts?.out ?? denseAttnLayout(H, Lq, Dv);
  const tile = QUERY_BLOCK * KEY_TILE;
  const buf = scratch(tile + 2 * QUERY_BLOCK + QUERY_BLOCK * Dv);
  const probs = buf.subarray(0, tile); // scores, then exp(score - running max) in place
  const rowMax = buf.subarray(tile, tile + QUERY_BLOCK);
  const rowSum = buf.subarray(tile + QUERY_BLOCK, tile + 2 * QUERY_BLOCK);
  const acc = buf.subarray(tile + 2 * QUERY_BLOCK);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const qBase = b * qB + h * qH, kBase = b * kB + h * kH, vBase = b * vB + h * vH;
      const oBase = b * oB + h * oH, lseBase = (b * H + h) * Lq;
      const maskBase = b * mB + h * mH;
      for (let i0 = 0; i0 < Lq; i0 += QUERY_BLOCK) {
        const qb = Math.min(QUERY_BLOCK, Lq - i0);
        rowMax.fill(-Infinity, 0, qb);
        rowSum.fill(0, 0, qb);
        acc.fill(0, 0, qb * Dv);
        // Causal: no row of this block sees a key past its last row.
        const jEnd = causal ? Math.min(Lk, i0 + qb) : Lk;
        for (let j0 = 0; j0 < jEnd; j0 += KEY_TILE) {
          const kt = Math.min(KEY_TILE, jEnd - j0);
          rowDots(q, qBase + i0 * qs, qs, qb, k, kBase + j0 * ks, ks, kt, D, probs);
          for (let r = 0; r < qb; r++) {
            const i = i0 + r;
            const pRow = r * KEY_TILE;
            const visible = causal ? Math.min(kt, i - j0 + 1) : kt; // keys j ≤ i under the causal mask
            let tileMax = -Infinity;
            for (let c = 0; c < kt; c++) {
              let s = -Infinity;
              if (c < visible) {
                s = scale * probs[pRow + c];
                if (mask !== null) s += mask[maskBase + i * mQ + j0 + c];
              }
              probs[pRow + c] = s;
              if (s > tileMax || s !== s) tileMax = s; // a NaN score poisons the row, as in PyTorch
            }
            if (tileMax === -Infinity) { probs.fill(0, pRow, pRow + kt); continue; } // all masked here
            const oldMax = rowMax[r];
            const newMax = oldMax > tileMax ? oldMax : tileMax;
            if (newMax !== oldMax) {
              const correction = Math.exp(oldMax - newMax); // 0 while the row had nothing yet
              rowSum[r] *= correction;
              for (let d = r * Dv; d < (r + 1) * Dv; d++) acc[d] *= correction;
              rowMax[r] = newMax;
            }
            let sum = 0;
            for (let c = 0; c < kt; c++) {
              const p = Math.exp(probs[pRow + c] - newMax);
              probs[pRow + c] = p;
              sum += p;
            }
            rowSum[r] += sum;
          }
          accumulateProducts(probs, KEY_TILE, 1, qb, kt, v, vBase + j0 * vs, vs, Dv, acc, 0);
        }
        for (let r = 0; r < qb; r++) {
          const oRow = oBase + (i0 + r) * os;
          const l = rowSum[r];
          if (!(l > 0) && l === l) {
            // No key reached this row: defined output 0, lse -Inf (the backward pass skips such rows).
            out.fill(0, oRow, oRow + Dv);
            lse[lseBase + i0 + r] = -Infinity;
            continue;
          }
          const inv = 1 / l;
          for (let d = 0; d < Dv; d++) out[oRow + d] = acc[r * Dv + d] * inv;
          lse[lseBase + i0 + r] = rowMax[r] + Math.log(l);
        }
      }
    }
  }
}

/**
 * Standard FlashAttention backward. With p_ij = exp(s_ij - lse_i) and D_i = Σ_d gout_id · out_id:
 *   gv_j += p_ij gout_i,  ds_ij = p_ij (gout_i·v_j - D_i),  gq_i += scale ds_ij k_j,  gk_j += scale ds_ij q_i.
 * Key tiles are the outer loop so gk/gv of a tile accumulate in float64 scratch and are written once;
 * gq accumulates in float64 over the whole head.
 */
export function attentionBackward(q: F32, k: F32, v: F32, out: F32, lse: F32, gout: F32,
                                  B: number, H: number, Lq: number, Lk: number, D: number, Dv: number,
                                  scale: number, causal: boolean, mask: F32 | null, mB: number, mH: number,
                                  mQ: number, gq: F32, gk: F32, gv: F32, layouts?: AttnGradLayouts | null): void {
  const [qB, qH, qs] = layouts?.q ?? denseAttnLayout(H, Lq, D), [kB, kH, ks] = layouts?.k ?? denseAttnLayout(H, Lk, D);
  const [vB, vH, vs] = layouts?.v ?? denseAttnLayout(H, Lk, Dv), [oB, oH, os] = layouts?.out ?? denseAttnLayout(H, Lq, Dv);
  const [goB, goH, gos] = layouts?.gout ?? denseAttnLayout(H, Lq, Dv);
  const [gqB, gqH, gqs] = layouts?.gq ?? denseAttnLayout(H, Lq, D), [gkB, gkH, gks] = layouts?.gk ?? denseAttnLayout(H, Lk, D);
  const [gvB, gvH, gvs] = layouts?.gv ?? denseAttnLayout(H, Lk, Dv);
  const tile = QUERY_BLOCK * KEY_TILE;
  const buf = scratch(2 * tile + Lq + Lq * D + KEY_TILE * (D + Dv));
  let at = 0;
  const take = (n: number): Float64Array => buf.subarray(at, (at += n));
  const probs = take(tile);
  const dScores = take(tile);
  const rowDot = take(Lq);
  const gqAcc = take(Lq * D);
  const gkAcc = take(KEY_TILE * D);
  const gvAcc = take(KEY_TILE * Dv);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const qBase = b * qB + h * qH, kBase = b * kB + h * kH, vBase = b * vB + h * vH;
      const oBase = b * oB + h * oH, goBase = b * goB + h * goH, lseBase = (b * H + h) * Lq;
      const gqBase = b * gqB + h * gqH, gkBase = b * gkB + h * gkH, gvBase = b * gvB + h * gvH;
      const maskBase = b * mB + h * mH;
      for (let i = 0; i < Lq; i++) {
        let s = 0;
        const go = goBase + i * gos, o = oBase + i * os;
        for (let d = 0; d < Dv; d++) s += gout[go + d] * out[o + d];
        rowDot[i] = s;
      }
      gqAcc.fill(0, 0, Lq * D);
      for (let j0 = 0; j0 < Lk; j0 += KEY_TILE) {
        const kt = Math.min(KEY_TILE, Lk - j0);
        gkAcc.fill(0, 0, kt * D);
        gvAcc.fill(0, 0, kt * Dv);
        // Causal: query blocks that end before j0 see none of this tile's keys.
        const firstBlock = causal ? Math.floor(j0 / QUERY_BLOCK) * QUERY_BLOCK : 0;
        for (let i0 = firstBlock; i0 < Lq; i0 += QUERY_BLOCK) {
          const qb = Math.min(QUERY_BLOCK, Lq - i0);
          rowDots(q, qBase + i0 * qs, qs, qb, k, kBase + j0 * ks, ks, kt, D, probs);
          rowDots(gout, goBase + i0 * gos, gos, qb, v, vBase + j0 * vs, vs, kt, Dv, dScores);
          for (let r = 0; r < qb; r++) {
            const i = i0 + r;
            const rowLse = lse[lseBase + i];
            const pRow = r * KEY_TILE;
            // A fully masked row (lse = -Inf) passes no gradient.
            const visible = rowLse === -Infinity ? 0 : causal ? Math.max(0, Math.min(kt, i - j0 + 1)) : kt;
            for (let c = 0; c < kt; c++) {
              let p = 0;
              if (c < visible) {
                let s = scale * probs[pRow + c];
                if (mask !== null) s += mask[maskBase + i * mQ + j0 + c];
                p = Math.exp(s - rowLse);
              }
              probs[pRow + c] = p;
              dScores[pRow + c] = p === 0 ? 0 : scale * p * (dScores[pRow + c] - rowDot[i]);
            }
          }
          accumulateProducts(probs, 1, KEY_TILE, kt, qb, gout, goBase + i0 * gos, gos, Dv, gvAcc, 0); // Pᵀ·gout
          accumulateProducts(dScores, 1, KEY_TILE, kt, qb, q, qBase + i0 * qs, qs, D, gkAcc, 0);        // dSᵀ·q
          accumulateProducts(dScores, KEY_TILE, 1, qb, kt, k, kBase + j0 * ks, ks, D, gqAcc, i0 * D);   // dS·k
        }
        for (let j = 0; j < kt; j++) {
          const gkRow = gkBase + (j0 + j) * gks, gvRow = gvBase + (j0 + j) * gvs;
          for (let d = 0; d < D; d++) gk[gkRow + d] = gkAcc[j * D + d];
          for (let d = 0; d < Dv; d++) gv[gvRow + d] = gvAcc[j * Dv + d];
        }
      }
      for (let i = 0; i < Lq; i++) {
        const gqRow = gqBase + i * gqs;
        for (let d = 0; d < D; d++) gq[gqRow + d] = gqAcc[i * D + d];
      }
    }
  }
}
