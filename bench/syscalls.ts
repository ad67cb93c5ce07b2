import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Counts a process's system calls over a window with `perf stat` on the kernel's syscall tracepoints (counting
 * only: no tracing, no measurable slowdown of the process). Needs perf and root (or perf_event_paranoid ≤ -1).
 */

/** Counted per window, grouped into what the proxy does with them. */
const GROUPS: Record<string, readonly string[]> = {
  writes: ['write', 'writev', 'sendto', 'sendmsg'],
  reads: ['read', 'readv', 'recvfrom', 'recvmsg'],
  polls: ['epoll_wait', 'epoll_pwait', 'epoll_pwait2'],
};
const TRACEFS = ['/sys/kernel/tracing/events/syscalls', '/sys/kernel/debug/tracing/events/syscalls'];
/** perf fails on an event the kernel lacks (epoll_pwait2 before Linux 5.11): ask only for the ones it has. */
const EVENTS = [
  'raw_syscalls:sys_enter',
  ...Object.values(GROUPS)
    .flat()
    .map((s) => `sys_enter_${s}`)
    .filter((e) => TRACEFS.some((dir) => existsSync(`${dir}/${e}`)))
    .map((e) => `syscalls:${e}`),
];

export interface SyscallCounts {
  total: number;
  writes: number;
  reads: number;
  polls: number;
}

/** Whether `perf stat` can count syscall tracepoints here. */
export function syscallCountingAvailable(): boolean {
  const r = spawnSync('perf', ['stat', '-x,', '-e', 'raw_syscalls:sys_enter', 'true'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 && /raw_syscalls:sys_enter/.test(r.stderr);
}

/** Starts counting `pid`'s syscalls; `stop()` ends the window and resolves with the counts. */
export function countSyscalls(pid: number): { stop(): Promise<SyscallCounts | null> } {
  const child = spawn('perf', ['stat', '-x,', '--no-big-num', '-e', EVENTS.join(','), '-p', String(pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let out = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => (out += s));
  const exited = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.once('error', () => resolve());
  });
  return {
    async stop() {
      child.kill('SIGINT');
      await exited;
      return parsePerfStat(out);
    },
  };
}

/** Parses `perf stat -x,` output into the groups; null when perf counted nothing. */
export function parsePerfStat(text: string): SyscallCounts | null {
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [value, , event] = line.split(',');
    if (event === undefined || value === undefined) continue;
    const n = Number(value);
    if (Number.isFinite(n)) counts.set(event.replace(/^syscalls:sys_enter_/, ''), n);
  }
  const total = counts.get('raw_syscalls:sys_enter');
  if (total === undefined) return null;
  const sum = (names: readonly string[]): number => names.reduce((a, s) => a + (counts.get(s) ?? 0), 0);
  return { total, writes: sum(GROUPS['writes'] ?? []), reads: sum(GROUPS['reads'] ?? []), polls: sum(GROUPS['polls'] ?? []) };
}
