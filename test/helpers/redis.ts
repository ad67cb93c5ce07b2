import type { TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './cli.ts';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** A real redis-server of the test's own, on a free loopback port, with no persistence. */
export interface TestRedis {
  readonly port: number;
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
  /** The running server's pid (undefined while stopped). */
  readonly pid: number | undefined;
  /** Kills the server at once (SIGKILL: what a crash looks like to its clients) and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty (no persistence), and waits until it accepts connections. */
  restart(): Promise<void>;
  /** Freezes it (SIGSTOP): connections stay open and nothing answers, as with a Redis stuck or cut off by a network. */
  pause(): void;
  /** Lets a paused server run again (SIGCONT). */
  resume(): void;
}

/** Starts `redis-server` on a free port; killed (by its pid) after the test. `args` are extra server options. */
export async function startRedis(t: TestContext, args: string[] = []): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const launch = async (): Promise<void> => {
    const c = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    exited = new Promise((r) => c.once('exit', () => r()));
    // Ready once it answers on its port: the loglevel keeps its banner quiet, so poll with a PING.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`redis-server exited with ${c.exitCode}`);
      if (await ping(port)) return;
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer within 10 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const kill = async (): Promise<void> => {
    const c = child;
    if (c === undefined || c.exitCode !== null || c.pid === undefined) return;
    process.kill(c.pid, 'SIGKILL');
    await exited;
    child = undefined;
  };
  await launch();
  t.after(kill);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    kill,
    restart: launch,
    pause: () => {
      if (child?.pid !== undefined) process.kill(child.pid, 'SIGSTOP');
    },
    resume: () => {
      if (child?.pid !== undefined) process.kill(child.pid, 'SIGCONT');
    },
  };
}

/** One PING over a raw socket: true when the server answers +PONG. */
async function ping(port: number): Promise<boolean> {
  const { createConnection } = await import('node:net');
  return new Promise((resolve) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => done(/^(\+PONG|-NOAUTH)/.test(d.toString())));
  });
}
