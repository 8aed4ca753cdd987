/**
 * `vss diffusion forward` and `vss diffusion schedules`: pictures of the forward (noising) process.
 *
 *   forward    one image under the closed-form q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) ([DDPM] eq. 4) at evenly
 *              spaced t = 0 … T−1, with one fixed noise draw ε, so the strip shows the same ε taking over;
 *              plus a plot of ᾱ_t, log-SNR and the noise level √(1 − ᾱ_t) of every schedule.
 *   schedules  that plot alone, and a table of ᾱ_t and SNR at t = 0, T/4, T/2, 3T/4, T−1.
 *
 * All the maths is src/diffusion/schedules.ts; this file only picks schedules, reads images and draws.
 * Schedules by name: linear ([DDPM]), cosine ([IDDPM], β capped at 0.999) and scaled-linear ([LDM]), with
 * β from 1e-4 to 0.02 for both linear kinds (diffusers' defaults, as `vss train ddpm` uses; Stable Diffusion's
 * scaled-linear is --beta-start 0.00085 --beta-end 0.012); or a JSON file holding a list of betas.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import sharp from 'sharp';
import { Rng, fromTypedArray, randn } from '../engine/index.js';
import { NoiseSchedule, type BetaScheduleName } from '../diffusion/schedules.js';
import {
  type Pixels, type Raster, type Series, blit, createRaster, decodePixels, encodePng, floatToPixels, formatFromPath,
  makeGrid, pixelsToFloat, renderLinePlot, renderLinePlotSvg, saveImage, tensorToPixels, writeFileAtomic,
} from '../image/index.js';
import { openDataset } from './data.js';
import { UserError } from './errors.js';
import { intOption, numberOption } from './options.js';

// ---------------------------------------------------------------------------------------------- schedules by name

/** The built-in schedules, by the names the command line takes. */
export const SCHEDULE_NAMES = ['linear', 'cosine', 'scaled-linear'] as const;
export type ScheduleFlag = (typeof SCHEDULE_NAMES)[number];

const LIBRARY_NAMES: Record<ScheduleFlag, BetaScheduleName> = {
  linear: 'linear', cosine: 'squaredcos_cap_v2', 'scaled-linear': 'scaled_linear',
};
// The library's spellings are accepted too.
const ALIASES: Record<string, ScheduleFlag> = {
  linear: 'linear', cosine: 'cosine', squaredcos_cap_v2: 'cosine', 'scaled-linear': 'scaled-linear', scaled_linear: 'scaled-linear',
};

export const DEFAULT_BETA_START = 1e-4;
export const DEFAULT_BETA_END = 0.02;
/** Most frames a strip takes (beyond this it is wider than any screen). */
export const MAX_FRAMES = 100;
/** Larger images are shrunk to this side unless --size says otherwise. */
export const DEFAULT_SIZE_CAP = 256;

/** A schedule with the name it is shown under. */
export interface NamedSchedule {
  name: string;
  schedule: NoiseSchedule;
}

export interface ScheduleRange {
  betaStart?: number;
  betaEnd?: number;
}

/** A built-in schedule with T steps. */
export function builtinSchedule(name: ScheduleFlag, T: number, range: ScheduleRange = {}): NamedSchedule {
  const schedule = NoiseSchedule.from({
    numTrainTimesteps: T, betaSchedule: LIBRARY_NAMES[name],
    betaStart: range.betaStart ?? DEFAULT_BETA_START, betaEnd: range.betaEnd ?? DEFAULT_BETA_END,
  });
  return { name, schedule };
}

/**
 * Betas from a JSON file: a list of numbers, or an object with a `betas` (or diffusers' `trained_betas`)
 * list. Each β must lie in (0, 1) — β = 1 would leave ᾱ = 0 and an infinite noise level from there on.
 */
