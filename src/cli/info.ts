/** `vss info <png>`: show the generation parameters stored in a PNG's text chunks. */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { PARAMETERS_KEYWORD, isPng, parseA1111Parameters, readPngSize, readPngText } from '../image/png.js';

interface InfoOptions {
  json?: boolean;
  raw?: boolean;
}

function showInfo(file: string, opts: InfoOptions): void {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `no such file: ${file}` : `cannot read ${file}: ${(err as Error).message}`);
  }
  if (!isPng(buf)) throw new Error(`${file} is not a PNG file (generation parameters are only stored in PNGs)`);
  const text = readPngText(buf, file);
  const size = readPngSize(buf, file);
  const raw = text[PARAMETERS_KEYWORD];
  const parsed = raw === undefined ? null : parseA1111Parameters(raw);

  if (opts.json) {
    console.log(JSON.stringify({ file, width: size.width, height: size.height, parameters: parsed, raw: raw ?? null, text }, null, 2));
    return;
  }
  if (raw === undefined) {
    const others = Object.keys(text);
    throw new Error(`${file} (${size.width}x${size.height}) has no '${PARAMETERS_KEYWORD}' text chunk` +
      (others.length > 0 ? `; it has: ${others.join(', ')} (see --json)` : ' (only images that vss generates carry one)'));
  }
  if (opts.raw) {
    console.log(raw);
    return;
  }
  const p = parsed!;
  const rows: [string, string | number | undefined][] = [
    ['prompt', p.prompt],
    ['negative prompt', p.negativePrompt || undefined],
    ['steps', p.steps],
    ['sampler', p.sampler],
    ['cfg scale', p.cfgScale],
    ['seed', p.seed],
    ['size', p.width !== undefined ? `${p.width}x${p.height}` : undefined],
    ['model', p.model],
    ...Object.entries(p.extra),
  ];
  const indent = ' '.repeat(17);
  for (const [key, value] of rows) {
    if (value === undefined) continue;
    // Multi-line prompts keep their lines, indented under the value column.
    console.log(`${key.padEnd(16)} ${String(value).split('\n').join(`\n${indent}`)}`);
  }
  const others = Object.keys(text).filter((k) => k !== PARAMETERS_KEYWORD);
  if (others.length > 0) console.log(`${'other text'.padEnd(16)} ${others.join(', ')} (see --json)`);
}

export function registerInfoCommand(program: Command): void {
  program
    .command('info')
    .description('print the generation parameters (prompt, seed, steps, …) stored in a PNG made by vss')
    .argument('<png>', 'a PNG written by vss (or any A1111-style PNG)')
    .option('--json', 'machine-readable output: parsed fields, raw text and all text chunks')
    .option('--raw', 'print the parameters text exactly as stored')
    .action((file: string, opts: InfoOptions) => showInfo(file, opts));
}
