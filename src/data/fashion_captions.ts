/**
 * Descriptive captions for Fashion-MNIST, for captioning: a few templates per class ("a pair of trousers",
 * "an ankle boot", "a running shoe"), so a caption names what is in the picture and nothing else.
 *
 * The prompt-style captions of fashion_mnist.ts ("a photo of …", "a grayscale photo of …") suit a
 * text-conditioned generator, but their prefix cannot be read off the image; these can, up to the choice of
 * template, which is why evaluation compares a generated caption with every template of the true class.
 */
// rng.js directly, not the engine index: worker threads load this module and need no kernels.
import type { Rng } from '../engine/rng.js';

/** Per class (label order), the captions a sample of that class may get; the first is the plainest. */
export const FASHION_MNIST_DESCRIPTIONS: readonly (readonly string[])[] = [
  ['a t-shirt', 'a short-sleeved t-shirt', 'a plain t-shirt', 'a top with short sleeves'],
  ['a pair of trousers', 'a pair of pants', 'a pair of long trousers', 'trousers'],
  ['a pullover', 'a sweater', 'a long-sleeved pullover', 'a knitted sweater'],
  ['a dress', 'a long dress', 'a summer dress', 'a dress without sleeves'],
  ['a coat', 'a jacket', 'a long-sleeved coat', 'a winter coat'],
  ['a sandal', 'an open sandal', 'a summer sandal', 'a strappy sandal'],
  ['a shirt', 'a button-up shirt', 'a long-sleeved shirt', 'a casual shirt'],
  ['a sneaker', 'a running shoe', 'a sports shoe', 'a low sneaker'],
  ['a bag', 'a handbag', 'a tote bag', 'a shoulder bag'],
  ['an ankle boot', 'a boot', 'a short boot', 'a leather ankle boot'],
];

/** Every caption a sample of class `label` may get (the references of its evaluation). */
export function fashionMnistDescriptions(label: number): readonly string[] {
  const list = FASHION_MNIST_DESCRIPTIONS[label];
  if (list === undefined) throw new Error(`Fashion-MNIST label must be 0..9, got ${label}`);
  return list;
}

/** One descriptive caption of class `label`, the template drawn from `rng`. */
export function fashionMnistDescription(label: number, rng: Rng): string {
  const list = fashionMnistDescriptions(label);
  return list[rng.integers(1, 0, list.length)[0]];
}