export function readBetasFile(file: string): number[] {
  const hint = 'the file must hold a JSON list of betas, each in (0, 1), e.g. [0.0001, 0.0002, …]';
  if (!fs.existsSync(file)) throw new UserError(`betas file not found: ${file}`, hint);
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UserError(`${file} is not valid JSON: ${(err as Error).message}`, hint);
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    value = obj.betas ?? obj.trained_betas ?? value;
  }
  if (!Array.isArray(value)) throw new UserError(`${file} does not hold a list of betas (found ${describeJson(value)})`, hint);
  if (value.length === 0) throw new UserError(`${file} holds an empty list of betas`, hint);
  value.forEach((b: unknown, i) => {
    if (typeof b !== 'number' || !(b > 0 && b < 1)) {
      throw new UserError(`${file}: beta ${i} is ${JSON.stringify(b)}, outside (0, 1)`, hint);
    }
  });
  return value as number[];
}

function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? `an object with keys ${Object.keys(v as object).join(', ') || '(none)'}` : `a ${typeof v}`;
}

/**
 * A --schedule value: a built-in name or a .json file of betas. `T` is the number of steps asked for; a
 * file fixes its own, so a --timesteps that was given and disagrees is an error.
 */
export function resolveSchedule(spec: string, T: number, range: ScheduleRange = {}, timestepsGiven = false): NamedSchedule {
  const flag = ALIASES[spec.toLowerCase()];
  if (flag) return builtinSchedule(flag, T, range);
  if (spec.toLowerCase().endsWith('.json') || fs.existsSync(spec)) {
    const betas = readBetasFile(spec);
    if (timestepsGiven && betas.length !== T) {
      throw new UserError(`--timesteps ${T} but ${spec} holds ${betas.length} betas`, 'leave --timesteps out: a list of betas sets T itself');
    }
    return { name: `custom (${path.basename(spec)})`, schedule: new NoiseSchedule(betas) };
  }
  throw new UserError(`unknown schedule '${spec}'`, `use ${SCHEDULE_NAMES.join(', ')}, or a .json file with a list of betas`);
}

/** The three built-in schedules with T steps, and `extra` (a custom one) after them. */
export function comparedSchedules(T: number, range: ScheduleRange = {}, extra?: NamedSchedule): NamedSchedule[] {
  const all = SCHEDULE_NAMES.map((n) => builtinSchedule(n, T, range));
  if (extra && !SCHEDULE_NAMES.includes(extra.name as ScheduleFlag)) all.push(extra);
  return all;
}

// ---------------------------------------------------------------------------------------------- the schedule plot

/** Short number text for captions and tables: 0.5322, 2.4e-9, 4.1e+5, and 1-4.1e-5 just under 1. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v > 0.999 && v < 1) return `1-${(1 - v).toExponential(1)}`;
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
  return a >= 100 ? v.toFixed(0) : v.toPrecision(4);
}

/** Curves of one schedule quantity against t, one series per schedule. */
function curves(schedules: readonly NamedSchedule[], f: (s: NoiseSchedule, t: number) => number): Series[] {
  return schedules.map(({ name, schedule }) => {
    const x: number[] = [], y: number[] = [];
    for (let t = 0; t < schedule.numTrainTimesteps; t++) { x.push(t); y.push(f(schedule, t)); }
    return { name, x, y };
  });
}

interface Panel { series: Series[]; title: string; yLabel: string }

function schedulePanels(schedules: readonly NamedSchedule[]): Panel[] {
  // The legend sits top right, where √(1 − ᾱ) ends near 1: that panel goes without one (same colours).
  const unnamed = (series: Series[]) => series.map((s) => ({ ...s, name: '' }));
  return [
    { series: curves(schedules, (s, t) => s.alphaBar(t)), title: 'alpha_bar(t): signal kept', yLabel: 'alpha_bar' },
    { series: curves(schedules, (s, t) => s.logSnr(t)), title: 'log SNR(t) = log(abar / (1 - abar))', yLabel: 'log SNR' },
    { series: unnamed(curves(schedules, (s, t) => Math.sqrt(1 - s.alphaBar(t)))), title: 'noise level sqrt(1 - abar)', yLabel: 'sqrt(1 - abar)' },
  ];
}

