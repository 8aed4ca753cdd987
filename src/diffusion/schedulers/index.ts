/**
 * Scheduler registry: build a sampler from a diffusers `scheduler_config.json` object, or from an A1111
 * sampler name on top of a model's config.
 *
 *   const sched = schedulerFromConfig(JSON.parse(fs.readFileSync('scheduler/scheduler_config.json', 'utf8')));
 *   const euler = schedulerFromConfig(json, 'EulerDiscreteScheduler');   // same training schedule, other sampler
 *   const dpm = samplerFromName('DPM++ 2M Karras', json);
 */
import type { Scheduler } from './base.js';
import { DDIMScheduler } from './ddim.js';
import { DDPMScheduler } from './ddpm.js';
import { PNDMScheduler } from './pndm.js';
import { EulerDiscreteScheduler } from './euler.js';
import { EulerAncestralDiscreteScheduler } from './euler_ancestral.js';
import { HeunDiscreteScheduler } from './heun.js';
import { LMSDiscreteScheduler } from './lms.js';
import { DPMSolverMultistepScheduler } from './dpm_solver_multistep.js';
import { UniPCMultistepScheduler } from './unipc.js';

export type { Scheduler, StepOptions, StepOutput } from './base.js';
export { BaseScheduler, dynamicThreshold } from './base.js';
export type { CommonConfig, CommonConfig as SchedulerConfig } from './config.js';
export {
  DDIMScheduler, DDPMScheduler, PNDMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
  HeunDiscreteScheduler, LMSDiscreteScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler,
};
export type { DDIMConfig } from './ddim.js';
export type { DDPMConfig, DDPMVarianceType } from './ddpm.js';
export type { PNDMConfig } from './pndm.js';
export type { EulerConfig } from './euler.js';
export type { EulerAncestralConfig } from './euler_ancestral.js';
export type { HeunConfig } from './heun.js';
export type { LMSConfig } from './lms.js';
export type { DPMSolverMultistepConfig } from './dpm_solver_multistep.js';
export type { UniPCMultistepConfig } from './unipc.js';

type Factory = (json: Record<string, unknown>) => Scheduler;

/** diffusers class name → constructor. */
export const SCHEDULERS: Readonly<Record<string, Factory>> = Object.freeze({
  DDIMScheduler: (j) => new DDIMScheduler(j),
  DDPMScheduler: (j) => new DDPMScheduler(j),
  PNDMScheduler: (j) => new PNDMScheduler(j),
  EulerDiscreteScheduler: (j) => new EulerDiscreteScheduler(j),
  EulerAncestralDiscreteScheduler: (j) => new EulerAncestralDiscreteScheduler(j),
  HeunDiscreteScheduler: (j) => new HeunDiscreteScheduler(j),
  LMSDiscreteScheduler: (j) => new LMSDiscreteScheduler(j),
  DPMSolverMultistepScheduler: (j) => new DPMSolverMultistepScheduler(j),
  UniPCMultistepScheduler: (j) => new UniPCMultistepScheduler(j),
});

export const SCHEDULER_CLASS_NAMES: readonly string[] = Object.keys(SCHEDULERS);

/**
 * Build the scheduler a `scheduler_config.json` names in `_class_name` (or `overrideClassName`, keeping the
 * config's training schedule: diffusers' `OtherScheduler.from_config(config)`). Keys the class does not use
 * are ignored; the ones it uses are type-checked.
 */
export function schedulerFromConfig(json: Record<string, unknown>, overrideClassName?: string): Scheduler {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`schedulerFromConfig: expected a scheduler_config.json object, got ${JSON.stringify(json)}`);
  }
  const name = overrideClassName ?? json._class_name;
  if (typeof name !== 'string') {
    throw new Error(`schedulerFromConfig: the config has no _class_name; pass a class name (known: ${SCHEDULER_CLASS_NAMES.join(', ')})`);
  }
  const factory = Object.prototype.hasOwnProperty.call(SCHEDULERS, name) ? SCHEDULERS[name] : undefined;
  if (!factory) {
    throw new Error(`unknown scheduler class '${name}' (known: ${SCHEDULER_CLASS_NAMES.join(', ')}; A1111 names via samplerFromName)`);
  }
  return factory(json);
}

