/**
 * Fused scaled-dot-product attention, FlashAttention style: keys are visited in tiles and each query row
 * keeps a running max, running denominator and running output (online softmax), so the Lq×Lk score
 * matrix never exists. Scratch is O(QUERY_BLOCK·KEY_TILE + QUERY_BLOCK·Dv) forward. The backward pass
 * recomputes probabilities tile by tile from the saved log-sum-exp.
 */
import type { F32 } from '../kernels.js';

const QUERY_BLOCK = 32; // query rows sharing one pass over a key tile (the tile stays in cache)
const KEY_TILE = 64;

let f64Scratch = new Float64Array(0);
function scratch(n: number): Float64Array {
  if (f64Scratch.length < n) f64Scratch = new Float64Array(n);
  return f64Scratch;
}

function dot(a: F32, aBase: number, b: F32, bBase: number, n: number): number {
  let s = 0;
  for (let d = 0; d < n; d++) s += a[aBase + d] * b[bBase + d];
  return s;
}

export function attention(q: F32, k: F32, v: F32, B: number, H: number, Lq: number, Lk: number, D: number,
                          Dv: number, scale: number, causal: boolean, mask: F32 | null,
                          mB: number, mH: number, mQ: number, out: F32, lse: F32): void {
  const buf = scratch(QUERY_BLOCK * KEY_TILE + 2 * QUERY_BLOCK + QUERY_BLOCK * Dv);
  const scores = buf.subarray(0, QUERY_BLOCK * KEY_TILE);
  const rowMax = buf.subarray(QUERY_BLOCK * KEY_TILE, QUERY_BLOCK * KEY_TILE + QUERY_BLOCK);
  const rowSum = buf.subarray(QUERY_BLOCK * KEY_TILE + QUERY_BLOCK, QUERY_BLOCK * KEY_TILE + 2 * QUERY_BLOCK);
  const acc = buf.subarray(QUERY_BLOCK * KEY_TILE + 2 * QUERY_BLOCK);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const head = b * H + h;
      const qBase = head * Lq * D, kBase = head * Lk * D, vBase = head * Lk * Dv;
      const oBase = head * Lq * Dv, lseBase = head * Lq;
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
          for (let r = 0; r < qb; r++) {
            const i = i0 + r;
            const sRow = r * KEY_TILE;
            let tileMax = -Infinity;
            for (let c = 0; c < kt; c++) {
              const j = j0 + c;
              let s: number;
              if (causal && j > i) s = -Infinity;
              else {
                s = scale * dot(q, qBase + i * D, k, kBase + j * D, D);
                if (mask !== null) s += mask[maskBase + i * mQ + j];
              }
              scores[sRow + c] = s;
              if (s > tileMax || s !== s) tileMax = s; // a NaN score poisons the row, as in PyTorch
            }
            if (tileMax === -Infinity) continue; // every key of this tile is masked for this row
            const oldMax = rowMax[r];
            const newMax = oldMax > tileMax ? oldMax : tileMax;
            const aRow = r * Dv;
            if (newMax !== oldMax) {
              const correction = Math.exp(oldMax - newMax); // 0 while the row had nothing yet
              rowSum[r] *= correction;
              for (let d = 0; d < Dv; d++) acc[aRow + d] *= correction;
              rowMax[r] = newMax;
            }
            let sum = 0;
            for (let c = 0; c < kt; c++) {
              const p = Math.exp(scores[sRow + c] - newMax);
              if (p === 0) continue;
              sum += p;
              const vRow = vBase + (j0 + c) * Dv;
              for (let d = 0; d < Dv; d++) acc[aRow + d] += p * v[vRow + d];
            }
            rowSum[r] += sum;
          }
        }
        for (let r = 0; r < qb; r++) {
          const oRow = oBase + (i0 + r) * Dv;
          const l = rowSum[r];
          if (!(l > 0)) {
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
                                  mQ: number, gq: F32, gk: F32, gv: F32): void {
  const buf = scratch(Lq + Lq * D + KEY_TILE * D + KEY_TILE * Dv);
  const rowDot = buf.subarray(0, Lq);
  const gqAcc = buf.subarray(Lq, Lq + Lq * D);
  const gkAcc = buf.subarray(Lq + Lq * D, Lq + Lq * D + KEY_TILE * D);
  const gvAcc = buf.subarray(Lq + Lq * D + KEY_TILE * D);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const head = b * H + h;
      const qBase = head * Lq * D, kBase = head * Lk * D, vBase = head * Lk * Dv;
      const oBase = head * Lq * Dv, lseBase = head * Lq;
      const maskBase = b * mB + h * mH;
      for (let i = 0; i < Lq; i++) rowDot[i] = dot(gout, oBase + i * Dv, out, oBase + i * Dv, Dv);
      gqAcc.fill(0, 0, Lq * D);
      for (let j0 = 0; j0 < Lk; j0 += KEY_TILE) {
        const kt = Math.min(KEY_TILE, Lk - j0);
        gkAcc.fill(0, 0, kt * D);
        gvAcc.fill(0, 0, kt * Dv);
        // Causal: rows before j0 see none of this tile's keys.
        for (let i = causal ? j0 : 0; i < Lq; i++) {
          const rowLse = lse[lseBase + i];
          if (rowLse === -Infinity) continue; // fully masked row: no gradient flows through it
          const qRow = qBase + i * D, gRow = oBase + i * Dv;
          const cEnd = causal ? Math.min(kt, i - j0 + 1) : kt;
          for (let c = 0; c < cEnd; c++) {
            const j = j0 + c;
            let s = scale * dot(q, qRow, k, kBase + j * D, D);
            if (mask !== null) s += mask[maskBase + i * mQ + j];
            const p = Math.exp(s - rowLse);
            if (p === 0) continue;
            const vRow = vBase + j * Dv;
            let dp = 0;
            for (let d = 0; d < Dv; d++) {
              const g = gout[gRow + d];
              gvAcc[c * Dv + d] += p * g;
              dp += g * v[vRow + d];
            }
            const ds = scale * p * (dp - rowDot[i]);
            const kRow = kBase + j * D;
            for (let d = 0; d < D; d++) {
              gqAcc[i * D + d] += ds * k[kRow + d];
              gkAcc[c * D + d] += ds * q[qRow + d];
            }
          }
        }
        for (let t = 0; t < kt * D; t++) gk[kBase + j0 * D + t] = gkAcc[t];
        for (let t = 0; t < kt * Dv; t++) gv[vBase + j0 * Dv + t] = gvAcc[t];
      }
      for (let t = 0; t < Lq * D; t++) gq[qBase + t] = gqAcc[t];
    }
  }
}