const PANEL_WIDTH = 440, PANEL_HEIGHT = 340;

/** ᾱ_t, log-SNR and √(1 − ᾱ_t) against t, three panels side by side, as .png or .svg (by extension). */
export async function saveSchedulePlot(file: string, schedules: readonly NamedSchedule[]): Promise<void> {
  const panels = schedulePanels(schedules);
  const opts = (p: Panel) => ({ width: PANEL_WIDTH, height: PANEL_HEIGHT, title: p.title, xLabel: 't', yLabel: p.yLabel });
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg') {
    // Each panel is a complete <svg>; nested <svg> elements take x/y, so the document is the three placed in a row.
    const inner = panels.map((p, i) => renderLinePlotSvg(p.series, opts(p)).replace('<svg ', `<svg x="${i * PANEL_WIDTH}" y="0" `));
    const W = panels.length * PANEL_WIDTH;
    writeFileAtomic(file, [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${PANEL_HEIGHT}" viewBox="0 0 ${W} ${PANEL_HEIGHT}">`,
      ...inner, '</svg>', ''].join('\n'));
  } else if (ext === '.png') {
    const out: Raster = createRaster(panels.length * PANEL_WIDTH, PANEL_HEIGHT);
    panels.forEach((p, i) => blit(out, renderLinePlot(p.series, opts(p)), i * PANEL_WIDTH, 0));
    writeFileAtomic(file, await encodePng(out));
  } else {
    throw new UserError(`a plot is saved as .png or .svg, not ${file}`);
  }
}

function checkPlotPath(file: string, flag: string): void {
  if (!/\.(png|svg)$/i.test(file)) throw new UserError(`${flag} must end in .png or .svg, got ${file}`);
}

// ---------------------------------------------------------------------------------------------- the source image

/** Shrink or enlarge so that the longer side is `side` pixels (aspect ratio kept). */
async function resizeLonger(p: Pixels, side: number): Promise<Pixels> {
  const longer = Math.max(p.width, p.height);
  if (longer === side) return p;
  const scale = side / longer;
  const width = Math.max(1, Math.round(p.width * scale)), height = Math.max(1, Math.round(p.height * scale));
  const { data, info } = await sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } })
    .resize(width, height, { fit: 'fill', kernel: scale < 1 ? 'lanczos3' : 'cubic' })
    .raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: p.channels, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** An image file as 8-bit pixels, grey if the file is grey, else RGB (alpha dropped). */
async function readImageFile(file: string): Promise<Pixels> {
  if (!fs.existsSync(file)) throw new UserError(`image not found: ${file}`, 'pass --image with the path of a PNG, JPEG or WebP file');
  if (fs.statSync(file).isDirectory()) throw new UserError(`${file} is a folder, not an image`, 'pass --image with the path of one image file');
  let grey: boolean;
  try {
    const meta = await sharp(file).metadata();
    grey = meta.space === 'b-w' || (meta.channels ?? 3) <= 2;
  } catch (err) {
    throw new UserError(`cannot read image ${file}: ${(err as Error).message}`, 'use a PNG, JPEG or WebP file');
  }
  try {
    return await decodePixels(file, { channels: grey ? 1 : 3 });
  } catch (err) {
    throw new UserError((err as Error).message, 'use a PNG, JPEG or WebP file');
  }
}

interface SourceFlags {
  image?: string;
  dataset?: string;
  index?: number;
  split?: string;
  data?: string;
  size?: number;
}

