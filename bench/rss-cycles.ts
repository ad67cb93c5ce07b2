/**
 * Issue 12: "after 2,000 idle streams close, 41 MiB stays resident — V8 head-room or a leak?" Opens N idle streams
 * through a gateway, closes them all, lets it settle, and measures as it is, after full GCs and after a
 * memory-reducing GC; repeats. A leak grows from cycle to cycle (heapUsed after GC, or RSS after GC); head-room
 * plateaus after the first cycle. "Idle" is the idle profile's: a token every --itl-ms (the load generator counts a
 * stream as open at its first data event, so a long time to first token would never open one).
 *
 *   node bench/rss-cycles.ts --streams 2000 --cycles 6
 *
 * Three processes, as in `npm run bench`: the simulator (bench/upstream.ts), the load generator (bench/load.ts, its
 * idle profile: streams with a token every --itl-ms, then every client leaves at once) and the gateway
 * (bench/rss-gateway.ts: `sluice serve` itself, run with --expose-gc and an IPC channel that reports
 * process.memoryUsage(), V8's heap spaces and /proc/self/smaps). Results: docs/performance.md, finding 11.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, startLoad, startUpstream, stopChild } from './processes.ts';
import { rssKiB } from './proc.ts';
import { countObjects, growth, type ObjectCount } from './heapsnapshot.ts';
import type { PhaseSpec } from './phase.ts';
import type { GatewayMemory } from './rss-gateway.ts';

const HELP = `Usage: node bench/rss-cycles.ts [options]

Opens N idle streams through 'sluice serve', closes them all, waits, and measures the gateway's memory three times:
as it is, after full GCs, after a memory-reducing GC (V8's last-resort collection, which also releases the heap
pages V8 pools for reuse); repeats. One progress line per cycle, then a table (MiB). A leak grows per cycle;
head-room plateaus.

Options:
  --streams N          idle streams per cycle (default 2000)
  --cycles N           open/close cycles (default 6)
  --hold-ms N          how long the streams stay open once all are open (default 3000)
  --settle-ms N        wait after the last stream closed before measuring (default 5000)
  --itl-ms N           the simulator's pause between tokens: how idle a stream is (default 3000, the idle profile)
  --prompt-bytes N     size of each prompt (default 16)
  --after-gc-ms N      after the full GCs, wait this long (no forced GC) and measure again: does V8's memory
                       reducer give the pages back by itself? (default 0: no wait, no column)
  --only-full-gc       skip the memory-reducing GC (it empties V8's page pool, which later cycles then refill)
  --node-args="ARGS"   extra Node flags for the gateway (e.g. "--max-semi-space-size=4")
  --arena-max N        MALLOC_ARENA_MAX for the gateway (glibc)
  --trim-threshold N   MALLOC_TRIM_THRESHOLD_ for the gateway, bytes (glibc)
  --malloc             after each cycle's GCs, attach gdb: malloc_stats() (free bytes glibc holds), then
                       malloc_trim(0) and the RSS after it (changes what later cycles start from; needs gdb and root)
  --snapshots DIR      heap snapshots (after GC) at the start, after the first and after the last cycle; prints the
                       counts of a stream's objects and the constructors that grew from the first cycle to the last
  --smaps DIR          a copy of the gateway's /proc/<pid>/smaps at each measurement (start-full.smaps, 1-reduce.smaps, …)
  --json FILE          every measurement as JSON
  -h, --help           this help`;

const { values: flags } = parseArgs({
  options: {
    streams: { type: 'string', default: '2000' },
    cycles: { type: 'string', default: '6' },
    'hold-ms': { type: 'string', default: '3000' },
    'settle-ms': { type: 'string', default: '5000' },
    'itl-ms': { type: 'string', default: '3000' },
    'prompt-bytes': { type: 'string', default: '16' },
    'node-args': { type: 'string', default: '' },
    'only-full-gc': { type: 'boolean', default: false },
    'after-gc-ms': { type: 'string', default: '0' },
    'arena-max': { type: 'string' },
    'trim-threshold': { type: 'string' },
    malloc: { type: 'boolean', default: false },
    snapshots: { type: 'string' },
    smaps: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(HELP);
  process.exit(0);
}

function int(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`rss-cycles: --${name} must be an integer from ${min} to ${max}`);
    process.exit(2);
  }
  return n;
}
const streams = int('streams', flags.streams, 1, 20_000);
const cycles = int('cycles', flags.cycles, 1, 100);
const holdMs = int('hold-ms', flags['hold-ms'], 0, 600_000);
const settleMs = int('settle-ms', flags['settle-ms'], 0, 600_000);
const afterGcMs = int('after-gc-ms', flags['after-gc-ms'], 0, 600_000);
const itlMs = int('itl-ms', flags['itl-ms'], 1, 600_000);
const promptBytes = int('prompt-bytes', flags['prompt-bytes'], 1, 10_000_000);
const nodeArgs = flags['node-args'].split(/\s+/).filter((a) => a.length > 0);
if (flags.malloc && spawnSync('gdb', ['--version']).status !== 0) {
  console.error('rss-cycles: --malloc needs gdb');
  process.exit(2);
}

const scratch = mkdtempSync(join(tmpdir(), 'sluice-rss-'));
if (flags.snapshots) mkdirSync(flags.snapshots, { recursive: true });
if (flags.smaps) mkdirSync(flags.smaps, { recursive: true });
const MiB = (bytes: number): string => (bytes / 1048576).toFixed(1);
const say = (line: string): void => void process.stderr.write(`${line}\n`);

// --- the gateway: `sluice serve` in bench/rss-gateway.ts, output to a log (malloc_stats() writes there too) -------

interface Gateway {
  child: ChildProcess;
  url: string;
  log: string;
}

async function startGateway(upstreamUrl: string): Promise<Gateway> {
  const port = await freePort();
  const log = join(scratch, 'gateway.log');
  const fd = openSync(log, 'a');
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (flags['arena-max'] !== undefined) env['MALLOC_ARENA_MAX'] = flags['arena-max'];
  if (flags['trim-threshold'] !== undefined) env['MALLOC_TRIM_THRESHOLD_'] = flags['trim-threshold'];
  const args = ['--expose-gc', ...nodeArgs, new URL('rss-gateway.ts', import.meta.url).pathname];
  args.push('--host', '127.0.0.1', '--port', String(port), '--upstream', upstreamUrl, '--quiet');
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', fd, fd, 'ipc'] });
  closeSync(fd);
  const ready = await new Promise<{ url: string }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { url: string }));
    child.once('exit', (code, signal) => reject(new Error(`the gateway exited (${code ?? signal}):\n${readFileSync(log, 'utf8')}`)));
  });
  return { child, url: ready.url, log };
}

let seq = 0;
function ask<T>(child: ChildProcess, message: Record<string, unknown>, key: string): Promise<T> {
  const id = ++seq;
  return new Promise((resolve, reject) => {
    const onMessage = (raw: unknown): void => {
      const m = raw as Record<string, unknown>;
      if (m['seq'] !== id) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m[key] as T);
    };
    const onExit = (): void => reject(new Error('the gateway exited before it answered'));
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ ...message, seq: id });
  });
}

let label = 'start';
async function measure(gw: Gateway, gc: 'full' | 'reduce' | undefined): Promise<GatewayMemory> {
  const memory = await ask<GatewayMemory>(gw.child, { type: 'measure', gc }, 'memory');
  if (flags.smaps) await ask<string>(gw.child, { type: 'smaps', file: join(flags.smaps, `${label}-${gc ?? 'settled'}.smaps`) }, 'file');
  return memory;
}

/** gdb: glibc's malloc_stats() (totals over every arena and mmap'ed chunk), then malloc_trim(0). */
function mallocStatsAndTrim(gw: Gateway): { systemBytes: number; inUseBytes: number; trimmedRssKiB: number } {
  const pid = gw.child.pid as number;
  const from = statSync(gw.log).size;
  const r = spawnSync('gdb', ['-p', String(pid), '-batch', '-nx', '-ex', 'call (void) malloc_stats()', '-ex', 'call (int) malloc_trim(0)'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`gdb failed: ${r.stderr}`);
  const text = readFileSync(gw.log, 'latin1').slice(from);
  const total = /Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)/.exec(text);
  return { systemBytes: Number(total?.[1] ?? NaN), inUseBytes: Number(total?.[2] ?? NaN), trimmedRssKiB: rssKiB(pid) };
}

