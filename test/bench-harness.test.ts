import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinCloses, percentile, Samples, summarize } from '../bench/stats.ts';
import { summarizeProfile } from '../bench/cpuprofile.ts';
import { summarizeHeapProfile } from '../bench/heapprofile.ts';
import { formatPerfComparison, parsePerfReport, perfAreas } from '../bench/perf-areas.ts';
import { FLOOR_MODES, mergeRounds, roundOrder, rowsFor, type ProfileOutcome, type TargetName } from '../bench/report.ts';
import { startFloor, startLoad, startUpstream, type LoadGenerator, type Upstream } from '../bench/processes.ts';
import type { PhaseResult } from '../bench/phase.ts';

test('percentile is nearest-rank; summaries do not reorder their input', () => {
  const xs = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  const sorted = [...xs].sort((a, b) => a - b);
  assert.equal(percentile(sorted, 50), 5);
  assert.equal(percentile(sorted, 99), 10);
  assert.equal(percentile(sorted, 0), 1);
  assert.ok(Number.isNaN(percentile([], 50)));
  const s = summarize(xs);
  assert.deepEqual(s, { count: 10, p50: 5, p99: 10, max: 10, mean: 5.5 });
  assert.deepEqual(xs.slice(0, 3), [5, 1, 4]);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(summarize(hundred).p99, 99);
});

test('Samples grows past its initial size and summarizes like an array', () => {
  const s = new Samples(16);
  for (let i = 1000; i >= 1; i--) s.push(i);
  assert.equal(s.length, 1000);
  assert.deepEqual(s.summary(), summarize(Array.from({ length: 1000 }, (_, i) => i + 1)));
});

test('joinCloses pairs client and upstream closes by id and counts the lost ones', () => {
  const { delays, unmatched } = joinCloses(
    [
      ['a', 100],
      ['b', 200],
      ['c', 300],
    ],
    [
      ['b', 201.5],
      ['a', 102],
      ['x', 5],
    ],
  );
  assert.deepEqual(delays, [2, 1.5]);
  assert.equal(unmatched, 1);
});

test('a .cpuprofile summary charges self time to the leaf and total time once per function per sample', () => {
  const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({
    id,
    callFrame: { functionName, url, lineNumber: 0 },
    children,
  });
  const profile = {
    nodes: [
      frame(1, '(root)', '', [2, 5]),
      frame(2, 'relay', 'file:///x/src/relay/stream-relay.ts', [3]),
      frame(3, 'relay', 'file:///x/src/relay/stream-relay.ts', [4]),
      frame(4, 'parse', 'file:///x/src/sse/parser.ts'),
      frame(5, '(idle)', ''),
    ],
    samples: [4, 4, 3, 5],
    timeDeltas: [1000, 1000, 2000, 5000],
  };
  const s = summarizeProfile(profile);
  assert.equal(s.busyMs, 4);
  assert.equal(s.idleMs, 5);
  const relay = s.functions.find((f) => f.name === 'relay');
  const parse = s.functions.find((f) => f.name === 'parse');
  assert.equal(relay?.selfMs, 2);
  assert.equal(relay?.totalMs, 4);
  assert.equal(parse?.selfMs, 2);
  assert.deepEqual(s.areas, [
    { area: 'src/sse', selfMs: 2 },
    { area: 'src/relay', selfMs: 2 },
  ]);
  assert.match(s.folded, /^relay;relay;parse 2000$/m);
});

function fakeResult(target: string, delayP99: number, errors: number): PhaseResult {
  const summary = { count: 1, p50: 1, p99: delayP99, max: delayP99, mean: 1 };
  return {
    profile: 'throughput',
    target,
    windowMs: 1000,
    started: 1,
    completed: 1,
    errors: { socket: errors, status: 0, frame: 0, truncated: 0, examples: [] },
    skipped: 0,
    chunks: 1000,
    comments: 0,
    delay: summary,
    ttfb: summary,
    total: summary,
    cpuMs: { proxy: 10, upstream: 0, load: 0, machine: 10 },
    syscalls: null,
    rss: null,
    clientCloses: [],
    upstreamLeft: 0,
  };
}

test('an allocation sample charges bytes to their function and area, a builtin\'s to the frame that called it', () => {
  type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children: Node[] };
  const node = (id: number, functionName: string, url: string, children: Node[] = []): Node => ({ id, callFrame: { functionName, url, lineNumber: 9 }, children });
  const profile = {
    head: node(1, '(root)', '', [
      node(2, 'passThroughRead', 'file:///x/src/sse/passthrough.ts', [node(3, 'Map', '')]),
      node(4, 'nextTick', 'node:internal/process/task_queues'),
      node(5, 'onBody', 'file:///x/node_modules/undici/lib/dispatcher/client-h1.js'),
    ]),
    samples: [
      { nodeId: 2, size: 100 },
      { nodeId: 3, size: 300 },
      { nodeId: 4, size: 50 },
      { nodeId: 5, size: 50 },
      { nodeId: 1, size: 500 },
    ],
    sampledSeconds: 2,
  };
  const s = summarizeHeapProfile(profile);
  assert.equal(s.bytes, 1000);
  assert.equal(s.seconds, 2);
  assert.deepEqual(s.byArea, [
    ['V8 builtins and native', 500],
    ['sluice sse', 400],
    ['node internals', 50],
    ['undici', 50],
  ]);
  assert.deepEqual(s.byFunction[1], ['passThroughRead src/sse/passthrough.ts:10', 400], 'the Map it made is its own');
});

