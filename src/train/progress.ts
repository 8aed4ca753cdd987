/**
 * A progress display for long loops (training steps, sampling steps): count, percentage, rate, ETA and a
 * few named values. On a terminal it redraws one line in place; elsewhere (a log file, CI, a pipe) it
 * prints a plain line every `every` steps so the log stays readable.
 */

/** The part of a stream the display needs; process.stderr fits. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  total: number;
  /** Shown first on the line, e.g. 'train' or 'sampling'. */
  label?: string;
  /** Default process.stderr. */
  stream?: ProgressStream;
  /** Force terminal (redrawn line) or plain mode; default: the stream's isTTY. */
  tty?: boolean;
  /** Plain mode: print a line every this many steps (default: about 20 lines per run). */
  every?: number;
  /** Name of the counted unit in the rate (default 'steps'). */
  unit?: string;
  /** Name of the items a step processes, for the second rate (e.g. 'img'); needs `items` in update(). */
  itemsUnit?: string;
  /** Where counting starts (a resumed run): the rate and ETA only use steps done since then. */
  start?: number;
  /** Terminal mode: fewest milliseconds between redraws (default 100). */
  redrawMs?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

export interface ProgressUpdate {
  /** Items processed by the steps since the previous update (e.g. images in the batch). */
  items?: number;
  /** Values shown after the rates, in insertion order; numbers are printed compactly. */
  values?: Record<string, number | string>;
}

/** "1h02m", "3m05s", "12s", "0.4s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/** Four significant digits, switching to exponent form for very small or large values. */
export function formatValue(v: number | string): string {
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return v.toPrecision(4);
}

function formatRate(perSecond: number, unit: string): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return `- ${unit}/s`;
  if (perSecond >= 100) return `${Math.round(perSecond)} ${unit}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)} ${unit}/s`;
  // Slow loops read better as time per step.
  return `${formatDuration(1 / perSecond)}/${unit.replace(/s$/, '')}`;
}

export class Progress {
  readonly total: number;
  private readonly label: string;
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly every: number;
  private readonly unit: string;
  private readonly itemsUnit: string | undefined;
  private readonly redrawMs: number;
  private readonly now: () => number;
  private readonly startStep: number;
  private readonly startTime: number;
  private current: number;
  private items = 0;
  private values: Record<string, number | string> = {};
  /** Recent (time, step, items) points: the rate is measured over the last few seconds, not the whole run. */
  private window: { t: number; step: number; items: number }[] = [];
  private lastDraw = -Infinity;
  private lineShown = false;
  private finished = false;

  constructor(opts: ProgressOptions) {
    this.total = opts.total;
    this.label = opts.label ?? '';
    this.stream = opts.stream ?? process.stderr;
    this.tty = opts.tty ?? Boolean(this.stream.isTTY);
    this.every = Math.max(1, Math.floor(opts.every ?? Math.ceil(opts.total / 20)));
    this.unit = opts.unit ?? 'steps';
    this.itemsUnit = opts.itemsUnit;
    this.redrawMs = opts.redrawMs ?? 100;
    this.now = opts.now ?? (() => performance.now());
    this.startStep = opts.start ?? 0;
    this.current = this.startStep;
    this.startTime = this.now();
    this.window.push({ t: this.startTime, step: this.current, items: 0 });
  }

  get step(): number {
    return this.current;
  }

  /** Steps per second over the recent window (0 before the first step). */
  rate(): number {
    const first = this.window[0], last = this.window[this.window.length - 1];
    const dt = (last.t - first.t) / 1000;
    return dt > 0 ? (last.step - first.step) / dt : 0;
  }

  itemRate(): number {
    const first = this.window[0], last = this.window[this.window.length - 1];
    const dt = (last.t - first.t) / 1000;
    return dt > 0 ? (last.items - first.items) / dt : 0;
  }

  /** Seconds left at the current rate (Infinity before anything is measured). */
  eta(): number {
    const rate = this.rate();
    return rate > 0 ? (this.total - this.current) / rate : Infinity;
  }

  /** Seconds since this display was created. */
  elapsed(): number {
    return (this.now() - this.startTime) / 1000;
  }

  /** Record that `step` steps are done (absolute, not an increment). */
  update(step: number, update: ProgressUpdate = {}): void {
    this.current = step;
    this.items += update.items ?? 0;
    if (update.values) this.values = { ...this.values, ...update.values };
    const t = this.now();
    this.window.push({ t, step, items: this.items });
    // Keep about ten seconds of history, and at least two points.
    while (this.window.length > 2 && t - this.window[1].t > 10_000) this.window.shift();
    if (this.window.length > 200) this.window.splice(1, this.window.length - 200);

    if (this.tty) {
      if (t - this.lastDraw >= this.redrawMs || step >= this.total) {
        this.lastDraw = t;
        this.redraw();
      }
    } else if (step % this.every === 0 || step >= this.total) {
      this.stream.write(`${this.line()}\n`);
    }
  }

  /** Print a message without breaking the progress line (it is redrawn below the message). */
  log(message: string): void {
    if (this.tty && this.lineShown) {
      this.stream.write(`\r\x1b[K${message}\n`);
      this.redraw();
    } else {
      this.stream.write(`${message}\n`);
    }
  }

  /** Leave the last state on screen and move to a fresh line. Safe to call twice. */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.tty && this.lineShown) {
      this.redraw();
      this.stream.write('\n');
    }
  }

  /** The status text: "train 120/1000 12% | 8.1 steps/s 518 img/s | ETA 1m48s | loss 0.4312". */
  line(): string {
    const pct = this.total > 0 ? Math.floor((100 * this.current) / this.total) : 100;
    const width = String(this.total).length;
    const parts = [`${this.label ? `${this.label} ` : ''}${String(this.current).padStart(width)}/${this.total} ${String(pct).padStart(3)}%`];
    const rates = [formatRate(this.rate(), this.unit)];
    if (this.itemsUnit) rates.push(formatRate(this.itemRate(), this.itemsUnit));
    parts.push(rates.join(' '));
    parts.push(this.current >= this.total ? `took ${formatDuration(this.elapsed())}` : `ETA ${formatDuration(this.eta())}`);
    const shown = Object.entries(this.values).map(([k, v]) => `${k} ${formatValue(v)}`);
    if (shown.length) parts.push(shown.join(' '));
    return parts.join(' | ');
  }

  private redraw(): void {
    // A terminal of unknown width (0 under some emulators) is taken as 100 columns.
    const columns = this.stream.columns || 100;
    let text = this.line();
    // A bar of fixed width, when the terminal has room for it beside the text.
    const barCells = 20;
    if (columns - text.length - 4 >= barCells && this.total > 0) {
      const filled = Math.round((barCells * Math.min(this.current, this.total)) / this.total);
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(barCells - filled)}]`;
      const cut = text.indexOf(' | ');
      text = `${text.slice(0, cut)} ${bar}${text.slice(cut)}`;
    }
    if (text.length > columns - 1) text = text.slice(0, Math.max(0, columns - 1));
    this.stream.write(`\r\x1b[K${text}`);
    this.lineShown = true;
  }
}