// --- heap snapshots ------------------------------------------------------------------------------------------------

/** A stream's objects: Sluice's (src/), Node's HTTP server side, undici's client side. */
const TRACKED = [
  'Generation',
  'StreamRelay',
  'UpstreamBody',
  'DispatchHandler',
  'Http1SseWriter',
  'ChatStream',
  'PassThroughNormalizer',
  'Parser',
  'IncomingMessage',
  'ServerResponse',
  'Socket',
  'TCP',
  'HTTPParser',
  'AbortController',
  'AbortSignal',
  'Client',
  'RequestController',
  'Timeout',
];

async function snapshot(gw: Gateway, dir: string, label: string): Promise<Map<string, ObjectCount>> {
  const file = await ask<string>(gw.child, { type: 'snapshot', file: join(dir, `gateway-${label}.heapsnapshot`) }, 'file');
  say(`  heap snapshot ${label}: ${file} (${MiB(statSync(file).size)} MiB)`);
  return countObjects(file);
}

// --- the cycles ----------------------------------------------------------------------------------------------------

interface Row {
  label: string;
  /** Highest VmRSS while the streams were open, KiB. */
  openKiB: number;
  /** After the streams closed and --settle-ms passed, before any forced GC. */
  settled: GatewayMemory;
  /** After full GCs. */
  collected: GatewayMemory;
  /** --after-gc-ms after the full GCs, with no GC forced. */
  later?: GatewayMemory;
  /** Then after a memory-reducing GC (unless --only-full-gc). */
  reduced?: GatewayMemory;
  malloc?: { systemBytes: number; inUseBytes: number; trimmedRssKiB: number };
  streamsOpened: number;
  errors: number;
  upstreamLeft: number;
}

