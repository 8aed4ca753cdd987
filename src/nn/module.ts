/**
 * Module: the base class of every layer and model.
 *
 * Like PyTorch, a module discovers its state by walking its own fields, so layers are plain classes:
 *   - a field holding a Tensor is a parameter (unless registered as a buffer, or its name starts with `_`,
 *     which marks caches and other transient tensors). Parameters stay parameters when frozen
 *     (requiresGrad false) or stored in f16/bf16 for inference.
 *   - `registerBuffer(name, t, persistent)` stores a non-trainable tensor (running stats, position ids…);
 *     non-persistent buffers are left out of the state dict.
 *   - a field holding a Module is a child; a field holding an array of Modules gives children `name.0`,
 *     `name.1`, … (ModuleList and Sequential name their children by index alone).
 * The dotted names match the official PyTorch checkpoints, so `loadStateDict` takes their safetensors as is.
 */
import { isPlaceholder } from './init.js';
import { Tensor, fromTypedArray } from '../engine/index.js';
import { denseElements, f32Storage, fmtShape, isDense, numelOf, readF32, sameShape, type Storage } from './storage.js';

type DType = Tensor['dtype'];

export interface LoadStateDictOptions {
  /** Require the keys to match exactly (default true). Shape mismatches are always an error. */
  strict?: boolean;
  /**
   * Adopt a 16-bit (f16/bf16) tensor from the file as is instead of widening it into the parameter's f32
   * storage: halves the memory of inference weights. The parameter is replaced (it will not train).
   */
  keepDtype?: boolean;
}

export interface LoadResult {
  missing: string[];
  unexpected: string[];
}

/** Where a tensor lives: its owner and field, so it can be replaced (dtype changes) as well as read. */
interface TensorSlot {
  owner: Module;
  field: string;
  kind: 'parameter' | 'buffer';
  persistent: boolean;
}

export class Module {
  training = true;
  /** Names of own fields that hold buffers (not parameters), and whether each goes into the state dict. */
  private readonly _buffers = new Map<string, boolean>();

  /** Register (or replace) a buffer: a tensor that is state but not trained. */
  registerBuffer(name: string, t: Tensor | null, persistent = true): void {
    this._buffers.set(name, persistent);
    (this as unknown as Record<string, unknown>)[name] = t;
  }

  // ------------------------------------------------------------------ traversal

