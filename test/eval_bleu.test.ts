/** Corpus BLEU and exact match against values worked out by hand. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { corpusBleu, exactMatchRate, normaliseCaption } from '../src/eval/bleu.js';

const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('identical texts score 1; no shared word scores 0', () => {
  const r = corpusBleu(['a red circle above a blue square', 'an ankle boot on the left'], ['a red circle above a blue square', 'an ankle boot on the left']);
  close(r.bleu, 1);
  assert.deepEqual(r.precisions, [1, 1, 1, 1]);
  close(r.brevityPenalty, 1);
  assert.equal(corpusBleu(['x y z w'], ['a b c d']).bleu, 0);
});

test('clipped n-gram precisions, geometric mean and brevity penalty of a known pair', () => {
  // hyp 7 words, ref 8. p1 = 7/7; p2 = 5/6 (all but "a blue"); p3 = 3/5; p4 = 2/4; BP = exp(1 − 8/7).
  const r = corpusBleu(['a red circle above a blue square'], [['a red circle above a large blue square']]);
  assert.deepEqual(r.matches, [7, 5, 3, 2]);
  assert.deepEqual(r.totals, [7, 6, 5, 4]);
  close(r.brevityPenalty, Math.exp(1 - 8 / 7));
  close(r.bleu, Math.exp(1 - 8 / 7) * (1 * (5 / 6) * (3 / 5) * (2 / 4)) ** (1 / 4));
  // "the cat is on the mat" vs "the cat sat on the mat": p1 5/6, p2 3/5, p3 1/4, p4 0 → BLEU-4 0, BLEU-3 0.5.
  const cat = corpusBleu(['the cat is on the mat'], ['the cat sat on the mat']);
  assert.deepEqual(cat.matches, [5, 3, 1, 0]);
  assert.equal(cat.bleu, 0);
  close(corpusBleu(['the cat is on the mat'], ['the cat sat on the mat'], { maxN: 3 }).bleu, 0.5);
});

test('counts are clipped by the reference (Papineni et al.\'s "the the the …" example)', () => {
  const r = corpusBleu(['the the the the the the the'], [['the cat is on the mat', 'there is a cat on the mat']], { maxN: 1 });
  assert.equal(r.matches[0], 2);
  assert.equal(r.totals[0], 7);
  close(r.bleu, 2 / 7); // c = 7 > r: no penalty
});

test('short hypotheses are penalised; the closest reference length counts, the shorter on a tie', () => {
  const short = corpusBleu(['the cat'], ['the cat sat on the mat'], { maxN: 2 });
  close(short.bleu, Math.exp(1 - 6 / 2));
  // Hypothesis of 4 words, references of 3 and 6 words: r = 3 (closest), so no penalty.
  assert.equal(corpusBleu(['a b c d'], [['a b c', 'a b c d e f']], { maxN: 1 }).referenceLength, 3);
  // References of 3 and 5 words are equally close to 4: the shorter one counts.
  assert.equal(corpusBleu(['a b c d'], [['a b c', 'a b c d e']], { maxN: 1 }).referenceLength, 3);
  assert.equal(corpusBleu(['a b c d'], [['a b c d e f g', 'a b c d e']], { maxN: 1 }).referenceLength, 5);
});

test('corpus BLEU pools counts over sentences (not a mean of sentence scores), and word lists work', () => {
  const r = corpusBleu(['a b', 'c d e f'], ['a b', 'c d x f'], { maxN: 2 });
  assert.deepEqual(r.matches, [2 + 3, 1 + 1]);
  assert.deepEqual(r.totals, [2 + 4, 1 + 3]);
  close(r.bleu, Math.sqrt((5 / 6) * (2 / 4)));
  const words = corpusBleu([['a', 'red', 'circle']], [[['a', 'red', 'circle']]]);
  close(words.bleu, 0); // three words have no 4-gram: p4 = 0/0 counts as 0
  close(corpusBleu([['a', 'red', 'circle']], [[['a', 'red', 'circle']]], { maxN: 3 }).bleu, 1);
  assert.throws(() => corpusBleu(['a'], []), /1 hypotheses but 0 reference sets/);
  assert.throws(() => corpusBleu(['a'], [[]]), /has no reference/);
  assert.equal(corpusBleu([], []).bleu, 0);
});

test('tokenisation: case and punctuation spacing do not matter', () => {
  close(corpusBleu(['A red circle, and a blue star.'], ['a red circle , and a blue star .']).bleu, 1);
  assert.equal(normaliseCaption('A Red circle,and a star'), 'a red circle , and a star');
});

test('exact match: any reference counts, after normalising', () => {
  assert.equal(exactMatchRate(['a red circle', 'A blue Square', 'a star'], ['a red circle', ['a large blue square', 'a blue square'], 'a green star']), 2 / 3);
  assert.equal(exactMatchRate([], []), 0);
  assert.throws(() => exactMatchRate(['a'], []), /1 hypotheses/);
});
