/** Tensor constructors. Random ones draw from a seeded Philox stream (the default one unless given). */
import { Tensor, type Shape, checkShape, numelOf } from '../tensor.js';
import { type DType, type Storage, allocStorage, storageMatches } from '../dtype.js';
import { type Rng, getDefaultRng } from '../rng.js';
import { cast } from './view.js';

export interface CreateOptions { dtype?: DType; requiresGrad?: boolean }
export interface RandomOptions extends CreateOptions { rng?: Rng }

function finish(t: Tensor, opts: CreateOptions): Tensor {
  const out = opts.dtype && opts.dtype !== t.dtype ? cast(t, opts.dtype) : t;
  if (opts.requiresGrad) out.requiresGrad_(true);
  return out;
}

type Nested = number | boolean | Nested[];

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) { shape.push(cur.length); cur = cur[0] as Nested; }
  return shape;
}

/** From nested arrays, a typed array (+ shape) or a number. */
export function tensor(data: Nested | ArrayLike<number>, opts: CreateOptions & { shape?: Shape } = {}): Tensor {
  if (ArrayBuffer.isView(data)) {
    const arr = data as unknown as ArrayLike<number>;
    const shape = opts.shape ?? [arr.length];
    if (numelOf(shape) !== arr.length) throw new Error(`tensor: ${arr.length} values do not fill shape [${shape}]`);
    return finish(new Tensor(Float32Array.from(arr), shape, 'f32'), opts);
  }
  const shape = inferShape(data as Nested);
  const flat: (number | boolean)[] = Array.isArray(data) ? ((data as unknown[]).flat(Infinity) as (number | boolean)[]) : [data as number];
  if (flat.length !== numelOf(shape)) throw new Error(`tensor: ragged nested array (shape [${shape}] but ${flat.length} values)`);
  const values = Float32Array.from(flat, (v) => Number(v));
  const target = opts.shape ?? shape;
  if (numelOf(target) !== values.length) throw new Error(`tensor: ${values.length} values do not fill shape [${target}]`);
  return finish(new Tensor(values, target, 'f32'), opts);
}

/** Wrap a typed array as a tensor without copying (dtype must match the array type). */
export function fromTypedArray(data: Storage, shape: Shape, dtype: DType = 'f32'): Tensor {
  checkShape(shape);
  if (!storageMatches(dtype, data)) throw new Error(`fromTypedArray: ${data.constructor.name} cannot hold ${dtype}`);
  if (numelOf(shape) !== data.length) throw new Error(`fromTypedArray: ${data.length} values for shape [${shape}]`);
  return new Tensor(data, shape, dtype);
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  checkShape(shape);
  const dtype = opts.dtype ?? 'f32';
  const data = allocStorage(dtype, numelOf(shape));
  if (value !== 0) {
    if (dtype === 'f32' || dtype === 'i32') (data as Float32Array).fill(value);
    else return finish(full(shape, value), opts);
  }
  const t = new Tensor(data, shape, dtype);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

export const zeros = (shape: Shape, opts: CreateOptions = {}) => full(shape, 0, opts);
export const ones = (shape: Shape, opts: CreateOptions = {}) => full(shape, 1, opts);
export const zerosLike = (t: Tensor, opts: CreateOptions = {}) => full(t.shape, 0, opts);
export const onesLike = (t: Tensor, opts: CreateOptions = {}) => full(t.shape, 1, opts);
export const fullLike = (t: Tensor, v: number, opts: CreateOptions = {}) => full(t.shape, v, opts);

export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) { end = start; start = 0; }
  if (step === 0) throw new Error('arange: step must not be 0');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = start + i * step;
  return finish(new Tensor(data, [n], 'f32'), opts);
}

export function linspace(start: number, end: number, steps: number, opts: CreateOptions = {}): Tensor {
  const data = new Float32Array(steps);
  for (let i = 0; i < steps; i++) data[i] = steps === 1 ? start : start + ((end - start) * i) / (steps - 1);
  return finish(new Tensor(data, [steps], 'f32'), opts);
}

export function eye(n: number, m = n, opts: CreateOptions = {}): Tensor {
  const data = new Float32Array(n * m);
  for (let i = 0; i < Math.min(n, m); i++) data[i * m + i] = 1;
  return finish(new Tensor(data, [n, m], 'f32'), opts);
}

export function randn(shape: Shape, opts: RandomOptions = {}): Tensor {
  checkShape(shape);
  const data = Float32Array.from((opts.rng ?? getDefaultRng()).normal(numelOf(shape)));
  return finish(new Tensor(data, shape, 'f32'), opts);
}

export function rand(shape: Shape, opts: RandomOptions = {}): Tensor {
  checkShape(shape);
  return finish(new Tensor((opts.rng ?? getDefaultRng()).uniform(numelOf(shape)), shape, 'f32'), opts);
}

/** Integers in [low, high) as i32. */
export function randint(low: number, high: number, shape: Shape, opts: { rng?: Rng } = {}): Tensor {
  checkShape(shape);
  return new Tensor((opts.rng ?? getDefaultRng()).integers(numelOf(shape), low, high), shape, 'i32');
}

export const randnLike = (t: Tensor, opts: RandomOptions = {}) => randn(t.shape, opts);
