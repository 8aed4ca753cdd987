/**
 * `npm run bench:engine` — the VSS kernels against OpenBLAS (sgemm) and PyTorch (the rest).
 *
 *   node dist/bench/engine.js [--quick] [--only gemm,conv,attn,norm,dispatch,train,half] [--rows train_vit] [--threads 1,2]
 *                             [--rounds N] [--backend native|js] [--simd avx512|avx2|portable] [--json out.json]
 *
 * Prints one Markdown table row per (work, thread count) as it completes: VSS median time and rate,
 * the peer's, and ratio = VSS speed / peer speed (> 1: VSS is faster). The peer is OpenBLAS, PyTorch, or
 * (the half rows) VSS itself with f32 weights. See bench/README.md.
 */
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allCases, GROUPS, type Case, type Ctx, type Group, type Prepared } from './cases.js';
import {
  checkTorch, cpuInfo, prepareOpenBlas, runOpenBlas, TorchPeer, type PeerResult,
} from './lib/peers.js';
import { foreignCores, snapshot } from './lib/cpu.js';
import { formatTime, median, spread, timeIt, type TimeOptions, type Timing } from './lib/timing.js';
import { loadApi, loadVss, type EngineApi } from './lib/vss.js';
import { loadTrainingApi, type TrainingApi } from './lib/training.js';

interface Args {
  quick: boolean;
  only: Set<Group>;
  /** keep only rows whose id contains one of these (empty: all) */
  rows: string[];
  threads: number[];
  backend: 'native' | 'js' | null;
  simd: 'avx512' | 'avx2' | 'portable' | null;
  json: string | null;
  /** measure each row this many times, VSS and peer alternating which goes first */
  rounds: number;
}

const USAGE = 'usage: node dist/bench/engine.js [--quick] [--only gemm|conv|attn|norm|dispatch|train|half[,...]] '
  + '[--rows ID-PART[,...]] [--threads 1,2] [--rounds N] [--backend native|js] [--simd avx512|avx2|portable] [--json out.json]';

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, only: new Set(GROUPS), rows: [], threads: [1, 2], backend: null, simd: null, json: null, rounds: 1 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case '--quick': a.quick = true; break;
      case '--only': {
        const groups = value().split(',').map((s) => s.trim()).filter(Boolean);
        for (const g of groups) if (!(GROUPS as readonly string[]).includes(g)) throw new Error(`unknown group '${g}'\n${USAGE}`);
        a.only = new Set(groups as Group[]);
        break;
      }
      case '--rows': a.rows = value().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--threads': {
        a.threads = value().split(',').map((s) => Number(s.trim()));
        if (a.threads.some((t) => !Number.isInteger(t) || t < 1)) throw new Error(`bad --threads\n${USAGE}`);
        break;
      }
      case '--backend': {
        const b = value();
        if (b !== 'native' && b !== 'js') throw new Error(`--backend must be native or js\n${USAGE}`);
        a.backend = b;
        break;
      }
      case '--simd': {
        const v = value();
        if (v !== 'avx512' && v !== 'avx2' && v !== 'portable') throw new Error(`--simd must be avx512, avx2 or portable\n${USAGE}`);
        a.simd = v;
        break;
      }
      case '--rounds': {
        a.rounds = Number(value());
        if (!Number.isInteger(a.rounds) || a.rounds < 1) throw new Error(`bad --rounds\n${USAGE}`);
        break;
      }
      case '--json': a.json = value(); break;
      case '-h': case '--help': console.log(USAGE); process.exit(0); break;
      default: throw new Error(`unknown argument '${arg}'\n${USAGE}`);
    }
  }
  return a;
}

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bench', 'peers'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

interface Side extends Timing {
  rate: number | null;
}

interface Row {
  id: string;
  group: Group;
  label: string;
  threads: number;
  unit: string;
  flops: number | null;
  bytes: number | null;
  vss: (Side & { check_rel_err: number | null; check_limit: number }) | null;
  vss_error: string | null;
  peer_name: string | null;
  peer: (Side & { max_rss_mib?: number }) | null;
  peer_error: string | null;
  /** model parameters on each side (the training rows) */
  params?: { vss: number | null; peer: number | null };
  /** VSS speed / peer speed = peer median / VSS median */
  ratio: number | null;
  /** with --rounds > 1: each round's ratio (`ratio` compares the medians of the rounds' medians) */
  round_ratios?: number[];
  load1: number;
  /** average number of cores other processes used while the row ran (null: unknown) */
  other_cores: number | null;
}

