import type { TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/**
 * Real nginx, HAProxy and Caddy (Debian's packages) on loopback for the doctor's integration tests. Each runs in the
 * foreground as a child of the test, with its config, pid file, logs and temp files in a fresh temp dir, and is
 * stopped by its pid in `t.after`. When a binary is missing the test fails with the Debian package to install
 * (CI installs those listed in .ci/apt-packages).
 *
 * Recipes come from docs/proxies/*.md: a fenced block preceded by `<!-- recipe: NAME -->` (or `<!-- known-bad: NAME -->`).
 * They use the documented addresses — upstream 127.0.0.1:8080, listening on port 80 — which the helpers rewrite to
 * the test's ports, so the tests run exactly the configuration the docs show.
 */

export interface RunningProxy {
  /** Base URL ending in /v1. */
  url: string;
  port: number;
  pid: number;
  dir: string;
  /** The proxy's error log / stderr so far. */
  log(): Promise<string>;
  stop(): Promise<void>;
}

const SEARCH = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin'];

/** Absolute path of a binary, or a thrown error naming the Debian package to install. */
export function requireBinary(name: string, pkg: string = name): string {
  for (const dir of SEARCH) {
    if (dir === '') continue;
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} is not installed: install the Debian package '${pkg}' (apt-get install ${pkg}; it is listed in .ci/apt-packages)`);
}

/** A free loopback port (bound, read, released). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The fenced block after `<!-- recipe: NAME -->` or `<!-- known-bad: NAME -->` in docs/proxies/FILE. */
export async function recipe(file: string, name: string): Promise<string> {
  const text = await readFile(new URL(`../../docs/proxies/${file}`, import.meta.url), 'utf8');
  const re = new RegExp(`<!-- (?:recipe|known-bad): ${name.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&')} -->\\s*\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\``);
  const m = re.exec(text);
  if (!m) throw new Error(`docs/proxies/${file} has no block marked '${name}'`);
  return m[1] as string;
}

/** Rewrites the documented upstream address (127.0.0.1:8080) to the test's upstream base URL's host:port. */
export function pointAt(config: string, upstreamBaseUrl: string): string {
  const { host } = new URL(upstreamBaseUrl);
  return config.replaceAll('127.0.0.1:8080', host);
}

async function waitForPort(port: number, child: ChildProcess, logFile: string, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`${name} exited with code ${child.exitCode} before listening:\n${await readFile(logFile, 'utf8').catch(() => '')}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on 127.0.0.1:${port} within 10 s:\n${await readFile(logFile, 'utf8').catch(() => '')}`);
}

async function launch(
  t: TestContext,
  name: string,
  binary: string,
  args: (dir: string) => string[],
  files: (dir: string) => Record<string, string>,
  port: number,
  logName: string,
  env: (dir: string) => NodeJS.ProcessEnv = () => process.env,
): Promise<RunningProxy> {
  const dir = await mkdtemp(join(tmpdir(), `sluice-${name}-`));
  // nginx started as root runs its workers as `nobody`: they must reach the temp dir (mkdtemp makes it 0700).
  chmodSync(dir, 0o755);
  for (const [file, content] of Object.entries(files(dir))) await writeFile(join(dir, file), content);
  const logFile = join(dir, logName);
  const out = openSync(join(dir, 'stdout.log'), 'a');
  const child = spawn(binary, args(dir), { cwd: dir, stdio: ['ignore', out, out], env: env(dir) });
  closeSync(out);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name} did not start`);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
      }, 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  t.after(stop);
  const log = async (): Promise<string> =>
    (await readFile(logFile, 'utf8').catch(() => '')) + (await readFile(join(dir, 'stdout.log'), 'utf8').catch(() => ''));
  try {
    await waitForPort(port, child, logFile, name);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `http://127.0.0.1:${port}/v1`, port, pid, dir, log, stop };
}

/**
 * nginx with `http` block contents `httpBlock` (a recipe's server/upstream/map blocks). `listen 80` becomes the
 * test's port; temp paths, pid and logs go to the temp dir; the master stays in the foreground.
 */
export async function startNginx(t: TestContext, httpBlock: string): Promise<RunningProxy> {
  const binary = requireBinary('nginx');
  const port = await freePort();
  const body = httpBlock.replace(/listen\s+80\s*;/g, `listen 127.0.0.1:${port};`);
  return launch(
    t,
    'nginx',
    binary,
    (dir) => ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')],
    (dir) => ({
      'nginx.conf': [
        'daemon off;',
        'master_process on;',
        'worker_processes 1;',
        `pid ${join(dir, 'nginx.pid')};`,
        `error_log ${join(dir, 'error.log')} warn;`,
        'events { worker_connections 512; }',
        'http {',
        '  access_log off;',
        `  client_body_temp_path ${join(dir, 'client_body')};`,
        `  proxy_temp_path ${join(dir, 'proxy')};`,
        `  fastcgi_temp_path ${join(dir, 'fastcgi')};`,
        `  uwsgi_temp_path ${join(dir, 'uwsgi')};`,
        `  scgi_temp_path ${join(dir, 'scgi')};`,
        body,
        '}',
        '',
      ].join('\n'),
    }),
    port,
    'error.log',
  );
}

/** HAProxy with a whole configuration (a recipe); `bind :80` becomes the test's port, plus a pid file. */
export async function startHaproxy(t: TestContext, config: string): Promise<RunningProxy> {
  const binary = requireBinary('haproxy');
  const port = await freePort();
  const body = config.replace(/bind\s+(\*|0\.0\.0\.0)?:80\b/g, `bind 127.0.0.1:${port}`);
  return launch(
    t,
    'haproxy',
    binary,
    // -db: stay in the foreground (the test owns the process); -p: pid file in the temp dir.
    (dir) => ['-db', '-f', join(dir, 'haproxy.cfg'), '-p', join(dir, 'haproxy.pid')],
    () => ({ 'haproxy.cfg': body.endsWith('\n') ? body : `${body}\n` }),
    port,
    'stdout.log',
  );
}

/** Caddy with a Caddyfile site block (a recipe); `:80` becomes the test's address; no admin API, storage in the
 * temp dir. */
export async function startCaddy(t: TestContext, site: string): Promise<RunningProxy> {
  const binary = requireBinary('caddy');
  const port = await freePort();
  const body = site.replace(/^:80\s*\{/m, `http://127.0.0.1:${port} {`);
  return launch(
    t,
    'caddy',
    binary,
    (dir) => ['run', '--config', join(dir, 'Caddyfile'), '--adapter', 'caddyfile', '--pidfile', join(dir, 'caddy.pid')],
    (dir) => ({ Caddyfile: `{\n\tadmin off\n\tauto_https off\n\tstorage file_system ${join(dir, 'data')}\n}\n\n${body}\n` }),
    port,
    'stdout.log',
    (dir) => ({ ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir }),
  );
}
