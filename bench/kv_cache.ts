/**
 * Captioner decoding with and without the KV cache, on random weights (timings only).
 *
 *   node dist/bench/kv_cache.js [--tokens 30] [--beams 1] [--reps 3]
 *
 * A ViT-GPT-2 captioner of modest size (64² images, patch 8 → 65 image tokens, encoder 192 wide × 4 layers,
 * decoder 256 wide × 4 layers, 8 heads, vocabulary 2000) generates `--tokens` new tokens for one image,
 * greedily (or with `--beams n`). eos is a token the random model never picks first, so every run makes
 * the full count. Uncached decoding recomputes the whole prefix each step (O(length²) work overall);
 * cached decoding feeds one token per step (O(length) per step). Both must give the same ids.
 * Prints the median wall time of each and the speed-up. Set VSS_NUM_THREADS to fix the thread count.
 */
import { Rng, backendName, randn } from '../src/engine/index.js';
import { VisionEncoderDecoderModel, captionerConfig } from '../src/models/captioner.js';
import { generateCaptions } from '../src/models/generation.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer, got ${process.argv[i + 1]}`);
  return v;
}

const tokens = arg('tokens', 30), beams = arg('beams', 1), reps = arg('reps', 3);
const vocab = 2000;
const model = new VisionEncoderDecoderModel(captionerConfig({
  encoder: { imageSize: 64, patchSize: 8, numChannels: 3, hiddenSize: 192, numHiddenLayers: 4, numAttentionHeads: 4, intermediateSize: 768 },
  decoder: { vocabSize: vocab, nPositions: Math.max(64, tokens + 1), nEmbd: 256, nLayer: 4, nHead: 8, bosTokenId: 0, eosTokenId: vocab - 1, padTokenId: vocab - 1 },
  decoderStartTokenId: 0, eosTokenId: vocab - 1, padTokenId: vocab - 1,
}), { rng: new Rng(0) }).eval();
const pixels = randn([1, 3, 64, 64], { rng: new Rng(1) });

function time(useCache: boolean): { median: number; ids: number[][] } {
  const times: number[] = [];
  let ids: number[][] = [];
  generateCaptions(model, pixels, { maxNewTokens: 4, numBeams: beams, useCache }); // warm-up
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    ids = generateCaptions(model, pixels, { maxNewTokens: tokens, numBeams: beams, useCache, earlyStopping: true }).ids;
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)], ids };
}

const uncached = time(false);
const cached = time(true);
const same = JSON.stringify(uncached.ids) === JSON.stringify(cached.ids);
const made = cached.ids[0].length - 1;
console.log(`captioner decoding, ${made} new tokens, ${beams === 1 ? 'greedy' : `${beams} beams`}, backend ${backendName()}, VSS_NUM_THREADS=${process.env.VSS_NUM_THREADS ?? '(default)'}, median of ${reps}`);
console.log(`  uncached: ${uncached.median.toFixed(3)} s  (${((uncached.median / made) * 1000).toFixed(1)} ms/token)`);
console.log(`  cached:   ${cached.median.toFixed(3)} s  (${((cached.median / made) * 1000).toFixed(1)} ms/token)`);
console.log(`  speed-up: ${(uncached.median / cached.median).toFixed(2)}×   same ids: ${same}`);
if (!same) process.exitCode = 1;