/** A1111 sampler names (and a few common spellings) → diffusers class + config overrides. */
const SAMPLER_ALIASES: Readonly<Record<string, { className: string; overrides?: Record<string, unknown> }>> = Object.freeze({
  'dpm++ 2m': { className: 'DPMSolverMultistepScheduler', overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: false } },
  'dpm++ 2m karras': { className: 'DPMSolverMultistepScheduler', overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true } },
  'dpm++ 2m sde': { className: 'DPMSolverMultistepScheduler', overrides: { algorithm_type: 'sde-dpmsolver++', solver_order: 2, use_karras_sigmas: false } },
  'dpm++ 2m sde karras': { className: 'DPMSolverMultistepScheduler', overrides: { algorithm_type: 'sde-dpmsolver++', solver_order: 2, use_karras_sigmas: true } },
  'euler a': { className: 'EulerAncestralDiscreteScheduler' },
  'euler': { className: 'EulerDiscreteScheduler', overrides: { use_karras_sigmas: false } },
  'euler karras': { className: 'EulerDiscreteScheduler', overrides: { use_karras_sigmas: true } },
  'heun': { className: 'HeunDiscreteScheduler', overrides: { use_karras_sigmas: false } },
  'heun karras': { className: 'HeunDiscreteScheduler', overrides: { use_karras_sigmas: true } },
  'lms': { className: 'LMSDiscreteScheduler', overrides: { use_karras_sigmas: false } },
  'lms karras': { className: 'LMSDiscreteScheduler', overrides: { use_karras_sigmas: true } },
  'ddim': { className: 'DDIMScheduler' },
  'plms': { className: 'PNDMScheduler', overrides: { skip_prk_steps: true } },
  'pndm': { className: 'PNDMScheduler' },
  'unipc': { className: 'UniPCMultistepScheduler' },
  'ddpm': { className: 'DDPMScheduler' },
  // Shorter spellings used on command lines.
  'euler_a': { className: 'EulerAncestralDiscreteScheduler' },
  'euler_ancestral': { className: 'EulerAncestralDiscreteScheduler' },
  'dpmpp_2m': { className: 'DPMSolverMultistepScheduler', overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: false } },
  'dpmpp_2m_karras': { className: 'DPMSolverMultistepScheduler', overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true } },
  'euler_karras': { className: 'EulerDiscreteScheduler', overrides: { use_karras_sigmas: true } },
});

/** The names `samplerFromName` accepts (case-insensitive), besides diffusers class names. */
export const SAMPLER_NAMES: readonly string[] = [
  'DPM++ 2M', 'DPM++ 2M Karras', 'DPM++ 2M SDE', 'DPM++ 2M SDE Karras', 'Euler a', 'Euler', 'Euler Karras', 'Heun',
  'Heun Karras', 'LMS', 'LMS Karras', 'DDIM', 'PLMS', 'PNDM', 'UniPC', 'DDPM',
];

/**
 * A sampler by its A1111 name ('DPM++ 2M Karras', 'Euler a', 'Euler', 'Heun', 'LMS', 'DDIM', 'PLMS', 'UniPC',
 * 'DDPM', …) or diffusers class name, built on `baseConfig` (the model's scheduler_config.json: its training
 * schedule, prediction type and spacing carry over, as they do in diffusers' `from_config`).
 */
export function samplerFromName(name: string, baseConfig: Record<string, unknown> = {}): Scheduler {
  if (typeof name !== 'string') throw new Error(`samplerFromName: expected a name, got ${JSON.stringify(name)}`);
  const key = name.trim().toLowerCase().replace(/\s+/g, ' ');
  const alias = Object.prototype.hasOwnProperty.call(SAMPLER_ALIASES, key) ? SAMPLER_ALIASES[key] : undefined;
  if (alias) return schedulerFromConfig({ ...baseConfig, ...alias.overrides }, alias.className);
  const cls = SCHEDULER_CLASS_NAMES.find((c) => c.toLowerCase() === key);
  if (cls) return schedulerFromConfig(baseConfig, cls);
  throw new Error(`unknown sampler '${name}' (known: ${SAMPLER_NAMES.join(', ')}, or a class name: ${SCHEDULER_CLASS_NAMES.join(', ')})`);
}
