import { readFileSync } from 'node:fs';

/**
 * Per-process accounting from Linux's /proc: CPU time and resident memory of the processes under test.
 */

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat. It is 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system, all threads) the process has used so far, in ms, from /proc/<pid>/stat; `sys` is the
 * part spent in the kernel. Children are not included; every process under test here is a single process. NaN when
 * the process is gone.
 */
export function cpuTimes(pid: number): { total: number; sys: number } {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return { total: NaN, sys: NaN };
  }
  // The command name (field 2) may hold spaces and parentheses; the fields after its closing ')' are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 (utime) and 15 (stime), counted from 1; the slice starts at field 3.
  const user = Number(fields[11]);
  const sys = Number(fields[12]);
  return { total: ((user + sys) * 1000) / CLOCK_TICKS_PER_SECOND, sys: (sys * 1000) / CLOCK_TICKS_PER_SECOND };
}

/** Resident set size in KiB (VmRSS from /proc/<pid>/status). NaN when the process is gone. */
export function rssKiB(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return NaN;
  }
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) : NaN;
}

/** CPU time all processes of the machine have used since boot (user, nice, system, irq, softirq, steal), ms. */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '';
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const ticks = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * A CPU snapshot of several processes, for the difference over a measurement window: `<name>` is user + system,
 * `<name>.sys` the system part; `machine` is every process on the machine.
 */
export function cpuSnapshot(pids: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = { machine: machineBusyMs() };
  for (const [name, pid] of Object.entries(pids)) {
    if (pid === undefined) continue;
    const t = cpuTimes(pid);
    out[name] = t.total;
    out[`${name}.sys`] = t.sys;
  }
  return out;
}

/** CPU used between two snapshots, ms per process. */
export function cpuDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, v] of Object.entries(after)) out[name] = v - (before[name] ?? NaN);
  return out;
}
