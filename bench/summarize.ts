/**
 * Combine several `engine.js --json` runs into one Markdown table: per (work, threads) the median over
 * runs of each run's median time, the ratio's median and its range over runs, and the median load and
 * median cores used by other processes during the row.
 *
 *   node dist/bench/summarize.js run1.json run2.json run3.json
 */
import { readFileSync } from 'node:fs';
import { formatTime, median } from './lib/timing.js';

interface RunRow {
  id: string;
  label: string;
  threads: number;
  unit: string;
  flops: number | null;
  bytes: number | null;
  vss: { median_s: number } | null;
  peer_name: string | null;
  peer: { median_s: number } | null;
  ratio: number | null;
  load1: number;
  other_cores?: number | null;
}

interface Run {
  date: string;
  cpu: { model: string };
  backend: string | null;
  simd?: string | null;
  mode: string;
  load_start: number[];
  load_end: number[];
  rows: RunRow[];
}

function rate(r: RunRow, t: number): string {
  const work = r.flops ?? r.bytes;
  if (!work || !Number.isFinite(t)) return '-';
  const v = work / t / 1e9;
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${r.unit}`;
}

function fmtOther(rs: RunRow[]): string {
  const o = rs.map((r) => r.other_cores).filter((x): x is number => typeof x === 'number');
  return o.length ? median(o).toFixed(2) : '-';
}

function main(): void {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error('usage: node dist/bench/summarize.js run1.json [run2.json ...]');
    process.exit(2);
  }
  const runs = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Run);
  const keys: string[] = [];
  const byKey = new Map<string, RunRow[]>();
  for (const run of runs) {
    for (const r of run.rows) {
      const k = `${r.id}@${r.threads}`;
      if (!byKey.has(k)) { byKey.set(k, []); keys.push(k); }
      byKey.get(k)!.push(r);
    }
  }
  console.log(`${runs.length} run(s): ${runs.map((r) => r.date).join(', ')}`);
  console.log(`cpu: ${runs[0]!.cpu.model}; backend: ${runs[0]!.backend}${runs[0]!.simd ? ` (${runs[0]!.simd})` : ''}; mode: ${runs[0]!.mode}`);
  console.log(`load average (1/5/15 min) at start of each run: ${runs.map((r) => r.load_start.map((x) => x.toFixed(2)).join('/')).join(', ')}`);
  console.log(`load average at end of each run: ${runs.map((r) => r.load_end.map((x) => x.toFixed(2)).join('/')).join(', ')}\n`);
  console.log('| work | thr | VSS time | VSS rate | peer | peer time | peer rate | ratio | ratio range over runs | load | other |');
  console.log('|:--|--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|');
  for (const k of keys) {
    const rs = byKey.get(k)!;
    const r0 = rs[0]!;
    const vt = median(rs.filter((r) => r.vss).map((r) => r.vss!.median_s));
    const pt = median(rs.filter((r) => r.peer).map((r) => r.peer!.median_s));
    const ratios = rs.filter((r) => r.ratio !== null).map((r) => r.ratio!);
    const ratio = median(ratios);
    const range = ratios.length > 1 ? `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}` : '-';
    console.log(`| ${r0.label} | ${r0.threads} | ${formatTime(vt)} | ${rate(r0, vt)} | ${r0.peer_name ?? '-'} | `
      + `${formatTime(pt)} | ${rate(r0, pt)} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : '-'} | ${range} | `
      + `${median(rs.map((r) => r.load1)).toFixed(2)} | ${fmtOther(rs)} |`);
  }
}

main();
