/**
 * Reading diffusers `config.json` files into typed configs.
 *
 * A diffusers config is a flat JSON object of constructor arguments. `ConfigReader` reads it key by key with
 * a type check per key, so every model's parser is a list of typed reads, and every error names the config
 * (and its file) and the key:
 *
 *   const r = ConfigReader.fromFile('unet/config.json', 'UNet2DConditionModel');
 *   const inChannels = r.int('in_channels', 4);
 *   r.unsupported('addition_embed_type', [null]);   // SDXL's text_time embedding: rejected clearly
 *   r.finish();                                       // unknown keys: an error when strict, else a warning
 *
 * Keys starting with `_` (`_class_name`, `_diffusers_version`, `_name_or_path`) are metadata and never
 * count as unknown.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface ConfigReadOptions {
  /** Unknown keys are an error (default false: a warning through process.emitWarning). */
  strict?: boolean;
}

const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export class ConfigReader {
  private readonly read = new Set<string>();

  /**
   * @param raw the parsed JSON object
   * @param where how errors name the config, e.g. `UNet2DConditionModel config (unet/config.json)`
   */
  constructor(readonly raw: Readonly<Record<string, unknown>>, readonly where: string) {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new ConfigError(`${where}: expected a JSON object, got ${show(raw)}`);
    }
  }

  /** Parse a config file (or the `config.json` inside a folder). */
  static fromFile(file: string, className: string): ConfigReader {
    const f = fs.existsSync(file) && fs.statSync(file).isDirectory() ? path.join(file, 'config.json') : file;
    if (!fs.existsSync(f)) throw new ConfigError(`${className}: no config file at ${f}`);
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(f, 'utf8'));
    } catch (err) {
      throw new ConfigError(`${className} config ${f}: not valid JSON: ${(err as Error).message}`);
    }
    return new ConfigReader(raw as Record<string, unknown>, `${className} config (${f})`);
  }

  fail(key: string, msg: string): never {
    throw new ConfigError(`${this.where}: "${key}" ${msg}`);
  }

  /** Present and not null. */
  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  /** The raw value (marks the key as known). */
  value(key: string): unknown {
    this.read.add(key);
    return this.raw[key];
  }

  private get<T>(key: string, dflt: T | undefined, check: (v: unknown) => v is T, what: string): T {
    const v = this.value(key);
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(key, `is required (${what})`);
      return dflt;
    }
    if (!check(v)) this.fail(key, `must be ${what}, got ${show(v)}`);
    return v;
  }

  int(key: string, dflt?: number): number {
    return this.get(key, dflt, isInt, 'an integer');
  }

  /** A positive integer. */
  size(key: string, dflt?: number): number {
    const v = this.int(key, dflt);
    if (v <= 0) this.fail(key, `must be positive, got ${v}`);
    return v;
  }

  number(key: string, dflt?: number): number {
    return this.get(key, dflt, isNum, 'a number');
  }

  /** A number or null (null and absent both give null). */
  optionalNumber(key: string): number | null {
    const v = this.value(key);
    if (v === undefined || v === null) return null;
    if (!isNum(v)) this.fail(key, `must be a number or null, got ${show(v)}`);
    return v;
  }

  optionalInt(key: string): number | null {
    const v = this.value(key);
    if (v === undefined || v === null) return null;
    if (!isInt(v)) this.fail(key, `must be an integer or null, got ${show(v)}`);
    return v;
  }

  bool(key: string, dflt?: boolean): boolean {
    return this.get(key, dflt, (v): v is boolean => typeof v === 'boolean', 'true or false');
  }

  string(key: string, dflt?: string): string {
    return this.get(key, dflt, (v): v is string => typeof v === 'string', 'a string');
  }

  /** One of the listed strings. */
  oneOf<T extends string>(key: string, allowed: readonly T[], dflt?: T): T {
    const v = this.string(key, dflt);
    if (!allowed.includes(v as T)) this.fail(key, `= ${show(v)} is not supported (supported: ${allowed.map(show).join(', ')})`);
    return v as T;
  }

  intList(key: string, dflt?: number[]): number[] {
    const v = this.get(key, dflt, (x): x is number[] => Array.isArray(x) && x.every(isInt), 'a list of integers');
    return [...v];
  }

  stringList(key: string, dflt?: string[]): string[] {
    const v = this.get(key, dflt, (x): x is string[] => Array.isArray(x) && x.every((s) => typeof s === 'string'), 'a list of strings');
    return [...v];
  }

  /**
   * An integer applied to every block, or a list with one entry per block (diffusers allows both for
   * attention_head_dim, cross_attention_dim, layers_per_block, …).
   */
  intPerBlock(key: string, blocks: number, dflt?: number): number[] {
    const v = this.value(key);
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(key, 'is required (an integer or a list of integers)');
      return new Array<number>(blocks).fill(dflt);
    }
    if (isInt(v)) return new Array<number>(blocks).fill(v);
    if (Array.isArray(v) && v.every(isInt)) {
      if (v.length !== blocks) this.fail(key, `has ${v.length} entries, expected one per block (${blocks})`);
      return [...v];
    }
    return this.fail(key, `must be an integer or a list of ${blocks} integers, got ${show(v)}`);
  }

  /**
   * A key whose only supported values are `allowed` (usually the default, e.g. null or false): anything else
   * is a feature this implementation does not have, and must fail loudly rather than be ignored.
   */
  unsupported(key: string, allowed: readonly JsonValue[], why = ''): void {
    const v = this.value(key);
    if (v === undefined) return;
    if (!allowed.some((a) => a === v || (typeof a === 'object' && show(a) === show(v)))) {
      this.fail(key, `= ${show(v)} is not supported${why ? ` (${why})` : ''}; supported: ${allowed.map(show).join(', ')}`);
    }
  }

  /** Keys that are known and deliberately unused (they do not change the computation). */
  ignore(...keys: string[]): void {
    for (const k of keys) this.read.add(k);
  }

  /** Keys nobody read. */
  unknownKeys(): string[] {
    return Object.keys(this.raw).filter((k) => !k.startsWith('_') && !this.read.has(k));
  }

  /** Report unknown keys: an error when strict, else one warning. */
  finish(opts: ConfigReadOptions = {}): void {
    const unknown = this.unknownKeys();
    if (!unknown.length) return;
    const msg = `${this.where}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map(show).join(', ')}`;
    if (opts.strict) throw new ConfigError(msg);
    process.emitWarning(`${msg} (ignored)`, 'ConfigWarning');
  }
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** Check `_class_name` when the config has one, so a VAE folder is not read as a U-Net. */
export function checkClassName(r: ConfigReader, expected: readonly string[]): void {
  const name = r.raw._class_name;
  if (name === undefined || name === null) return;
  if (typeof name !== 'string' || !expected.includes(name)) {
    throw new ConfigError(`${r.where}: _class_name is ${show(name)}, expected ${expected.map(show).join(' or ')}`);
  }
}
