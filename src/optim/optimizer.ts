/**
 * Optimisers: SGD, Adam, AdamW. The maths follows PyTorch's single-tensor ("for-loop") implementations,
 * on the parameters' dense f32 storage (Adam's update is one engine kernel): no autograd graph, no temporaries.
 *
 * State dicts mirror PyTorch's layout: per-parameter buffers keyed by the parameter's index across all
 * groups (`"3.exp_avg"`), per-parameter step counts, and each group's hyper-parameters.
 */
import { Tensor, adamUpdate, fromTypedArray } from '../engine/index.js';
import { f32Storage, readF32 } from '../nn/storage.js';

/** Hyper-parameters every group has; each optimiser adds its own. */
export interface GroupOptions {
  lr: number;
  weightDecay: number;
}

export type ParamGroup<H extends GroupOptions> = H & { params: Tensor[] };
/** What a constructor accepts: plain parameters or groups that override some hyper-parameters. */
export type ParamsArg<H extends GroupOptions> = Tensor[] | Array<Partial<H> & { params: Tensor[] }>;

interface ParamState {
  step: number;
  buffers: Record<string, Float32Array>;
}

export interface OptimizerStateDict {
  /** The optimiser's class name, checked on load. */
  type: string;
  /** Each group's hyper-parameters and the indices of its parameters. */
  groups: Array<{ hyper: Record<string, number | boolean>; params: number[] }>;
  /** Per-parameter step counts, by parameter index (only parameters that have state). */
  steps: Record<string, number>;
  /** Per-parameter buffers: `"<index>.<buffer>"` → f32 tensor. */
  state: Map<string, Tensor>;
}

export abstract class Optimizer<H extends GroupOptions = GroupOptions> {
  readonly paramGroups: ParamGroup<H>[];
  protected readonly state = new Map<Tensor, ParamState>();

  protected constructor(params: ParamsArg<H>, defaults: H) {
    const groups = params.length > 0 && !(params[0] instanceof Tensor)
      ? (params as Array<Partial<H> & { params: Tensor[] }>)
      : [{ params: params as Tensor[] } as Partial<H> & { params: Tensor[] }];
    this.paramGroups = groups.map((g) => ({ ...defaults, ...g, params: [...g.params] }) as ParamGroup<H>);
    const seen = new Set<Tensor>();
    for (const p of this.allParams()) {
      if (seen.has(p)) throw new Error(`${this.constructor.name}: a parameter appears in more than one place`);
      seen.add(p);
      if (p.dtype !== 'f32') throw new Error(`${this.constructor.name}: parameters must be f32 (got ${p.dtype})`);
    }
  }

  /** Update every parameter that has a gradient. */
  step(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (!p.grad) continue;
        let st = this.state.get(p);
        if (!st) { st = { step: 0, buffers: {} }; this.state.set(p, st); }
        if (p.grad.numel !== p.numel) {
          throw new Error(`${this.constructor.name}: gradient has shape [${p.grad.shape}], parameter [${p.shape}]`);
        }
        st.step++;
        this.update(f32Storage(p, 'optimizer parameter'), readF32(p.grad), st, group);
      }
    }
  }

  /** One parameter's update, in place on its storage. `state.step` is already incremented (1 on the first step). */
  protected abstract update(param: Float32Array, grad: Float32Array, state: ParamState, group: ParamGroup<H>): void;

  zeroGrad(): void {
    for (const p of this.allParams()) p.grad = null;
  }

  /** Set the learning rate of every group (LR schedules call this each step). */
  setLr(lr: number): void {
    for (const g of this.paramGroups) g.lr = lr;
  }

  get lr(): number {
    return this.paramGroups[0].lr;
  }

  allParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** Buffer `name` for a parameter, created zero-filled on first use. */
  protected buffer(state: ParamState, name: string, n: number): Float32Array {
    return (state.buffers[name] ??= new Float32Array(n));
  }

  stateDict(): OptimizerStateDict {
    const params = this.allParams();
    const steps: Record<string, number> = {};
    const state = new Map<string, Tensor>();
    params.forEach((p, i) => {
      const st = this.state.get(p);
      if (!st) return;
      steps[i] = st.step;
      for (const [name, buf] of Object.entries(st.buffers)) {
        state.set(`${i}.${name}`, fromTypedArray(buf.slice(), [...p.shape], 'f32'));
      }
    });
    let index = 0;
    const groups = this.paramGroups.map((g) => {
      const { params: ps, ...hyper } = g;
      const ids = ps.map(() => index++);
      return { hyper: { ...(hyper as unknown as Record<string, number | boolean>) }, params: ids };
    });
    return { type: this.constructor.name, groups, steps, state };
  }

  /** Restore from `stateDict()` output; the optimiser must have been built over the same parameters. */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.type !== this.constructor.name) throw new Error(`loadStateDict: state is for ${sd.type}, this is ${this.constructor.name}`);
    if (sd.groups.length !== this.paramGroups.length) {
      throw new Error(`loadStateDict: state has ${sd.groups.length} param groups, optimiser has ${this.paramGroups.length}`);
    }
    sd.groups.forEach((g, gi) => {
      if (g.params.length !== this.paramGroups[gi].params.length) {
        throw new Error(`loadStateDict: group ${gi} has ${g.params.length} parameters in the state, ${this.paramGroups[gi].params.length} here`);
      }
    });
    const params = this.allParams();
    const restored = new Map<Tensor, ParamState>();
    for (const [key, t] of sd.state) {
      const dot = key.indexOf('.');
      const i = Number(key.slice(0, dot));
      const name = key.slice(dot + 1);
      const p = params[i];
      if (!p || dot < 0) throw new Error(`loadStateDict: state key "${key}" names no parameter`);
      if (t.numel !== p.numel) throw new Error(`loadStateDict: "${key}" has ${t.numel} values, parameter ${i} has ${p.numel}`);
      let st = restored.get(p);
      if (!st) { st = { step: sd.steps[i] ?? 0, buffers: {} }; restored.set(p, st); }
      st.buffers[name] = readF32(t).slice();
    }
    for (const [i, step] of Object.entries(sd.steps)) {
      const p = params[Number(i)];
      if (!p) throw new Error(`loadStateDict: step count for parameter ${i}, which does not exist`);
      if (!restored.has(p)) restored.set(p, { step, buffers: {} });
    }
    this.state.clear();
    for (const [p, st] of restored) this.state.set(p, st);
    sd.groups.forEach((g, gi) => Object.assign(this.paramGroups[gi], g.hyper));
  }
}