const rows: Row[] = [];
const counts: { label: string; objects: Map<string, ObjectCount> }[] = [];
const upstream = await startUpstream();
const load = await startLoad();
let gw: Gateway | undefined;
const stopAll = async (): Promise<void> => {
  if (gw) await stopChild(gw.child, 10_000);
  await load.stop();
  await upstream.stop();
};
process.once('SIGINT', () => void stopAll().finally(() => process.exit(130)));

try {
  gw = await startGateway(upstream.url);
  say(`rss-cycles: ${streams} idle streams × ${cycles} cycles, hold ${holdMs} ms, settle ${settleMs} ms, token every ${itlMs} ms; gateway pid ${gw.child.pid}` +
    `${nodeArgs.length ? `, node ${nodeArgs.join(' ')}` : ''}${flags['arena-max'] ? `, MALLOC_ARENA_MAX=${flags['arena-max']}` : ''}` +
    `${flags['trim-threshold'] ? `, MALLOC_TRIM_THRESHOLD_=${flags['trim-threshold']}` : ''}; scratch ${scratch}`);
  await sleep(1000);
  const start: Row = { label: 'start', openKiB: NaN, settled: await measure(gw, undefined), collected: await measure(gw, 'full'), streamsOpened: 0, errors: 0, upstreamLeft: 0 };
  if (!flags['only-full-gc']) start.reduced = await measure(gw, 'reduce');
  if (flags.malloc) start.malloc = mallocStatsAndTrim(gw);
  rows.push(start);
  if (flags.snapshots) counts.push({ label: 'start', objects: await snapshot(gw, flags.snapshots, 'start') });

  for (let c = 1; c <= cycles; c++) {
    label = String(c);
    const spec: PhaseSpec = {
      profile: 'idle',
      target: 'sluice',
      url: gw.url,
      upstreamUrl: upstream.url,
      pids: { upstream: upstream.pid, proxy: gw.child.pid as number },
      concurrency: streams,
      durationMs: holdMs,
      warmupMs: 1000,
      sim: { ttft_ms: 0, itl_ms: itlMs, tokens: 0, jitter_ms: 0 },
      rate: 0,
      abortEveryMs: 0,
      openPerSecond: 2000,
      background: 0,
      waveEveryMs: 0,
      promptBytes,
      syscalls: false,
    };
    const result = await load.run(spec);
    await sleep(settleMs);
    const settled = await measure(gw, undefined);
    const collected = await measure(gw, 'full');
    let later: GatewayMemory | undefined;
    if (afterGcMs > 0) {
      await sleep(afterGcMs);
      later = await measure(gw, undefined);
    }
    const e = result.errors;
    const row: Row = {
      label: String(c),
      openKiB: result.rss?.openKiB ?? NaN,
      settled,
      collected,
      streamsOpened: result.rss?.streams ?? 0,
      errors: e.socket + e.status + e.frame + e.truncated,
      upstreamLeft: result.upstreamLeft,
      ...(later ? { later } : {}),
    };
    if (!flags['only-full-gc']) row.reduced = await measure(gw, 'reduce');
    if (flags.malloc) row.malloc = mallocStatsAndTrim(gw);
    rows.push(row);
    say(`cycle ${c}/${cycles}: ${row.streamsOpened} open, RSS peak ${MiB(row.openKiB * 1024)} → settled ${MiB(settled.rss)} → after GC ${MiB(collected.rss)}` +
      `${later ? ` → ${afterGcMs} ms later ${MiB(later.rss)}` : ''}` +
      `${row.reduced ? ` → after reducing GC ${MiB(row.reduced.rss)}` : ''} MiB, ` +
      `heapUsed ${MiB(collected.heapUsed)}, sockets ${collected.resources['TCPSocketWrap'] ?? 0}, errors ${row.errors}, left upstream ${row.upstreamLeft}` +
      `${row.malloc ? `, malloc free ${MiB(row.malloc.systemBytes - row.malloc.inUseBytes)}, after trim ${MiB(row.malloc.trimmedRssKiB * 1024)}` : ''}` +
      (e.examples.length ? `\n  ${e.examples.join('\n  ')}` : ''));
    if (flags.snapshots && (c === 1 || c === cycles)) counts.push({ label: `cycle ${c}`, objects: await snapshot(gw, flags.snapshots, `cycle${c}`) });
  }
} finally {
  await stopAll();
}

