import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROFILES, type PhaseSpec, type ProfileName } from './phase.ts';
import { profile as profileFor, type Profile } from './profiles.ts';
import {
  DEFAULT_SLUICE_BIN,
  nginxVersion,
  sluiceAvailable,
  startLoad,
  startNginx,
  startSluice,
  startFloor,
  startUpstream,
  type LoadGenerator,
  type Running,
  type Upstream,
} from './processes.ts';
import { backgroundCpuPercent, DEFAULT_TARGETS, FLOOR_MODES, formatTable, mergeRounds, roundOrder, rowsFor, TARGETS, type ProfileOutcome, type TargetName } from './report.ts';
import { joinCloses, summarize } from './stats.ts';
import { summarizeProfileFile } from './cpuprofile.ts';
import { summarizeHeapProfileFile } from './heapprofile.ts';
import { syscallCountingAvailable } from './syscalls.ts';
import { KEY_STORES, keyStoreAvailable, setUpKeys, type BenchKeys, type KeyStore } from './keys.ts';

/**
 * `npm run bench`: Sluice, nginx (`proxy_buffering off`) and the upstream directly, side by side in one run, on the
 * same simulator upstream, with load from a separate process. See docs/performance.md for what each figure means.
 */

const HELP = `Usage: npm run bench -- [options]      (or: node bench/run.ts [options])

Runs the simulator as the upstream, then for each profile drives the same load straight at it, through nginx
(proxy_buffering off; when installed) and through Sluice (when this checkout has 'sluice serve'), one after the
other, each in its own process, and prints one table. The default is a quick run (about 5 minutes).

Options:
  --profile P       latency, throughput, idle, churn, wave or all; a comma list works (default all)
                    (--profile routing: four simulator replicas through each routing strategy, bench/routing.ts;
                    --profile routing --help for its options)
  --full            the issue's full sizes: 60 s latency window, 5,000 idle streams, 30 s elsewhere
  --duration S      measurement window per phase, seconds (overrides the profile's)
  --concurrency N   streams (latency, throughput, idle), in-flight cap (churn) or wave size (wave) (overrides the profile's)
  --rate N          churn: new connections per second
  --prompt-bytes N  size of each request's prompt (default 16): what a proxy holds per open stream
  --rounds N        run everything N times, targets in rotating order, and report per-figure medians (default 1)
  --targets LIST    comma list of direct, nginx, sluice, node-relay, node-http, node-raw (default: direct, nginx,
                    sluice, those available); node-* are reference proxies showing what Node itself costs
                    (bench/floor.ts): a TCP relay, node:http + undici, node:http + a minimal own client
  --json FILE       also write every result as JSON, for comparison across commits
  --sluice-bin FILE another checkout's bin/sluice.mjs to measure (e.g. an older commit; default this checkout's)
  --sluice-node-args="ARGS"  extra Node flags for Sluice's process, e.g. --sluice-node-args="--max-semi-space-size=16"
  --sluice-b-node-args="ARGS"  the same for Sluice B (default: --sluice-node-args)
  --sluice-args="ARGS"       extra 'sluice serve' flags, e.g. --sluice-args="--config bench.yaml"
  target sluice-b   a second Sluice in the same run, side by side (--targets direct,nginx,sluice,sluice-b): another
                    checkout (--sluice-b-bin FILE; default this one) and/or other flags (--sluice-b-args="ARGS"),
                    e.g. a commit before and after a change, or a feature on and off
  --sluice-keys STORE    run Sluice with keys and limits on: sqlite or redis (a fresh store per phase, one key with
                    rpm, tpm and concurrency limits far above the load, sent on every request; bench/keys.ts)
  --sluice-b-keys STORE  the same for Sluice B, e.g. --targets direct,sluice,sluice-b --sluice-b-keys redis for keys
                    off and on side by side
  --workers N       nginx's worker_processes and Sluice's --workers (default 1); CPU and memory are summed over
                    each proxy's processes
  --cpu-prof DIR    run Sluice (and the node-* yardsticks) under --cpu-prof, write the profiles to DIR and print
                    their hottest functions
  --cpu-prof-interval US  the profiles' sampling interval in µs (Node's default 1000; 100 resolves a request's phases)
  --heap-sample DIR sample what Sluice (and the node-* yardsticks) allocate in each measurement window, short-lived
                    objects included, write .heapprofile files to DIR and print who allocates (bench/heapprofile.ts)
  --warm-proxy S    each proxy first carries the profile's load for S seconds, unmeasured, so that its JIT has
                    compiled the per-request code as a long-running gateway has (V8 optimizes a function fully after
                    about 3,000 calls: 15 s of churn); not in idle (default 0: off)
  --warm-upstream S each profile's fresh simulator first serves the profile's load directly for S seconds, unmeasured,
                    so the first target measured does not meet a cold upstream (default 10; 0 turns it off)
  -h, --help        this help`;

