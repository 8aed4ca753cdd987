/** The word-level caption tokenizer: splitting, vocabulary order, special ids, round trips, save/load, errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BOS_ID, EOS_ID, PAD_ID, UNK_ID, WordTokenizer, joinWords, splitWords } from '../src/tokenizers/word.js';
import { ShapesDataset } from '../src/data/shapes.js';

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-word-tok-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

test('splitWords lower-cases, keeps hyphenated words and splits punctuation; joinWords undoes it', () => {
  assert.deepEqual(splitWords('A Red circle, and  an Ankle-boot.'), ['a', 'red', 'circle', ',', 'and', 'an', 'ankle-boot', '.']);
  assert.deepEqual(splitWords("a t-shirt (don't)"), ['a', 't-shirt', '(', "don't", ')']);
  assert.deepEqual(splitWords('   '), []);
  assert.equal(joinWords(['a', 'red', 'circle', ',', 'and', 'a', '(', 'big', ')', 'star', '.']), 'a red circle, and a (big) star.');
  assert.equal(joinWords([]), '');
});

test('fromCaptions: special tokens first (pad 0, <s> 1, </s> 2, <unk> 3), then words by count, ties alphabetical', () => {
  const tok = WordTokenizer.fromCaptions(['a red circle', 'a blue circle', 'a red square, and a star']);
  assert.deepEqual([PAD_ID, BOS_ID, EOS_ID, UNK_ID], [0, 1, 2, 3]);
  assert.deepEqual(tok.idToToken.slice(0, 4), ['<pad>', '<s>', '</s>', '<unk>']);
  // a ×4, circle ×2, red ×2, then the singletons alphabetically: ',' < and < blue < square < star.
  assert.deepEqual(tok.idToToken.slice(4), ['a', 'circle', 'red', ',', 'and', 'blue', 'square', 'star']);
  assert.equal(tok.size, 12);
  const min2 = WordTokenizer.fromCaptions(['a red circle', 'a blue circle', 'a red square'], { minCount: 2 });
  assert.deepEqual(min2.idToToken.slice(4), ['a', 'circle', 'red']);
  assert.deepEqual(min2.encode('a blue circle'), [4, UNK_ID, 5]);
  assert.equal(min2.decode(min2.encode('a blue circle')), 'a <unk> circle');
  assert.throws(() => WordTokenizer.fromCaptions([], { minCount: 0 }), /minCount must be a positive integer/);
});

test('encode/decode: bos/eos, maxLength keeps </s> last, decoding stops at </s> and skips specials', () => {
  const tok = WordTokenizer.fromCaptions(['a red circle above a blue square, and a green star left of the blue square']);
  const caption = 'a red circle above a blue square, and a green star left of the blue square';
  const ids = tok.encode(caption, { addBos: true, addEos: true });
  assert.equal(ids[0], BOS_ID);
  assert.equal(ids[ids.length - 1], EOS_ID);
  assert.equal(tok.decode(ids), caption);
  assert.equal(tok.decode([...tok.encode('a red circle'), EOS_ID, ...tok.encode('square')]), 'a red circle');
  assert.equal(tok.decode([BOS_ID, ...tok.encode('a red circle'), EOS_ID, PAD_ID], { stopAtEos: false }), 'a red circle');
  assert.deepEqual(tok.decodeWords([BOS_ID, ...tok.encode('a star'), EOS_ID], { skipSpecialTokens: false }), ['<s>', 'a', 'star']);
  const cut = tok.encode(caption, { addEos: true, maxLength: 4 });
  assert.equal(cut.length, 4);
  assert.equal(cut[3], EOS_ID);
  assert.equal(tok.decode(cut), 'a red circle');
  assert.throws(() => tok.decode([tok.size]), /outside the vocabulary/);
});

test('teacherForcing: inputs <s> w…, labels w… </s>, padded with <pad> and the ignore index', () => {
  const tok = WordTokenizer.fromCaptions(['a red circle', 'a star']);
  const [a, red, circle, star] = ['a', 'red', 'circle', 'star'].map((w) => tok.vocab.get(w)!);
  const tf = tok.teacherForcing(['a red circle', 'a star'], { maxLength: 32 });
  assert.deepEqual(tf.inputIds, [[BOS_ID, a, red, circle], [BOS_ID, a, star, PAD_ID]]);
  assert.deepEqual(tf.labels, [[a, red, circle, EOS_ID], [a, star, EOS_ID, -100]]);
  assert.deepEqual(tf.lengths, [4, 3]);
  const short = tok.teacherForcing(['a red circle'], { maxLength: 2, ignoreIndex: -1 });
  assert.deepEqual(short.inputIds, [[BOS_ID, a]]);
  assert.deepEqual(short.labels, [[a, EOS_ID]]);
});

test('save / fromPretrained round-trips vocab.json and tokenizer_config.json; bad files fail clearly', () => {
  const shapes = new ShapesDataset({ length: 300 });
  const captions = Array.from({ length: shapes.length }, (_, i) => shapes.scene(i).caption);
  const tok = WordTokenizer.fromCaptions(captions);
  const dir = path.join(tmpDir, 'tok');
  tok.save(dir);
  const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8'));
  assert.equal(vocab['<pad>'], 0);
  assert.equal(vocab['</s>'], 2);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  assert.equal(cfg.tokenizer_class, 'VssWordTokenizer');
  assert.equal(cfg.eos_token_id, 2);
  const back = WordTokenizer.fromPretrained(dir);
  assert.deepEqual(back.idToToken, tok.idToToken);
  for (const c of captions.slice(0, 50)) assert.equal(back.decode(back.encode(c, { addBos: true, addEos: true })), c);
  assert.equal(tok.unknownRate(captions), 0);

  const bad = path.join(tmpDir, 'bad');
  fs.mkdirSync(bad);
  assert.throws(() => WordTokenizer.fromPretrained(bad), /no vocab\.json/);
  fs.writeFileSync(path.join(bad, 'vocab.json'), '{"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "a": 3}');
  assert.throws(() => WordTokenizer.fromPretrained(bad), /id 3 is used twice/);
  fs.writeFileSync(path.join(bad, 'vocab.json'), '{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}');
  assert.throws(() => WordTokenizer.fromPretrained(bad), /id 0 must be <pad>/);
  fs.writeFileSync(path.join(bad, 'vocab.json'), '[1, 2]');
  assert.throws(() => WordTokenizer.fromPretrained(bad), /expected an object/);
});