// --- the report ----------------------------------------------------------------------------------------------------

const reduce = !flags['only-full-gc'];
const header = ['cycle', 'RSS open', 'RSS settled', 'RSS after GC', 'heapUsed', 'heapTotal', 'V8 spaces resident', '256 KiB pages resident', 'external', 'brk heap', 'thread arenas', 'other anon'];
if (afterGcMs > 0) header.push(`RSS ${afterGcMs / 1000} s after GC`);
if (reduce) header.push('RSS after reducing GC', '256 KiB pages after it');
if (flags.malloc) header.push('malloc free', 'RSS after trim');
const table: string[][] = rows.map((r) => {
  const m = r.collected;
  const cells = [
    r.label,
    Number.isNaN(r.openKiB) ? '—' : MiB(r.openKiB * 1024),
    MiB(r.settled.rss),
    MiB(m.rss),
    MiB(m.heapUsed),
    MiB(m.heapTotal),
    MiB(m.v8Physical),
    MiB(m.smaps.v8PagesKiB * 1024),
    MiB(m.external),
    MiB(m.smaps.brkKiB * 1024),
    MiB(m.smaps.arenasKiB * 1024),
    MiB((m.smaps.anonKiB - m.smaps.v8PagesKiB - m.smaps.arenasKiB) * 1024),
  ];
  if (afterGcMs > 0) cells.push(r.later ? MiB(r.later.rss) : '—');
  if (r.reduced) cells.push(MiB(r.reduced.rss), MiB(r.reduced.smaps.v8PagesKiB * 1024));
  if (r.malloc) cells.push(MiB(r.malloc.systemBytes - r.malloc.inUseBytes), MiB(r.malloc.trimmedRssKiB * 1024));
  return cells;
});
console.log(`\n${streams} idle streams per cycle, MiB; 'settled' is ${settleMs} ms after the last close, before any forced GC; the next columns after full GCs`);
console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
for (const cells of table) console.log(`| ${cells.join(' | ')} |`);

// Growth per cycle after the first (least squares over cycles 2..N; the first fills pools and compiles code): what a
// leak would show.
const later = rows.slice(2);
if (later.length >= 3) {
  const slope = (pick: (r: Row) => number): number => {
    const xs = later.map((_, i) => i);
    const ys = later.map(pick);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    let num = 0;
    let den = 0;
    for (let i = 0; i < xs.length; i++) {
      num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
      den += ((xs[i] as number) - mx) ** 2;
    }
    return num / den;
  };
  const kib = (b: number): string => `${(b / 1024).toFixed(0)} KiB`;
  console.log(`\ngrowth per cycle over cycles 2–${cycles} (least squares): RSS after GC ${kib(slope((r) => r.collected.rss))}, ` +
    `heapUsed ${kib(slope((r) => r.collected.heapUsed))}, RSS settled ${kib(slope((r) => r.settled.rss))}, ` +
    `native (brk + anon outside V8 pages) ${kib(slope((r) => (r.collected.smaps.brkKiB + r.collected.smaps.anonKiB - r.collected.smaps.v8PagesKiB) * 1024))}` +
    `${reduce ? `, RSS after reducing GC ${kib(slope((r) => r.reduced?.rss ?? NaN))}` : ''}` +
    `; per stream opened: heapUsed ${(slope((r) => r.collected.heapUsed) / streams).toFixed(1)} B`);
}

if (counts.length > 0) {
  console.log(`\nlive objects in the heap snapshots (after GC)`);
  console.log(`| constructor | ${counts.map((c) => c.label).join(' | ')} |\n|---|${counts.map(() => '---').join('|')}|`);
  for (const name of TRACKED) console.log(`| ${name} | ${counts.map((c) => c.objects.get(name)?.count ?? 0).join(' | ')} |`);
  const first = counts.find((c) => c.label === 'cycle 1');
  const last = counts[counts.length - 1];
  if (first && last && first !== last) {
    console.log(`\nconstructors whose count changed most from ${first.label} to ${last.label}`);
    console.log('| name | before | after | Δ bytes |\n|---|---|---|---|');
    for (const g of growth(first.objects, last.objects, 12)) console.log(`| ${g.name} | ${g.before} | ${g.after} | ${g.bytes} |`);
  }
}

if (flags.json) writeFileSync(flags.json, JSON.stringify({ streams, cycles, holdMs, settleMs, itlMs, nodeArgs, arenaMax: flags['arena-max'], trimThreshold: flags['trim-threshold'], rows }, null, 2));
