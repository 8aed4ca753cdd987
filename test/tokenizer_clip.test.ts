/** CLIP BPE tokenizer: exact ids against transformers (golden), both folder layouts, errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLIPTokenizer, htmlUnescape, parseMergesText } from '../src/tokenizers/clip_bpe.js';
import { readSafetensors } from '../src/io/safetensors.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const GOLDEN = path.resolve(here, '..', '..', 'test', 'fixtures', 'golden');
const TOKENIZER_DIR = path.join(GOLDEN, 'sd_pipe', 'tokenizer');
const cases = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'tokenizer', 'cases.json'), 'utf-8'));
const prompts: string[] = cases.tokenizer.prompts;
const untruncated: Record<string, number[][]> = cases.tokenizer_untruncated;

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vss-clip-tok-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));
let counter = 0;
/** A fresh folder holding the given files. */
function folder(files: Record<string, string>): string {
  const dir = path.join(tmpDir, `t${counter++}`);
  fs.mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

const sd1 = CLIPTokenizer.fromPretrained(TOKENIZER_DIR); // pad <|endoftext|> from tokenizer_config.json
const sd2 = sd1.withPadToken('!'); // SD 2.x folders name '!' as the pad token
const golden = readSafetensors(path.join(GOLDEN, 'tokenizer', 'tensors.safetensors')).tensors;
const rows = (name: string): number[][] => (golden.get(name)!.toArray() as bigint[][]).map((r) => r.map(Number));

test('padded ids match transformers for all 14 prompts, <|endoftext|> and ! padding', () => {
  assert.equal(sd1.padId, 49407);
  assert.equal(sd2.padId, 0);
  assert.equal(sd1.modelMaxLength, 77);
  const eot = rows('input_ids_pad_eot'), bang = rows('input_ids_pad_bang');
  assert.equal(eot.length, prompts.length);
  prompts.forEach((p, i) => {
    assert.deepEqual([...sd1.encodePadded(p)], eot[i], `pad eot, prompt ${i} ${JSON.stringify(p)}`);
    assert.deepEqual([...sd2.encodePadded(p)], bang[i], `pad !, prompt ${i} ${JSON.stringify(p)}`);
  });
});

test('untruncated ids match transformers (special tokens in the text, ! as an atomic pad token)', () => {
  prompts.forEach((p, i) => {
    assert.deepEqual(sd1.encode(p), untruncated['<|endoftext|>'][i], `prompt ${i}`);
    assert.deepEqual(sd2.encode(p), untruncated['!'][i], `prompt ${i} with pad '!'`);
  });
  // The 102-word prompt is truncated to bos + 75 + eos.
  const long = sd1.encodePadded(prompts[10]);
  assert.equal(sd1.encode(prompts[10]).length, 102);
  assert.equal(long[0], 49406);
  assert.equal(long[76], 49407);
  assert.throws(() => sd1.encodePadded(prompts[10], { truncation: false }), /102 tokens do not fit in 77/);
});

test('tokenizer.json (both merge formats) gives identical ids', () => {
  const vocab = fs.readFileSync(path.join(TOKENIZER_DIR, 'vocab.json'), 'utf-8');
  const merges = parseMergesText(fs.readFileSync(path.join(TOKENIZER_DIR, 'merges.txt'), 'utf-8'));
  const config = fs.readFileSync(path.join(TOKENIZER_DIR, 'tokenizer_config.json'), 'utf-8');
  const tokenizerJson = (mergeList: unknown[]) => JSON.stringify({
    version: '1.0',
    added_tokens: [
      { id: 49406, content: '<|startoftext|>', special: true, normalized: false },
      { id: 49407, content: '<|endoftext|>', special: true, normalized: false },
    ],
    model: { type: 'BPE', unk_token: '<|endoftext|>', end_of_word_suffix: '</w>', vocab: JSON.parse(vocab), merges: mergeList },
  });
  const pairs = folder({ 'tokenizer.json': tokenizerJson(merges), 'tokenizer_config.json': config });
  const strings = folder({ 'tokenizer.json': tokenizerJson(merges.map(([a, b]) => `${a} ${b}`)) });
  for (const dir of [pairs, strings]) {
    const tok = CLIPTokenizer.fromPretrained(dir);
    const bang = tok.withPadToken('!');
    prompts.forEach((p, i) => {
      assert.deepEqual(tok.encode(p), untruncated['<|endoftext|>'][i]);
      assert.deepEqual(bang.encode(p), untruncated['!'][i]);
    });
  }
});

test('pipeline folder, special_tokens_map.json and AddedToken objects', () => {
  // fromPretrained accepts the pipeline root (it finds tokenizer/).
  const root = CLIPTokenizer.fromPretrained(path.join(GOLDEN, 'sd_pipe'));
  assert.deepEqual(root.encode('a photo of a cat'), untruncated['<|endoftext|>'][0]);
  const dir = folder({
    'vocab.json': fs.readFileSync(path.join(TOKENIZER_DIR, 'vocab.json'), 'utf-8'),
    'merges.txt': fs.readFileSync(path.join(TOKENIZER_DIR, 'merges.txt'), 'utf-8'),
    'tokenizer_config.json': JSON.stringify({ model_max_length: 77, pad_token: '<|endoftext|>' }),
    'special_tokens_map.json': JSON.stringify({ pad_token: { content: '!', lstrip: false }, bos_token: '<|startoftext|>' }),
  });
  const tok = CLIPTokenizer.fromPretrained(dir);
  assert.equal(tok.padToken, '!'); // special_tokens_map.json wins, as in transformers
  assert.deepEqual([...tok.encodePadded('a cat', { maxLength: 6 })], [49406, 320, 2368, 49407, 0, 0]);
  assert.deepEqual([...tok.encodePadded('a cat', { maxLength: 6, pad: '<|endoftext|>' })], [49406, 320, 2368, 49407, 49407, 49407]);
  assert.deepEqual([...tok.encodePadded('a cat', { maxLength: 6, pad: 7 })], [49406, 320, 2368, 49407, 7, 7]);
});

test('decode inverts encode (lower-cased, punctuation spaced as CLIP writes it)', () => {
  assert.equal(sd1.decode(sd1.encode('A photo of a CAT')), 'a photo of a cat');
  assert.equal(sd1.decode(sd1.encode('emoji 🐱🚀 and 日本語 and Ελληνικά')), 'emoji 🐱🚀 and 日本語 and ελληνικά');
  assert.equal(sd1.decode(sd1.encodePadded('café')), 'café');
  assert.equal(sd1.decode(sd1.encode('a cat'), { skipSpecialTokens: false }), '<|startoftext|>a cat <|endoftext|>');
  assert.deepEqual(sd1.tokenize('hello world!'), ['hello</w>', 'world</w>', '!</w>']);
  assert.deepEqual(sd2.tokenize('hello world!'), ['hello</w>', 'world</w>', '!']); // '!' is the pad token
});

test('HTML unescaping is off by default (as transformers) and available as an option', () => {
  assert.equal(htmlUnescape('&amp;lt;b&gt; &#233;&#xE9; &bogus;'), '&lt;b> éé &bogus;');
  const unescaping = new CLIPTokenizer(sd1.vocab as Map<string, number>, parseMergesText(
    fs.readFileSync(path.join(TOKENIZER_DIR, 'merges.txt'), 'utf-8')), { htmlUnescape: true });
  assert.deepEqual(unescaping.encode('&amp; &lt;b&gt;'), sd1.encode('& <b>'));
  assert.notDeepEqual(sd1.encode('&amp; &lt;b&gt;'), sd1.encode('& <b>'));
});

test('BPE on a toy vocabulary: merges by rank, </w> on the last symbol, unknown symbols → unk', () => {
  const vocab = { a: 0, b: 1, 'a</w>': 2, 'b</w>': 3, 'ab</w>': 4, ab: 5, 'aba</w>': 6, '<|startoftext|>': 7, '<|endoftext|>': 8 };
  const tok = new CLIPTokenizer(vocab, [['a', 'b</w>'], ['a', 'b'], ['ab', 'a</w>']]);
  assert.deepEqual(tok.encode('ab ba aba', { addSpecialTokens: false }), [4, 1, 2, 6]);
  assert.deepEqual(tok.encode('abab', { addSpecialTokens: false }), [5, 4]);
  assert.deepEqual(tok.encode('c', { addSpecialTokens: false }), [8]); // no 'c</w>': unk = eos
});

const VOCAB = JSON.stringify({ a: 0, b: 1, 'ab</w>': 2, 'a</w>': 3, 'b</w>': 4, '<|startoftext|>': 5, '<|endoftext|>': 6 });

test('missing and corrupt tokenizer files give clear errors', () => {
  assert.throws(() => CLIPTokenizer.fromPretrained(path.join(tmpDir, 'nope')), /nope does not exist/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({ 'vocab.json': VOCAB })),
    /no tokenizer\.json and no vocab\.json \+ merges\.txt \(missing merges\.txt\)/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({ 'vocab.json': '{"a": 0,', 'merges.txt': 'a b</w>\n' })),
    /vocab\.json is not valid JSON/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({ 'vocab.json': '{"a": "zero"}', 'merges.txt': 'a b\n' })),
    /token "a" has id "zero"/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({ 'vocab.json': VOCAB, 'merges.txt': '#version: 0.2\na b</w>\nab\n' })),
    /merges\.txt line 3: expected two symbols/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({ 'vocab.json': VOCAB, 'merges.txt': 'a b</w>\nb a\n' })),
    /merge 2 "b a" uses "ba", which is not in the vocabulary/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({ 'tokenizer.json': '{"model": {"type": "WordPiece"}}' })),
    /model type "WordPiece" is not BPE/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({ 'tokenizer.json': '[1, 2' })), /tokenizer\.json is not valid JSON/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({
    'vocab.json': VOCAB, 'merges.txt': 'a b</w>\n', 'tokenizer_config.json': '{"pad_token": "<pad>"}',
  })), /pad token "<pad>" is not in the vocabulary/);
  assert.throws(() => CLIPTokenizer.fromPretrained(folder({
    'vocab.json': VOCAB, 'merges.txt': 'a b</w>\n', 'tokenizer_config.json': '{"pad_token": 5}',
  })), /pad_token must be a string or \{"content": …\}/);
  // A loadable toy folder, for contrast.
  const ok = CLIPTokenizer.fromPretrained(folder({ 'vocab.json': VOCAB, 'merges.txt': '#version: 0.2\na b</w>\n' }));
  assert.deepEqual(ok.encode('ab'), [5, 2, 6]);
});
