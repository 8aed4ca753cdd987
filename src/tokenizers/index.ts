/** Tokenizers: CLIP's byte-level BPE (Stable Diffusion 1.x / 2.x) and a word-level one for captions. */
export {
  CLIPTokenizer, htmlUnescape, parseMergesText,
  type CLIPTokenizerOptions, type EncodeOptions, type EncodePaddedOptions,
} from './clip_bpe.js';
export {
  WordTokenizer, splitWords, joinWords, PAD_ID, BOS_ID, EOS_ID, UNK_ID,
  type FromCaptionsOptions, type WordEncodeOptions, type WordDecodeOptions, type TeacherForcingBatch,
} from './word.js';
