/**
 * Learning-rate schedules: pure functions of the step number (0-based, the number of optimiser steps already
 * taken), so a resumed run needs only its step count. Conventions follow diffusers/transformers
 * (`get_*_schedule_with_warmup`): during warm-up lr = base · step / warmupSteps, so step 0 uses lr 0.
 *
 *   const sched = new CosineSchedule({ lr: 1e-3, warmupSteps: 100, totalSteps: 10_000 });
 *   for (let step = 0; step < total; step++) { sched.apply(opt, step); …; opt.step(); }
 */

export interface LrSchedule {
  lrAt(step: number): number;
}

interface Settable {
  setLr(lr: number): void;
}

abstract class Schedule implements LrSchedule {
  abstract lrAt(step: number): number;
  /** Set the optimiser's learning rate for `step` and return it. */
  apply(optimizer: Settable, step: number): number {
    const lr = this.lrAt(step);
    optimizer.setLr(lr);
    return lr;
  }
}

/** Linear ramp from 0 to 1 over `warmupSteps`; 1 when there is no warm-up. */
function warmupFactor(step: number, warmupSteps: number): number {
  return step < warmupSteps ? step / Math.max(1, warmupSteps) : 1;
}

/** Constant lr, with an optional linear warm-up. */
export class ConstantSchedule extends Schedule {
  constructor(readonly opts: { lr: number; warmupSteps?: number }) { super(); }
  lrAt(step: number): number {
    return this.opts.lr * warmupFactor(step, this.opts.warmupSteps ?? 0);
  }
}

/** Linear warm-up to `lr`, then linear decay to `minLr` (default 0) at `totalSteps`. */
export class LinearSchedule extends Schedule {
  constructor(readonly opts: { lr: number; warmupSteps?: number; totalSteps: number; minLr?: number }) { super(); }
  lrAt(step: number): number {
    const { lr, warmupSteps = 0, totalSteps, minLr = 0 } = this.opts;
    if (step < warmupSteps) return lr * warmupFactor(step, warmupSteps);
    const left = Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
    return minLr + (lr - minLr) * left;
  }
}

/**
 * Linear warm-up to `lr`, then half a cosine down to `minLr` (default 0) at `totalSteps`; `cycles` > 0.5
 * gives more oscillations, as in diffusers.
 */
export class CosineSchedule extends Schedule {
  constructor(readonly opts: { lr: number; warmupSteps?: number; totalSteps: number; minLr?: number; cycles?: number }) { super(); }
  lrAt(step: number): number {
    const { lr, warmupSteps = 0, totalSteps, minLr = 0, cycles = 0.5 } = this.opts;
    if (step < warmupSteps) return lr * warmupFactor(step, warmupSteps);
    const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
    const factor = Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    return minLr + (lr - minLr) * factor;
  }
}

/** Functional forms, for callers that prefer a closure. */
export function constantLr(lr: number, warmupSteps = 0): (step: number) => number {
  const s = new ConstantSchedule({ lr, warmupSteps });
  return (step) => s.lrAt(step);
}

export function cosineLr(lr: number, warmupSteps: number, totalSteps: number, minLr = 0): (step: number) => number {
  const s = new CosineSchedule({ lr, warmupSteps, totalSteps, minLr });
  return (step) => s.lrAt(step);
}