/** The x_0 of the strip as 8-bit pixels, with a name for the title. */
async function loadSource(f: SourceFlags): Promise<{ pixels: Pixels; name: string }> {
  if (f.image !== undefined && f.dataset !== undefined) throw new UserError('pass either --image or --dataset, not both');
  let pixels: Pixels, name: string;
  if (f.image !== undefined) {
    if (f.index !== undefined) throw new UserError('--index picks a dataset sample; it needs --dataset, not --image');
    pixels = await readImageFile(f.image);
    name = path.basename(f.image);
  } else if (f.dataset !== undefined) {
    const dataset = await openDataset(f.dataset, { split: f.split ?? 'test', data: f.data });
    const index = f.index ?? 0;
    if (index >= dataset.length) throw new UserError(`--index ${index} is past the end of ${f.dataset} (${dataset.length} samples)`, `use 0..${dataset.length - 1}`);
    const s = await dataset.get(index);
    pixels = floatToPixels(s.image, s.shape[0], s.shape[1], s.shape[2], 'signed');
    name = `${f.dataset} #${index}`;
  } else {
    throw new UserError('nothing to noise: pass --image <file> or --dataset <name> --index <n>', 'e.g. --dataset fashion-mnist --index 0');
  }
  const longer = Math.max(pixels.width, pixels.height);
  const side = f.size ?? Math.min(longer, DEFAULT_SIZE_CAP);
  return { pixels: await resizeLonger(pixels, side), name };
}

// ---------------------------------------------------------------------------------------------- the forward strip

/** `frames` timesteps spread evenly over 0 … T−1, both ends included (distinct when frames ≤ T). */
export function frameTimesteps(T: number, frames: number): number[] {
  return Array.from({ length: frames }, (_, i) => Math.round((i * (T - 1)) / (frames - 1)));
}

export interface ForwardFrames {
  timesteps: number[];
  alphaBars: number[];
  frames: Pixels[];
}

/**
 * x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε for each t, with one ε ~ N(0, I) drawn from `seed`, as pixels.
 * `x0` is 8-bit pixels mapped to [-1, 1], the range diffusion models work in.
 */
export function forwardFrames(x0: Pixels, schedule: NoiseSchedule, timesteps: readonly number[], seed: number): ForwardFrames {
  const channels = x0.channels === 1 || x0.channels === 3 ? x0.channels : 3;
  const source = channels === x0.channels ? x0 : { ...x0, channels, data: dropAlpha(x0) };
  const x = fromTypedArray(pixelsToFloat(source, 'chw', 'signed'), [channels, x0.height, x0.width]);
  const noise = randn(x.shape, { rng: new Rng(seed) });
  const frames = timesteps.map((t) => tensorToPixels(schedule.qSample(x, noise, t), { range: 'signed' })[0]);
  return { timesteps: [...timesteps], alphaBars: timesteps.map((t) => schedule.alphaBar(t)), frames };
}

/** RGB of grey+alpha or RGBA pixels (the image paths here never make them, but Pixels allows them). */
function dropAlpha(p: Pixels): Uint8Array {
  const n = p.width * p.height, out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = p.channels === 2 ? p.data[i * 2] : p.data[i * p.channels + c];
  }
  return out;
}

interface ForwardFlags extends SourceFlags {
  schedule: string;
  timesteps: number;
  frames: number;
  seed: number;
  out: string;
  plot?: string | false;
  betaStart?: number;
  betaEnd?: number;
}

/** `<out>-schedules.png` beside the strip. */
function defaultPlotPath(out: string): string {
  const ext = path.extname(out);
  return `${ext ? out.slice(0, -ext.length) : out}-schedules.png`;
}

function checkImagePath(file: string): void {
  try {
    formatFromPath(file);
  } catch {
    throw new UserError(`--out must end in .png, .jpg or .webp, got ${file}`);
  }
}

