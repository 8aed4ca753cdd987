/** Neural-network functions: softmax, norms, dropout, losses, attention. */
import { emptyF32 } from '../dtype.js';
import { Tensor, numelOf } from '../tensor.js';
import { K } from '../backend/index.js';
import { denseAttnLayout, type AttnLayout } from '../backend/kernels.js';
import { type Rng, getDefaultRng } from '../rng.js';
import { broadcastStrides, fromOp, indexArray, toDense } from './data.js';
import { contiguous, expand, normDim, reshape, transpose, unsqueeze } from './view.js';
import { add, mul, sub, where, ne, silu } from './elementwise.js';
import { nativeExtras } from '../backend/native.js';
import { isGradEnabled } from '../autograd.js';
import { mean, sum } from './reduce.js';
import { gather } from './shape.js';

// ------------------------------------------------------------------ softmax

function softmaxLast(x: Tensor, log: boolean): Tensor {
  const cols = x.shape[x.ndim - 1], rows = cols ? x.numel / cols : 0;
  const xd = toDense(x);
  const out = emptyF32(xd.length);
  if (out.length) K.softmax(xd, rows, cols, log, out);
  return fromOp(out, x.shape, [x], log ? 'logSoftmax' : 'softmax', (g) => {
    const gx = emptyF32(out.length);
    if (gx.length) K.softmaxBackward(out, toDense(g), rows, cols, log, gx);
    return [new Tensor(gx, x.shape, 'f32')];
  });
}

function softmaxAlong(x: Tensor, dim: number, log: boolean): Tensor {
  if (x.ndim === 0) return softmaxLast(reshape(x, [1]), log).reshape([]);
  const d = normDim(dim, x.ndim);
  if (d === x.ndim - 1) return softmaxLast(x, log);
  return transpose(softmaxLast(transpose(x, d, -1), log), d, -1);
}

export const softmax = (x: Tensor, dim = -1) => softmaxAlong(x, dim, false);
export const logSoftmax = (x: Tensor, dim = -1) => softmaxAlong(x, dim, true);

// ------------------------------------------------------------------ normalisation

export function layerNorm(x: Tensor, normalizedShape: number | readonly number[], w?: Tensor | null, b?: Tensor | null, eps = 1e-5): Tensor {
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  const tail = x.shape.slice(x.ndim - ns.length);
  if (ns.length > x.ndim || tail.some((s, i) => s !== ns[i])) {
    throw new Error(`layerNorm: input [${x.shape}] does not end in normalized shape [${ns}]`);
  }
  const cols = numelOf(ns), rows = cols ? x.numel / cols : 0;
  for (const [p, name] of [[w, 'weight'], [b, 'bias']] as const) {
    if (p && p.numel !== cols) throw new Error(`layerNorm: ${name} has ${p.numel} elements, expected ${cols}`);
  }
  const xd = toDense(x), wd = w ? toDense(w) : null, bd = b ? toDense(b) : null;
  const out = emptyF32(xd.length), mu = emptyF32(rows), rstd = emptyF32(rows);
  if (out.length) K.layerNorm(xd, wd, bd, rows, cols, eps, out, mu, rstd);
  const inputs = [x, ...(w ? [w] : []), ...(b ? [b] : [])];
  return fromOp(out, x.shape, inputs, 'layerNorm', (g) => {
    const gx = emptyF32(xd.length);
    const gw = w?.requiresGrad ? new Float32Array(cols) : null, gb = b?.requiresGrad ? new Float32Array(cols) : null;
    K.layerNormBackward(xd, wd, mu, rstd, toDense(g), rows, cols, gx, gw, gb);
    const res: (Tensor | null)[] = [x.requiresGrad ? new Tensor(gx, x.shape, 'f32') : null];
    if (w) res.push(gw ? new Tensor(gw, w.shape, 'f32') : null);
    if (b) res.push(gb ? new Tensor(gb, b.shape, 'f32') : null);
    return res;
  });
}

/**
 * Group norm of [N, C, ...] in `groups` groups, per-channel affine. `act: 'silu'` applies SiLU to the result:
 * one fused pass on the native backend when no gradient is needed (same bits as groupNorm then silu).
 */
