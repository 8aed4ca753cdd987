/** A1111 prompt weighting: parsing, 75-token chunking, emphasis, and equivalence with plain encoding. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { noGrad } from '../src/engine/index.js';
import { CLIPTokenizer } from '../src/tokenizers/clip_bpe.js';
import { CLIPTextModel } from '../src/models/clip_text.js';
import {
  encodeChunks, encodePrompt, encodePromptPair, parsePromptAttention, tokenizeWeighted,
} from '../src/pipelines/prompt_weighting.js';
import { relErr } from './helpers/relerr.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SD_PIPE = path.resolve(here, '..', '..', 'test', 'fixtures', 'golden', 'sd_pipe');
const tokenizer = CLIPTokenizer.fromPretrained(SD_PIPE);
const encoder = CLIPTextModel.fromPretrained(SD_PIPE);
const D = encoder.config.hiddenSize;

const parsed = (s: string) => parsePromptAttention(s).map((f) => [f.text, f.weight]);

test('parse: brackets, explicit weights, nesting, escapes, unbalanced brackets (A1111 examples)', () => {
  assert.deepEqual(parsed('normal text'), [['normal text', 1]]);
  assert.deepEqual(parsed('an (important) word'), [['an ', 1], ['important', 1.1], [' word', 1]]);
  assert.deepEqual(parsed('(unbalanced'), [['unbalanced', 1.1]]);
  assert.deepEqual(parsed('\\(literal\\]'), [['(literal]', 1]]);
  assert.deepEqual(parsed('(unnecessary)(parens)'), [['unnecessaryparens', 1.1]]);
  // Same float64 products, in the same order, as A1111's Python.
  assert.deepEqual(parsed('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).'), [
    ['a ', 1], ['house', 1.5730000000000004], [' ', 1.1], ['on', 1], [' a ', 1.1], ['hill', 0.55],
    [', sun, ', 1.1], ['sky', 1.4641000000000006], ['.', 1.1],
  ]);
  assert.deepEqual(parsed('[[a]] ((b)) (c:0.5) (d: 1.5 )'), [
    ['a', (1 / 1.1) * (1 / 1.1)], [' ', 1], ['b', 1.1 * 1.1], [' ', 1], ['c', 0.5], [' ', 1], ['d', 1.5],
  ]);
  assert.deepEqual(parsed('stray) and ] and x:y and (z:abc)'), [['stray) and ] and x:y and ', 1], ['z:abc', 1.1]]);
  assert.deepEqual(parsed(''), [['', 1]]);
});

test('parse: BREAK splits (only as an upper-case word), inside brackets too', () => {
  assert.deepEqual(parsed('a cat BREAK a dog'), [['a cat', 1], ['BREAK', -1], ['a dog', 1]]);
  assert.deepEqual(parsed('(a BREAK b)'), [['a', 1.1], ['BREAK', -1], ['b', 1.1]]);
  assert.deepEqual(parsed('break BREAKFAST'), [['break BREAKFAST', 1]]);
  assert.deepEqual(parsePromptAttention('a BREAK b', { breaks: false }).map((f) => f.text), ['a BREAK b']);
});

test('tokens carry their fragment weights; bos / eos / padding weigh 1', () => {
  const { chunks, tokenCount } = tokenizeWeighted('a (red:1.5) [cat]', tokenizer);
  assert.equal(chunks.length, 1);
  assert.equal(tokenCount, 3);
  const [c] = chunks;
  assert.deepEqual([...c.ids.slice(0, 6)], [49406, 320, 736, 2368, 49407, 49407]);
  assert.deepEqual([...c.weights.slice(0, 6)], [1, 1, 1.5, Math.fround(1 / 1.1), 1, 1]);
  assert.ok(c.weights.slice(5).every((w) => w === 1));
  // With emphasis off, brackets are text.
  const plain = tokenizeWeighted('a (red:1.5)', tokenizer, { emphasis: 'none' }).chunks[0];
  assert.deepEqual([...plain.ids.slice(0, 9)], [...tokenizer.encodePadded('a (red:1.5)').slice(0, 9)]);
  // SD 2.x padding: eos once, then the pad token.
  const sd2 = tokenizeWeighted('a cat', tokenizer.withPadToken('!')).chunks[0];
  assert.deepEqual([...sd2.ids.slice(0, 6)], [49406, 320, 2368, 49407, 0, 0]);
});

test('long prompts: 75-token chunks wrapped to 77, comma backtrack, BREAK', () => {
  const words = (n: number, w = 'word') => Array(n).fill(w).join(' ');
  const long = tokenizeWeighted(words(100), tokenizer);
  assert.equal(long.chunks.length, 2);
  assert.equal(long.tokenCount, 100);
  const [first, second] = long.chunks;
  assert.equal(first.ids.length, 77);
  assert.deepEqual([first.ids[0], first.ids[1], first.ids[75], first.ids[76]], [49406, 2653, 2653, 49407]);
  assert.deepEqual([second.ids[0], second.ids[25], second.ids[26], second.ids[27]], [49406, 2653, 49407, 49407]);

  // A comma 5 tokens before the chunk fills: the chunk ends after the comma, the 5 words move on.
  const comma = tokenizeWeighted(`${words(70)}, ${words(10, 'cat')}`, tokenizer);
  assert.equal(comma.chunks[0].ids[71], 267); // ','
  assert.equal(comma.chunks[0].ids[72], 49407);
  assert.deepEqual([...comma.chunks[1].ids.slice(0, 12)], [49406, ...Array(10).fill(2368), 49407]);
  const noBacktrack = tokenizeWeighted(`${words(70)}, ${words(10, 'cat')}`, tokenizer, { commaBacktrack: 0 });
  assert.equal(noBacktrack.chunks[0].ids[75], 2368);

  // BREAK pads the current chunk; weights survive the move to the next chunk.
  const broken = tokenizeWeighted('a cat BREAK (a dog:1.3)', tokenizer);
  assert.equal(broken.chunks.length, 2);
  assert.deepEqual([...broken.chunks[0].ids.slice(0, 4)], [49406, 320, 2368, 49407]);
  assert.deepEqual([...broken.chunks[1].weights.slice(0, 4)], [1, 1.3, 1.3, 1].map(Math.fround));
  assert.equal(tokenizeWeighted('', tokenizer).chunks.length, 1);
});

test('a >77-token prompt encodes to [1, 154, D]; each chunk is the plain encoding of its ids', () => {
  const prompt = Array(100).fill('word').join(' ');
  const embeds = encodePrompt(prompt, tokenizer, encoder);
  assert.deepEqual(embeds.shape, [1, 154, D]);
  const { chunks } = tokenizeWeighted(prompt, tokenizer);
  noGrad(() => {
    const second = encoder.forward(chunks[1].ids).lastHiddenState.toFloat32Array();
    // Batched [2, 77] vs alone [1, 77]: kernels may block differently, so compare to float precision.
    assert.ok(relErr(embeds.toFloat32Array().subarray(77 * D), second) < 1e-6);
  });
});

test('weight 1 everywhere equals plain encoding (also with clip skip)', () => {
  noGrad(() => {
    for (const [prompt, text] of [['a photo of a cat', 'a photo of a cat'], ['(a photo of a cat:1.0)', 'a photo of a cat'],
      ['a (photo:1) of a cat', 'a photo of a cat'], ['', '']]) {
      const plain = encoder.forward(tokenizer.encodePadded(text)).lastHiddenState;
      assert.deepEqual([...encodePrompt(prompt, tokenizer, encoder).toFloat32Array()], [...plain.toFloat32Array()], prompt);
    }
    const skip = encoder.forward(tokenizer.encodePadded('a photo of a cat'), { clipSkip: 1 }).lastHiddenState;
    assert.deepEqual([...encodePrompt('a photo of a cat', tokenizer, encoder, { clipSkip: 1 }).toFloat32Array()], [...skip.toFloat32Array()]);
  });
});

test('emphasis: hidden states scaled per token, then the chunk mean restored (A1111 "Original")', () => {
  const prompt = 'a (red:1.5) [[cat]]';
  const { chunks } = tokenizeWeighted(prompt, tokenizer);
  const w = chunks[0].weights;
  const z = noGrad(() => encoder.forward(chunks[0].ids).lastHiddenState.toFloat32Array());
  const out = encodePrompt(prompt, tokenizer, encoder).toFloat32Array();
  const noNorm = encodePrompt(prompt, tokenizer, encoder, { emphasis: 'no_norm' }).toFloat32Array();
  const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
  assert.ok(Math.abs(mean(out) - mean(z)) <= 1e-6 * Math.abs(mean(z)) + 1e-9, 'mean is kept');
  const scale = mean(z) / mean(noNorm);
  for (let t = 0; t < 77; t++) {
    for (let d = 0; d < D; d += 7) {
      const i = t * D + d;
      assert.ok(Math.abs(noNorm[i] - z[i] * w[t]) <= 1e-6 * Math.abs(z[i]) + 1e-7);
      assert.ok(Math.abs(out[i] - z[i] * w[t] * scale) <= 1e-5 * Math.abs(z[i]) + 1e-6);
    }
  }
  // Weight 1.5 on 'red' (position 2) really changes that row relative to the others.
  const ratio = out[2 * D] / z[2 * D], ratioFirst = out[D] / z[D];
  assert.ok(Math.abs(ratio / ratioFirst - 1.5) < 1e-4);
});

test('positive / negative pair padded to the same number of chunks with the empty prompt', () => {
  const long = Array(80).fill('word').join(' ');
  const { cond, uncond } = encodePromptPair(long, 'blurry', tokenizer, encoder);
  assert.deepEqual(cond.shape, [1, 154, D]);
  assert.deepEqual(uncond.shape, [1, 154, D]);
  const empty = encodeChunks(tokenizeWeighted('', tokenizer).chunks, encoder).toFloat32Array();
  assert.ok(relErr(uncond.toFloat32Array().subarray(77 * D), empty) < 1e-6);
  assert.ok(relErr(uncond.toFloat32Array().subarray(0, 77 * D), encodePrompt('blurry', tokenizer, encoder).toFloat32Array()) < 1e-6);
});