async function forward(f: ForwardFlags, cmd: Command): Promise<void> {
  checkImagePath(f.out);
  const plotFile = f.plot === false ? null : f.plot ?? defaultPlotPath(f.out);
  if (plotFile !== null) checkPlotPath(plotFile, '--plot');
  const range = { betaStart: f.betaStart, betaEnd: f.betaEnd };
  const chosen = resolveSchedule(f.schedule, f.timesteps, range, cmd.getOptionValueSource('timesteps') === 'cli');
  const T = chosen.schedule.numTrainTimesteps;
  if (f.frames < 2 || f.frames > Math.min(T, MAX_FRAMES)) {
    throw new UserError(`--frames ${f.frames} is impossible with T = ${T}`,
      `the strip shows 2..${Math.min(T, MAX_FRAMES)} distinct timesteps from t = 0 to t = ${T - 1}`);
  }
  const { pixels, name } = await loadSource(f);
  const { timesteps, alphaBars, frames } = forwardFrames(pixels, chosen.schedule, frameTimesteps(T, f.frames), f.seed);
  const captions = timesteps.map((t, i) => `t=${t}\nabar=${formatValue(alphaBars[i])}`);
  const strip = makeGrid(frames, {
    columns: frames.length, captions, captionLines: 2,
    title: `q(x_t | x_0): ${name}, ${chosen.name} schedule, T=${T}, seed ${f.seed}`,
  });
  await saveImage(f.out, strip);
  console.log(`wrote ${f.out} (${strip.width}x${strip.height}, ${frames.length} frames of ${pixels.width}x${pixels.height}, t = ${timesteps.join(', ')})`);
  const last = alphaBars[alphaBars.length - 1];
  if (last > 0.05) {
    console.error(`note: ᾱ_${T - 1} = ${formatValue(last)}: with T = ${T} this schedule does not reach noise (raise --timesteps or --beta-end)`);
  }
  if (plotFile !== null) {
    await saveSchedulePlot(plotFile, comparedSchedules(T, range, chosen));
    console.log(`wrote ${plotFile} (ᾱ_t, log-SNR and √(1 − ᾱ_t) against t, T = ${T})`);
  }
}

// ---------------------------------------------------------------------------------------------- the table

/** The timesteps of the table: 0, T/4, T/2, 3T/4, T−1. */
export function tableTimesteps(T: number): number[] {
  return [0, Math.floor(T / 4), Math.floor(T / 2), Math.floor((3 * T) / 4), T - 1];
}

export interface ScheduleSummary {
  name: string;
  alphaBar: number[];
  snr: number[];
}

export function summarise(schedules: readonly NamedSchedule[], at: readonly number[]): ScheduleSummary[] {
  return schedules.map(({ name, schedule }) => ({
    name,
    alphaBar: at.map((t) => schedule.alphaBar(t)),
    snr: at.map((t) => schedule.snr(t)),
  }));
}

function formatTable(T: number, at: readonly number[], rows: readonly ScheduleSummary[]): string {
  const nameW = Math.max(8, ...rows.map((r) => r.name.length)) + 2, colW = 10;
  const cells = (vs: readonly (number | string)[]) => vs.map((v) => (typeof v === 'number' ? formatValue(v) : v).padStart(colW)).join('');
  const lines = [`${`T = ${T}`.padEnd(nameW)}${'t'.padStart(4)}${cells(at.map(String))}`];
  for (const r of rows) {
    lines.push(`${r.name.padEnd(nameW)}${'ᾱ'.padStart(4)}${cells(r.alphaBar)}`);
    lines.push(`${''.padEnd(nameW)}${'SNR'.padStart(4)}${cells(r.snr)}`);
  }
  return lines.join('\n');
}

interface SchedulesFlags {
  out: string;
  timesteps: number;
  json?: boolean;
  betas?: string;
  betaStart?: number;
  betaEnd?: number;
}