const CHECK_LIMIT = 1e-3;

/**
 * One side's timings over several rounds: the median of the rounds' medians, and in p10/p90 the lowest
 * and highest round median (so ± shows how far the rounds disagree); one round keeps its own.
 */
function acrossRounds(rounds: Timing[]): Timing {
  const medians = rounds.map((r) => r.median_s);
  return {
    reps: rounds.reduce((n, r) => n + r.reps, 0),
    median_s: median(medians),
    min_s: Math.min(...rounds.map((r) => r.min_s)),
    max_s: Math.max(...rounds.map((r) => r.max_s)),
    p10_s: rounds.length === 1 ? rounds[0]!.p10_s : Math.min(...medians),
    p90_s: rounds.length === 1 ? rounds[0]!.p90_s : Math.max(...medians),
  };
}

function rateOf(c: Case, t: Timing): number | null {
  if (c.flops) return c.flops / t.median_s / 1e9;
  if (c.bytes) return c.bytes / t.median_s / 1e9;
  if (c.items) return c.items / t.median_s;
  return null;
}

function unitOf(c: Case): string {
  return c.flops ? 'GFLOPS' : c.bytes ? 'GB/s' : c.items ? 'img/s' : '';
}

const pct = (x: number): string => `±${(x * 100).toFixed(x < 0.095 ? 1 : 0)}%`;

const COLS: Array<[string, number, 'l' | 'r']> = [
  ['work', 46, 'l'], ['thr', 3, 'r'], ['VSS time', 9, 'r'], ['VSS rate', 13, 'r'], ['VSS ±', 6, 'r'],
  ['peer', 8, 'l'], ['peer time', 9, 'r'], ['peer rate', 13, 'r'], ['peer ±', 6, 'r'], ['ratio', 6, 'r'],
  ['load', 4, 'r'], ['other', 5, 'r'],
];

function tableLine(cells: string[]): string {
  return `| ${cells.map((c, i) => (COLS[i]![2] === 'l' ? c.padEnd(COLS[i]![1]) : c.padStart(COLS[i]![1]))).join(' | ')} |`;
}

function fmtRate(r: number | null, unit: string): string {
  if (r === null) return '-';
  return `${r >= 100 ? r.toFixed(0) : r.toFixed(1)} ${unit}`;
}

function rowLine(r: Row): string {
  const v = r.vss, p = r.peer;
  const bad = v?.check_rel_err != null && !(v.check_rel_err <= v.check_limit) ? ' (WRONG)' : '';
  return tableLine([
    r.label + bad,
    String(r.threads),
    v ? formatTime(v.median_s) : r.vss_error ? 'error' : '-',
    v ? fmtRate(v.rate, r.unit) : '-',
    v ? pct(spread(v)) : '-',
    r.peer_name ?? '-',
    p ? formatTime(p.median_s) : r.peer_error ? 'error' : '-',
    p ? fmtRate(p.rate, r.unit) : '-',
    p ? pct(spread(p)) : '-',
    r.ratio === null ? '-' : r.ratio.toFixed(2),
    r.load1.toFixed(2),
    r.other_cores === null ? '-' : r.other_cores.toFixed(2),
  ]);
}

/** "VSS 3,691,713 · PyTorch 3,691,713 (same)": the two models' sizes, which must agree. */
function paramsLine(p: { vss: number | null; peer: number | null }, peerName: string): string {
  const n = (x: number | null): string => (x === null ? '?' : x.toLocaleString('en'));
  if (p.peer === null) return `parameters: VSS ${n(p.vss)} (no count from the peer)`;
  const verdict = p.vss === null ? '' : p.vss === p.peer ? ' (same)' : ` (DIFFER by ${(p.vss - p.peer).toLocaleString('en')})`;
  return `parameters: VSS ${n(p.vss)} · ${peerName} ${n(p.peer)}${verdict}`;
}

