/**
 * What keys and limits cost per request, store by store, on a machine that is not quiet: one simulator, and one
 * `sluice serve` per target, all running at once; each round drives `--requests` requests over kept-alive connections
 * through every target in turn (the order rotates each round), and reads the gateway's CPU (utime + stime from /proc)
 * around each. Noise that lasts longer than a round hits every target alike; the spread over rounds is printed.
 *
 * A target is `none` (no keys), `sqlite` or `redis` (a fresh store and one key with rpm, tpm and concurrency limits
 * far above the load, as bench/keys.ts sets up for `npm run bench --sluice-keys`: every request is reserved and
 * settled, and written to the ledger), optionally `:BIN` for another checkout's CLI, to compare commits:
 *
 *   node bench/micro/keys.ts [--keys none,sqlite,redis] [--rounds 5] [--requests 2000] [--connections 50]
 *                            [--tokens 1] [--cpu-prof DIR]
 *   node bench/micro/keys.ts --keys redis:/tmp/base/bin/sluice.mjs,redis
 *
 * With perf (root), the gateway's system calls per request are counted too: unlike CPU time, they do not depend on
 * what else the machine runs.
 *
 * `--perf-record DIR` records each measured run with `perf record -e cpu-clock -g`: time on a CPU only, where V8's
 * sampler counts wall time (a write that wakes redis-server and is preempted by it looks expensive there). The
 * gateways run with --perf-basic-prof, so JIT frames have names (V8's log that comes with it goes to the scratch
 * directory). Read with `perf report -i FILE --no-children --sort sym`.
 *
 * `--cpu-prof DIR` profiles every gateway (one .cpuprofile per target in DIR/TARGET-N/; read them with
 * bench/cpuprofile.ts). `--pause` prints the gateways' pids after the warm-up and waits for Enter, for a profiler
 * attached by hand.
 */
import { Agent, request } from 'node:http';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { cpuTimes } from '../proc.ts';
import { DEFAULT_SLUICE_BIN, startSluice, startUpstream, type Running } from '../processes.ts';
import { KEY_STORES, setUpKeys, type BenchKeys, type KeyStore } from '../keys.ts';
import { countSyscalls, syscallCountingAvailable } from '../syscalls.ts';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: 'none,sqlite,redis' },
    rounds: { type: 'string', default: '5' },
    requests: { type: 'string', default: '2000' },
    connections: { type: 'string', default: '50' },
    tokens: { type: 'string', default: '1' },
    'cpu-prof': { type: 'string' },
    'perf-record': { type: 'string' },
    pause: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const perRound = Number(values.requests);
const connections = Number(values.connections);
const tokens = Number(values.tokens);

interface Target {
  label: string;
  store: KeyStore | 'none';
  bin: string;
  gw?: Running;
  keys?: BenchKeys;
  agent?: Agent;
  perRequestUs: number[];
  /** The part of it in the kernel. */
  sysUs: number[];
  /** System calls per request, and the writes among them (with perf). */
  syscalls: number[];
  writes: number[];
  failures: number;
}

const targets: Target[] = (values.keys as string).split(',').map((spec, i, all) => {
  const [store = '', bin] = spec.split(/:(.*)/s);
  if (store !== 'none' && !(KEY_STORES as readonly string[]).includes(store)) throw new Error(`--keys: '${store}' is not none, sqlite or redis`);
  const twice = all.filter((s) => s.split(':')[0] === store).length > 1;
  return { label: twice ? `${store}#${i + 1}${bin ? ` (${bin})` : ''}` : spec, store: store as KeyStore | 'none', bin: bin || DEFAULT_SLUICE_BIN, perRequestUs: [], sysUs: [], syscalls: [], writes: [], failures: 0 };
});

const perf = syscallCountingAvailable();
const scratch = mkdtempSync(join(tmpdir(), 'sluice-micro-keys-'));
const upstream = await startUpstream();
// One token per answer by default, at once: what is measured is the request, not the chunks.
const body = JSON.stringify({ model: 'sluice-sim', stream: true, messages: [{ role: 'user', content: 'hello' }], sim: { ttft_ms: 0, itl_ms: 0, tokens } });

function one(t: Target): Promise<void> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (t.keys) headers['authorization'] = t.keys.authorization;
    const req = request(`${(t.gw as Running).url}/chat/completions`, { method: 'POST', agent: t.agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        if (res.statusCode !== 200 || !text.endsWith('data: [DONE]\n\n')) t.failures++;
        resolve();
      });
    });
    req.on('error', () => {
      t.failures++;
      resolve();
    });
    req.end(body);
  });
}

