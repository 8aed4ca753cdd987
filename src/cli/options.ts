/**
 * Parsers of numeric command-line values, for commander's `.option(flags, description, parser, default)`.
 * Each throws a UserError naming the option, the allowed values and what was given.
 */
import { UserError } from './errors.js';

/** `value` as a number, or NaN when it is blank (Number('') would be 0). */
function toNumber(value: string): number {
  return value.trim() === '' ? NaN : Number(value);
}

/** An integer ≥ min (and ≤ max when given). */
export function intOption(flag: string, min: number, max?: number) {
  return (value: string): number => {
    const n = toNumber(value);
    if (!Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
      const range = max === undefined ? `≥ ${min}` : `in [${min}, ${max}]`;
      throw new UserError(`${flag} must be an integer ${range}, got '${value}'`);
    }
    return n;
  };
}

/** Which ends of a range are included: '[]' both, '[)' the lower only, '()' neither, '(]' the upper only. */
export type RangeEnds = '[]' | '[)' | '()' | '(]';

/** A finite number in the range from min to max, its ends included or not as `ends` says. */
export function numberOption(flag: string, min: number, max: number, ends: RangeEnds = '[]') {
  return (value: string): number => {
    const n = toNumber(value);
    const aboveMin = ends[0] === '[' ? n >= min : n > min;
    const belowMax = ends[1] === ']' ? n <= max : n < max;
    if (!(Number.isFinite(n) && aboveMin && belowMax)) {
      throw new UserError(`${flag} must be a number in ${ends[0]}${min}, ${max}${ends[1]}, got '${value}'`);
    }
    return n;
  };
}

/** A finite number > 0. */
export function positiveNumberOption(flag: string) {
  return (value: string): number => {
    const n = toNumber(value);
    if (!(Number.isFinite(n) && n > 0)) throw new UserError(`${flag} must be a positive number, got '${value}'`);
    return n;
  };
}

/**
 * Comma-separated integers ≥ min. With `allowNone`, 'none' or nothing gives an empty list
 * (e.g. `--attention none`).
 */
export function intListOption(flag: string, min: number, { allowNone = false } = {}) {
  return (value: string): number[] => {
    if (allowNone && (value.trim() === '' || value.trim() === 'none')) return [];
    const list = value.split(',').map(toNumber);
    if (list.some((n) => !Number.isSafeInteger(n) || n < min)) {
      throw new UserError(`${flag} must be comma-separated integers ≥ ${min}${allowNone ? " (or 'none')" : ''}, got '${value}'`);
    }
    return list;
  };
}

/** Comma-separated finite numbers ≥ min. */
export function numberListOption(flag: string, min: number) {
  return (value: string): number[] => {
    const list = value.split(',').map(toNumber);
    if (list.some((n) => !Number.isFinite(n) || n < min)) {
      throw new UserError(`${flag} must be comma-separated numbers ≥ ${min}, got '${value}'`);
    }
    return list;
  };
}