function shortErr(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const root = repoRoot();
  const cpu = cpuInfo();
  const cases = allCases(args.quick).filter((c) => args.only.has(c.group) && (!args.quick || c.quick)
    && (args.rows.length === 0 || args.rows.some((r) => c.id.includes(r))));
  if (cases.length === 0) throw new Error(`no benchmark rows match --only/--rows\n${USAGE}`);
  // budget: a VSS call slow enough (the JS backend) to need more than this many seconds for its reps gets fewer
  const base: TimeOptions = args.quick
    ? { reps: 3, minTime: 0.2, warmup: 1, budget: 8 }
    : { reps: 5, minTime: 0.6, warmup: 1, budget: 30 };
  const notes: string[] = [];
  const note = (s: string): void => { notes.push(s); console.log(`note: ${s}`); };

  // ---- VSS
  const { vss, error: vssError } = await loadVss();
  if (!vss) note(`VSS columns skipped: ${vssError}`);
  if (vss && args.backend) {
    try { vss.backend.setBackend(args.backend); } catch (e) { note(`--backend ${args.backend}: ${shortErr(e)}`); }
  }
  if (vss && args.simd) {
    if (!vss.native?.setSimdPath?.(args.simd)) note(`--simd ${args.simd}: not available on this CPU/build`);
  }
  const simd = vss && vss.backend.K.name === 'native' ? vss.native?.cpuFeatures?.() ?? null : null;
  if (vss && vss.backend.K.name !== 'native') note(`VSS backend is '${vss.backend.K.name}' (the native addon is not in use)`);
  if (vss?.nativeError) note(`thread count cannot be set (${vss.nativeError}); VSS rows run only for threads=1`);
  let api: EngineApi | null = null;
  if (vss && cases.some((c) => c.group === 'dispatch')) {
    const r = await loadApi();
    api = r.api;
    if (r.error) note(`public-API dispatch row skipped: ${r.error}`);
  }
  let train: TrainingApi | null = null;
  if (vss && cases.some((c) => c.group === 'train')) {
    const r = await loadTrainingApi();
    train = r.train;
    if (r.error) note(`VSS training rows skipped: ${r.error}`);
  }
  const ctx: Ctx | null = vss
    ? { K: vss.backend.K, api, train, setMatmulPrecision: vss.native?.setNativeMatmulPrecision ?? null }
    : null;

  // ---- peers
  let blasBin: string | null = null;
  if (cases.some((c) => c.peer?.kind === 'openblas')) {
    const p = prepareOpenBlas(root);
    if (p.ok) blasBin = p.bin;
    else note(`OpenBLAS peer skipped: ${p.why}`);
  }
  let torchOk = false;
  if (cases.some((c) => c.peer?.kind === 'torch')) {
    const why = checkTorch(root);
    torchOk = why === null;
    if (why) note(`PyTorch peer skipped: ${why}`);
  }

  const addonPath = join(root, 'build', 'Release', 'vss_native.node');
  const addonBuilt = existsSync(addonPath) ? statSync(addonPath).mtime.toISOString() : null;
  const startLoad = loadavg();
  const started = new Date();
  console.log(`# VSS engine benchmark — ${started.toString()}`);
  console.log(`cpu: ${cpu.model} (${cpus().length} logical CPUs, ${cpu.avx512 ? 'AVX-512' : cpu.flags.includes('avx2') ? 'AVX2, no AVX-512' : 'no AVX2'}); `
    + `node ${process.version}; VSS backend: ${vss ? vss.backend.K.name : 'n/a'}${simd ? ` (${simd})` : ''}; mode: ${args.quick ? 'quick' : 'full'}`
    + `${addonBuilt ? `; addon built ${addonBuilt}` : ''}`);
  console.log(`load average at start: ${startLoad.map((x) => x.toFixed(2)).join(' ')}`);
  console.log('ratio = VSS speed / peer speed (peer median time / VSS median time); ± = half the p10–p90 range over the median (min–max for ≤ 10 samples); load = 1-min load average after the row (it counts the bench\'s own threads); other = cores other processes used during the row\n');
  console.log(tableLine(COLS.map((c) => c[0])));
  console.log(`|${COLS.map((c) => (c[2] === 'r' ? `${'-'.repeat(c[1] + 1)}:` : `:${'-'.repeat(c[1] + 1)}`)).join('|')}|`);

  const rows: Row[] = [];
  const peerInfo: Record<string, unknown> = {};
  for (const threads of args.threads) {
    let vssThreadsOk = false;
    if (vss && !vss.nativeError) {
      try {
        vss.native!.setNumThreads!(threads);
        const got = vss.native!.getNumThreads?.() ?? threads;
        if (got !== threads && vss.backend.K.name === 'native') note(`setNumThreads(${threads}) left ${got} threads`);
        vssThreadsOk = got === threads || vss.backend.K.name !== 'native';
      } catch (e) {
        note(`setNumThreads(${threads}): ${shortErr(e)}`);
      }
    } else if (vss && threads === 1) {
      vssThreadsOk = true; // best effort: whatever the backend does by default, labelled 1
    }
    let torch: TorchPeer | null = null;
    if (torchOk && cases.some((c) => c.peer?.kind === 'torch' && (c.onlyThreads ?? threads) === threads)) {
      torch = new TorchPeer(root, threads, cpu);
      try {
        const h = await torch.header;
        peerInfo[`torch_${threads}`] = h;
      } catch (e) {
        note(`PyTorch peer (threads=${threads}) failed to start: ${shortErr(e)}`);
        torch = null;
      }
    }
    for (const c of cases) {
      if (c.onlyThreads !== undefined && c.onlyThreads !== threads) continue;
      const opts: TimeOptions = { ...base, ...c.timing };
      const row: Row = {
        id: c.id, group: c.group, label: c.label, threads, unit: unitOf(c),
        flops: c.flops ?? null, bytes: c.bytes ?? null,
        vss: null, vss_error: null, peer_name: null, peer: null, peer_error: null, ratio: null, load1: 0,
        other_cores: null,
      };
      const pids = torch?.pid !== undefined ? [torch.pid] : [];
      const before = snapshot(pids);
      // VSS and the peer are prepared once and timed in `args.rounds` rounds; odd rounds run the peer
      // first, so that a slow spell of the shared machine does not always fall on the same side.
      let vssParams: number | null = null;
      let vssPrepared: Prepared | null = null;
      if (ctx && vssThreadsOk) {
        try {
          vssPrepared = c.vss(ctx);
          vssParams = vssPrepared.params ?? null;
        } catch (e) {
          row.vss_error = shortErr(e);
        }
      } else if (vss) {
        row.vss_error = 'thread count not settable';
      }
      const vssRounds: Timing[] = [];
      const timeVss = (): void => {
        if (!vssPrepared || row.vss_error) return;
        try {
          vssRounds.push(timeIt(vssPrepared.run, opts));
        } catch (e) {
          row.vss_error = shortErr(e);
        }
      };
      let peerParams: number | null = null;
      let peerPrepared: Prepared | null = null;
      const peerRounds: PeerResult[] = [];
      const timePeer = async (): Promise<void> => {
        if (!c.peer || row.peer_error) return;
        try {
          if (c.peer.kind === 'openblas' && blasBin) {
            row.peer_name = 'OpenBLAS';
            const o = runOpenBlas(blasBin, c.peer.arg, threads, cpu, opts);
            peerInfo[`openblas_${threads}`] = { core: o.core, threads: o.threads };
            peerRounds.push(o.result);
          } else if (c.peer.kind === 'torch' && torch) {
            row.peer_name = 'PyTorch';
            peerRounds.push(await torch.run({ id: c.id, ...c.peer.spec, reps: opts.reps, min_time: opts.minTime, warmup: opts.warmup }));
          } else if (c.peer.kind === 'vss' && ctx && vssThreadsOk) {
            row.peer_name = c.peer.name;
            peerPrepared ??= c.peer.prepare(ctx);
            peerRounds.push(timeIt(peerPrepared.run, opts));
          }
        } catch (e) {
          row.peer_error = shortErr(e);
        }
      };
      for (let round = 0; round < args.rounds; round++) {
        if (round % 2 === 0) { timeVss(); await timePeer(); } else { await timePeer(); timeVss(); }
      }
      if (vssRounds.length && !row.vss_error) {
        let err: number | null = null;
        try {
          err = vssPrepared!.check ? vssPrepared!.check() : null;
        } catch (e) {
          row.vss_error = shortErr(e);
        }
        const t = acrossRounds(vssRounds);
        if (!row.vss_error) row.vss = { ...t, rate: rateOf(c, t), check_rel_err: err, check_limit: c.checkLimit ?? CHECK_LIMIT };
      }
      if (peerRounds.length && !row.peer_error) {
        const t = acrossRounds(peerRounds.map((r) => ({ ...r, p10_s: r.p10_s ?? r.min_s, p90_s: r.p90_s ?? r.max_s })));
        row.peer = { ...t, rate: rateOf(c, t) };
        const rss = peerRounds.map((r) => r.max_rss_mib).filter((x): x is number => x !== undefined);
        if (rss.length) row.peer.max_rss_mib = Math.max(...rss);
        peerParams = peerRounds[0]!.params ?? null;
      }
      if (row.vss && row.peer) {
        row.ratio = row.peer.median_s / row.vss.median_s;
        if (args.rounds > 1) row.round_ratios = vssRounds.map((v, i) => peerRounds[i]!.median_s / v.median_s);
      }
      if (vssParams !== null || peerParams !== null) row.params = { vss: vssParams, peer: peerParams };
      row.load1 = loadavg()[0]!;
      row.other_cores = foreignCores(before, snapshot(pids));
      rows.push(row);
      console.log(rowLine(row));
      if (row.round_ratios) {
        const rr = row.round_ratios;
        console.log(`    rounds: ratio ${rr.map((x) => x.toFixed(2)).join(', ')} (range ${Math.min(...rr).toFixed(2)}–${Math.max(...rr).toFixed(2)})`);
      }
      if (row.vss_error) console.log(`    VSS error: ${row.vss_error}`);
      if (row.peer_error) console.log(`    peer error: ${row.peer_error}`);
      if (row.params) console.log(`    ${paramsLine(row.params, row.peer_name ?? 'peer')}`);
      if (c.checkLabel && row.vss?.check_rel_err != null) console.log(`    ${c.checkLabel}: ${row.vss.check_rel_err.toExponential(2)}`);
      if (row.vss?.check_rel_err != null && !(row.vss.check_rel_err <= row.vss.check_limit)) {
        console.log(`    VSS spot check failed: relative error ${row.vss.check_rel_err.toExponential(2)}`);
      }
    }
    torch?.close();
  }

  const endLoad = loadavg();
  console.log(`\nload average at end: ${endLoad.map((x) => x.toFixed(2)).join(' ')}`);
  const blasCores = Object.entries(peerInfo).filter(([k]) => k.startsWith('openblas')).map(([, v]) => (v as { core: string }).core);
  if (blasCores.length) console.log(`OpenBLAS core: ${[...new Set(blasCores)].join(', ')}${cpu.avx512 ? ' (OPENBLAS_CORETYPE=SkylakeX set: AVX-512 CPU)' : ''}`);
  const withRatio = rows.filter((r) => r.ratio !== null);
  const lowRatio = withRatio.filter((r) => r.ratio! < 0.5).sort((a, b) => a.ratio! - b.ratio!);
  if (lowRatio.length) {
    console.log(`${lowRatio.length} of ${withRatio.length} rows below half the peer's speed; lowest: `
      + lowRatio.slice(0, 6).map((r) => `${r.label} (t${r.threads}) ${r.ratio!.toFixed(2)}`).join('; '));
  }
  if (args.json) {
    const out = {
      date: started.toISOString(),
      cpu: { model: cpu.model, logical_cpus: cpus().length, avx512: cpu.avx512 },
      node: process.version,
      backend: vss ? vss.backend.K.name : null,
      simd,
      addon_built: addonBuilt,
      mode: args.quick ? 'quick' : 'full',
      threads: args.threads,
      argv: process.argv.slice(2),
      load_start: startLoad,
      load_end: endLoad,
      peers: peerInfo,
      notes,
      rows,
    };
    writeFileSync(resolve(args.json), JSON.stringify(out, null, 2) + '\n');
    console.log(`wrote ${resolve(args.json)}`);
  }
}

main().then(
  () => process.exit(0), // the native thread pool may keep the event loop alive
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
