/** Tokenizers: CLIP's byte-level BPE (Stable Diffusion 1.x / 2.x). */
export {
  CLIPTokenizer, htmlUnescape, parseMergesText,
  type CLIPTokenizerOptions, type EncodeOptions, type EncodePaddedOptions,
} from './clip_bpe.js';
