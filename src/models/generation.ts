/**
 * Caption decoding for `VisionEncoderDecoderModel`: greedy, beam search and sampling, with transformers'
 * semantics so the same settings give the same ids as `model.generate(pixel_values, …)`.
 *
 *   const { ids } = generateCaptions(model, pixels, { maxNewTokens: 20 });                      // greedy
 *   const { ids, scores } = generateCaptions(model, pixels, { numBeams: 3, lengthPenalty: 1 }); // beam search
 *   const { ids } = generateCaptions(model, pixels, { method: 'sample', topP: 0.9, rng: new Rng(7) });
 *   const { crossAttentions } = generateCaptions(model, pixels, { outputCrossAttentions: true });
 *   // crossAttentions[image][k]: a [gh, gw] map over the patches for the k-th generated token
 *
 * `ids` rows start with decoder_start_token_id (as transformers returns them for encoder-decoder models);
 * a row that ends early is padded with pad_token_id after its eos, to the length of the longest row.
 *
 * - greedy: argmax at every step (the first index on ties, like torch.argmax).
 * - sample: logits / temperature → top-k (ties with the k-th value kept) → top-p (drop the least likely
 *   tokens whose total probability is ≤ 1 − top_p) → draw from the seeded Rng. Defaults: top-k 50, top-p 1
 *   (transformers' defaults).
 * - beam: transformers' vectorised beam search. Each step keeps the 2·numBeams best continuations of
 *   sum-of-log-prob scores; those ending in eos (or reaching the length limit) among the first numBeams are
 *   finished hypotheses scored sum / generated_length ** lengthPenalty; the best numBeams unfinished ones run
 *   on. earlyStopping true stops an image once numBeams hypotheses are finished; false stops when the best
 *   running beam can no longer beat the worst finished one at the current length; 'never' assumes the
 *   longest possible length when lengthPenalty > 0. The best finished hypothesis is returned (scores = its
 *   length-normalised score). Scores are accumulated in float32, as in PyTorch.
 *
 * The KV cache (`useCache`, on by default) feeds one token per step; without it the whole prefix is
 * recomputed each step (same ids; logits equal to float rounding). Cross-attention maps are those of the
 * step that produced each token: the attention of the last position over the image tokens, averaged over
 * heads and (by default) layers, with the CLS column dropped (so a map sums to a little under 1).
 */
import { type Rng, Tensor, fromTypedArray, getDefaultRng, indexSelect, noGrad } from '../engine/index.js';
import type { VisionEncoderDecoderModel } from './captioner.js';
import type { GPT2Cache } from './gpt2.js';

export interface GenerateOptions {
  /** Default: 'beam' when numBeams > 1, else 'greedy'. */
  method?: 'greedy' | 'beam' | 'sample';
  /** Tokens to generate after the start token (default 20). */
  maxNewTokens?: number;
  /** Beam width (default 1). */
  numBeams?: number;
  /** Beam score = sum of log-probs / generated_length ** lengthPenalty (default 1). */
  lengthPenalty?: number;
  /** Beam search stopping rule (default true: stop an image once numBeams hypotheses have finished). */
  earlyStopping?: boolean | 'never';
  /** Sampling: logits are divided by this (default 1). */
  temperature?: number;
  /** Sampling: keep the k most likely tokens (default 50; 0 = all). */
  topK?: number;
  /** Sampling: nucleus mass to keep (default 1 = all). */
  topP?: number;
  /** Sampling draws (default: the engine's default generator). */
  rng?: Rng;
  /** KV cache (default true). */
  useCache?: boolean;
  /** Return one cross-attention map per generated token and image. */
  outputCrossAttentions?: boolean;
  /** 'mean' (default): one [gh, gw] map averaged over layers; 'layers': [L, gh, gw] per token. */
  crossAttentionLayers?: 'mean' | 'layers';
  /** Return each step's next-token logits (all rows fed to the model: B, or B·numBeams for beam search) [rows, V]. */
  outputLogits?: boolean;
  /** Overrides of the model config's token ids. */
  decoderStartTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
}

