import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LoadMessage, PhaseResult, PhaseSpec } from './phase.ts';

/**
 * Starting and stopping the processes under test: the simulator (bench/upstream.ts), nginx and Sluice, each its own
 * process so that /proc accounts its CPU and memory alone. Everything listens on 127.0.0.1 and is stopped by pid.
 */

export interface Running {
  name: string;
  pid: number;
  /** Base URL ending in /v1. */
  url: string;
  stop(): Promise<void>;
}

const ROOT = new URL('..', import.meta.url).pathname;

/** A port that was free a moment ago (nginx and `sluice serve` need a number up front). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** Whether something accepts TCP connections on the loopback port. */
export function listening(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function waitForPort(port: number, child: ChildProcess, what: string, maxMs = 15_000): Promise<void> {
  const until = Date.now() + maxMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening`);
    if (await listening(port)) return;
    if (Date.now() > until) throw new Error(`${what} did not listen on ${port} within ${maxMs} ms`);
    await sleep(50);
  }
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Spawns a Node process with an IPC channel and waits for its first message (its 'ready'). */
export async function spawnNode(
  script: string,
  env: Record<string, string>,
  execArgv: string[] = [],
): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(process.execPath, [...execArgv, join(ROOT, script)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Record<string, unknown>));
    child.once('exit', (code, signal) => reject(new Error(`${script} exited (${code ?? signal}) before it was ready`)));
  });
  return { child, ready };
}

let seq = 0;

/** Sends `message` (given a fresh `seq`) and resolves with the child's answer of type `type` carrying that seq. */
function ask<T extends { type: string; seq: number }>(child: ChildProcess, message: Record<string, unknown>, types: string[], onOther?: (m: unknown) => void): Promise<T> {
  const id = ++seq;
  return new Promise((resolve, reject) => {
    const onMessage = (raw: unknown): void => {
      const m = raw as T;
      if (types.includes(m.type) && m.seq === id) {
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m);
      } else {
        onOther?.(raw);
      }
    };
    const onExit = (): void => reject(new Error('a benchmark process exited before it answered'));
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ ...message, seq: id });
  });
}

export interface Upstream extends Running {
  /** The streams whose connection closed before their end since the last call: [id (the request's `user`), epoch ms]. */
  closes(): Promise<[string, number][]>;
}

/** The simulator in its own process (bench/upstream.ts). */
export async function startUpstream(): Promise<Upstream> {
  const { child, ready } = await spawnNode('bench/upstream.ts', {});
  return {
    name: 'upstream',
    pid: child.pid as number,
    url: String(ready['url']),
    stop: () => stopChild(child),
    closes: async () => (await ask<{ type: string; seq: number; closes: [string, number][] }>(child, { type: 'closes' }, ['closes'])).closes,
  };
}

export interface LoadGenerator {
  pid: number;
  /** Runs one phase; `onProgress` receives a status line about once a second. */
  run(spec: PhaseSpec, onProgress?: (text: string) => void): Promise<PhaseResult>;
  stop(): Promise<void>;
}

/** The load generator in its own process (bench/load.ts). */
export async function startLoad(): Promise<LoadGenerator> {
  const { child } = await spawnNode('bench/load.ts', {});
  return {
    pid: child.pid as number,
    stop: () => stopChild(child),
    run: async (spec, onProgress) => {
      const m = await ask<Exclude<LoadMessage, { type: 'ready' | 'progress' }>>(child, { type: 'run', spec }, ['result', 'failed'], (raw) => {
        const p = raw as LoadMessage;
        if (p.type === 'progress') onProgress?.(p.text);
      });
      if (m.type === 'failed') throw new Error(`load generator: ${m.message}`);
      return m.result;
    },
  };
}

/** nginx's version string, or null when it is not installed. */
export function nginxVersion(): string | null {
  const r = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return (r.stderr || r.stdout).trim().replace(/^nginx version: /, '');
}

/**
 * nginx as a reverse proxy with `proxy_buffering off`: one process (`master_process off`, so its CPU is all in one
 * /proc entry, like Sluice's), HTTP/1.1 and a keep-alive pool to the upstream, as a production config would have.
 */
export async function startNginx(upstreamUrl: string, dir: string, workers = 1): Promise<Running> {
  const up = new URL(upstreamUrl);
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  const conf = `# Written by bench/processes.ts for one benchmark run.
daemon off;
master_process ${workers > 1 ? 'on' : 'off'};
worker_processes ${workers};
worker_rlimit_nofile 20000;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {
  worker_connections 16384;
}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000;
  upstream sim {
    server ${up.host};
    keepalive 1024;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }
  }
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const child = spawn('nginx', ['-p', dir, '-c', confPath, '-e', join(dir, 'error.log')], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    await waitForPort(port, child, 'nginx');
  } catch (err) {
    const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  return { name: 'nginx', pid: child.pid as number, url: `http://127.0.0.1:${port}/v1`, stop: () => stopChild(child) };
}

/** This checkout's CLI. `--sluice-bin` points the benchmark at another checkout's, to compare commits. */
export const DEFAULT_SLUICE_BIN = join(ROOT, 'bin/sluice.mjs');

/** Whether `bin` is a Sluice CLI with a gateway to benchmark (`sluice serve`). */
export function sluiceAvailable(bin: string): boolean {
  if (!existsSync(join(dirname(bin), '../src/gateway.ts'))) return false;
  const r = spawnSync(process.execPath, [bin, 'serve', '--help'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0;
}

/**
 * `sluice serve` in front of the upstream, as a user would start it, request log off (as nginx's access_log is).
 * Its output goes to `logFile`. `execArgv` takes e.g. --cpu-prof.
 */
export async function startSluice(bin: string, upstreamUrl: string, logFile: string, execArgv: string[] = [], serveArgs: string[] = []): Promise<Running> {
  const running = await startSluiceProcess(bin, upstreamUrl, logFile, execArgv, serveArgs);
  // With --workers, the port opens with the first worker; the load waits for all of them, or it would start on one.
  if (serveArgs.includes('--workers')) {
    const deadline = Date.now() + 30_000;
    while (!/workers: \d+ processes share the port/.test(readFileSync(logFile, 'utf8'))) {
      if (Date.now() > deadline) throw new Error(`sluice --workers: not every worker listened within 30 s\n${readFileSync(logFile, 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return running;
}

function startSluiceProcess(bin: string, upstreamUrl: string, logFile: string, execArgv: string[], serveArgs: string[]): Promise<Running> {
  return startNodeProxy('sluice', dirname(dirname(bin)), logFile, (port) => [
    ...execArgv,
    bin,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--upstream',
    upstreamUrl,
    '--quiet',
    ...serveArgs,
  ]);
}

/** One of bench/floor.ts's reference proxies (`mode`: relay, http or raw) in front of the upstream. */
export function startFloor(mode: string, upstreamUrl: string, logFile: string, execArgv: string[] = []): Promise<Running> {
  return startNodeProxy(`node-${mode}`, ROOT, logFile, (port) => [
    ...execArgv,
    join(ROOT, 'bench/floor.ts'),
    '--mode',
    mode,
    '--port',
    String(port),
    '--upstream',
    upstreamUrl,
  ]);
}

async function startNodeProxy(name: string, cwd: string, logFile: string, argv: (port: number) => string[]): Promise<Running> {
  const port = await freePort();
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, argv(port), { cwd, stdio: ['ignore', log, log] });
  closeSync(log);
  try {
    await waitForPort(port, child, name);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${readFileSync(logFile, 'utf8')}`);
  }
  return { name, pid: child.pid as number, url: `http://127.0.0.1:${port}/v1`, stop: () => stopChild(child, 10_000) };
}