// `--profile routing` is its own benchmark (bench/routing.ts): replicas and strategies, not proxies side by side.
{
  const argv = process.argv.slice(2);
  if (argv.some((a, i) => a === '--profile=routing' || (a === '--profile' && argv[i + 1] === 'routing'))) {
    const { runRoutingBench } = await import('./routing.ts');
    process.exit(await runRoutingBench(argv));
  }
}

const { values: flags } = parseArgs({
  options: {
    profile: { type: 'string', default: 'all' },
    full: { type: 'boolean', default: false },
    duration: { type: 'string' },
    concurrency: { type: 'string' },
    rate: { type: 'string' },
    rounds: { type: 'string', default: '1' },
    'prompt-bytes': { type: 'string' },
    targets: { type: 'string' },
    json: { type: 'string' },
    'cpu-prof': { type: 'string' },
    'cpu-prof-interval': { type: 'string' },
    'heap-sample': { type: 'string' },
    'warm-proxy': { type: 'string' },
    'sluice-bin': { type: 'string' },
    'sluice-node-args': { type: 'string' },
    'sluice-b-node-args': { type: 'string' },
    'sluice-args': { type: 'string' },
    'sluice-b-bin': { type: 'string' },
    'sluice-b-args': { type: 'string' },
    'sluice-keys': { type: 'string' },
    'sluice-b-keys': { type: 'string' },
    workers: { type: 'string' },
    'warm-upstream': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});

function die(message: string): never {
  console.error(`bench: ${message}\n\n${HELP}`);
  process.exit(2);
}

if (flags.help) {
  console.log(HELP);
  process.exit(0);
}

const positive = (name: string, raw: string | undefined): number | undefined => {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!(n > 0) || !Number.isFinite(n)) die(`${name}: '${raw}' is not a positive number`);
  return n;
};

const profileNames: ProfileName[] =
  flags.profile === 'all'
    ? [...PROFILES]
    : flags.profile.split(',').map((p) => {
        if (!(PROFILES as readonly string[]).includes(p)) die(`--profile: '${p}' is not one of ${PROFILES.join(', ')}, all`);
        return p as ProfileName;
      });
const durationS = positive('--duration', flags.duration);
const concurrency = positive('--concurrency', flags.concurrency);
const rate = positive('--rate', flags.rate);
const rounds = Math.round(positive('--rounds', flags.rounds) ?? 1);
const promptBytes = Math.round(positive('--prompt-bytes', flags['prompt-bytes']) ?? 16);
const warmUpstreamMs = flags['warm-upstream'] === '0' ? 0 : (positive('--warm-upstream', flags['warm-upstream']) ?? 10) * 1000;
const warmProxyMs = (positive('--warm-proxy', flags['warm-proxy']) ?? 0) * 1000;
const profiles: Profile[] = profileNames.map((name) => {
  const p = profileFor(name, flags.full);
  if (durationS !== undefined) p.durationMs = durationS * 1000;
  if (concurrency !== undefined) p.concurrency = Math.round(concurrency);
  if (rate !== undefined) p.rate = rate;
  return p;
});