export interface GenerateOutput {
  /** Per image: decoder_start_token_id, the generated tokens, pad after eos (rows of equal length). */
  ids: number[][];
  /** Per image: beam search's length-normalised score, else the sum of the model's log-probs of the generated tokens. */
  scores: number[];
  /** Per image, per generated token (up to and including eos): [gh, gw] (or [L, gh, gw]) attention over the patches. */
  crossAttentions?: Tensor[][];
  /** With outputLogits: per step [rows, V]. */
  logits?: Tensor[];
}

/** Float32 arithmetic, as PyTorch accumulates beam scores. */
const f32 = Math.fround;
const NEG = -1e9; // transformers' "never pick this" offset

/** log-softmax of one row into a Float64Array. */
function logSoftmaxRow(logits: Float32Array, off: number, V: number): Float64Array {
  let max = -Infinity;
  for (let v = 0; v < V; v++) if (logits[off + v] > max) max = logits[off + v];
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(logits[off + v] - max);
  const lse = max + Math.log(s);
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) out[v] = logits[off + v] - lse;
  return out;
}

/** Indices of the k largest values, best first; ties keep the lower index first. */
function topIndices(values: ArrayLike<number>, k: number): number[] {
  // Insertion into a sorted list of k: O(n·k) with k = 2·numBeams small, far cheaper than sorting K·V scores.
  const top: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (top.length === k && !(v > values[top[k - 1]])) continue;
    let at = top.length;
    while (at > 0 && v > values[top[at - 1]]) at--;
    top.splice(at, 0, i);
    if (top.length > k) top.pop();
  }
  return top;
}

/**
 * Runs the decoder one step at a time over rows of equal-length sequences; with a cache only the newest
 * token is fed. Returns the next-token logits [rows, V] and, when asked, each row's cross-attention of the
 * last position (heads averaged) per layer.
 */
class Stepper {
  private readonly cache: GPT2Cache | null;

  constructor(private readonly model: VisionEncoderDecoderModel, private encoder: Tensor, useCache: boolean,
              private readonly wantCross: boolean) {
    this.cache = useCache ? model.decoder.newCache() : null;
  }

  step(seqs: number[][]): { logits: Tensor; cross: Float32Array[][] | null } {
    const fed = this.cache && this.cache.length > 0 ? seqs.map((s) => s.slice(this.cache!.length)) : seqs;
    const out = this.model.decoder.forward(fed, {
      encoderHiddenStates: this.encoder, cache: this.cache, lastOnly: true, outputCrossAttentions: this.wantCross,
    });
    const [rows, , V] = out.logits.shape;
    const logits = out.logits.reshape([rows, V]).contiguous();
    if (!this.wantCross) return { logits, cross: null };
    // Per layer [rows, heads, T, S] → per row, per layer: the last query's row averaged over heads [S].
    const cross: Float32Array[][] = Array.from({ length: rows }, () => []);
    for (const p of out.crossAttentions!) {
      const [, H, T, S] = p.shape;
      const d = p.contiguous().toFloat32Array();
      for (let r = 0; r < rows; r++) {
        const m = new Float32Array(S);
        for (let h = 0; h < H; h++) {
          const base = ((r * H + h) * T + T - 1) * S;
          for (let s = 0; s < S; s++) m[s] += d[base + s] / H;
        }
        cross[r].push(m);
      }
    }
    return { logits, cross };
  }

  /** Beam search: row i continues old row rows[i]. */
  reorder(rows: number[]): void {
    this.cache?.reorder(rows);
  }
}

/** One map per token: layers averaged ([gh, gw]) or kept ([L, gh, gw]); the CLS column (0) is dropped. */
function crossMap(layers: Float32Array[], grid: [number, number], mode: 'mean' | 'layers'): Tensor {
  const [gh, gw] = grid, N = gh * gw;
  if (mode === 'layers') {
    const out = new Float32Array(layers.length * N);
    layers.forEach((m, l) => out.set(m.subarray(m.length - N), l * N));
    return fromTypedArray(out, [layers.length, gh, gw]);
  }
  const out = new Float32Array(N);
  for (const m of layers) for (let i = 0; i < N; i++) out[i] += m[m.length - N + i] / layers.length;
  return fromTypedArray(out, [gh, gw]);
}

