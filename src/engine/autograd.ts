/**
 * Reverse-mode autograd on a tape, in the micrograd manner: every op that produces a tensor from inputs
 * needing gradients records a `GradFn` (its inputs and a closure mapping the output gradient to input
 * gradients). `backward()` orders the graph topologically and runs the closures in reverse,
 * accumulating (never assigning) gradients so a tensor used twice receives both contributions.
 */
import { type Storage, endTracking, recycleF32, startTracking } from './dtype.js';
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
  // Gradient buffers this pass allocated go back to emptyF32's pool once no pending gradient uses their
  // storage any more (gradients may be views of one another, so pending ones are counted per storage).
  // A stored gradient (.grad) is a copy, or a buffer taken out of the tracked set when it is adopted, so
  // it is never recycled.
  const pending = new Map<Storage, number>();
  const hold = (g: Tensor): void => { pending.set(g.data, (pending.get(g.data) ?? 0) + 1); };
  const release = (g: Tensor): void => {
    const n = pending.get(g.data)! - 1;
    if (n > 0) pending.set(g.data, n); else pending.delete(g.data);
  };
  const tracking = startTracking();
  const recycleIfDone = (g: Tensor): void => {
    const data = g.data;
    if (data instanceof Float32Array && !pending.has(data) && tracking.set.has(data)) {
      tracking.set.delete(data);   // once only, even if several finished gradients share it
      recycleF32(data);
    }
  };
  const ownsWhole = (g: Tensor): boolean => g.data instanceof Float32Array && g.offset === 0 &&
    g.data.length === g.numel && g.isContiguous() && !pending.has(g.data) && tracking.set.has(g.data);
  hold(grad);
  try {
    noGrad(() => {
      for (let i = order.length - 1; i >= 0; i--) {
        const t = order[i];
        const g = grads.get(t);
        if (!g) continue;
        grads.delete(t);
        release(g);
        // A stored gradient gets its own dense buffer: `g` may be a view shared with other gradients.
        // One this pass allocated, that nothing pending shares, is adopted as it is (no copy; never recycled).
        if (!t.gradFn || t.retainsGrad) {
          if (t.grad) t.grad = add(t.grad, g);
          else if (ownsWhole(g)) { tracking.set.delete(g.data as Float32Array); t.grad = g; }
          else t.grad = ownCopy(g);
        }
        if (!t.gradFn) { recycleIfDone(g); continue; }
        const inputGrads = t.gradFn.backward(g);
        const done = [g];
        t.gradFn.inputs.forEach((inp, j) => {
          const gi = inputGrads[j];
          if (!gi || !inp.requiresGrad) { if (gi) done.push(gi); return; }
          if (gi.shape.length !== inp.shape.length || gi.shape.some((d, k) => d !== inp.shape[k])) {
            throw new Error(`autograd: ${t.gradFn!.name} returned a gradient of shape [${gi.shape}] for an input of shape [${inp.shape}]`);
          }
          const prev = grads.get(inp);
          const next = prev ? add(prev, gi) : gi;
          if (prev) { release(prev); done.push(prev, gi); }
          hold(next);
          grads.set(inp, next);
        });
        for (const d of done) recycleIfDone(d);
      }
    });
  } finally {
    endTracking(tracking);
  }
}
