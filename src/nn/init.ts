/**
 * Parameter initialisation, matching PyTorch's layer defaults. Values come from the engine's seeded Philox
 * generator (the default one unless a layer is given its own), so a seed fixes a model's weights.
 */
import { Rng, getDefaultRng, fromTypedArray, Tensor } from '../engine/index.js';
import { numelOf } from './storage.js';

let placeholders = false;

/**
 * Build modules without initialising or allocating their weights: every parameter is a shape-only
 * placeholder until `loadStateDict` puts the checkpoint's tensor in its place. Loading an 860 M-parameter
 * U-Net this way never holds random weights, and counting parameters of a real config allocates nothing.
 */
export function withoutInit<T>(build: () => T): T {
  const prev = placeholders;
  placeholders = true;
  try { return build(); } finally { placeholders = prev; }
}

/** A parameter made under withoutInit that has not been loaded yet. */
export function isPlaceholder(t: Tensor): boolean {
  return t.data.length < t.numel;
}

/** A trainable f32 tensor with the given values (values are computed lazily by callers; see below). */
export function parameter(data: Float32Array, shape: readonly number[]): Tensor {
  return fromTypedArray(data, [...shape], 'f32').requiresGrad_(true);
}

/** A parameter of `shape` whose values come from `fill` — skipped entirely under withoutInit. */
function initParameter(shape: readonly number[], fill: (n: number) => Float32Array): Tensor {
  if (placeholders) return new Tensor(new Float32Array(0), [...shape], 'f32').requiresGrad_(true);
  return parameter(fill(numelOf(shape)), shape);
}

/** U(−bound, bound). */
export function uniform(shape: readonly number[], bound: number, rng: Rng = getDefaultRng()): Tensor {
  return initParameter(shape, (n) => {
    const u = rng.uniform(n); // (0, 1)
    for (let i = 0; i < u.length; i++) u[i] = (2 * u[i] - 1) * bound;
    return u;
  });
}

/** N(mean, std²). */
export function normal(shape: readonly number[], std = 1, mean = 0, rng: Rng = getDefaultRng()): Tensor {
  return initParameter(shape, (n) => {
    const z = rng.normal(n);
    for (let i = 0; i < z.length; i++) z[i] = mean + std * z[i];
    return z.length === n ? z : z.slice(0, n);
  });
}

export function constant(shape: readonly number[], value: number): Tensor {
  return initParameter(shape, (n) => new Float32Array(n).fill(value));
}

/**
 * Fan-in of a weight as PyTorch computes it: dim 1 times the receptive field. For ConvTranspose weights
 * [in, out/groups, kh, kw] this is out/groups·kh·kw, which is what PyTorch uses too.
 */
export function fanIn(shape: readonly number[]): number {
  let receptive = 1;
  for (let i = 2; i < shape.length; i++) receptive *= shape[i];
  return (shape[1] ?? 1) * receptive;
}

/**
 * PyTorch's default for Linear/Conv weights, kaiming_uniform_(a=√5): bound = gain·√(3/fan_in) with
 * gain = √(2/(1+a²)) = √(1/3), i.e. bound = 1/√fan_in.
 */
export function kaimingUniformDefault(shape: readonly number[], rng?: Rng): Tensor {
  return uniform(shape, 1 / Math.sqrt(fanIn(shape)), rng);
}

/** PyTorch's default bias: U(±1/√fan_in) with the weight's fan-in. */
export function defaultBias(size: number, weightFanIn: number, rng?: Rng): Tensor {
  return uniform([size], weightFanIn > 0 ? 1 / Math.sqrt(weightFanIn) : 0, rng);
}
