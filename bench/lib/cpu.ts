/**
 * How busy the rest of the machine was while a row ran: CPU time spent by all processes (/proc/stat)
 * minus the bench's own (this process, its finished children, and its live peer process), per second of
 * wall time, i.e. the average number of cores other work took. More direct than the load average,
 * which lags by a minute and counts the bench's own threads. Linux only (null elsewhere).
 */
import { readFileSync } from 'node:fs';

const TICKS_PER_S = 100; // USER_HZ: 100 on every Linux ABI Node supports

function systemBusyTicks(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user already)
    return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  } catch {
    return null;
  }
}

function processTicks(pid: number | 'self', withChildren: boolean): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number); // f[0] is field 3 (state)
    return f[11]! + f[12]! + (withChildren ? f[13]! + f[14]! : 0);
  } catch {
    return 0;
  }
}

export interface CpuSnapshot {
  busy: number | null;
  own: number;
  wall: number;
}

export function snapshot(extraPids: readonly number[]): CpuSnapshot {
  let own = processTicks('self', true);
  for (const p of extraPids) own += processTicks(p, true);
  return { busy: systemBusyTicks(), own, wall: Number(process.hrtime.bigint()) * 1e-9 };
}

/** Average cores used by other processes between two snapshots (null when unknown). */
export function foreignCores(a: CpuSnapshot, b: CpuSnapshot): number | null {
  if (a.busy === null || b.busy === null || b.wall <= a.wall) return null;
  return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / TICKS_PER_S / (b.wall - a.wall));
}
