/**
 * Per-request cost of a Sluice process on kept-alive connections, apart from connection set-up (the churn profile
 * opens a connection per request) and from per-chunk cost (one token per answer): starts the simulator and
 * `sluice serve` as separate processes, drives N requests over C kept-alive connections, and prints the gateway's
 * CPU (utime + stime from /proc) per request. Add `--cpu-prof DIR` to profile the gateway.
 *
 *   node bench/micro/requests.ts [--requests 20000] [--connections 50] [--sluice-bin bin/sluice.mjs] [--cpu-prof DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { once } from 'node:events';
import { countSyscalls, syscallCountingAvailable } from '../syscalls.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '50' },
    'sluice-bin': { type: 'string', default: new URL('../../bin/sluice.mjs', import.meta.url).pathname },
    'cpu-prof': { type: 'string' },
  },
});
const total = Number(values.requests);
const connections = Number(values.connections);
const TICKS = 100; // USER_HZ on Linux

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS;
}

async function start(args: string[], ready: RegExp): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const onOut = (c: Buffer): void => {
      seen += c.toString();
      if (ready.test(seen)) resolve();
    };
    child.stdout?.on('data', onOut);
    child.stderr?.on('data', onOut);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code}): ${seen}`)));
  });
  return child;
}

const simPort = 18_000 + Math.floor(Math.random() * 1000);
const gwPort = simPort + 1000;
const sim = await start([new URL('../../bin/sluice.mjs', import.meta.url).pathname, 'sim', '--port', String(simPort), '--ttft-ms', '0', '--itl-ms', '0', '--tokens', '1'], /listening|127\.0\.0\.1/);
const profArgs = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [];
const gw = await start([...profArgs, values['sluice-bin'], 'serve', '--port', String(gwPort), '--upstream', `http://127.0.0.1:${simPort}/v1`, '--quiet'], /listening|127\.0\.0\.1:\d+/);

const agent = new Agent({ keepAlive: true, maxSockets: connections });
const body = JSON.stringify({ model: 'sluice-sim', stream: true, messages: [{ role: 'user', content: 'hello' }] });
let failures = 0;
function one(): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`http://127.0.0.1:${gwPort}/v1/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
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
const cpu0 = cpuMs(gw.pid as number);
const t0 = performance.now();
const perf = syscallCountingAvailable() ? countSyscalls(gw.pid as number) : undefined;
if (perf) await new Promise((r) => setTimeout(r, 300)); // perf attaches
await run(total);
const wall = performance.now() - t0;
const cpu = cpuMs(gw.pid as number) - cpu0;
const sys = await perf?.stop();
console.log(`${total} requests over ${connections} kept-alive connections in ${(wall / 1000).toFixed(1)} s; failures ${failures}`);
if (sys) console.log(`gateway syscalls per request: ${(sys.total / total).toFixed(2)} (writes ${(sys.writes / total).toFixed(2)}, reads ${(sys.reads / total).toFixed(2)})`);
console.log(`gateway CPU per request: ${((cpu * 1000) / total).toFixed(1)} µs (${cpu.toFixed(0)} ms in all)`);
agent.destroy();
gw.kill('SIGTERM');
await once(gw, 'exit');
sim.kill('SIGTERM');