export function groupNorm(x: Tensor, groups: number, w?: Tensor | null, b?: Tensor | null, eps = 1e-5,
                          opts: { act?: 'silu' } = {}): Tensor {
  if (opts.act === 'silu') {
    const ex = nativeExtras(K);
    const needGrad = isGradEnabled() && (x.requiresGrad || !!w?.requiresGrad || !!b?.requiresGrad);
    if (!ex || needGrad || x.ndim < 2) return silu(groupNorm(x, groups, w, b, eps));
    const [N, C] = x.shape, HW = numelOf(x.shape.slice(2));
    if (Number.isInteger(groups) && groups > 0 && C % groups === 0 && (!w || w.numel === C) && (!b || b.numel === C)) {
      const xd = toDense(x);
      const out = emptyF32(xd.length), mu = emptyF32(N * groups), rstd = emptyF32(N * groups);
      if (ex.groupNormAct(xd, w ? toDense(w) : null, b ? toDense(b) : null, N, C, HW, groups, eps, 'silu', out, mu, rstd)) {
        return new Tensor(out, x.shape, 'f32');
      }
    }
    return silu(groupNorm(x, groups, w, b, eps));
  }
  if (x.ndim < 2) throw new Error(`groupNorm: expected [N, C, ...], got [${x.shape}]`);
  const [N, C] = x.shape, HW = numelOf(x.shape.slice(2));
  if (!Number.isInteger(groups) || groups <= 0 || C % groups) throw new Error(`groupNorm: ${C} channels cannot be split into ${groups} groups`);
  for (const [p, name] of [[w, 'weight'], [b, 'bias']] as const) {
    if (p && p.numel !== C) throw new Error(`groupNorm: ${name} has ${p.numel} elements, expected ${C}`);
  }
  const xd = toDense(x), wd = w ? toDense(w) : null, bd = b ? toDense(b) : null;
  const out = emptyF32(xd.length), mu = emptyF32(N * groups), rstd = emptyF32(N * groups);
  if (out.length) K.groupNorm(xd, wd, bd, N, C, HW, groups, eps, out, mu, rstd);
  const inputs = [x, ...(w ? [w] : []), ...(b ? [b] : [])];
  return fromOp(out, x.shape, inputs, 'groupNorm', (g) => {
    const gx = emptyF32(xd.length);
    const gw = w?.requiresGrad ? new Float32Array(C) : null, gb = b?.requiresGrad ? new Float32Array(C) : null;
    K.groupNormBackward(xd, wd, mu, rstd, toDense(g), N, C, HW, groups, gx, gw, gb);
    const res: (Tensor | null)[] = [x.requiresGrad ? new Tensor(gx, x.shape, 'f32') : null];
    if (w) res.push(gw ? new Tensor(gw, w.shape, 'f32') : null);
    if (b) res.push(gb ? new Tensor(gb, b.shape, 'f32') : null);
    return res;
  });
}

// ------------------------------------------------------------------ dropout

/** Inverted dropout: zero with probability p, scale the rest by 1/(1-p). Identity when not training. */
export function dropout(x: Tensor, p = 0.5, opts: { training?: boolean; rng?: Rng } = {}): Tensor {
  const training = opts.training ?? true, rng = opts.rng;
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  const u = (rng ?? getDefaultRng()).uniform(x.numel);
  const keep = new Float32Array(x.numel);
  const scale = p === 1 ? 0 : 1 / (1 - p);
  for (let i = 0; i < keep.length; i++) keep[i] = u[i] >= p ? scale : 0;
  return mul(x, new Tensor(keep, x.shape, 'f32'));
}

// ------------------------------------------------------------------ losses

export type Reduction = 'mean' | 'sum' | 'none';

export interface CrossEntropyOptions { labelSmoothing?: number; ignoreIndex?: number; reduction?: Reduction }

