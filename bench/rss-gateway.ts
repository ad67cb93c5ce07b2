/**
 * `sluice serve`, run by bench/rss-cycles.ts with an IPC channel so that the gateway's own process can report its
 * memory: the same `serveCommand` as `bin/sluice.mjs serve` (and so the same V8 flags it sets, at the same moments),
 * plus answers to
 *
 *   {type:'measure', seq, gc}  → {type:'measure', seq, memory: GatewayMemory}   (gc: 'full' runs full collections
 *                                 first, 'reduce' a memory-reducing one as V8 does under memory pressure; needs
 *                                 --expose-gc)
 *   {type:'snapshot', seq, file} → {type:'snapshot', seq, file}                 (v8.writeHeapSnapshot; it runs a GC)
 *   {type:'smaps', seq, file}    → {type:'smaps', seq, file}                    (a copy of /proc/self/smaps)
 *
 * Sends {type:'ready', url} once the port answers. Argv: the `serve` options (give it --port).
 */
import { listening } from './processes.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics, writeHeapSnapshot } from 'node:v8';
import { setTimeout as sleep } from 'node:timers/promises';
import { capYoungGenerationWhileLoading } from '../src/cli/young-generation.ts';

// As bin/sluice.mjs does for `serve`, before the CLI's modules load (src/cli/young-generation.ts).
capYoungGenerationWhileLoading();
const { serveCommand } = await import('../src/cli/serve-command.ts');

export interface GatewayMemory {
  /** process.memoryUsage(), bytes. */
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** V8's committed pages that are resident, all spaces, bytes (getHeapStatistics().total_physical_size). */
  v8Physical: number;
  /** V8's own malloc'ed memory (getHeapStatistics().malloced_memory), bytes. */
  v8Malloced: number;
  /** Per heap space: resident bytes and bytes used by objects. */
  spaces: Record<string, { physical: number; used: number }>;
  /**
   * From /proc/self/smaps, KiB: resident anonymous memory, of which in 256 KiB mappings aligned to 256 KiB (V8's
   * normal heap pages, whether in a space or pooled for reuse) and in read-write mappings that start on a 64 MiB
   * boundary (glibc's per-thread arenas, which it places so); the brk heap (glibc's main arena, the main thread's
   * malloc); file-backed pages.
   */
  smaps: { anonKiB: number; v8PagesKiB: number; arenasKiB: number; brkKiB: number; fileKiB: number; rssKiB: number };
  /** process.getActiveResourcesInfo(), counted by kind (TCPSocketWrap, Timeout, …). */
  resources: Record<string, number>;
}

/** Resident KiB of /proc/self/smaps by kind of mapping. */
function smaps(): GatewayMemory['smaps'] {
  const out = { anonKiB: 0, v8PagesKiB: 0, arenasKiB: 0, brkKiB: 0, fileKiB: 0, rssKiB: 0 };
  const PAGE = 256 * 1024;
  const ARENA = 64 * 1024 * 1024;
  let kind: 'anon' | 'brk' | 'file' = 'anon';
  let v8Page = false;
  let arena = false;
  for (const line of readFileSync('/proc/self/smaps', 'latin1').split('\n')) {
    // A mapping's header: "start-end perms offset dev inode [path]"; its fields follow as "Key: value kB".
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const path = head[4] ?? '';
      kind = path === '[heap]' ? 'brk' : path === '' || path.startsWith('[') ? 'anon' : 'file';
      const start = Number.parseInt(head[1] ?? '', 16);
      const size = Number.parseInt(head[2] ?? '', 16) - start;
      v8Page = path === '' && size === PAGE && start % PAGE === 0;
      arena = path === '' && !v8Page && head[3] === 'rw-p' && start % ARENA === 0 && size <= ARENA;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss) {
      const kib = Number(rss[1]);
      out.rssKiB += kib;
      if (kind === 'brk') out.brkKiB += kib;
      else if (kind === 'file') out.fileKiB += kib;
      else out.anonKiB += kib;
      if (v8Page) out.v8PagesKiB += kib;
      if (arena) out.arenasKiB += kib;
    }
  }
  return out;
}

function measure(): GatewayMemory {
  const m = process.memoryUsage();
  const h = getHeapStatistics();
  const spaces: GatewayMemory['spaces'] = {};
  for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = { physical: s.physical_space_size, used: s.space_used_size };
  const resources: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] ?? 0) + 1;
  return {
    rss: m.rss,
    heapTotal: m.heapTotal,
    heapUsed: m.heapUsed,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    v8Physical: h.total_physical_size,
    v8Malloced: h.malloced_memory,
    spaces,
    smaps: smaps(),
    resources,
  };
}

type GcOptions = { type: 'major'; execution: 'sync'; flavor: 'regular' | 'last-resort' };

/**
 * Full collections until heapUsed stops shrinking (weak callbacks and finalizers free more on a second pass).
 * 'reduce' is V8's `CollectAllAvailableGarbage`, the memory-reducing GC it runs under memory pressure: it also
 * releases the heap pages V8 keeps for reuse, which an ordinary full GC leaves resident.
 */
async function collect(how: 'full' | 'reduce'): Promise<void> {
  const gc = (globalThis as { gc?: (options?: GcOptions) => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  let last = Infinity;
  for (let i = 0; i < 5; i++) {
    gc({ type: 'major', execution: 'sync', flavor: how === 'reduce' ? 'last-resort' : 'regular' });
    // Let FinalizationRegistry callbacks and native weak handles run between passes.
    await sleep(20);
    const used = process.memoryUsage().heapUsed;
    if (used >= last - 4096) break;
    last = used;
  }
}

process.on('message', (raw) => {
  const msg = raw as { type?: string; seq?: number; gc?: 'full' | 'reduce'; file?: string };
  if (msg.type === 'measure') {
    void (msg.gc ? collect(msg.gc) : Promise.resolve()).then(() => process.send?.({ type: 'measure', seq: msg.seq, memory: measure() }));
  } else if (msg.type === 'snapshot' && typeof msg.file === 'string') {
    const file = writeHeapSnapshot(msg.file);
    process.send?.({ type: 'snapshot', seq: msg.seq, file });
  } else if (msg.type === 'smaps' && typeof msg.file === 'string') {
    writeFileSync(msg.file, readFileSync('/proc/self/smaps'));
    process.send?.({ type: 'smaps', seq: msg.seq, file: msg.file });
  }
});
process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));

const argv = process.argv.slice(2);
const portArg = argv[argv.indexOf('--port') + 1];
const serving = serveCommand(argv);
const port = Number(portArg);
for (let i = 0; ; i++) {
  if (await listening(port)) break;
  if (i > 300) throw new Error(`the gateway did not listen on ${port}`);
  await sleep(50);
}
process.send?.({ type: 'ready', url: `http://127.0.0.1:${port}/v1` });
process.exitCode = await serving;
if (process.connected) process.disconnect();
