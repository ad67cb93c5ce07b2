import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Where a process's CPU went, from `perf record` samples: by area (Sluice's JavaScript, undici, Node's JavaScript,
 * V8's builtins, runtime and GC, Node's C++ and libuv, libc, the kernel), for two processes side by side. perf samples
 * CPU cycles; V8's `--cpu-prof` samples wall time on the JavaScript thread, so on a loaded two-core machine a sample
 * taken after the process was preempted charges the whole wait to whatever ran next (docs/performance.md, round 5).
 *
 * Record with JavaScript symbols, e.g. a churn run of Sluice and the node-http yardstick (as root):
 *
 *   NODE_OPTIONS=--perf-basic-prof-only-functions npm run bench -- --profile churn --targets sluice,node-http &
 *   perf record -a -F 1999 -o /tmp/perf.data -- sleep 75
 *   node bench/perf-areas.ts /tmp/perf.data PID_A PID_B [--top N]
 *
 * The pids are those of the /tmp/perf-PID.map files V8 wrote (`grep -l sluice.mjs /tmp/perf-*.map`).
 */

export interface PerfSample {
  pid: string;
  dso: string;
  sym: string;
  count: number;
}

/** Parses `perf report --sort pid,dso,sym -F sample,pid,dso,sym --stdio` lines. */
export function parsePerfReport(text: string): PerfSample[] {
  const out: PerfSample[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+):\S*\s+(\[JIT\] tid \d+|\S+)\s+\[.\]\s+(.*)$/.exec(line);
    if (m === null) continue;
    out.push({ count: Number(m[1]), pid: m[2] as string, dso: m[3] as string, sym: (m[4] as string).trim() });
  }
  return out;
}

/** The area a sample's code belongs to. */
export function perfArea(dso: string, sym: string): string {
  if (dso.startsWith('[JIT]')) {
    if (/\/src\/\S+\.ts:/.test(sym) && !sym.includes('/node_modules/')) return 'JS: Sluice (src/)';
    if (sym.includes('/node_modules/undici/')) return 'JS: undici';
    if (sym.includes('/node_modules/')) return 'JS: other packages';
    if (sym.includes('wasm-function') || sym.includes('wasm-to-js')) return 'wasm (undici\'s llhttp)';
    if (sym.includes('node:')) return 'JS: Node\'s own';
    return 'JS: other';
  }
  if (dso === 'node' || dso.endsWith('/node')) {
    if (sym.startsWith('Builtins_')) return 'V8 builtins';
    if (/Scaveng|MarkCompact|Marking|Sweep|Evacuat|v8::internal::Heap::|ConcurrentMarking|MinorMS/.test(sym)) return 'V8 GC';
    if (/compiler::|maglev|Maglev|baseline::|Parser|Scanner|Compile/.test(sym)) return 'V8 compilers and parser';
    if (sym.startsWith('v8::')) return 'V8 runtime and API';
    if (sym.startsWith('node::') || sym.startsWith('uv_') || sym.startsWith('uv__')) return 'Node C++ and libuv';
    return 'node binary, other';
  }
  if (dso.startsWith('[kernel')) return 'kernel';
  if (dso.startsWith('libc')) return 'libc';
  return dso;
}

export function perfAreas(samples: readonly PerfSample[], pid: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of samples) {
    if (s.pid !== pid) continue;
    const area = perfArea(s.dso, s.sym);
    m.set(area, (m.get(area) ?? 0) + s.count);
  }
  return m;
}

function symbolsOf(samples: readonly PerfSample[], pid: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of samples) {
    if (s.pid !== pid) continue;
    const key = `${perfArea(s.dso, s.sym)} | ${s.sym.replace(/(file:\/\/)?\/\S*?\/(src|node_modules)\//, '$2/')}`;
    m.set(key, (m.get(key) ?? 0) + s.count);
  }
  return m;
}

/** Two processes' areas side by side, then the symbols that differ most. */
export function formatPerfComparison(samples: readonly PerfSample[], a: string, b: string, top: number): string {
  const rows = (ma: Map<string, number>, mb: Map<string, number>, n: number): string[] =>
    [...new Set([...ma.keys(), ...mb.keys()])]
      .sort((x, y) => (mb.get(x) ?? 0) - (ma.get(x) ?? 0) - ((mb.get(y) ?? 0) - (ma.get(y) ?? 0)))
      .slice(0, n)
      .map((k) => {
        const va = ma.get(k) ?? 0;
        const vb = mb.get(k) ?? 0;
        return `${String(va).padStart(7)} ${String(vb).padStart(7)} ${`${va - vb >= 0 ? '+' : ''}${va - vb}`.padStart(7)}  ${k}`;
      });
  const areasA = perfAreas(samples, a);
  const areasB = perfAreas(samples, b);
  const total = (m: Map<string, number>): number => [...m.values()].reduce((x, y) => x + y, 0);
  return [
    `samples: pid ${a} ${total(areasA)}, pid ${b} ${total(areasB)} (A, B, A − B)`,
    ...rows(areasA, areasB, 30),
    '',
    `the ${top} symbols that differ most:`,
    ...rows(symbolsOf(samples, a), symbolsOf(samples, b), top),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, a, b] = process.argv.slice(2);
  if (file === undefined || a === undefined || b === undefined) {
    console.error('usage: node bench/perf-areas.ts PERF.DATA PID_A PID_B [--top N]');
    process.exit(2);
  }
  const at = process.argv.indexOf('--top');
  const r = spawnSync('perf', ['report', '-i', file, '--sort', 'pid,dso,sym', '-F', 'sample,pid,dso,sym', '--stdio'], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
  if (r.status !== 0) {
    console.error(`perf report failed: ${r.stderr || r.error?.message}`);
    process.exit(1);
  }
  console.log(formatPerfComparison(parsePerfReport(r.stdout), a, b, at === -1 ? 40 : Number(process.argv[at + 1])));
}