/**
 * Cross-entropy of logits [N, C] or [N, C, d1, ...] against class indices [N] / [N, d1, ...].
 * With label smoothing ε the target is (1-ε)·onehot + ε/C. 'mean' averages over non-ignored targets.
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const eps = opts.labelSmoothing ?? 0, ignore = opts.ignoreIndex ?? -100, reduction = opts.reduction ?? 'mean';
  if (logits.ndim < 1) throw new Error('crossEntropy: logits need a class dim');
  const classDim = logits.ndim === 1 ? 0 : 1;
  const C = logits.shape[classDim];
  // Move classes last and flatten: [M, C], targets [M].
  const moved = logits.ndim <= 2 ? (logits.ndim === 1 ? unsqueeze(logits, 0) : logits) : contiguous(transpose(reshape(logits, [logits.shape[0], C, -1]), 1, 2));
  const flat = reshape(moved, [-1, C]);
  const idx = indexArray(target, 'crossEntropy target');
  const M = flat.shape[0];
  if (idx.length !== M) throw new Error(`crossEntropy: ${idx.length} targets for ${M} predictions (logits [${logits.shape}], target [${target.shape}])`);
  const safe = new Int32Array(M), valid = new Float32Array(M);
  for (let i = 0; i < M; i++) {
    const t = idx[i];
    if (t === ignore) continue;
    if (t < 0 || t >= C) throw new Error(`crossEntropy: target ${t} is outside [0, ${C})`);
    safe[i] = t; valid[i] = 1;
  }
  const logp = logSoftmax(flat, 1);
  const picked = reshape(gather(logp, 1, new Tensor(safe, [M, 1], 'i32')), [M]);
  let perItem = eps > 0 ? add(mul(picked, -(1 - eps)), mul(mean(logp, 1), -eps)) : mul(picked, -1);
  perItem = mul(perItem, new Tensor(valid, [M], 'f32'));
  if (reduction === 'none') return reshape(perItem, target.shape);
  if (reduction === 'sum') return sum(perItem);
  let count = 0;
  for (const v of valid) count += v;
  return mul(sum(perItem), 1 / count);
}

export function mseLoss(a: Tensor, b: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  const reduction = opts.reduction ?? 'mean';
  const d = sub(a, b);
  const sq = mul(d, d);
  return reduction === 'none' ? sq : reduction === 'sum' ? sum(sq) : mean(sq);
}

// ------------------------------------------------------------------ attention

export interface AttentionOptions {
  /** Boolean (true = attend) or additive f32, broadcastable to [..., Lq, Lk]. */
  mask?: Tensor | null;
  causal?: boolean;
  /** Defaults to 1/√D. */
  scale?: number;
}

/** Additive f32 mask (0 / -Inf for booleans). */
function additiveMask(mask: Tensor): Tensor {
  if (mask.dtype === 'f32') return mask;
  if (mask.dtype === 'bool' || mask.dtype === 'i32' || mask.dtype === 'i64') return where(ne(mask, 0), 0, -Infinity);
  return mask.float();
}