test('perf samples are split by process and area: Sluice\'s code, undici, V8\'s builtins and GC, the kernel', () => {
  const report = [
    '# Samples: 10',
    '            42      884:MainThread       [JIT] tid 884     [.] JS:*\'passThroughRead file:///w/src/sse/passthrough.ts:105:32',
    '             9      884:MainThread       [JIT] tid 884     [.] JS:+\'execute /w/node_modules/undici/lib/dispatcher/client-h1.js:330:11',
    '            20      884:MainThread       node              [.] v8::internal::Scavenger::ScavengeObject<v8::internal::FullHeapObjectSlot>',
    '            30      884:MainThread       node              [.] Builtins_LoadIC',
    '            17      884:MainThread       [kernel.kallsyms] [k] tcp_rcv_established',
    '             8      892:MainThread       [kernel.kallsyms] [k] tcp_rcv_established',
    '             5      892:MainThread       libc.so.6         [.] malloc',
    'not a sample line',
  ].join('\n');
  const samples = parsePerfReport(report);
  assert.equal(samples.length, 7);
  assert.deepEqual(Object.fromEntries(perfAreas(samples, '884')), {
    'JS: Sluice (src/)': 42,
    'JS: undici': 9,
    'V8 GC': 20,
    'V8 builtins': 30,
    kernel: 17,
  });
  const text = formatPerfComparison(samples, '884', '892', 3);
  assert.match(text, /samples: pid 884 118, pid 892 13/);
  assert.match(text, /\s42\s+0\s+\+42  JS: Sluice \(src\/\)/);
  assert.match(text, /\s17\s+8\s+\+9  kernel/);
});

test('rounds combine by median per figure, failures by sum, with each round measured against its own direct', () => {
  const round = (d: number, n: number, s: number, sluiceErrors: number): ProfileOutcome => ({
    profile: 'throughput',
    description: '',
    results: { direct: fakeResult('direct', d, 0), nginx: fakeResult('nginx', n, 0), sluice: fakeResult('sluice', s, sluiceErrors) },
    aborts: {},
  });
  const rows = mergeRounds([round(1, 3, 2, 0), round(2, 3, 9, 1), round(1, 4, 2, 0)].map(rowsFor));
  const p99 = rows.find((r) => r.metric === 'added delay per chunk p99');
  assert.deepEqual(p99?.values, { direct: 1, nginx: 2, sluice: 1 });
  assert.equal(p99?.ratio, 0.5);
  const errors = rows.find((r) => r.metric === 'errors');
  assert.equal(errors?.values.sluice, 1);
  assert.equal(errors?.met, false);
  // The reference proxies are shifted over direct like nginx and Sluice.
  const withFloor = rowsFor({ ...round(1, 3, 2, 0), results: { direct: fakeResult('direct', 1, 0), 'node-http': fakeResult('node-http', 5, 0) } });
  assert.deepEqual(withFloor.find((r) => r.metric === 'added delay per chunk p99')?.values, { direct: 1, 'node-http': 4 });
});

/** A 2-second latency phase of 10 streams with abort probes, checked end to end: what every target must pass. */
async function tinyRun(target: TargetName, url: string, upstream: Upstream, load: LoadGenerator, proxyPid?: number): Promise<void> {
  const result = await load.run({
    profile: 'latency',
    target,
    url,
    upstreamUrl: upstream.url,
    pids: { upstream: upstream.pid, ...(proxyPid === undefined ? {} : { proxy: proxyPid }) },
    concurrency: 10,
    durationMs: 2000,
    warmupMs: 300,
    sim: { ttft_ms: 20, itl_ms: 20, tokens: 10, jitter_ms: 0 },
    rate: 0,
    abortEveryMs: 200,
    openPerSecond: 0,
    background: 0,
    waveEveryMs: 0,
    syscalls: false,
    promptBytes: 16,
  });
  assert.deepEqual(result.errors, { socket: 0, status: 0, frame: 0, truncated: 0, examples: [] }, target);
  assert.ok(result.completed > 0 && result.chunks > 0 && result.delay.count > 0, target);
  // Tokens 3–8 of each 10-token stream (the probes' 3 not at all): about 6 in 10 of the delay samples.
  const mid = result.delayMid?.count ?? 0;
  assert.ok(mid > 0.4 * result.delay.count && mid < 0.75 * result.delay.count, `${target}: ${mid} of ${result.delay.count}`);
  assert.equal(result.upstreamLeft, 0, target);
  assert.ok(result.clientCloses.length > 0, target);
  const { delays, unmatched } = joinCloses(result.clientCloses, await upstream.closes());
  assert.equal(unmatched, 0, target);
  assert.equal(delays.length, result.clientCloses.length, target);
}