const nginx = nginxVersion();
const sluiceBin = resolve(flags['sluice-bin'] ?? DEFAULT_SLUICE_BIN);
const sluice = sluiceAvailable(sluiceBin);
const sluiceBBin = resolve(flags['sluice-b-bin'] ?? DEFAULT_SLUICE_BIN);
const words = (raw: string | undefined): string[] => (raw ?? '').split(' ').filter((a) => a !== '');
const workers = Math.round(positive('--workers', flags.workers) ?? 1);
const workerArgs = workers > 1 ? ['--workers', String(workers)] : [];
const sluiceArgs = [...workerArgs, ...words(flags['sluice-args'])];
const sluiceBArgs = [...workerArgs, ...words(flags['sluice-b-args'])];
const keyStore = (name: string, raw: string | undefined): KeyStore | undefined => {
  if (raw === undefined) return undefined;
  if (!(KEY_STORES as readonly string[]).includes(raw)) die(`${name}: '${raw}' is not one of ${KEY_STORES.join(', ')}`);
  if (!keyStoreAvailable(raw as KeyStore)) die(`${name} ${raw}: /usr/bin/redis-server is not installed (apt-get install redis-server)`);
  return raw as KeyStore;
};
const sluiceKeys = keyStore('--sluice-keys', flags['sluice-keys']);
const sluiceBKeys = keyStore('--sluice-b-keys', flags['sluice-b-keys']);
const wanted: string[] = flags.targets === undefined ? [...DEFAULT_TARGETS] : flags.targets.split(',');
for (const t of wanted) if (!(TARGETS as readonly string[]).includes(t)) die(`--targets: '${t}' is not one of ${TARGETS.join(', ')}`);
const notes: string[] = [];
const targets: TargetName[] = TARGETS.filter((t) => {
  if (!wanted.includes(t)) return false;
  if (t === 'nginx' && nginx === null) {
    notes.push('nginx: not installed, not measured (apt-get install nginx)');
    return false;
  }
  if (t === 'sluice' && !sluice) {
    notes.push(`Sluice: ${sluiceBin} has no working 'sluice serve' (src/gateway.ts), not measured`);
    return false;
  }
  if (t === 'sluice-b' && !sluiceAvailable(sluiceBBin)) {
    notes.push(`Sluice B: ${sluiceBBin} has no working 'sluice serve' (src/gateway.ts), not measured`);
    return false;
  }
  return true;
});
// System calls per chunk say much about a proxy's cost; perf counts them for free when it is there.
const countSyscalls = targets.some((t) => t !== 'direct') && syscallCountingAvailable();
if (workers > 1) notes.push(`workers: ${workers} (nginx worker_processes with its master, sluice --workers with its primary); CPU and memory are summed over each proxy's processes${countSyscalls ? '; syscall figures count the first process only' : ''}`);
if (!countSyscalls && targets.some((t) => t !== 'direct')) notes.push('perf cannot count syscall tracepoints here (needs perf and root): no syscall figures');
if (warmProxyMs > 0) notes.push(`each proxy first carries the profile's load for ${warmProxyMs / 1000} s, unmeasured, before its window (--warm-proxy; not in idle, whose memory figure is growth from a fresh process)`);
if (warmUpstreamMs > 0) notes.push(`each profile's simulator first serves its load directly for ${warmUpstreamMs / 1000} s, unmeasured (--warm-upstream)`);
const sluiceNodeArgs = words(flags['sluice-node-args']);
const sluiceBNodeArgs = flags['sluice-b-node-args'] === undefined ? sluiceNodeArgs : words(flags['sluice-b-node-args']);
const cpuProfDir = flags['cpu-prof'] === undefined ? undefined : resolve(flags['cpu-prof']);
if (cpuProfDir !== undefined) mkdirSync(cpuProfDir, { recursive: true });
const heapSampleDir = flags['heap-sample'] === undefined ? undefined : resolve(flags['heap-sample']);
const cpuProfInterval = flags['cpu-prof-interval'] === undefined ? [] : [`--cpu-prof-interval=${Math.round(positive('--cpu-prof-interval', flags['cpu-prof-interval']) ?? 1000)}`];

