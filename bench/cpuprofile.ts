import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Reads a V8 .cpuprofile (from `node --cpu-prof`) and says where the time went: self and total time per function,
 * self time per area (Sluice's folders, undici, Node internals, GC), and optionally folded stacks for a flame graph
 * (`flamegraph.pl` or speedscope read them).
 *
 *   node bench/cpuprofile.ts FILE.cpuprofile [--top N] [--folded OUT.folded]
 */

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  name: string;
  where: string;
  selfMs: number;
  totalMs: number;
}

export interface ProfileSummary {
  /** Sampled time, excluding (idle). */
  busyMs: number;
  idleMs: number;
  functions: FunctionTime[];
  areas: { area: string; selfMs: number }[];
  folded: string;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function where(cf: CallFrame): string {
  if (cf.url === '') return '';
  const path = cf.url.startsWith('file://') ? fileURLToPath(cf.url) : cf.url;
  return `${path.startsWith(ROOT) ? path.slice(ROOT.length) : path}:${cf.lineNumber + 1}`;
}

/** Which part of the system a frame belongs to. */
function areaOf(cf: CallFrame): string {
  const u = cf.url;
  if (u === '') {
    if (cf.functionName === '(garbage collector)') return 'GC';
    if (cf.functionName === '(program)') return 'V8/native (program)';
    if (cf.functionName === '(idle)') return 'idle';
    return 'native builtins';
  }
  const m = /\/src\/([^/]+)\//.exec(u);
  if (m && !u.includes('node_modules')) return `src/${m[1]}`;
  if (u.includes('/src/') && !u.includes('node_modules')) return 'src';
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (dep) return `dep ${dep[1]}`;
  if (u.startsWith('node:')) {
    const mod = /^node:(?:internal\/)?([^/]+)/.exec(u);
    return `node ${mod?.[1] ?? u}`;
  }
  return 'other';
}

export function summarizeProfile(profile: CpuProfile): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const info = new Map<string, { name: string; where: string }>();
  const areas = new Map<string, number>();
  const folded = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  const keyOf = (cf: CallFrame): string => `${cf.functionName || '(anonymous)'} ${where(cf)}`;

  profile.samples.forEach((id, i) => {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    const leaf = byId.get(id);
    if (!leaf) return;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += dt;
      return;
    }
    busy += dt;
    const leafKey = keyOf(leaf.callFrame);
    self.set(leafKey, (self.get(leafKey) ?? 0) + dt);
    const area = areaOf(leaf.callFrame);
    areas.set(area, (areas.get(area) ?? 0) + dt);
    // Walk to the root: each function counts once per sample in total time, however deep its recursion.
    const seen = new Set<string>();
    const stack: string[] = [];
    for (let cur: ProfileNode | undefined = leaf; cur; cur = byId.get(parent.get(cur.id) ?? -1)) {
      const k = keyOf(cur.callFrame);
      if (cur.callFrame.functionName !== '(root)') stack.push(cur.callFrame.functionName || '(anonymous)');
      if (!info.has(k)) info.set(k, { name: cur.callFrame.functionName || '(anonymous)', where: where(cur.callFrame) });
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
    const line = stack.reverse().join(';');
    folded.set(line, (folded.get(line) ?? 0) + dt);
  });

  const functions = [...self.keys(), ...[...total.keys()].filter((k) => !self.has(k))]
    .map((k) => ({ ...(info.get(k) ?? { name: k, where: '' }), selfMs: self.get(k) ?? 0, totalMs: total.get(k) ?? 0 }))
    .filter((f) => f.name !== '(root)');
  return {
    busyMs: busy,
    idleMs: idle,
    functions,
    areas: [...areas].map(([area, selfMs]) => ({ area, selfMs })).sort((a, b) => b.selfMs - a.selfMs),
    folded: [...folded].map(([stack, ms]) => `${stack} ${Math.round(ms * 1000)}`).join('\n'),
  };
}

/** A text report of the hottest functions (by self and by total time) and of self time per area. */
export function formatSummary(s: ProfileSummary, top: number): string {
  const pct = (ms: number): string => `${((ms / s.busyMs) * 100).toFixed(1).padStart(5)}%`;
  const out: string[] = [`busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms (percentages are of busy time)`];
  out.push('self time by area:');
  for (const a of s.areas.slice(0, 12)) out.push(`  ${pct(a.selfMs)}  ${a.area}`);
  out.push(`top ${top} functions by self time:`);
  for (const f of [...s.functions].sort((a, b) => b.selfMs - a.selfMs).slice(0, top)) {
    out.push(`  ${pct(f.selfMs)} self ${pct(f.totalMs)} total  ${f.name}  ${f.where}`);
  }
  out.push(`top ${top} Sluice functions (src/) by total time:`);
  for (const f of s.functions.filter((x) => x.where.startsWith('src/')).sort((a, b) => b.totalMs - a.totalMs).slice(0, top)) {
    out.push(`  ${pct(f.totalMs)} total ${pct(f.selfMs)} self  ${f.name}  ${f.where}`);
  }
  return out.join('\n');
}

export function summarizeProfileFile(path: string, top: number): string {
  return formatSummary(summarizeProfile(JSON.parse(readFileSync(path, 'utf8')) as CpuProfile), top);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const file = args[0];
  if (file === undefined || file.startsWith('-')) {
    console.error('Usage: node bench/cpuprofile.ts FILE.cpuprofile [--top N] [--folded OUT.folded]');
    process.exit(2);
  }
  const topAt = args.indexOf('--top');
  const foldedAt = args.indexOf('--folded');
  const summary = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
  console.log(formatSummary(summary, topAt >= 0 ? Number(args[topAt + 1]) : 25));
  const out = foldedAt >= 0 ? args[foldedAt + 1] : undefined;
  if (out !== undefined) {
    writeFileSync(out, `${summary.folded}\n`);
    console.log(`folded stacks (µs) written to ${out}`);
  }
}