function checkInt(name: string, v: number, min: number): void {
  if (!(Number.isInteger(v) && v >= min)) throw new Error(`generateCaptions: ${name} must be an integer ≥ ${min}, got ${v}`);
}

/** Caption a batch of images pixels [B, C, H, W] (see the file comment for the methods and options). */
export function generateCaptions(model: VisionEncoderDecoderModel, pixels: Tensor, opts: GenerateOptions = {}): GenerateOutput {
  const cfg = model.config;
  const numBeams = opts.numBeams ?? 1;
  const method = opts.method ?? (numBeams > 1 ? 'beam' : 'greedy');
  const maxNewTokens = opts.maxNewTokens ?? 20;
  checkInt('numBeams', numBeams, 1);
  checkInt('maxNewTokens', maxNewTokens, 1);
  if (method !== 'beam' && numBeams !== 1) throw new Error(`generateCaptions: numBeams ${numBeams} needs method 'beam' (beam sampling is not implemented)`);
  if (1 + maxNewTokens > cfg.decoder.nPositions) {
    throw new Error(`generateCaptions: 1 + maxNewTokens = ${1 + maxNewTokens} exceeds the decoder's n_positions (${cfg.decoder.nPositions})`);
  }
  const V = cfg.decoder.vocabSize;
  const tok = (name: string, v: number | undefined, dflt: number) => {
    const t = v ?? dflt;
    if (!(Number.isInteger(t) && t >= 0 && t < V)) throw new Error(`generateCaptions: ${name} ${t} is outside the vocabulary [0, ${V})`);
    return t;
  };
  const ids = {
    start: tok('decoderStartTokenId', opts.decoderStartTokenId, cfg.decoderStartTokenId),
    eos: tok('eosTokenId', opts.eosTokenId, cfg.eosTokenId),
    pad: tok('padTokenId', opts.padTokenId, cfg.padTokenId),
  };
  if (pixels.ndim !== 4) throw new Error(`generateCaptions: expected images [B, C, H, W], got [${pixels.shape}]`);

  const wasTraining = model.training;
  model.eval();
  try {
    return noGrad(() => {
      const { hidden, grid } = model.encodeWithGrid(pixels);
      const run: Run = {
        model, encoder: hidden, grid, maxNewTokens, ids, useCache: opts.useCache ?? true,
        wantCross: opts.outputCrossAttentions ?? false, mapMode: opts.crossAttentionLayers ?? 'mean',
        logits: opts.outputLogits ? [] : null,
      };
      const out = method === 'beam' ? beamSearch(run, numBeams, opts) : greedyOrSample(run, method, opts);
      if (run.logits) out.logits = run.logits;
      return out;
    });
  } finally {
    model.train(wasTraining);
  }
}

interface Run {
  model: VisionEncoderDecoderModel;
  encoder: Tensor;
  grid: [number, number];
  maxNewTokens: number;
  ids: { start: number; eos: number; pad: number };
  useCache: boolean;
  wantCross: boolean;
  mapMode: 'mean' | 'layers';
  logits: Tensor[] | null;
}

// ------------------------------------------------------------------ greedy and sampling

