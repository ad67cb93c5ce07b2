import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Reads a sampled allocation profile (`npm run bench -- --heap-sample DIR`, written by bench/heap-sample.mjs) and says
 * who allocates: bytes per second over the sampled window, by area (Sluice's folders, undici, prom-client, Node's
 * internals, V8 builtins) and by function. Allocation is what the young generation's scavenges pay for; compare two
 * targets' files of the same profile, per chunk, with the chunk rates of the benchmark's table.
 *
 *   node bench/heapprofile.ts FILE.heapprofile [--top N]
 */

interface HeapNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: HeapNode[];
}

export interface HeapProfile {
  head: HeapNode;
  samples: Array<{ nodeId: number; size: number }>;
  /** Added by bench/heap-sample.mjs. */
  sampledSeconds?: number;
}

export interface HeapSummary {
  seconds: number;
  bytes: number;
  byArea: Array<[string, number]>;
  byFunction: Array<[string, number]>;
}

/** The area a frame's code belongs to, for the per-area split. */
export function areaOf(url: string): string {
  const src = url.indexOf('/src/');
  if (src !== -1 && !url.includes('/node_modules/')) return `sluice ${url.slice(src + 5).split('/')[0]}`;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) return url.slice(nm + 14).split('/')[0] as string;
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('/bench/')) return 'bench';
  return url === '' ? 'V8 builtins and native' : 'other';
}

export function summarizeHeapProfile(p: HeapProfile): HeapSummary {
  const bytesAt = new Map<number, number>();
  for (const s of p.samples) bytesAt.set(s.nodeId, (bytesAt.get(s.nodeId) ?? 0) + s.size);
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  // A builtin's allocation (a Map, a Promise, an array's store) is charged to the nearest JavaScript frame that has a
  // file, so that `new Map()` in Node's internals and in Sluice land where they were asked for.
  const walk = (n: HeapNode, owner: { area: string; fn: string }): void => {
    const f = n.callFrame;
    const here = f.url === '' ? owner : { area: areaOf(f.url), fn: `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}` };
    const b = bytesAt.get(n.id) ?? 0;
    if (b > 0) {
      total += b;
      areas.set(here.area, (areas.get(here.area) ?? 0) + b);
      fns.set(here.fn, (fns.get(here.fn) ?? 0) + b);
    }
    for (const c of n.children ?? []) walk(c, here);
  };
  walk(p.head, { area: 'V8 builtins and native', fn: '(root)' });
  const desc = (m: Map<string, number>): Array<[string, number]> => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return { seconds: p.sampledSeconds ?? 0, bytes: total, byArea: desc(areas), byFunction: desc(fns) };
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) return url.slice(nm + 14);
  const src = url.indexOf('/src/');
  if (src !== -1) return url.slice(src + 1);
  return url.startsWith('file://') ? url.slice(url.lastIndexOf('/') + 1) : url;
}

export function formatHeapSummary(s: HeapSummary, top: number): string {
  const perS = (b: number): string => (s.seconds > 0 ? `${(b / s.seconds / 1e6).toFixed(2)} MB/s` : `${(b / 1e6).toFixed(1)} MB`);
  const share = (b: number): string => `${((100 * b) / Math.max(1, s.bytes)).toFixed(1)}%`.padStart(6);
  const lines = [`allocated ${perS(s.bytes)} over ${s.seconds || '?'} s sampled (V8's sampling, 4 KiB interval; short-lived objects included)`, 'by area:'];
  for (const [a, b] of s.byArea.slice(0, 12)) lines.push(`  ${share(b)}  ${perS(b).padStart(11)}  ${a}`);
  lines.push(`top ${top} functions (builtins charged to their caller):`);
  for (const [f, b] of s.byFunction.slice(0, top)) lines.push(`  ${share(b)}  ${perS(b).padStart(11)}  ${f}`);
  return lines.join('\n');
}

export function summarizeHeapProfileFile(path: string, top: number): string {
  return formatHeapSummary(summarizeHeapProfile(JSON.parse(readFileSync(path, 'utf8')) as HeapProfile), top);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (file === undefined || file.startsWith('-')) {
    console.error('usage: node bench/heapprofile.ts FILE.heapprofile [--top N]');
    process.exit(2);
  }
  const at = process.argv.indexOf('--top');
  console.log(summarizeHeapProfileFile(file, at === -1 ? 25 : Number(process.argv[at + 1])));
}
