import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Config, LogLevel } from '../config/schema.ts';
import { startSimulator, type Simulator } from '../sim/server.ts';
import { isClusterMessage, SIM_URL_ENV, type ClusterMessage } from './ipc.ts';

/** How long the primary waits for each worker's figures when aggregating /metrics. */
const COLLECT_TIMEOUT_MS = 2_000;
/** A worker that dies this many times within CRASH_WINDOW_MS is not restarted again: the gateway stops. */
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 60_000;

/** The env variable telling a worker its index (1…N): worker 1 prints the start-up banner. */
export const WORKER_INDEX_ENV = 'SLUICE_WORKER_INDEX';

export interface PrimaryOptions {
  config: Config;
  workers: number;
  say: (line: string, at?: LogLevel) => void;
}

/**
 * `sluice serve --workers N` (N > 1): this process forks N workers that each run the whole gateway and share the
 * listening port (node:cluster; the primary accepts connections and hands them out in turn, as nginx's
 * `worker_processes`). The primary serves nothing itself. It:
 * - starts the built-in simulator once, when no upstream is configured, and gives its URL to every worker;
 * - relays SIGINT and SIGTERM to the workers as messages (first: drain; second: end streams at once), and stops once
 *   every worker has exited;
 * - restarts a worker that dies while serving, unless workers die MAX_CRASHES times within a minute;
 * - answers a worker's request for /metrics with the sum over every worker (prom-client's aggregation).
 * Resolves to the exit code.
 */
export async function runPrimary(o: PrimaryOptions): Promise<number> {
  let simulator: Simulator | undefined;
  const env: Record<string, string> = {};
  if (o.config.upstreams.length === 0) {
    const { ttft_ms, itl_ms, tokens } = o.config.sim;
    simulator = await startSimulator({ timing: { ttftMs: ttft_ms, itlMs: itl_ms, tokens } });
    env[SIM_URL_ENV] = simulator.url;
  }
  const indexOf = new Map<Worker, number>();
  const listening = new Set<Worker>();
  const crashes: number[] = [];
  let stopping = false;
  let exitCode = 0;
  let signals = 0;
  let collectId = 0;

  const fork = (index: number): void => {
    const w = cluster.fork({ ...env, [WORKER_INDEX_ENV]: String(index) });
    indexOf.set(w, index);
    w.on('message', (m: unknown) => {
      if (isClusterMessage(m) && m.sluice === 'metrics?') void answerMetrics(w, m.id);
    });
  };

  /** Asks every worker for its figures and sends the sum to the one that asked. */
  const answerMetrics = async (asker: Worker, id: number): Promise<void> => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    const cid = collectId++;
    const parts = await Promise.all(workers.map((w) => collect(w, cid)));
    let text = '';
    try {
      text = await AggregatorRegistry.aggregate(parts.filter((p): p is unknown[] => p !== undefined) as never).metrics();
    } catch (err) {
      o.say(`sluice: aggregating the workers' metrics failed: ${(err as Error).message}`, 'warn');
    }
    if (asker.isConnected()) asker.send({ sluice: 'metrics', id, text } satisfies ClusterMessage);
  };

  return new Promise<number>((resolve) => {
    const finish = async (): Promise<void> => {
      await simulator?.close();
      resolve(exitCode);
    };
    cluster.on('listening', (w) => {
      listening.add(w);
      if (listening.size === o.workers) {
        const pids = [...listening].sort((x, y) => (indexOf.get(x) ?? 0) - (indexOf.get(y) ?? 0)).map((x) => x.process.pid).join(', ');
        o.say(`workers: ${o.workers} processes share the port (pids ${pids}; primary ${process.pid})`);
      }
    });
    cluster.on('exit', (w, code, signal) => {
      const index = indexOf.get(w) ?? 0;
      indexOf.delete(w);
      const served = listening.delete(w);
      if (!stopping) {
        if (!served) {
          // It never listened: a start-up failure (port in use, bad config), the same for every worker. The
          // worker said why; the others are stopped and the gateway exits with its code.
          exitCode = code || 1;
          stopAll('SIGINT', true);
        } else {
          const now = Date.now();
          crashes.push(now);
          while (crashes.length > 0 && (crashes[0] as number) < now - CRASH_WINDOW_MS) crashes.shift();
          if (crashes.length >= MAX_CRASHES) {
            o.say(`sluice: workers died ${crashes.length} times within a minute; stopping`, 'error');
            exitCode = 1;
            stopAll('SIGINT', true);
          } else {
            o.say(`sluice: worker ${index} (pid ${w.process.pid}) died (${signal ?? `exit code ${code}`}); starting another`, 'warn');
            fork(index);
            return;
          }
        }
      }
      if (Object.keys(cluster.workers ?? {}).length === 0) void finish();
    });
    const stopAll = (signal: 'SIGINT' | 'SIGTERM', now: boolean): void => {
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) {
        if (w === undefined) continue;
        // A worker still starting has nothing to drain, and may not listen for messages yet.
        if (!listening.has(w) || !w.isConnected()) {
          w.process.kill('SIGKILL');
          continue;
        }
        w.send({ sluice: 'signal', signal } satisfies ClusterMessage);
        // A second message is the "again" of a second signal: end everything at once.
        if (now) w.send({ sluice: 'signal', signal } satisfies ClusterMessage);
      }
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signal !== 'SIGINT' && signal !== 'SIGTERM') return;
      stopAll(signal, false);
      if (signals === 1) o.say(`sluice: ${signal}: passed to the ${o.workers} workers`);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    for (let i = 1; i <= o.workers; i++) fork(i);
  });
}

/** One worker's figures (prom-client JSON), or undefined when it does not answer in time. */
function collect(w: Worker, id: number): Promise<unknown[] | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      w.off('message', onMessage);
      resolve(undefined);
    }, COLLECT_TIMEOUT_MS);
    const onMessage = (m: unknown): void => {
      if (!isClusterMessage(m) || m.sluice !== 'collect' || m.id !== id) return;
      clearTimeout(timer);
      w.off('message', onMessage);
      resolve(m.metrics);
    };
    w.on('message', onMessage);
    w.send({ sluice: 'collect?', id } satisfies ClusterMessage);
  });
}