function greedyOrSample(run: Run, method: 'greedy' | 'sample', opts: GenerateOptions): GenerateOutput {
  const B = run.encoder.shape[0];
  const { eos, pad, start } = run.ids;
  const temperature = opts.temperature ?? 1, topK = opts.topK ?? 50, topP = opts.topP ?? 1;
  if (method === 'sample') {
    if (!(temperature > 0)) throw new Error(`generateCaptions: temperature must be positive, got ${temperature}`);
    checkInt('topK', topK, 0);
    if (!(topP > 0 && topP <= 1)) throw new Error(`generateCaptions: topP must be in (0, 1], got ${topP}`);
  }
  const rng = opts.rng ?? getDefaultRng();
  const stepper = new Stepper(run.model, run.encoder, run.useCache, run.wantCross);
  const seqs = Array.from({ length: B }, () => [start]);
  const done = new Array<boolean>(B).fill(false);
  const scores = new Array<number>(B).fill(0);
  const maps: Tensor[][] = Array.from({ length: B }, () => []);
  const V = run.model.config.decoder.vocabSize;

  for (let step = 0; step < run.maxNewTokens; step++) {
    const { logits, cross } = stepper.step(seqs);
    run.logits?.push(logits);
    const L = logits.toFloat32Array();
    const u = method === 'sample' ? rng.uniform(B) : null;
    for (let b = 0; b < B; b++) {
      let next: number;
      if (done[b]) next = pad;
      else if (method === 'greedy') {
        next = 0;
        for (let v = 1; v < V; v++) if (L[b * V + v] > L[b * V + next]) next = v;
      } else next = sampleToken(L.subarray(b * V, (b + 1) * V), temperature, topK, topP, u![b]);
      if (!done[b]) {
        scores[b] += logSoftmaxRow(L, b * V, V)[next];
        if (cross) maps[b].push(crossMap(cross[b], run.grid, run.mapMode));
        if (next === eos) done[b] = true;
      }
      seqs[b].push(next);
    }
    if (done.every(Boolean)) break;
  }
  return { ids: seqs, scores, ...(run.wantCross ? { crossAttentions: maps } : {}) };
}

/** transformers' TemperatureLogitsWarper → TopKLogitsWarper → TopPLogitsWarper, then one draw with uniform u. */
export function sampleToken(logits: Float32Array, temperature: number, topK: number, topP: number, u: number): number {
  const V = logits.length;
  const x = new Float64Array(V);
  for (let v = 0; v < V; v++) x[v] = logits[v] / temperature;
  if (topK > 0 && topK < V) {
    const kth = [...x].sort((a, b) => b - a)[topK - 1];
    for (let v = 0; v < V; v++) if (x[v] < kth) x[v] = -Infinity;
  }
  const max = Math.max(...x);
  const p = new Float64Array(V);
  let s = 0;
  for (let v = 0; v < V; v++) { p[v] = Math.exp(x[v] - max); s += p[v]; }
  for (let v = 0; v < V; v++) p[v] /= s;
  if (topP < 1) {
    // Ascending order; drop tokens while the mass dropped so far (including them) stays ≤ 1 − topP; the most likely token always stays.
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => (p[a] - p[b]) || b - a);
    let cum = 0;
    for (let i = 0; i < V - 1; i++) {
      cum += p[order[i]];
      if (cum <= 1 - topP) p[order[i]] = 0;
      else break;
    }
    s = 0;
    for (let v = 0; v < V; v++) s += p[v];
    for (let v = 0; v < V; v++) p[v] /= s;
  }
  let target = u, last = 0;
  for (let v = 0; v < V; v++) {
    if (p[v] <= 0) continue;
    last = v;
    if (target < p[v]) return v;
    target -= p[v];
  }
  return last; // rounding left a sliver of mass: the last token with any
}

// ------------------------------------------------------------------ beam search

interface Hypothesis { seq: number[]; maps: Tensor[] }

