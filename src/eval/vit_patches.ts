/**
 * What `vss eval vit-patches` measures on a trained ViT besides accuracy: how far its attention reaches
 * (mean attention distance, Dosovitskiy et al. 2021, "An image is worth 16x16 words", Fig. 7 and
 * Appendix D.7) and how fast it reads images (forward only).
 */
import { type Tensor, noGrad } from '../engine/index.js';
import type { ViTForImageClassification } from '../models/vit.js';

/** [N, N] Euclidean distances in pixels between the centres of the patches of a gh × gw grid, row-major. */
export function patchDistances(grid: readonly [number, number], patchSize: number): Float64Array {
  const [gh, gw] = grid;
  const n = gh * gw;
  const d = new Float64Array(n * n);
  for (let q = 0; q < n; q++) {
    const qy = Math.floor(q / gw), qx = q % gw;
    for (let k = 0; k < n; k++) {
      const ky = Math.floor(k / gw), kx = k % gw;
      // Centres sit at ((x + ½)p, (y + ½)p); the ½ cancels in the difference.
      d[q * n + k] = patchSize * Math.hypot(qx - kx, qy - ky);
    }
  }
  return d;
}

/** Running sums of the per-query attention distance, per head. */
export class AttentionDistanceMeter {
  readonly sums: Float64Array;
  readonly counts: Float64Array;
  private readonly dist: Float64Array;
  private readonly n: number;

  /**
   * `cls`: the maps have a CLS token at position 0 (ViTs here always do); its row and column are left out.
   */
  constructor(readonly heads: number, readonly grid: readonly [number, number], readonly patchSize: number, readonly cls = true) {
    this.sums = new Float64Array(heads);
    this.counts = new Float64Array(heads);
    this.dist = patchDistances(grid, patchSize);
    this.n = grid[0] * grid[1];
  }

  /**
   * Add one layer's attention probabilities [B, heads, T, T] (rows sum to 1).
   *
   * Convention (the ViT paper's Fig. 7 does not say how it treats CLS): for each image, head and query
   * *patch* q, the distance is Σ_k a(q→k) · ‖centre(q) − centre(k)‖ over the patch keys k only, with a(q→·)
   * renormalised to sum to 1 over those keys. The CLS token is neither a query nor a key: it has no
   * position in the image. A query that puts all its attention on CLS has no distance and is left out.
   */
  add(probs: Tensor): void {
    const [B, H, T, T2] = probs.shape;
    const off = this.cls ? 1 : 0, n = this.n;
    if (H !== this.heads || T !== T2 || T !== n + off) {
      throw new Error(`attention distance: expected [B, ${this.heads}, ${n + off}, ${n + off}] maps, got [${probs.shape}]`);
    }
    const a = probs.to('f32').contiguous().toFloat32Array();
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const map = (b * H + h) * T * T;
        for (let q = 0; q < n; q++) {
          const row = map + (q + off) * T + off;
          let mass = 0, weighted = 0;
          for (let k = 0; k < n; k++) {
            const w = a[row + k];
            mass += w;
            weighted += w * this.dist[q * n + k];
          }
          if (mass <= 0) continue;
          this.sums[h] += weighted / mass;
          this.counts[h]++;
        }
      }
    }
  }

  /** Mean distance (pixels) of each head, over every query patch and image added. */
  perHead(): number[] {
    return Array.from(this.sums, (s, h) => (this.counts[h] > 0 ? s / this.counts[h] : NaN));
  }

  /** Mean distance (pixels) over heads, query patches and images. */
  mean(): number {
    const c = this.counts.reduce((x, y) => x + y, 0);
    return c > 0 ? this.sums.reduce((x, y) => x + y, 0) / c : NaN;
  }
}

/** Mean attention distance (pixels) of one set of maps [B, heads, T, T]; see `AttentionDistanceMeter.add`. */
export function meanAttentionDistance(probs: Tensor, grid: readonly [number, number], patchSize: number, { cls = true } = {}): number {
  const m = new AttentionDistanceMeter(probs.shape[1], grid, patchSize, cls);
  m.add(probs);
  return m.mean();
}

export interface AttentionDistances {
  /** Per layer, the mean over heads, query patches and images (pixels). */
  perLayer: number[];
  /** Per layer, per head. */
  perHead: number[][];
  images: number;
}

/** Mean attention distance of every layer of `model` over `images` [N, C, H, W], `batch` at a time, in eval mode. */
export function measureAttentionDistances(model: ViTForImageClassification, images: Tensor, batch = 64): AttentionDistances {
  const wasTraining = model.training;
  model.eval();
  const N = images.shape[0];
  const L = model.config.numHiddenLayers, H = model.config.numAttentionHeads;
  let meters: AttentionDistanceMeter[] = [];
  try {
    for (let start = 0; start < N; start += batch) {
      const x = images.narrow(0, start, Math.min(batch, N - start));
      noGrad(() => {
        const out = model.forward(x, { outputAttentions: true });
        if (meters.length === 0) meters = Array.from({ length: L }, () => new AttentionDistanceMeter(H, out.grid, model.config.patchSize));
        out.attentions!.forEach((a, l) => meters[l].add(a));
      });
    }
  } finally {
    model.train(wasTraining);
  }
  return { perLayer: meters.map((m) => m.mean()), perHead: meters.map((m) => m.perHead()), images: N };
}

/**
 * Forward-only images/s on `images` as one batch, in eval mode without gradients: one untimed pass, then
 * timed passes until `minSeconds` have gone by (at least `minRuns`, at most `maxRuns`).
 */
export function inferenceRate(model: ViTForImageClassification, images: Tensor, { minSeconds = 2, minRuns = 2, maxRuns = 20 } = {}): { imagesPerSecond: number; runs: number; seconds: number } {
  const wasTraining = model.training;
  model.eval();
  try {
    const pass = () => noGrad(() => model.forward(images).logits.toFloat32Array());
    pass();
    let runs = 0, seconds = 0;
    while (runs < maxRuns && (runs < minRuns || seconds < minSeconds)) {
      const t0 = performance.now();
      pass();
      seconds += (performance.now() - t0) / 1000;
      runs++;
    }
    return { imagesPerSecond: (runs * images.shape[0]) / seconds, runs, seconds };
  } finally {
    model.train(wasTraining);
  }
}
