/**
 * Tensor: a typed-array storage seen through shape, strides and offset, plus the autograd fields.
 * The class holds no maths: every method delegates to the op modules, where each op's forward and
 * backward sit side by side.
 */
import { type DType, type Storage, allocStorage, storageMatches } from './dtype.js';
import { type GradFn, backward as runBackward } from './autograd.js';
import * as view from './ops/view.js';
import * as ew from './ops/elementwise.js';
import * as red from './ops/reduce.js';
import * as la from './ops/linalg.js';
import * as nnf from './ops/nn.js';
import * as shp from './ops/shape.js';
import { toDense } from './ops/data.js';
import { isDense } from './backend/js/strided.js';

export type Shape = readonly number[];
export type Scalar = number;
export type TensorLike = Tensor | number;

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) { strides[i] = s; s *= shape[i]; }
  return strides;
}

export function numelOf(shape: Shape): number {
  let n = 1;
  for (let i = 0; i < shape.length; i++) n *= shape[i];
  return n;
}

export function sameShape(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function checkShape(shape: Shape, what = 'shape'): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what} must hold non-negative integers, got [${shape}]`);
  }
}

export class Tensor {
  readonly data: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;

  requiresGrad = false;
  grad: Tensor | null = null;
  gradFn: GradFn | null = null;
  retainsGrad = false;

  constructor(data: Storage, shape: Shape, dtype: DType, strides?: Shape, offset = 0) {
    if (!storageMatches(dtype, data)) throw new Error(`Tensor: storage ${data.constructor.name} does not hold dtype ${dtype}`);
    this.data = data;
    // A frozen shape (another tensor's) can be shared; anything else is copied so callers cannot change it.
    this.shape = Object.isFrozen(shape) ? shape : Object.freeze([...shape]);
    this.strides = strides ? (Object.isFrozen(strides) ? strides : Object.freeze([...strides])) : Object.freeze(contiguousStrides(shape));
    this.offset = offset;
    this.dtype = dtype;
    this.numel = numelOf(shape);
  }

  static empty(shape: Shape, dtype: DType = 'f32'): Tensor {
    checkShape(shape);
    return new Tensor(allocStorage(dtype, numelOf(shape)), shape, dtype);
  }

  /** number of elements (the product of the shape) */
  readonly numel: number;
  get ndim(): number { return this.shape.length; }
  size(dim?: number): number | readonly number[] {
    return dim === undefined ? this.shape : this.shape[view.normDim(dim, this.ndim)];
  }
  dim(d: number): number { return this.shape[view.normDim(d, this.ndim)]; }

  /** True when the elements are laid out densely in row-major order (offset may be non-zero). */
  isContiguous(): boolean { return isDense(this.shape, this.strides); }

  // ------------------------------------------------------------------ data out
  /** Dense row-major f32 data. Returns the storage itself (or a subarray) when no copy is needed: do not mutate. */
  toFloat32Array(): Float32Array { return toDense(this); }
  toArray(): any { return view.toNested(this); }
  item(): number {
    if (this.numel !== 1) throw new Error(`item(): tensor has ${this.numel} elements, expected 1`);
    const v = this.data[this.offset];
    return typeof v === 'bigint' ? Number(v) : v;
  }
  toString(): string { return `Tensor(shape=[${this.shape}], dtype=${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`; }

  // ------------------------------------------------------------------ autograd
  requiresGrad_(flag = true): this {
    if (flag && this.dtype !== 'f32') throw new Error(`requiresGrad needs an f32 tensor, this one is ${this.dtype}`);
    this.requiresGrad = flag;
    return this;
  }
  retainGrad(): this { this.retainsGrad = true; return this; }
  zeroGrad(): void { this.grad = null; }
  detach(): Tensor { return new Tensor(this.data, this.shape, this.dtype, this.strides, this.offset); }
  /** Back-propagate from this tensor; `grad` defaults to 1 for a one-element tensor. */
  backward(grad?: Tensor): void {
    if (!this.requiresGrad) throw new Error('backward(): tensor does not require grad (no input required grad, or it was made under noGrad)');
    if (!grad) {
      if (this.numel !== 1) throw new Error(`backward(): gradient must be given for a tensor of shape [${this.shape}]`);
      grad = new Tensor(new Float32Array([1]), this.shape, 'f32');
    }
    runBackward(this, grad, ew.add, (g) => view.cloneData(g));
  }

  // ------------------------------------------------------------------ views and copies
  contiguous(): Tensor { return view.contiguous(this); }
  clone(): Tensor { return view.clone(this); }
  reshape(...shape: (number | Shape)[]): Tensor { return view.reshape(this, flatArgs(shape)); }
  view(...shape: (number | Shape)[]): Tensor { return view.reshape(this, flatArgs(shape)); }
  permute(...dims: (number | Shape)[]): Tensor { return view.permute(this, flatArgs(dims)); }
  transpose(a: number, b: number): Tensor { return view.transpose(this, a, b); }
  t(): Tensor {
    if (this.ndim !== 2) throw new Error(`t() expects a 2-D tensor, got [${this.shape}]`);
    return view.transpose(this, 0, 1);
  }
  narrow(dim: number, start: number, length: number): Tensor { return view.narrow(this, dim, start, length); }
  slice(dim: number, start?: number, end?: number, step = 1): Tensor { return view.slice(this, dim, start, end, step); }
  select(dim: number, index: number): Tensor { return view.select(this, dim, index); }
  expand(...shape: (number | Shape)[]): Tensor { return view.expand(this, flatArgs(shape)); }
  expandAs(other: Tensor): Tensor { return view.expand(this, other.shape); }
  squeeze(dim?: number): Tensor { return view.squeeze(this, dim); }
  unsqueeze(dim: number): Tensor { return view.unsqueeze(this, dim); }
  flatten(start = 0, end = -1): Tensor { return view.flatten(this, start, end); }
  to(dtype: DType): Tensor { return view.cast(this, dtype); }
  float(): Tensor { return view.cast(this, 'f32'); }
  half(): Tensor { return view.cast(this, 'f16'); }
  bfloat16(): Tensor { return view.cast(this, 'bf16'); }

  // ------------------------------------------------------------------ elementwise
  add(o: TensorLike): Tensor { return ew.add(this, o); }
  sub(o: TensorLike): Tensor { return ew.sub(this, o); }
  mul(o: TensorLike): Tensor { return ew.mul(this, o); }
  div(o: TensorLike): Tensor { return ew.div(this, o); }
  pow(o: TensorLike): Tensor { return ew.pow(this, o); }
  maximum(o: TensorLike): Tensor { return ew.maximum(this, o); }
  minimum(o: TensorLike): Tensor { return ew.minimum(this, o); }
  neg(): Tensor { return ew.neg(this); }
  exp(): Tensor { return ew.exp(this); }
  log(): Tensor { return ew.log(this); }
  sqrt(): Tensor { return ew.sqrt(this); }
  rsqrt(): Tensor { return ew.rsqrt(this); }
  abs(): Tensor { return ew.abs(this); }
  sin(): Tensor { return ew.sin(this); }
  cos(): Tensor { return ew.cos(this); }
  tanh(): Tensor { return ew.tanh(this); }
  sigmoid(): Tensor { return ew.sigmoid(this); }
  relu(): Tensor { return ew.relu(this); }
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor { return ew.gelu(this, approximate); }
  quickGelu(): Tensor { return ew.quickGelu(this); }
  silu(): Tensor { return ew.silu(this); }
  erf(): Tensor { return ew.erf(this); }
  square(): Tensor { return ew.square(this); }
  reciprocal(): Tensor { return ew.reciprocal(this); }
  clamp(min?: number, max?: number): Tensor { return ew.clamp(this, min, max); }
  eq(o: TensorLike): Tensor { return ew.eq(this, o); }
  ne(o: TensorLike): Tensor { return ew.ne(this, o); }
  lt(o: TensorLike): Tensor { return ew.lt(this, o); }
  le(o: TensorLike): Tensor { return ew.le(this, o); }
  gt(o: TensorLike): Tensor { return ew.gt(this, o); }
  ge(o: TensorLike): Tensor { return ew.ge(this, o); }

  // ------------------------------------------------------------------ reductions
  sum(dim?: number | number[], keepdim = false): Tensor { return red.sum(this, dim, keepdim); }
  mean(dim?: number | number[], keepdim = false): Tensor { return red.mean(this, dim, keepdim); }
  max(dim?: number | number[], keepdim = false): Tensor { return red.max(this, dim, keepdim); }
  min(dim?: number | number[], keepdim = false): Tensor { return red.min(this, dim, keepdim); }
  var(dim?: number | number[], opts?: red.VarOptions): Tensor { return red.variance(this, dim, opts); }
  std(dim?: number | number[], opts?: red.VarOptions): Tensor { return red.std(this, dim, opts); }
  argmax(dim?: number, keepdim = false): Tensor { return red.argmax(this, dim, keepdim); }
  argmin(dim?: number, keepdim = false): Tensor { return red.argmin(this, dim, keepdim); }
  logsumexp(dim?: number | number[], keepdim = false): Tensor { return red.logsumexp(this, dim, keepdim); }

  // ------------------------------------------------------------------ linear algebra, nn
  matmul(o: Tensor): Tensor { return la.matmul(this, o); }
  softmax(dim = -1): Tensor { return nnf.softmax(this, dim); }
  logSoftmax(dim = -1): Tensor { return nnf.logSoftmax(this, dim); }
  cumsum(dim: number): Tensor { return shp.cumsum(this, dim); }
  flip(dims: number | number[]): Tensor { return shp.flip(this, dims); }
  repeat(...reps: (number | Shape)[]): Tensor { return shp.repeat(this, flatArgs(reps)); }
  split(sizeOrSizes: number | number[], dim = 0): Tensor[] { return shp.split(this, sizeOrSizes, dim); }
  chunk(chunks: number, dim = 0): Tensor[] { return shp.chunk(this, chunks, dim); }
  gather(dim: number, index: Tensor): Tensor { return shp.gather(this, dim, index); }
  indexSelect(dim: number, index: Tensor): Tensor { return shp.indexSelect(this, dim, index); }
}

function flatArgs(args: (number | Shape)[]): number[] {
  return args.length === 1 && typeof args[0] !== 'number' ? [...args[0]] : (args as number[]);
}
