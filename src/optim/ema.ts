/**
 * Exponential moving average of weights (as diffusers' EMAModel): a shadow copy updated after each optimiser
 * step, shadow ← d·shadow + (1 − d)·param, used for evaluation / export because it is smoother than the
 * raw weights.
 *
 * With `warmup`, the decay ramps up as d = min(decay, (1 + n) / (10 + n)) over the n-th update, so early
 * shadows are not dominated by the random initialisation.
 */
import { Tensor, fromTypedArray } from '../engine/index.js';
import { Module } from '../nn/module.js';
import { f32Storage, readF32 } from '../nn/storage.js';

export interface EMAOptions {
  decay?: number;
  warmup?: boolean;
  /** Lower bound on the effective decay (diffusers' min_decay). */
  minDecay?: number;
}

export interface EMAStateDict {
  decay: number;
  warmup: boolean;
  minDecay: number;
  updates: number;
  /** Shadow weights by parameter name. */
  shadow: Map<string, Tensor>;
}

export class EMA {
  decay: number;
  warmup: boolean;
  minDecay: number;
  /** Number of `update()` calls so far. */
  updates = 0;
  private readonly names: string[];
  private readonly params: Tensor[];
  private readonly shadow: Float32Array[];

  /** Track a module's parameters (by name) or a list of tensors (named by index). */
  constructor(source: Module | Tensor[], opts: EMAOptions = {}) {
    const named = source instanceof Module ? source.namedParameters() : source.map((t, i) => [String(i), t] as [string, Tensor]);
    const floating = named.filter(([, t]) => t.dtype === 'f32');
    this.names = floating.map(([n]) => n);
    this.params = floating.map(([, t]) => t);
    this.shadow = this.params.map((t) => readF32(t).slice());
    this.decay = opts.decay ?? 0.9999;
    this.warmup = opts.warmup ?? false;
    this.minDecay = opts.minDecay ?? 0;
  }

  /** The decay the next update will use. */
  currentDecay(): number {
    const n = this.updates + 1;
    const d = this.warmup ? Math.min(this.decay, (1 + n) / (10 + n)) : this.decay;
    return Math.max(d, this.minDecay);
  }

  update(): void {
    const d = this.currentDecay();
    const mix = 1 - d;
    this.params.forEach((p, i) => {
      const src = readF32(p);
      const s = this.shadow[i];
      for (let j = 0; j < s.length; j++) s[j] += mix * (src[j] - s[j]);
    });
    this.updates++;
  }

  /** Write the shadow weights into a module's (or the tracked tensors') parameters. */
  copyTo(target?: Module | Tensor[]): void {
    const dst = this.targets(target);
    dst.forEach((p, i) => f32Storage(p, `EMA.copyTo ${this.names[i]}`).set(this.shadow[i]));
  }

  /** Shadow weights as tensors (copies), by parameter name. */
  shadowParameters(): Map<string, Tensor> {
    return new Map(this.names.map((n, i) => [n, fromTypedArray(this.shadow[i].slice(), [...this.params[i].shape], 'f32')]));
  }

  stateDict(): EMAStateDict {
    return { decay: this.decay, warmup: this.warmup, minDecay: this.minDecay, updates: this.updates, shadow: this.shadowParameters() };
  }

  loadStateDict(sd: EMAStateDict): void {
    const missing = this.names.filter((n) => !sd.shadow.has(n));
    if (missing.length) throw new Error(`EMA.loadStateDict: ${missing.length} missing: ${missing.join(', ')}`);
    this.names.forEach((n, i) => {
      const t = sd.shadow.get(n)!;
      if (t.numel !== this.shadow[i].length) throw new Error(`EMA.loadStateDict: ${n} has ${t.numel} values, expected ${this.shadow[i].length}`);
      this.shadow[i].set(readF32(t));
    });
    this.decay = sd.decay;
    this.warmup = sd.warmup;
    this.minDecay = sd.minDecay;
    this.updates = sd.updates;
  }

  private targets(target?: Module | Tensor[]): Tensor[] {
    if (target === undefined) return this.params;
    if (target instanceof Module) {
      const byName = new Map(target.namedParameters());
      return this.names.map((n) => {
        const p = byName.get(n);
        if (!p) throw new Error(`EMA.copyTo: target has no parameter "${n}"`);
        return p;
      });
    }
    if (target.length !== this.params.length) throw new Error(`EMA.copyTo: expected ${this.params.length} tensors, got ${target.length}`);
    return target;
  }
}