async function schedulesCommand(f: SchedulesFlags, cmd: Command): Promise<void> {
  checkPlotPath(f.out, '--out');
  const range = { betaStart: f.betaStart, betaEnd: f.betaEnd };
  let T = f.timesteps, custom: NamedSchedule | undefined;
  if (f.betas !== undefined) {
    if (!f.betas.toLowerCase().endsWith('.json') && !fs.existsSync(f.betas)) throw new UserError(`betas file not found: ${f.betas}`);
    custom = resolveSchedule(f.betas, T, range, cmd.getOptionValueSource('timesteps') === 'cli');
    T = custom.schedule.numTrainTimesteps;
  }
  const schedules = comparedSchedules(T, range, custom);
  const at = tableTimesteps(T);
  const rows = summarise(schedules, at);
  await saveSchedulePlot(f.out, schedules);
  const short = rows.filter((r) => r.alphaBar[r.alphaBar.length - 1] > 0.05).map((r) => r.name);
  if (short.length > 0) console.error(`note: ${short.join(', ')} ${short.length > 1 ? 'do' : 'does'} not reach noise at T = ${T} (ᾱ_${T - 1} > 0.05)`);
  if (f.json) {
    console.log(JSON.stringify({ timesteps: T, betaStart: f.betaStart ?? DEFAULT_BETA_START, betaEnd: f.betaEnd ?? DEFAULT_BETA_END, at, schedules: rows, plot: f.out }));
  } else {
    console.log(formatTable(T, at, rows));
    console.log(`wrote ${f.out}`);
  }
}

// ---------------------------------------------------------------------------------------------- registration

export function registerDiffusionCommand(program: Command): void {
  const diffusion = program.command('diffusion').description('the forward (noising) process: schedules and q(x_t | x_0)');
  const scheduleHelp = `${SCHEDULE_NAMES.join(' | ')} | a .json file with a list of betas`;

  diffusion
    .command('forward')
    .description('a strip of one image dissolving into noise under q(x_t | x_0), t = 0 … T−1, and a plot of the schedules')
    .option('--image <file>', 'the image to noise (PNG, JPEG or WebP)')
    .option('--dataset <name>', 'or a dataset sample: fashion-mnist, shapes, or a folder of images')
    .option('--index <n>', 'which sample of --dataset (default 0)', intOption('--index', 0))
    .option('--split <split>', 'split of --dataset', 'test')
    .option('--data <dir>', 'folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)')
    .option('--schedule <name|file>', scheduleHelp, 'cosine')
    .option('-T, --timesteps <n>', 'training timesteps T (a betas file sets its own)', intOption('--timesteps', 2, 100_000), 1000)
    .option('--beta-start <b>', `β_0 of linear and scaled-linear (default ${DEFAULT_BETA_START})`, numberOption('--beta-start', 0, 1, '()'))
    .option('--beta-end <b>', `β_T−1 of linear and scaled-linear (default ${DEFAULT_BETA_END})`, numberOption('--beta-end', 0, 1, '()'))
    .option('--frames <n>', 'frames in the strip, evenly spaced in t, both ends included', intOption('--frames', 0), 11)
    .option('--size <px>', `longer side of the image (default: as it is, at most ${DEFAULT_SIZE_CAP})`, intOption('--size', 4, 1024))
    .option('--seed <n>', 'seed of the one noise draw ε', intOption('--seed', 0, 2 ** 32 - 1), 0)
    .option('-o, --out <file>', 'the strip (.png, .jpg or .webp)', 'strip.png')
    .option('--plot <file>', 'the schedule plot (.png or .svg; default <out>-schedules.png)')
    .option('--no-plot', 'do not write the schedule plot')
    .action((flags: ForwardFlags, cmd: Command) => forward(flags, cmd));

  diffusion
    .command('schedules')
    .description('plot ᾱ_t, log-SNR and noise level of the schedules and print ᾱ and SNR at t = 0, T/4, T/2, 3T/4, T−1')
    .option('-o, --out <file>', 'the plot (.png or .svg)', 'schedules.png')
    .option('-T, --timesteps <n>', 'training timesteps T', intOption('--timesteps', 2, 100_000), 1000)
    .option('--betas <file>', 'also a custom schedule: a .json file with a list of betas (sets T)')
    .option('--beta-start <b>', `β_0 of linear and scaled-linear (default ${DEFAULT_BETA_START})`, numberOption('--beta-start', 0, 1, '()'))
    .option('--beta-end <b>', `β_T−1 of linear and scaled-linear (default ${DEFAULT_BETA_END})`, numberOption('--beta-end', 0, 1, '()'))
    .option('--json', 'machine-readable output')
    .action((flags: SchedulesFlags, cmd: Command) => schedulesCommand(flags, cmd));
}
