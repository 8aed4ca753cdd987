/** `vss plot <metrics.jsonl>`: training curves from a run's metrics log, as PNG or SVG. */
import type { Command } from 'commander';
import { metricKeys, metricSeries, readMetricsLog, saveLinePlot } from '../image/plot.js';
import { UserError } from './errors.js';

export function registerPlotCommand(program: Command): void {
  program
    .command('plot')
    .description('plot series from a metrics.jsonl log (written by every `vss train` run)')
    .argument('<metrics>', 'path to metrics.jsonl')
    .option('-o, --out <file>', 'output .png or .svg', 'metrics.png')
    .option('-k, --keys <list>', 'comma-separated series (default: loss, or every numeric key)')
    .option('-x, --x <key>', 'x-axis key', 'step')
    .option('--log-y', 'logarithmic y axis')
    .option('--smooth <w>', 'EMA smoothing weight in [0, 1)', '0')
    .action(async (file: string, opts: { out: string; keys?: string; x: string; logY?: boolean; smooth: string }) => {
      const records = readMetricsLog(file);
      if (records.length === 0) throw new UserError(`${file} holds no metrics records`, 'point at the metrics.jsonl of a run that has logged at least one step');
      const available = metricKeys(records, opts.x);
      const keys = opts.keys ? opts.keys.split(',').map((k) => k.trim()).filter(Boolean)
        : available.includes('loss') ? ['loss'] : available;
      const missing = keys.filter((k) => !available.includes(k));
      if (missing.length) throw new UserError(`${file} has no numeric series ${missing.join(', ')}`, `available: ${available.join(', ')}`);
      const smoothing = Number(opts.smooth);
      if (!(smoothing >= 0 && smoothing < 1)) throw new UserError(`--smooth must be in [0, 1), got ${opts.smooth}`);
      if (!/\.(png|svg)$/i.test(opts.out)) throw new UserError(`--out must end in .png or .svg, got ${opts.out}`);
      await saveLinePlot(opts.out, metricSeries(records, keys, opts.x), {
        title: keys.join(', '), xLabel: opts.x, logY: opts.logY ?? false, smoothing,
      });
      console.log(`wrote ${opts.out} (${keys.length} series, ${records.length} records)`);
    });
}
