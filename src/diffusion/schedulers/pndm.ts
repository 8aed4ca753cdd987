/**
 * PNDM / PLMS: Liu, Ren, Lin, Zhao, "Pseudo Numerical Methods for Diffusion Models on Manifolds", ICLR 2022
 * (arXiv:2202.09778). Reproduces diffusers' `PNDMScheduler`: three pseudo Runge–Kutta steps (PRK, 4 model
 * calls each) start the linear multistep method (PLMS); with `skip_prk_steps` (Stable Diffusion's "PLMS")
 * PLMS starts alone, its first step being a pseudo-improved-Euler step that evaluates the model twice.
 */
import type { Tensor } from '../../engine/index.js';
import { spacedTimesteps } from '../schedules.js';
import { BaseScheduler, axpby, type StepOptions, type StepOutput } from './base.js';
import { bool, commonFields, parseConfig, type ConfigOf } from './config.js';

const FIELDS = {
  ...commonFields({ spacing: 'leading', predictionTypes: ['epsilon', 'v_prediction'] }),
  skipPrkSteps: bool(false),
  setAlphaToOne: bool(false),
};
export type PNDMConfig = ConfigOf<typeof FIELDS>;

const PNDM_ORDER = 4;

export class PNDMScheduler extends BaseScheduler<PNDMConfig> {
  readonly className = 'PNDMScheduler';
  private readonly finalAlphaCumprod: number;
  private prkTimesteps: number[] = [];
  /** Past ε estimates e_{t}, e_{t+δ}, … (newest last). */
  private ets: Tensor[] = [];
  private counter = 0;
  private curModelOutput: Tensor | null = null;
  private curSample: Tensor | null = null;

  constructor(json: Record<string, unknown> = {}) {
    super(parseConfig('PNDMScheduler', FIELDS, json));
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.schedule.alphasCumprod[0];
  }

  protected layout(steps: number): void {
    const c = this.config;
    const asc = spacedTimesteps(c.timestepSpacing, steps, c.numTrainTimesteps, { stepsOffset: c.stepsOffset }).reverse();
    if (c.skipPrkSteps) {
      // PLMS alone: the first ε is evaluated twice (at t and after the Euler-like step), so t_{N-1} repeats.
      this.prkTimesteps = [];
      this.timesteps = [...asc.slice(0, -1), ...asc.slice(-2, -1), ...asc.slice(-1)].reverse();
    } else {
      // PRK: each of the last PNDM_ORDER timesteps and its half-step t + δ/2, as t, t+δ/2, t+δ/2, t+δ.
      const half = Math.floor(Math.floor(c.numTrainTimesteps / steps) / 2);
      const tail = asc.slice(-PNDM_ORDER);
      const pairs: number[] = [];
      tail.forEach((t) => { pairs.push(t, t + half); });
      const rep: number[] = [];
      pairs.slice(0, -1).forEach((t) => { rep.push(t, t); });
      this.prkTimesteps = rep.slice(1, -1).reverse();
      this.timesteps = [...this.prkTimesteps, ...asc.slice(0, -3).reverse()];
    }
    this.ets = [];
    this.counter = 0;
    this.curModelOutput = null;
    this.curSample = null;
  }

  step(modelOutput: Tensor, t: number, x: Tensor, opts?: StepOptions): StepOutput {
    this.requireTimesteps('step');
    void opts;
    this.trainTimestep(t, 'step');
    if (this.counter < this.prkTimesteps.length && !this.config.skipPrkSteps) return this.stepPrk(modelOutput, t, x);
    return this.stepPlms(modelOutput, t, x);
  }

  /** One quarter of a pseudo-RK4 step (eq. 13): the 4 ε evaluations are combined as (e1 + 2e2 + 2e3 + e4)/6. */
  private stepPrk(modelOutput: Tensor, t: number, x: Tensor): StepOutput {
    const stepSize = Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps!);
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(stepSize / 2);
    const tPrev = t - diffToPrev;
    const tStart = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const phase = this.counter % 4;
    let eps = modelOutput;
    if (phase === 0) {
      this.curModelOutput = modelOutput.mul(1 / 6);
      this.ets.push(modelOutput);
      this.curSample = x;
    } else if (phase === 1 || phase === 2) {
      this.curModelOutput = this.curModelOutput!.add(modelOutput.mul(1 / 3));
    } else {
      eps = this.curModelOutput!.add(modelOutput.mul(1 / 6));
      this.curModelOutput = null;
    }
    const from = this.curSample ?? x;
    const prev = this.transfer(from, tStart, tPrev, eps);
    this.counter++;
    return { prevSample: prev };
  }

  /** Linear multistep (eq. 12's Adams–Bashforth weights on ε), with the 2-evaluation start of `skip_prk_steps`. */
  private stepPlms(modelOutput: Tensor, t: number, x: Tensor): StepOutput {
    if (!this.config.skipPrkSteps && this.ets.length < 3) {
      throw new Error('PNDMScheduler: PLMS needs 3 PRK steps first (call step in order over scheduler.timesteps)');
    }
    const stepSize = Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps!);
    let tPrev = t - stepSize;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      // Second evaluation of the first step: it was taken from t + δ to t.
      tPrev = t;
      t = t + stepSize;
    }
    const e = this.ets, n = e.length;
    let eps: Tensor;
    if (n === 1 && this.counter === 0) {
      eps = modelOutput;
      this.curSample = x;
    } else if (n === 1 && this.counter === 1) {
      eps = modelOutput.add(e[n - 1]).mul(0.5);
      x = this.curSample!;
      this.curSample = null;
    } else if (n === 2) {
      eps = axpby(3 / 2, e[n - 1], -1 / 2, e[n - 2]);
    } else if (n === 3) {
      eps = axpby(23 / 12, e[n - 1], -16 / 12, e[n - 2]).add(e[n - 3].mul(5 / 12));
    } else {
      eps = axpby(55 / 24, e[n - 1], -59 / 24, e[n - 2]).add(axpby(37 / 24, e[n - 3], -9 / 24, e[n - 4]));
    }
    const prev = this.transfer(x, t, tPrev, eps);
    this.counter++;
    return { prevSample: prev };
  }

  /**
   * The transfer part φ(x_t, ε_t, t, t−δ) (eq. 11):
   *   x_{t−δ} = √(ᾱ_{t−δ}/ᾱ_t) x_t − (ᾱ_{t−δ} − ᾱ_t) ε / (ᾱ_t √(1 − ᾱ_{t−δ}) + √((1 − ᾱ_t) ᾱ_t ᾱ_{t−δ}))
   */
  private transfer(x: Tensor, t: number, tPrev: number, modelOutput: Tensor): Tensor {
    const aT = this.schedule.alphasCumprod[t];
    const aPrev = tPrev >= 0 ? this.schedule.alphasCumprod[tPrev] : this.finalAlphaCumprod;
    const bT = 1 - aT, bPrev = 1 - aPrev;
    // v-prediction → ε: ε = √ᾱ_t v + √(1 − ᾱ_t) x_t
    const eps = this.config.predictionType === 'v_prediction' ? axpby(Math.sqrt(aT), modelOutput, Math.sqrt(bT), x) : modelOutput;
    const denom = aT * Math.sqrt(bPrev) + Math.sqrt(aT * bT * aPrev);
    return axpby(Math.sqrt(aPrev / aT), x, -(aPrev - aT) / denom, eps);
  }
}