test('a tiny run straight at the simulator completes every stream and pairs every abort', async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.stop());
  const load = await startLoad();
  t.after(() => load.stop());
  await tinyRun('direct', upstream.url, upstream, load);
});

test('a tiny wave run measures the open streams\' delay and the waves\' time to first byte, apart', async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.stop());
  const load = await startLoad();
  t.after(() => load.stop());
  const result = await load.run({
    profile: 'wave',
    target: 'direct',
    url: upstream.url,
    upstreamUrl: upstream.url,
    pids: { upstream: upstream.pid },
    concurrency: 20,
    background: 5,
    waveEveryMs: 500,
    durationMs: 1600,
    warmupMs: 1000,
    sim: { ttft_ms: 30, itl_ms: 20, tokens: 3, jitter_ms: 0 },
    rate: 0,
    abortEveryMs: 0,
    openPerSecond: 0,
    syscalls: false,
    promptBytes: 16,
  });
  assert.deepEqual(result.errors, { socket: 0, status: 0, frame: 0, truncated: 0, examples: [] });
  // Three waves start in the window (at 250, 750 and 1,250 ms): 60 requests, each counted once, all completed.
  assert.equal(result.ttfb.count, 60);
  assert.equal(result.total.count, 60);
  // Only the 5 background streams are in the delay: 20 ms apart over 1.6 s is at most 80 tokens each (fewer when
  // the simulator's timers lag on a busy machine); the waves' 3 tokens × 60 would push it past 5 × 85.
  assert.ok(result.delay.count >= 5 * 40 && result.delay.count <= 5 * 85, `delay samples ${result.delay.count}`);
  assert.equal(result.upstreamLeft, 0);
});

test('the node-* reference proxies carry a tiny run whole and close the upstream of every stream their client left', async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.stop());
  const load = await startLoad();
  t.after(() => load.stop());
  const dir = mkdtempSync(join(tmpdir(), 'sluice-floor-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [target, mode] of Object.entries(FLOOR_MODES) as [TargetName, string][]) {
    const proxy = await startFloor(mode, upstream.url, join(dir, `${mode}.log`));
    try {
      await tinyRun(target, proxy.url, upstream, load, proxy.pid);
    } finally {
      await proxy.stop();
    }
  }
});

test('rounds vary the order: with two targets each runs first in every other round; with more, neighbours change too', () => {
  const two = [0, 1, 2, 3].map((r) => roundOrder(['sluice', 'sluice-b'], r).join(','));
  assert.deepEqual(two, ['sluice,sluice-b', 'sluice-b,sluice', 'sluice,sluice-b', 'sluice-b,sluice']);
  const four = [0, 1, 2].map((r) => roundOrder(['direct', 'nginx', 'sluice', 'sluice-b'], r).join(','));
  assert.deepEqual(four, ['direct,nginx,sluice,sluice-b', 'direct,sluice-b,sluice,nginx', 'sluice,sluice-b,direct,nginx']);
});

test('--warm-upstream serves each profile\'s load before the first target without counting it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-warm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'r.json');
  const run = spawnSync(
    process.execPath,
    ['bench/run.ts', '--profile', 'churn', '--targets', 'direct', '--duration', '1', '--rate', '20', '--warm-upstream', '1', '--json', file],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /simulator first serves its load directly for 1 s, unmeasured/);
  const json = JSON.parse(readFileSync(file, 'utf8')) as { profiles: { rounds: { results: Record<string, PhaseResult> }[] }[] };
  const result = json.profiles[0]?.rounds[0]?.results['direct'];
  assert.ok(result);
  assert.equal(result.errors.socket + result.errors.status + result.errors.frame + result.errors.truncated, 0);
  // 20 new connections a second over a 1 s window: the warm second's ~20 (and the 1 s warm-up's) are not in it.
  assert.ok(result.started >= 10 && result.started <= 30, `started ${result.started}`);
});

test('--heap-sample writes an allocation sample of Sluice\'s measurement window and says who allocates', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-heap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const run = spawnSync(
    process.execPath,
    ['bench/run.ts', '--profile', 'churn', '--targets', 'sluice', '--duration', '3', '--rate', '20', '--warm-upstream', '0', '--heap-sample', dir],
    { encoding: 'utf8', timeout: 90_000 },
  );
  assert.equal(run.status, 0, run.stderr);
  assert.ok(existsSync(join(dir, 'sluice-churn.heapprofile')), run.stdout);
  const summary = summarizeHeapProfile(JSON.parse(readFileSync(join(dir, 'sluice-churn.heapprofile'), 'utf8')));
  assert.equal(summary.seconds, 1, 'a second into the 3 s window to a second before its end');
  assert.ok(summary.bytes > 0);
  assert.ok(summary.byArea.some(([area]) => area.startsWith('sluice ')), JSON.stringify(summary.byArea));
  assert.match(run.stdout, /sluice-churn\.heapprofile:\nallocated [\d.]+ MB\/s over 1 s sampled/);
});