// Status line: rewritten in place on a terminal, one line every few seconds otherwise.
let lastStatus = 0;
function status(text: string): void {
  if (process.stderr.isTTY) {
    process.stderr.write(`\r\x1b[K${text}`);
  } else if (Date.now() - lastStatus > 5000) {
    lastStatus = Date.now();
    process.stderr.write(`${text}\n`);
  }
}
function clearStatus(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

function describe(p: Profile): string {
  const window = `${p.durationMs / 1000} s window`;
  if (p.name === 'churn') return `${p.rate} ${p.what}; ${window}`;
  return `${p.concurrency} ${p.what}; ${window}`;
}

/** Which Sluice was measured: the commit of the checkout `bin` belongs to, and whether its sources differ from it. */
function sluiceVersion(bin: string): string {
  const dir = dirname(dirname(bin));
  const rev = spawnSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (rev.status !== 0) return `${dir} (not a git checkout)`;
  const dirty = spawnSync('git', ['-C', dir, 'status', '--porcelain', '--', 'src', 'bin'], { encoding: 'utf8' });
  return `${rev.stdout.trim()}${dirty.stdout.trim() ? ' with uncommitted changes in src/' : ''}`;
}

const machine = {
  cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: `Linux ${release()}`,
  node: process.version,
  nginx: nginx ?? 'not installed',
  sluice: targets.includes('sluice') ? `${sluiceVersion(sluiceBin)}${sluiceNodeArgs.length ? ` [node ${sluiceNodeArgs.join(' ')}]` : ''}${sluiceArgs.length ? ` (${sluiceArgs.join(' ')})` : ''}${sluiceKeys ? `, keys and limits on ${sluiceKeys}` : ''}` : 'not measured',
  sluiceB: targets.includes('sluice-b') ? `${sluiceVersion(sluiceBBin)}${sluiceBNodeArgs.length ? ` [node ${sluiceBNodeArgs.join(' ')}]` : ''}${sluiceBArgs.length ? ` (${sluiceBArgs.join(' ')})` : ''}${sluiceBKeys ? `, keys and limits on ${sluiceBKeys}` : ''}` : 'not measured',
};

const running = new Set<{ stop(): Promise<void> }>();
async function stopAll(): Promise<void> {
  await Promise.all([...running].map((r) => r.stop().catch(() => undefined)));
  running.clear();
}
process.once('SIGINT', () => {
  clearStatus();
  console.error('bench: interrupted; stopping the processes it started');
  void stopAll().finally(() => process.exit(130));
});

const scratch = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
/** Per profile, one outcome per round. */
const outcomes = new Map<ProfileName, ProfileOutcome[]>(profiles.map((p) => [p.name, []]));
const started = new Date();

console.log(`Sluice benchmark, ${started.toISOString().slice(0, 10)}: ${machine.cpu}, ${machine.memoryGiB} GiB, ${machine.kernel}, Node ${machine.node}, nginx ${machine.nginx}`);
console.log(`Sluice: ${machine.sluice}`);
if (targets.includes('sluice-b')) console.log(`Sluice B: ${machine.sluiceB}`);
console.log(`targets: ${targets.join(', ')}; prompt ${promptBytes} bytes; profiles: ${profiles.map((p) => p.name).join(', ')}${flags.full ? ' (full sizes)' : " (quick sizes; --full for the issue's)"}; ${rounds} round(s)`);
for (const n of notes) console.log(`note: ${n}`);

/**
 * Node flags that write a CPU profile (--cpu-prof) and an allocation sample of the measurement window
 * (--heap-sample) named after the target and the profile's tag. Called just before the target's process starts: the
 * sampler reads its window from the environment that process inherits.
 */
function profArgs(target: string, tag: string, p: Profile): string[] {
  const args = cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=${target}-${tag}.cpuprofile`, ...cpuProfInterval];
  if (heapSampleDir === undefined) return args;
  // From a second into the measurement window to a second before its end (the proxy's and the load's warm-ups come
  // first).
  const startS = ((p.name === 'idle' ? 0 : warmProxyMs) + p.warmupMs) / 1000 + 1;
  process.env['SLUICE_HEAP_SAMPLE'] = JSON.stringify({ dir: heapSampleDir, name: `${target}-${tag}`, startS, stopS: startS + Math.max(1, p.durationMs / 1000 - 2) });
  return [...args, '--import', fileURLToPath(new URL('./heap-sample.mjs', import.meta.url))];
}

function specFor(p: Profile, target: TargetName, upstream: Upstream, proxy: Running | undefined, authorization: string | undefined): PhaseSpec {
  return {
    profile: p.name,
    target,
    url: proxy?.url ?? upstream.url,
    upstreamUrl: upstream.url,
    pids: { upstream: upstream.pid, ...(proxy ? { proxy: proxy.pid } : {}) },
    concurrency: p.concurrency,
    durationMs: p.durationMs,
    warmupMs: p.warmupMs,
    sim: p.sim,
    rate: p.rate,
    abortEveryMs: p.abortEveryMs,
    openPerSecond: p.openPerSecond,
    background: p.background,
    waveEveryMs: p.waveEveryMs,
    syscalls: countSyscalls,
    promptBytes,
    authorization,
  };
}

/**
 * A fresh simulator is slower while its code and heap warm up: whichever target a profile measured first lost up to
 * 2x in the tails (docs/performance.md, finding 13). So it can first serve the profile's own load directly, unmeasured.
 */
async function warmUpstream(load: LoadGenerator, p: Profile, upstream: Upstream): Promise<void> {
  if (warmUpstreamMs === 0) return;
  await load.run({ ...specFor(p, 'direct', upstream, undefined, undefined), durationMs: warmUpstreamMs, warmupMs: Math.min(p.warmupMs, 1000), syscalls: false }, (text) => status(`${p.name}: warming the upstream; ${text}`));
  await upstream.closes();
}

/** One profile against every target, in the given order, on a fresh upstream. */
async function runProfile(load: LoadGenerator, p: Profile, order: TargetName[], round: number): Promise<ProfileOutcome> {
  // Fresh processes for every profile, so each memory baseline and CPU window starts clean.
  const upstream = await startUpstream();
  running.add(upstream);
  await warmUpstream(load, p, upstream);
  const outcome: ProfileOutcome = { profile: p.name, description: describe(p), results: {}, aborts: {} };
  const tag = rounds > 1 ? `${p.name}-${round + 1}` : p.name;
  for (const target of order) {
    let proxy: Running | undefined;
    let keys: BenchKeys | undefined;
    try {
      if (target === 'nginx') proxy = await startNginx(upstream.url, join(scratch, `nginx-${tag}`), workers);
      if (target === 'sluice') {
        const prof = profArgs('sluice', tag, p);
        if (sluiceKeys) keys = await setUpKeys(sluiceKeys, sluiceBin, join(scratch, `keys-sluice-${tag}`));
        proxy = await startSluice(sluiceBin, upstream.url, join(scratch, `sluice-${tag}.log`), [...sluiceNodeArgs, ...prof], [...sluiceArgs, ...(keys?.serveArgs ?? [])]);
      }
      if (target === 'sluice-b') {
        if (sluiceBKeys) keys = await setUpKeys(sluiceBKeys, sluiceBBin, join(scratch, `keys-sluice-b-${tag}`));
        proxy = await startSluice(sluiceBBin, upstream.url, join(scratch, `sluice-b-${tag}.log`), sluiceBNodeArgs, [...sluiceBArgs, ...(keys?.serveArgs ?? [])]);
      }
      const floorMode = FLOOR_MODES[target];
      if (floorMode !== undefined) proxy = await startFloor(floorMode, upstream.url, join(scratch, `${target}-${tag}.log`), profArgs(target, tag, p));
    } catch (err) {
      clearStatus();
      await keys?.stop();
      console.error(`bench: ${target} did not start, not measured in ${p.name}: ${(err as Error).message}`);
      continue;
    }
    if (proxy) running.add(proxy);
    if (keys) running.add(keys);
    status(`${p.name}/${target}: starting`);
    const spec = specFor(p, target, upstream, proxy, keys?.authorization);
    if (warmProxyMs > 0 && proxy !== undefined && p.name !== 'idle') {
      await load.run({ ...spec, durationMs: warmProxyMs, warmupMs: Math.min(p.warmupMs, 1000), syscalls: false }, (text) => status(`${p.name}/${target}: warming the proxy; ${text}`));
      await upstream.closes();
    }
    const result = await load.run(spec, status);
    const closes = await upstream.closes();
    if (result.clientCloses.length > 0) {
      const { delays, unmatched } = joinCloses(result.clientCloses, closes);
      outcome.aborts[target] = { ...summarize(delays), unmatched };
    }
    outcome.results[target] = result;
    if (proxy) {
      await proxy.stop();
      running.delete(proxy);
    }
    if (keys) {
      await keys.stop();
      running.delete(keys);
    }
  }
  await upstream.stop();
  running.delete(upstream);
  return outcome;
}

try {
  const load = await startLoad();
  running.add(load);
  for (let round = 0; round < rounds; round++) {
    const order = roundOrder(targets, round);
    for (const p of profiles) outcomes.get(p.name)?.push(await runProfile(load, p, order, round));
  }
} finally {
  clearStatus();
  await stopAll();
  rmSync(scratch, { recursive: true, force: true });
}

const sections = profiles.map((p) => {
  const list = outcomes.get(p.name) ?? [];
  return {
    profile: p.name,
    title: `${p.name}: ${describe(p)}${rounds > 1 ? `; median of ${rounds} rounds` : ''}`,
    rows: mergeRounds(list.map(rowsFor)),
  };
});
console.log('');
console.log(formatTable(sections, targets));
console.log(`
direct is the baseline (absolute values); nginx and Sluice rows marked + are what the hop adds over direct in the same
run. CPU from /proc/<pid>/stat (user + system) of the proxy process (and its workers) over the measurement window.`);
for (const [profileName, list] of outcomes) {
  list.forEach((o, round) => {
    const where = rounds > 1 ? `${profileName} round ${round + 1}` : profileName;
    for (const t of targets) {
      const r = o.results[t];
      if (r && r.errors.examples.length > 0) console.log(`${where}/${t} errors: ${r.errors.examples.join(' | ')}`);
      if (r && backgroundCpuPercent(r) > 10) {
        console.log(`${where}/${t}: other processes used ${backgroundCpuPercent(r).toFixed(0)}% of a core during the window; its figures are noisy`);
      }
      // Straight at the simulator a token arrives within a millisecond or two of its stamp; far more means the
      // stamps were not taken when the tokens were written, and every delay figure is void.
      if (r && t === 'direct' && r.delay.count > 0 && r.delay.p50 > 20) {
        console.log(`${where}/direct: tokens arrive ${r.delay.p50.toFixed(0)} ms after their probe stamps at p50: the simulator's stamps are not taken at write time; delay figures are invalid`);
      }
      const a = o.aborts[t];
      if (a && a.unmatched > 0) console.log(`${where}/${t}: ${a.unmatched} aborted streams never closed at the upstream (or their id was lost)`);
    }
  });
}

