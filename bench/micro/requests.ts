/**
 * Per-request cost of a Sluice process on kept-alive connections, apart from connection set-up (the churn profile
 * opens a connection per request) and from per-chunk cost (one token per answer): starts the simulator and
 * `sluice serve` as separate processes, drives N requests over C kept-alive connections, and prints the gateway's
 * CPU (utime + stime from /proc) per request. Add `--cpu-prof DIR` to profile the gateway.
 *
 *   node bench/micro/requests.ts [--requests 20000] [--connections 50] [--sluice-bin bin/sluice.mjs] [--cpu-prof DIR]
 */
import { Agent, request } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuTimes } from '../proc.ts';
import { DEFAULT_SLUICE_BIN, startSluice, startUpstream } from '../processes.ts';
import { countSyscalls, syscallCountingAvailable } from '../syscalls.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '50' },
    'sluice-bin': { type: 'string', default: DEFAULT_SLUICE_BIN },
    'cpu-prof': { type: 'string' },
  },
});
const total = Number(values.requests);
const connections = Number(values.connections);

const upstream = await startUpstream();
const logFile = join(mkdtempSync(join(tmpdir(), 'sluice-micro-')), 'sluice.log');
const profArgs = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof'], ...(process.env.CPU_PROF_INTERVAL ? ['--cpu-prof-interval', process.env.CPU_PROF_INTERVAL] : [])] : [];
const gw = await startSluice(values['sluice-bin'], upstream.url, logFile, profArgs);

const agent = new Agent({ keepAlive: true, maxSockets: connections });
// One token per answer, at once: what is measured is the request, not the chunks.
const body = JSON.stringify({ model: 'sluice-sim', stream: true, messages: [{ role: 'user', content: 'hello' }], sim: { ttft_ms: 0, itl_ms: 0, tokens: 1 } });
let failures = 0;
function one(): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${gw.url}/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        if (res.statusCode !== 200 || !text.endsWith('data: [DONE]\n\n')) failures++;
        resolve();
      });
    });
    req.on('error', () => {
      failures++;
      resolve();
    });
    req.end(body);
  });
}
async function run(n: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: connections }, async () => {
    while (next < n) {
      next++;
      await one();
    }
  }));
}

await run(Math.min(2_000, total)); // warm-up: JIT, connection pools
const perf = syscallCountingAvailable() ? countSyscalls(gw.pid) : undefined;
if (perf) await new Promise((r) => setTimeout(r, 300)); // perf attaches
const cpu0 = cpuTimes(gw.pid).total;
const t0 = performance.now();
await run(total);
const wall = performance.now() - t0;
const cpu = cpuTimes(gw.pid).total - cpu0;
const sys = await perf?.stop();
console.log(`${total} requests over ${connections} kept-alive connections in ${(wall / 1000).toFixed(1)} s; failures ${failures}`);
if (sys) console.log(`gateway syscalls per request: ${(sys.total / total).toFixed(2)} (writes ${(sys.writes / total).toFixed(2)}, reads ${(sys.reads / total).toFixed(2)})`);
console.log(`gateway CPU per request: ${((cpu * 1000) / total).toFixed(1)} µs (${cpu.toFixed(0)} ms in all)`);
agent.destroy();
await gw.stop();
await upstream.stop();