function beamSearch(run: Run, K: number, opts: GenerateOptions): GenerateOutput {
  const B = run.encoder.shape[0];
  const { eos, pad, start } = run.ids;
  const lengthPenalty = opts.lengthPenalty ?? 1;
  const earlyStopping = opts.earlyStopping ?? true;
  const V = run.model.config.decoder.vocabSize;
  const promptLen = 1, maxLength = 1 + run.maxNewTokens;
  const keep = 2 * K; // transformers: max(2, 1 + number of eos ids) · num_beams

  // Every image's encoder states repeated for its K beams: rows b·K … b·K + K − 1.
  const expand = fromTypedArray(Int32Array.from({ length: B * K }, (_, i) => Math.floor(i / K)), [B * K], 'i32');
  const stepper = new Stepper(run.model, indexSelect(run.encoder, 0, expand), run.useCache, run.wantCross);

  const running: Hypothesis[][] = Array.from({ length: B }, () => Array.from({ length: K }, () => ({ seq: [start], maps: [] })));
  const runScores: number[][] = Array.from({ length: B }, () => Array.from({ length: K }, (_, k) => (k === 0 ? 0 : NEG)));
  const finished: Hypothesis[][] = Array.from({ length: B }, () => Array.from({ length: K }, () => ({ seq: [start], maps: [] })));
  const finScores: number[][] = Array.from({ length: B }, () => new Array<number>(K).fill(NEG));
  const isFinished: boolean[][] = Array.from({ length: B }, () => new Array<boolean>(K).fill(false));
  const improvable = new Array<boolean>(B).fill(true); // transformers' is_early_stop_heuristic_unsatisfied

  let curLen = promptLen;
  while (curLen < maxLength) {
    const { logits, cross } = stepper.step(running.flatMap((beams) => beams.map((h) => h.seq)));
    run.logits?.push(logits);
    const L = logits.toFloat32Array();
    const sourceRows: number[] = [];
    let allHit = true;
    const genLen = curLen + 1 - promptLen;
    for (let b = 0; b < B; b++) {
      // Accumulated scores over K·V continuations, in float32.
      const acc = new Float32Array(K * V);
      for (let k = 0; k < K; k++) {
        const lp = logSoftmaxRow(L, (b * K + k) * V, V);
        for (let v = 0; v < V; v++) acc[k * V + v] = f32(f32(lp[v]) + runScores[b][k]);
      }
      const top = topIndices(acc, keep);
      const cand = top.map((i, c) => {
        const beam = Math.floor(i / V), token = i % V;
        const from = running[b][beam];
        const maps = cross ? [...from.maps, crossMap(cross[b * K + beam], run.grid, run.mapMode)] : from.maps;
        return { beam, score: acc[i], hit: token === eos || curLen + 1 >= maxLength, top: c < K, hyp: { seq: [...from.seq, token], maps } };
      });
      if (!cand.every((c) => c.hit)) allHit = false;

      // The best K candidates that did not finish run on.
      const runVals = cand.map((c) => (c.hit ? f32(c.score + NEG) : c.score));
      const next = topIndices(runVals, K);
      running[b] = next.map((c) => cand[c].hyp);
      runScores[b] = next.map((c) => runVals[c]);
      for (const c of next) sourceRows.push(b * K + cand[c].beam);

      // Finished candidates (among the first K) compete with the finished hypotheses so far.
      const full = isFinished[b].every(Boolean) && earlyStopping === true;
      const finVals = cand.map((c) => {
        let s = f32(c.score / genLen ** lengthPenalty);
        if (full) s = f32(s + NEG);
        if (!improvable[b]) s = f32(s + NEG);
        if (!(c.hit && c.top)) s = f32(s + NEG);
        return s;
      });
      const mergedVals = [...finScores[b], ...finVals];
      const mergedHyps = [...finished[b], ...cand.map((c) => c.hyp)];
      const mergedDone = [...isFinished[b], ...cand.map((c) => c.hit && c.top)];
      const best = topIndices(mergedVals, K);
      finished[b] = best.map((i) => mergedHyps[i]);
      finScores[b] = best.map((i) => mergedVals[i]);
      isFinished[b] = best.map((i) => mergedDone[i]);
    }
    stepper.reorder(sourceRows);
    curLen++;

    // Can a running beam still beat the worst finished hypothesis?
    const bestLen = earlyStopping === 'never' && lengthPenalty > 0 ? maxLength - promptLen : curLen - promptLen;
    for (let b = 0; b < B; b++) {
      const bestPossible = f32(runScores[b][0] / bestLen ** lengthPenalty);
      const worst = Math.min(...finScores[b]);
      improvable[b] = improvable[b] && isFinished[b].some((f) => bestPossible > (f ? worst : NEG));
    }
    const openBeam = !(isFinished.every((f) => f.every(Boolean)) && earlyStopping === true);
    if (!(improvable.some(Boolean) && openBeam && !allHit)) break;
  }

  // Rows as long as the longest returned hypothesis, pad after.
  const chosen = finished.map((f) => f[0]);
  const width = Math.max(...chosen.map((h) => h.seq.length));
  const out: GenerateOutput = {
    ids: chosen.map((h) => [...h.seq, ...new Array<number>(width - h.seq.length).fill(pad)]),
    scores: finScores.map((s) => s[0]),
  };
  if (run.wantCross) out.crossAttentions = chosen.map((h) => h.maps);
  return out;
}