async function drive(t: Target, n: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < n) {
        next++;
        await one(t);
      }
    }),
  );
}

/** `perf record` of the gateway's time on a CPU (cpu-clock: unlike V8's sampler, not the time it waits preempted). */
function recordCpu(pid: number, out: string): { stop(): Promise<void> } {
  mkdirSync(dirname(out), { recursive: true });
  const child = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '2000', '-g', '-p', String(pid), '-o', out], { stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.once('close', () => res()));
  return {
    async stop() {
      child.kill('SIGINT');
      await exited;
    },
  };
}

try {
  for (const [i, t] of targets.entries()) {
    const dir = join(scratch, `${t.store}-${i + 1}`);
    mkdirSync(dir, { recursive: true });
    if (t.store !== 'none') t.keys = await setUpKeys(t.store, t.bin, dir);
    const prof = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', join(values['cpu-prof'], `${t.store}-${i + 1}`)] : values['perf-record'] ? ['--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${join(dir, 'v8.log')}`] : [];
    t.gw = await startSluice(t.bin, upstream.url, join(dir, 'sluice.log'), prof, t.keys?.serveArgs ?? []);
    t.agent = new Agent({ keepAlive: true, maxSockets: connections });
    await drive(t, Math.min(2_000, perRound)); // warm-up: JIT, connection pools
  }
  if (values.pause) {
    console.log(`gateways: ${targets.map((t) => `${t.label} pid ${t.gw?.pid}`).join(', ')}; press Enter to measure`);
    await new Promise((r) => process.stdin.once('data', r));
    process.stdin.pause();
  }
  for (let r = 0; r < rounds; r++) {
    // The order rotates, so no target always runs first (or right after the same one).
    const order = targets.map((_, i) => targets[(i + r) % targets.length] as Target);
    for (const t of order) {
      const pid = (t.gw as Running).pid;
      // The ledger's flush and the limiter's renewals of the previous target's run are off this one's clock, and this
      // one's own run ends with its next flush inside (state.ledger_flush_ms is 1 s). perf counts the window's system
      // calls (all of the gateway's threads), from before the first request to after that flush.
      const counting = perf && !values['perf-record'] ? countSyscalls(pid) : undefined;
      const recording = values['perf-record'] ? recordCpu(pid, join(values['perf-record'], `${t.store}-${targets.indexOf(t) + 1}-round${r + 1}.data`)) : undefined;
      await new Promise((res) => setTimeout(res, 300)); // and perf attaches
      const cpu0 = cpuTimes(pid);
      await drive(t, perRound);
      await new Promise((res) => setTimeout(res, 1_100));
      const cpu1 = cpuTimes(pid);
      t.perRequestUs.push(((cpu1.total - cpu0.total) * 1000) / perRound);
      t.sysUs.push(((cpu1.sys - cpu0.sys) * 1000) / perRound);
      const sys = await counting?.stop();
      await recording?.stop();
      if (sys) {
        t.syscalls.push(sys.total / perRound);
        t.writes.push(sys.writes / perRound);
      }
    }
    console.log(`round ${r + 1}: ${targets.map((t) => `${t.label} ${(t.perRequestUs.at(-1) as number).toFixed(0)} µs`).join(', ')}`);
  }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
  };
  const base = targets[0] as Target;
  console.log(`\ngateway CPU per request (${rounds} rounds × ${perRound} requests of ${tokens} token(s) over ${connections} kept-alive connections; the 1.1 s after each run included):`);
  for (const t of targets) {
    const m = median(t.perRequestUs);
    // Paired with the first target round by round: the same minute of the machine.
    const diffs = t.perRequestUs.map((v, i) => v - (base.perRequestUs[i] as number));
    const vs = t === base ? '' : `; minus ${base.label} round by round: median ${median(diffs).toFixed(0)} µs (${Math.min(...diffs).toFixed(0)} to ${Math.max(...diffs).toFixed(0)})`;
    const sys = t.syscalls.length === 0 ? '' : `; syscalls per request ${median(t.syscalls).toFixed(2)} (${Math.min(...t.syscalls).toFixed(2)} to ${Math.max(...t.syscalls).toFixed(2)}), writes ${median(t.writes).toFixed(2)}`;
    console.log(`  ${t.label}: median ${m.toFixed(0)} µs (${Math.min(...t.perRequestUs).toFixed(0)} to ${Math.max(...t.perRequestUs).toFixed(0)}; kernel ${median(t.sysUs).toFixed(0)})${vs}${sys}; failures ${t.failures}`);
  }
} finally {
  for (const t of targets) {
    t.agent?.destroy();
    await t.gw?.stop();
    await t.keys?.stop();
  }
  await upstream.stop();
}