  /** Direct children with their local names. ModuleList / Sequential override this to name by index. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [key, value] of Object.entries(this)) {
      if (key.startsWith('_')) continue;
      if (value instanceof Module) out.push([key, value]);
      else if (Array.isArray(value) && value.length > 0 && value.every((v) => v instanceof Module)) {
        value.forEach((m: Module, i: number) => out.push([`${key}.${i}`, m]));
      }
    }
    return out;
  }

  children(): Module[] {
    return this.namedChildren().map(([, m]) => m);
  }

  /** This module (name '') and every descendant, depth first, each once. */
  namedModules(prefix = '', seen = new Set<Module>()): [string, Module][] {
    if (seen.has(this)) return [];
    seen.add(this);
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.namedChildren()) {
      out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name, seen));
    }
    return out;
  }

  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** Own tensor fields (not descendants'), as slots. */
  private ownSlots(): [string, TensorSlot][] {
    const out: [string, TensorSlot][] = [];
    for (const [key, value] of Object.entries(this)) {
      if (!(value instanceof Tensor)) continue;
      const persistent = this._buffers.get(key);
      if (persistent !== undefined) out.push([key, { owner: this, field: key, kind: 'buffer', persistent }]);
      else if (!key.startsWith('_')) out.push([key, { owner: this, field: key, kind: 'parameter', persistent: true }]);
    }
    return out;
  }

  /** Every tensor slot in the tree under its dotted name. A tensor shared by two modules appears once. */
  private namedSlots(): [string, TensorSlot][] {
    const out: [string, TensorSlot][] = [];
    const seen = new Set<Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      for (const [field, slot] of m.ownSlots()) {
        const t = slotTensor(slot);
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([prefix ? `${prefix}.${field}` : field, slot]);
      }
    }
    return out;
  }

  namedParameters(): [string, Tensor][] {
    return this.namedSlots().filter(([, s]) => s.kind === 'parameter').map(([n, s]) => [n, slotTensor(s)]);
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  namedBuffers(): [string, Tensor][] {
    return this.namedSlots().filter(([, s]) => s.kind === 'buffer').map(([n, s]) => [n, slotTensor(s)]);
  }

  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  numParameters(onlyTrainable = false): number {
    let n = 0;
    for (const p of this.parameters()) if (!onlyTrainable || p.requiresGrad) n += p.numel;
    return n;
  }

  // ------------------------------------------------------------------ modes and gradients

  train(flag = true): this {
    for (const m of this.modules()) m.training = flag;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /** Switch every parameter's requiresGrad (freeze / unfreeze). */
  requiresGrad_(flag = true): this {
    for (const p of this.parameters()) if (p.dtype === 'f32') p.requiresGrad_(flag);
    return this;
  }

  /**
   * Convert floating parameters and buffers to `dtype`. 16-bit storage is for inference: those tensors do not
   * require gradients. Converting back to f32 makes parameters trainable again.
   */
  to(dtype: 'f32' | 'f16' | 'bf16'): this {
    for (const [, slot] of this.namedSlots()) {
      const t = slotTensor(slot);
      if (t.dtype === dtype || !(t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16')) continue;
      const converted = t.detach().to(dtype).contiguous();
      const owned = converted === t ? cloneTensor(t) : converted; // never share storage with the old tensor
      if (slot.kind === 'parameter' && dtype === 'f32') owned.requiresGrad_(true);
      setSlot(slot, owned);
    }
    return this;
  }

  // ------------------------------------------------------------------ state dict

  /** Parameters and persistent buffers under their dotted names (the tensors themselves, not copies). */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, slot] of this.namedSlots()) if (slot.persistent) out.set(name, slotTensor(slot));
    return out;
  }

  /**
   * Copy values from `sd` into this module's parameters and persistent buffers. Values are converted to each
   * parameter's dtype (unless `keepDtype`), and written into the existing storage so optimisers that hold
   * the parameters keep working. Every problem is reported in one error.
   */
  loadStateDict(sd: Map<string, Tensor> | Record<string, Tensor>, options: LoadStateDictOptions = {}): LoadResult {
    const { strict = true, keepDtype = false } = options;
    const source = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const slots = new Map(this.namedSlots().filter(([, s]) => s.persistent));

    const missing = [...slots.keys()].filter((k) => !source.has(k));
    const unexpected = [...source.keys()].filter((k) => !slots.has(k));
    const mismatched: string[] = [];
    for (const [name, slot] of slots) {
      const src = source.get(name);
      const dst = slotTensor(slot);
      if (src && !sameShape(src.shape, dst.shape)) {
        mismatched.push(`${name} expected ${fmtShape(dst.shape)} found ${fmtShape(src.shape)}`);
      }
    }
    if (mismatched.length || (strict && (missing.length || unexpected.length))) {
      const parts: string[] = [];
      if (strict && missing.length) parts.push(`${missing.length} missing key${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);
      if (strict && unexpected.length) parts.push(`${unexpected.length} unexpected: ${unexpected.join(', ')}`);
      if (mismatched.length) parts.push(`${mismatched.length} shape mismatch${mismatched.length > 1 ? 'es' : ''}: ${mismatched.join(', ')}`);
      throw new Error(`loadStateDict: ${parts.join('; ')}`);
    }

    const unloaded = missing.filter((k) => isPlaceholder(slotTensor(slots.get(k)!)));
    if (unloaded.length) {
      throw new Error(`loadStateDict: ${unloaded.length} parameter${unloaded.length > 1 ? 's were' : ' was'} built without values (withoutInit) and not in the state dict: ${unloaded.join(', ')}`);
    }
    for (const [name, slot] of slots) {
      const src = source.get(name);
      if (!src) continue;
      const dst = slotTensor(slot);
      const half = src.dtype === 'f16' || src.dtype === 'bf16';
      if (isPlaceholder(dst)) {
        // Take the loaded tensor's place instead of copying into storage that was never allocated.
        const value = (keepDtype && half) || src.dtype === dst.dtype ? cloneTensor(src) : src.to(dst.dtype).detach();
        if (dst.requiresGrad && value.dtype === 'f32') value.requiresGrad_(true);
        setSlot(slot, value);
      } else if (keepDtype && half && dst.dtype !== src.dtype) setSlot(slot, cloneTensor(src));
      else copyValues(dst, src, name);
    }
    return { missing, unexpected };
  }
}

function slotTensor(slot: TensorSlot): Tensor {
  return (slot.owner as unknown as Record<string, Tensor>)[slot.field];
}

function setSlot(slot: TensorSlot, t: Tensor): void {
  (slot.owner as unknown as Record<string, Tensor>)[slot.field] = t;
}

/** A dense copy with its own storage, same dtype, no autograd history. */
export function cloneTensor(t: Tensor): Tensor {
  const e = denseElements(t);
  const copy = e.slice() as Storage; // slice always copies; subarray windows must not leak shared storage
  return fromTypedArray(copy as never, [...t.shape], t.dtype);
}

/** Write src's values into dst's storage (in place), converting dtype as needed. */
export function copyValues(dst: Tensor, src: Tensor, name = 'tensor'): void {
  if (!isDense(dst)) throw new Error(`${name}: cannot load into a non-dense view`);
  if (dst.dtype === 'f32') {
    f32Storage(dst, name).set(readF32(src));
    return;
  }
  const converted = src.dtype === dst.dtype ? src : src.to(dst.dtype as DType);
  const from = denseElements(converted);
  const to = (dst.data as Storage).subarray(dst.offset, dst.offset + numelOf(dst.shape));
  (to as unknown as { set(a: ArrayLike<unknown>): void }).set(from as ArrayLike<unknown>);
}

/** A list of modules, named `0`, `1`, … in the state dict. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[];

  constructor(items: M[] = []) {
    super();
    this.items = [...items];
  }

  override namedChildren(): [string, Module][] {
    return this.items.map((m, i) => [String(i), m]);
  }

  get length(): number { return this.items.length; }
  at(i: number): M { return this.items[i < 0 ? this.items.length + i : i]; }
  push(...ms: M[]): void { this.items.push(...ms); }
  [Symbol.iterator](): Iterator<M> { return this.items[Symbol.iterator](); }
}

/** Modules by name (PyTorch's ModuleDict): children are named by their keys. */
export class ModuleDict<M extends Module = Module> extends Module {
  readonly items: Map<string, M>;

  constructor(items: Record<string, M> | Map<string, M> = {}) {
    super();
    this.items = new Map(items instanceof Map ? items : Object.entries(items));
  }

  override namedChildren(): [string, Module][] {
    return [...this.items];
  }

  get(key: string): M {
    const m = this.items.get(key);
    if (!m) throw new Error(`ModuleDict: no module "${key}"`);
    return m;
  }
  set(key: string, m: M): void { this.items.set(key, m); }
  has(key: string): boolean { return this.items.has(key); }
  keys(): string[] { return [...this.items.keys()]; }
}

/** A module with a one-tensor forward, the shape Sequential chains. */
export interface UnaryModule extends Module {
  forward(x: Tensor): Tensor;
}

/** Children `0`, `1`, … applied in order. */
export class Sequential extends ModuleList<UnaryModule> {
  constructor(...layers: UnaryModule[]) {
    super(layers);
  }

  forward(x: Tensor): Tensor {
    for (const layer of this.items) x = layer.forward(x);
    return x;
  }
}