// ------------------------------------------------------------------------------------------ SGD

export interface SGDOptions extends GroupOptions {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

/**
 * SGD as in PyTorch: g = grad + wd·p; with momentum, buf = g on the first step, then
 * buf = momentum·buf + (1 − dampening)·g; the step uses buf (or g + momentum·buf with Nesterov).
 */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ParamsArg<SGDOptions>, opts: Partial<SGDOptions> & { lr: number }) {
    const defaults: SGDOptions = { weightDecay: 0, momentum: 0, dampening: 0, nesterov: false, ...opts };
    if (defaults.nesterov && (defaults.momentum <= 0 || defaults.dampening !== 0)) {
      throw new Error('SGD: Nesterov momentum needs momentum > 0 and dampening = 0');
    }
    super(params, defaults);
  }

  protected update(p: Float32Array, grad: Float32Array, st: ParamState, h: ParamGroup<SGDOptions>): void {
    const { lr, weightDecay: wd, momentum, dampening, nesterov } = h;
    const first = st.buffers.momentum_buffer === undefined;
    const buf = momentum !== 0 ? this.buffer(st, 'momentum_buffer', p.length) : null;
    for (let i = 0; i < p.length; i++) {
      let g = grad[i] + wd * p[i];
      if (buf) {
        buf[i] = first ? g : momentum * buf[i] + (1 - dampening) * g;
        g = nesterov ? g + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * g;
    }
  }
}

// ------------------------------------------------------------------------------------------ Adam / AdamW

export interface AdamOptions extends GroupOptions {
  beta1: number;
  beta2: number;
  eps: number;
  amsgrad: boolean;
}

/**
 * Adam (Kingma & Ba) as in PyTorch. With `decoupled` (AdamW, Loshchilov & Hutter) weight decay shrinks the
 * parameter directly, p ← p·(1 − lr·wd); otherwise (Adam) it is L2 added to the gradient. Then
 *   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,
 *   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps)       (eps outside the root, after bias correction)
 */
class AdamBase extends Optimizer<AdamOptions> {
  private readonly decoupled: boolean;

  constructor(params: ParamsArg<AdamOptions>, defaults: AdamOptions, decoupled: boolean) {
    super(params, defaults);
    this.decoupled = decoupled;
  }

  protected update(p: Float32Array, grad: Float32Array, st: ParamState, h: ParamGroup<AdamOptions>): void {
    const { lr, weightDecay: wd, beta1, beta2, eps, amsgrad } = h;
    const m = this.buffer(st, 'exp_avg', p.length);
    const v = this.buffer(st, 'exp_avg_sq', p.length);
    const vMax = amsgrad ? this.buffer(st, 'max_exp_avg_sq', p.length) : null;
    adamUpdate(p, grad, m, v, vMax, {
      beta1, beta2, eps,
      stepSize: lr / (1 - Math.pow(beta1, st.step)),
      bc2Sqrt: Math.sqrt(1 - Math.pow(beta2, st.step)),
      shrink: this.decoupled ? 1 - lr * wd : 1,
      l2: this.decoupled ? 0 : wd,
    });
  }
}

export class Adam extends AdamBase {
  constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super(params, { lr: 1e-3, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false, ...opts }, false);
  }
}

/** AdamW; weight decay defaults to 0.01 as in PyTorch. */
export class AdamW extends AdamBase {
  constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super(params, { lr: 1e-3, weightDecay: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false, ...opts }, true);
  }
}

// ------------------------------------------------------------------------------------------ clipping

/**
 * Scale all gradients so their global L2 norm is at most maxNorm (PyTorch's clip_grad_norm_, including its
 * 1e-6 guard). Returns the norm before clipping. Parameters without gradients are skipped.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  const withGrad = [...params].filter((p) => p.grad);
  let sumSq = 0;
  for (const p of withGrad) {
    const g = readF32(p.grad!);
    for (let i = 0; i < g.length; i++) sumSq += g[i] * g[i];
  }
  const total = Math.sqrt(sumSq);
  const coef = maxNorm / (total + 1e-6);
  if (coef < 1) {
    for (const p of withGrad) {
      const g = p.grad!;
      if (g.dtype === 'f32' && g.isContiguous()) {
        const s = f32Storage(g);
        for (let i = 0; i < s.length; i++) s[i] *= coef;
      } else {
        // Non-dense gradient: write a scaled dense copy instead (a view's storage may be shared).
        const scaled = readF32(g).map((x) => x * coef);
        p.grad = fromTypedArray(scaled, [...g.shape], 'f32');
      }
    }
  }
  return total;
}
