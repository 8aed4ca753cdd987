/**
 * Parameter initialisation, matching PyTorch's layer defaults. Values come from the engine's seeded Philox
 * generator (the default one unless a layer is given its own), so a seed fixes a model's weights.
 */
import { Rng, getDefaultRng, fromTypedArray, type Tensor } from '../engine/index.js';
import { numelOf } from './storage.js';

/** A trainable f32 tensor with the given values. */
export function parameter(data: Float32Array, shape: readonly number[]): Tensor {
  return fromTypedArray(data, [...shape], 'f32').requiresGrad_(true);
}

/** U(−bound, bound). */
export function uniform(shape: readonly number[], bound: number, rng: Rng = getDefaultRng()): Tensor {
  const u = rng.uniform(numelOf(shape)); // (0, 1)
  for (let i = 0; i < u.length; i++) u[i] = (2 * u[i] - 1) * bound;
  return parameter(u, shape);
}

/** N(mean, std²). */
export function normal(shape: readonly number[], std = 1, mean = 0, rng: Rng = getDefaultRng()): Tensor {
  const z = rng.normal(numelOf(shape));
  for (let i = 0; i < z.length; i++) z[i] = mean + std * z[i];
  return parameter(z.length === numelOf(shape) ? z : z.slice(0, numelOf(shape)), shape);
}

export function constant(shape: readonly number[], value: number): Tensor {
  return parameter(new Float32Array(numelOf(shape)).fill(value), shape);
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