if (flags.json !== undefined) {
  const file = resolve(flags.json);
  mkdirSync(dirname(file), { recursive: true });
  const json = {
    schema: 'sluice-bench/1',
    date: started.toISOString(),
    command: process.argv.slice(2),
    machine,
    targets,
    rounds,
    warmUpstreamMs,
    warmProxyMs,
    profiles: profiles.map((p) => ({
      profile: p.name,
      description: describe(p),
      params: p,
      rounds: (outcomes.get(p.name) ?? []).map((o) => ({
        aborts: o.aborts,
        results: Object.fromEntries(Object.entries(o.results).map(([t, r]) => [t, { ...r, clientCloses: r.clientCloses.length }])),
      })),
    })),
    rows: sections.flatMap((s) => s.rows),
  };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`results written to ${file}`);
}

if (cpuProfDir !== undefined) {
  for (const f of readdirSync(cpuProfDir).filter((n) => n.endsWith('.cpuprofile'))) {
    console.log(`\n${f}:`);
    console.log(summarizeProfileFile(join(cpuProfDir, f), 25));
  }
}
if (heapSampleDir !== undefined) {
  for (const f of readdirSync(heapSampleDir).filter((n) => n.endsWith('.heapprofile'))) {
    console.log(`\n${f}:`);
    console.log(summarizeHeapProfileFile(join(heapSampleDir, f), 20));
  }
}
