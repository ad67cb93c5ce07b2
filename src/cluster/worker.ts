import cluster from 'node:cluster';
import type { GatewayMetrics } from '../metrics/gateway-metrics.ts';
import { isClusterMessage, type ClusterMessage } from './ipc.ts';

/** How long a worker waits for the primary's aggregated /metrics before answering with an error. */
const METRICS_TIMEOUT_MS = 5_000;

/**
 * A worker's side of `sluice serve --workers N`: it answers the primary's requests for its metrics, serves /metrics
 * as the sum over every worker (asked of the primary, which asks them all), and turns the primary's signal messages
 * into calls of `onSignal`. The worker's own SIGINT and SIGTERM are ignored: a terminal's Ctrl-C reaches every process
 * of the group, and only the primary's count of signals (first: drain, second: end at once) is the right one. When the
 * primary is gone (killed with SIGKILL), the IPC channel closes and the worker drains as on SIGTERM.
 */
export function joinCluster(onSignal: (signal: 'SIGINT' | 'SIGTERM') => void): { serveMetrics(metrics: GatewayMetrics | undefined): void; leave(): void } {
  if (cluster.worker === undefined) throw new Error('joinCluster outside a cluster worker');
  const pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  let next = 0;
  let metrics: GatewayMetrics | undefined;
  process.on('message', (m: unknown) => {
    if (!isClusterMessage(m)) return;
    if (m.sluice === 'signal') onSignal(m.signal);
    else if (m.sluice === 'collect?') {
      const id = m.id;
      void (metrics?.registry.getMetricsAsJSON() ?? Promise.resolve([])).then((json) => send({ sluice: 'collect', id, metrics: json }));
    } else if (m.sluice === 'metrics') {
      const p = pending.get(m.id);
      if (p === undefined) return;
      pending.delete(m.id);
      clearTimeout(p.timer);
      p.resolve(m.text);
    }
  });
  const ignore = (): void => {};
  process.on('SIGINT', ignore);
  process.on('SIGTERM', ignore);
  const orphaned = (): void => onSignal('SIGTERM');
  process.once('disconnect', orphaned);
  const clusterText = (): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('the primary did not answer with the workers\' metrics'));
      }, METRICS_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      send({ sluice: 'metrics?', id });
    });
  return {
    serveMetrics(m) {
      metrics = m;
      if (m !== undefined) m.textSource = clusterText;
    },
    /** Closes the channel to the primary once the gateway has stopped, so that the process can exit. */
    leave() {
      process.off('disconnect', orphaned);
      if (process.connected) process.disconnect();
    },
  };
}

function send(m: ClusterMessage): void {
  if (process.connected) process.send?.(m);
}
