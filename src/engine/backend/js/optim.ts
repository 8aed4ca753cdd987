/** Optimiser updates, element by element (the reference for the native kernels). */
import type { AdamStepHyper, F32 } from '../kernels.js';

export function adamStep(p: F32, grad: F32, m: F32, v: F32, vMax: F32 | null, h: AdamStepHyper): void {
  const { beta1, beta2, eps, stepSize, bc2Sqrt, shrink, l2 } = h;
  for (let i = 0; i < p.length; i++) {
    const g = grad[i]! + l2 * p[i]!;
    m[i] = beta1 * m[i]! + (1 - beta1) * g;
    v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
    let second = v[i]!;
    if (vMax) { if (second > vMax[i]!) vMax[i] = second; second = vMax[i]!; }
    p[i] = p[i]! * shrink - stepSize * m[i]! / (Math.sqrt(second) / bc2Sqrt + eps);
  }
}