/**
 * softmax(q kᵀ · scale + mask) v through the fused kernel: q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv].
 * Leading dims are read as (batch, heads); extra memory is O(tokens), never O(Lq·Lk).
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  if (q.ndim < 2 || k.ndim !== q.ndim || v.ndim !== q.ndim) {
    throw new Error(`attention: q, k, v need the same rank ≥ 2, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  const lead = q.shape.slice(0, -2);
  const Lq = q.shape[q.ndim - 2], D = q.shape[q.ndim - 1], Lk = k.shape[k.ndim - 2], Dv = v.shape[v.ndim - 1];
  const sameLead = (t: Tensor) => t.shape.slice(0, -2).every((s, i) => s === lead[i]);
  if (!sameLead(k) || !sameLead(v) || k.shape[k.ndim - 1] !== D || v.shape[v.ndim - 2] !== Lk) {
    throw new Error(`attention: shapes do not match: q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
  }
  const H = lead.length ? lead[lead.length - 1] : 1;
  const B = lead.length ? numelOf(lead) / H || 0 : 1;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const causal = opts.causal ?? false;

  // Mask as (buffer, strides over b, h, i) with a dense key axis.
  let maskBuf: Float32Array | null = null, mB = 0, mH = 0, mQ = 0;
  if (opts.mask) {
    const m = additiveMask(opts.mask);
    const full = [...lead, Lq, Lk];
    const mshape = [...m.shape];
    while (mshape.length < full.length) mshape.unshift(1);
    const view = reshape(m.detach(), mshape);
    let strides = broadcastStrides(view.shape, view.strides, full);
    let buf = view.data as Float32Array, off = view.offset;
    // Collapse the leading dims to (B, H); materialise when the layout does not allow it.
    const keyDense = Lk === 1 || strides[strides.length - 1] === 1;
    let bStride = keyDense ? batchStride(lead, strides) : null;
    if (bStride === null) {
      const dense = contiguous(expand(view, full));
      buf = dense.data as Float32Array; off = 0;
      strides = [...dense.strides];
      bStride = batchStride(lead, strides)!;
    }
    mB = bStride;
    mH = lead.length ? strides[lead.length - 1] : 0;
    mQ = strides[strides.length - 2];
    maskBuf = buf.subarray(off);
  }

  // q, k, v are read where they lie when each (batch, head) is a block of rows with a dense last dim:
  // heads split from a [B, L, H·D] projection by reshape + transpose need no copy. The output (and each
  // gradient) takes the layout of q (of its input): [B, L, H, D] memory for such views, whose transpose
  // back and merge of the heads are then free too.
  const qo = attnOperand(q, lead), ko = attnOperand(k, lead), vo = attnOperand(v, lead);
  const tokenMajor = (o: AttnOperand) => lead.length === 2 && H > 1 && o.layout[1] < o.layout[2];
  const outPlace = placeFor(tokenMajor(qo), H, Lq, Dv);
  const out = emptyF32(B * H * Lq * Dv), lse = emptyF32(B * H * Lq);
  const layouts = { q: qo.layout, k: ko.layout, v: vo.layout, out: outPlace.layout };
  if (out.length) K.attention(qo.buf, ko.buf, vo.buf, B, H, Lq, Lk, D, Dv, scale, causal, maskBuf, mB, mH, mQ, out, lse, layouts);
  return fromOp(out, [...lead, Lq, Dv], [q, k, v], 'attention', (g) => {
    const go = attnOperand(g, lead);
    const gqPlace = placeFor(tokenMajor(qo), H, Lq, D), gkPlace = placeFor(tokenMajor(ko), H, Lk, D);
    const gvPlace = placeFor(tokenMajor(vo), H, Lk, Dv);
    const gq = emptyF32(q.numel), gk = emptyF32(k.numel), gv = emptyF32(v.numel);
    if (out.length) {
      K.attentionBackward(qo.buf, ko.buf, vo.buf, out, lse, go.buf, B, H, Lq, Lk, D, Dv, scale, causal, maskBuf, mB, mH, mQ,
        gq, gk, gv, { ...layouts, gout: go.layout, gq: gqPlace.layout, gk: gkPlace.layout, gv: gvPlace.layout });
    } else {
      gq.fill(0); gk.fill(0); gv.fill(0);
    }
    return [new Tensor(gq, q.shape, 'f32', gqPlace.strides), new Tensor(gk, k.shape, 'f32', gkPlace.strides),
      new Tensor(gv, v.shape, 'f32', gvPlace.strides)];
  }, outPlace.strides);
}

interface AttnOperand { buf: Float32Array; layout: AttnLayout }

/**
 * The batch stride of an attention operand or mask whose leading dims are [...outer, heads]: the outer dims
 * must step like one dim of their total size (0 when none is larger than 1); null when they do not.
 */
function batchStride(lead: readonly number[], strides: readonly number[]): number | null {
  let stride = 0, expect = -1;
  for (let d = lead.length - 2; d >= 0; d--) {
    if (lead[d] === 1) continue;
    if (expect < 0) stride = strides[d];
    else if (strides[d] !== expect) return null;
    expect = strides[d] * lead[d];
  }
  return stride;
}

/**
 * An attention operand [...lead, L, n] as a buffer and (batch, head, row) strides: in place when its last
 * dim is dense and the leading dims fold into (batch, head) — the head dim being the last of them —
 * otherwise a dense copy.
 */
function attnOperand(t: Tensor, lead: readonly number[]): AttnOperand {
  const nd = t.ndim, st = t.strides;
  const L = t.shape[nd - 2], n = t.shape[nd - 1];
  const bStride = t.dtype === 'f32' && (n <= 1 || st[nd - 1] === 1) && st.every((s) => s >= 0) ? batchStride(lead, st) : null;
  if (bStride !== null) {
    const hStride = lead.length ? st[lead.length - 1] : 0;
    const buf = t.data as Float32Array;
    return { buf: t.offset ? buf.subarray(t.offset) : buf, layout: [bStride, hStride, L > 1 ? st[nd - 2] : n] };
  }
  const H = lead.length ? lead[lead.length - 1] : 1;
  return { buf: toDense(t), layout: denseAttnLayout(H, L, n) };
}

/** Where a new [B, H, L, n] result goes: dense, or (tokenMajor) as [B, L, H, n] memory. */
function placeFor(tokenMajor: boolean, H: number, L: number, n: number) {
  const layout: AttnLayout = tokenMajor ? [L * H * n, n, H * n] : denseAttnLayout(H, L, n);
  // the [B, H, L, n] tensor's strides (undefined: dense)
  return { layout, strides: tokenMajor ? [layout[0], layout[1], layout[2], 1] : undefined };
}
