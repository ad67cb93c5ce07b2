import { readdirSync, readFileSync } from 'node:fs';

/**
 * Per-process accounting from Linux's /proc: CPU time and resident memory of the processes under test.
 */

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat. It is 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** The process and its descendants, living now (from /proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        for (const c of readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'latin1').split(' ')) if (c.trim() !== '') out.push(Number(c));
      } catch {
        // the task ended meanwhile
      }
    }
  }
  return out;
}

/**
 * CPU time (user + system, all threads) the process and its living descendants have used so far, in ms, from
 * /proc/<pid>/stat; `sys` is the part spent in the kernel. Descendants count because a proxy may run workers
 * (nginx's master and workers, `sluice serve --workers N`); each worker lives for the whole measurement, so none of
 * its CPU is lost when it exits. NaN when the process is gone.
 */
export function cpuTimes(pid: number): { total: number; sys: number } {
  let total = 0;
  let sys = 0;
  for (const p of processTree(pid)) {
    const t = ownCpuTimes(p);
    if (Number.isNaN(t.total) && p === pid) return t;
    if (Number.isNaN(t.total)) continue;
    total += t.total;
    sys += t.sys;
  }
  return { total, sys };
}

function ownCpuTimes(pid: number): { total: number; sys: number } {
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

/** Resident set size in KiB of the process and its descendants (each one's VmRSS). NaN when the process is gone. */
export function rssKiB(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) {
    const kib = ownRssKiB(p);
    if (Number.isNaN(kib) && p === pid) return NaN;
    if (!Number.isNaN(kib)) sum += kib;
  }
  return sum;
}

function ownRssKiB(pid: number): number {
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
