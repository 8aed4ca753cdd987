/**
 * Caption metrics: corpus BLEU (Papineni et al. 2002, "BLEU: a method for automatic evaluation of machine
 * translation") and the exact-match rate.
 *
 * BLEU-N over a corpus of hypotheses, each with one or more references:
 *
 *   p_n  = Σ_hyp Σ_{g ∈ n-grams(hyp)} min(count_hyp(g), max_ref count_ref(g))  /  Σ_hyp |n-grams(hyp)|
 *          (clipped n-gram precision, pooled over the whole corpus, not averaged per sentence)
 *   BP   = 1 if c > r, else exp(1 − r/c)        c: total hypothesis length, r: the sum over hypotheses of
 *          the reference length closest to the hypothesis' length (the shorter one on a tie)
 *   BLEU = BP · exp(Σ_{n=1..N} (1/N) log p_n)   (0 when some p_n is 0: no smoothing, as in the paper)
 *
 * Texts are compared as word lists; strings are split with the caption tokenizer's rule (lower-case,
 * punctuation as separate tokens), so "A cat." and "a cat ." score the same. These choices match NLTK's
 * `corpus_bleu` and sacrebleu with `tokenize='none'` on pre-split text.
 */
import { splitWords } from '../tokenizers/word.js';

/** A sentence, as a string or already split into words. */
export type Text = string | readonly string[];
/** The references of one hypothesis: a single string, or a list of them (strings or word lists). */
export type References = string | readonly Text[];

export interface BleuOptions {
  /** Highest n-gram order (default 4). */
  maxN?: number;
}

export interface BleuResult {
  /** In [0, 1]. */
  bleu: number;
  /** Clipped precision p_1..p_N. */
  precisions: number[];
  /** Matched and total n-grams per order (numerator and denominator of each p_n). */
  matches: number[];
  totals: number[];
  brevityPenalty: number;
  /** c and r of the brevity penalty. */
  hypothesisLength: number;
  referenceLength: number;
}

function words(t: Text): readonly string[] {
  return typeof t === 'string' ? splitWords(t) : t;
}

/** Count of every n-gram of order n (keys are the words joined with a separator no word contains). */
function ngramCounts(ws: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= ws.length; i++) {
    const key = ws.slice(i, i + n).join('\u0001');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** The reference length closest to `c` (the shorter on a tie). */
function closestLength(c: number, refLengths: readonly number[]): number {
  let best = refLengths[0];
  for (const r of refLengths) if (Math.abs(r - c) < Math.abs(best - c) || (Math.abs(r - c) === Math.abs(best - c) && r < best)) best = r;
  return best;
}

/**
 * Corpus BLEU of `hypotheses[i]` against `references[i]` (one string, or a list of references, each a
 * string or a word list). Empty corpora
 * and corpora with no n-gram of some order score 0.
 */
export function corpusBleu(hypotheses: readonly Text[], references: readonly References[], opts: BleuOptions = {}): BleuResult {
  const N = opts.maxN ?? 4;
  if (!Number.isInteger(N) || N < 1) throw new Error(`corpusBleu: maxN must be a positive integer, got ${N}`);
  if (hypotheses.length !== references.length) {
    throw new Error(`corpusBleu: ${hypotheses.length} hypotheses but ${references.length} reference sets`);
  }
  const matches = new Array<number>(N).fill(0), totals = new Array<number>(N).fill(0);
  let c = 0, r = 0;
  hypotheses.forEach((hypText, i) => {
    const hyp = words(hypText);
    const refSet = references[i];
    const refs = typeof refSet === 'string' ? [words(refSet)] : refSet.map(words);
    if (refs.length === 0) throw new Error(`corpusBleu: hypothesis ${i} has no reference`);
    c += hyp.length;
    r += closestLength(hyp.length, refs.map((x) => x.length));
    for (let n = 1; n <= N; n++) {
      const counts = ngramCounts(hyp, n);
      const maxRef = new Map<string, number>();
      for (const ref of refs) {
        for (const [g, k] of ngramCounts(ref, n)) if (counts.has(g) && k > (maxRef.get(g) ?? 0)) maxRef.set(g, k);
      }
      for (const [g, k] of counts) matches[n - 1] += Math.min(k, maxRef.get(g) ?? 0);
      totals[n - 1] += Math.max(0, hyp.length - n + 1);
    }
  });
  const precisions = matches.map((m, k) => (totals[k] > 0 ? m / totals[k] : 0));
  const brevityPenalty = c === 0 ? 0 : c > r ? 1 : Math.exp(1 - r / c);
  const bleu = precisions.some((p) => p === 0) ? 0
    : brevityPenalty * Math.exp(precisions.reduce((s, p) => s + Math.log(p), 0) / N);
  return { bleu, precisions, matches, totals, brevityPenalty, hypothesisLength: c, referenceLength: r };
}

/** Texts in the normal form used for comparisons: lower-case words and punctuation, single spaces. */
export function normaliseCaption(t: Text): string {
  return words(t).join(' ');
}

/** Fraction of hypotheses equal (after normalising) to one of their references. */
export function exactMatchRate(hypotheses: readonly Text[], references: readonly References[]): number {
  if (hypotheses.length !== references.length) throw new Error(`exactMatchRate: ${hypotheses.length} hypotheses but ${references.length} reference sets`);
  if (hypotheses.length === 0) return 0;
  let hits = 0;
  hypotheses.forEach((h, i) => {
    const r = references[i];
    const refs = typeof r === 'string' ? [r] : r;
    const norm = normaliseCaption(h);
    if (refs.some((x) => normaliseCaption(x) === norm)) hits++;
  });
  return hits / hypotheses.length;
}
