/**
 * Reverse-mode autograd on a tape, in the micrograd manner: every op that produces a tensor from inputs
 * needing gradients records a `GradFn` (its inputs and a closure mapping the output gradient to input
 * gradients). `backward()` orders the graph topologically and runs the closures in reverse,
 * accumulating (never assigning) gradients so a tensor used twice receives both contributions.
 */
import type { Tensor } from './tensor.js';

export interface GradFn {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  /** Gradients for each input (null where an input needs none), given the output's gradient. */
  backward(grad: Tensor): (Tensor | null)[];
}

let gradEnabled = true;

export function isGradEnabled(): boolean { return gradEnabled; }

/** Run fn without recording the tape (inference, optimiser updates, backward closures). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

/** Run fn with recording switched on or off. */
export function withGrad<T>(enabled: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = enabled;
  try { return fn(); } finally { gradEnabled = prev; }
}

function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: deep graphs (long training unrolls) must not overflow the JS stack.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const inputs = top[0].gradFn?.inputs ?? [];
    if (top[1] < inputs.length) {
      const next = inputs[top[1]++];
      if (next.requiresGrad && !seen.has(next)) { seen.add(next); stack.push([next, 0]); }
    } else {
      order.push(top[0]);
      stack.pop();
    }
  }
  return order; // inputs before the tensors made from them
}

/**
 * Back-propagate from `root`. Leaf tensors (no gradFn) with requiresGrad accumulate into `.grad`;
 * intermediate gradients live only for the duration of the pass unless `retainGrad()` was called.
 */
export function backward(root: Tensor, grad: Tensor, add: (a: Tensor, b: Tensor) => Tensor,
                         ownCopy: (g: Tensor) => Tensor): void {
  const order = topoSort(root);
  const grads = new Map<Tensor, Tensor>([[root, grad]]);
  noGrad(() => {
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      // A stored gradient gets its own dense buffer: `g` may be a view shared with other gradients.
      if (!t.gradFn || t.retainsGrad) t.grad = t.grad ? add(t.grad, g) : ownCopy(g);
      if (!t.gradFn) continue;
      const inputGrads = t.gradFn.backward(g);
      t.gradFn.inputs.forEach((inp, j) => {
        const gi = inputGrads[j];
        if (!gi || !inp.requiresGrad) return;
        if (gi.shape.length !== inp.shape.length || gi.shape.some((d, k) => d !== inp.shape[k])) {
          throw new Error(`autograd: ${t.gradFn!.name} returned a gradient of shape [${gi.shape}] for an input of shape [${inp.shape}]`);
        }
        const prev = grads.get(inp);
        grads.set(inp, prev ? add(prev, gi) : gi);
      });
    }
  });
}
