/**
 * The messages between `sluice serve --workers N`'s primary and its workers (node:cluster IPC). Every message is an
 * object with a `sluice` field, so messages of other libraries on the same channel are left alone.
 */

/** Primary → worker: a signal the primary received, to act on as `sluice serve` does on its own signals. */
export interface SignalMessage {
  sluice: 'signal';
  signal: 'SIGINT' | 'SIGTERM';
}

/** Worker → primary: a client asked this worker for /metrics; the primary answers with every worker's figures. */
export interface MetricsRequest {
  sluice: 'metrics?';
  id: number;
}

/** Primary → worker: the answer to a MetricsRequest, the Prometheus text over every worker. */
export interface MetricsAnswer {
  sluice: 'metrics';
  id: number;
  text: string;
}

/** Primary → worker: send me your registry's figures as JSON. */
export interface CollectRequest {
  sluice: 'collect?';
  id: number;
}

/** Worker → primary: the figures of one worker (prom-client's `getMetricsAsJSON()`). */
export interface CollectAnswer {
  sluice: 'collect';
  id: number;
  metrics: unknown[];
}

export type ClusterMessage = SignalMessage | MetricsRequest | MetricsAnswer | CollectRequest | CollectAnswer;

export function isClusterMessage(m: unknown): m is ClusterMessage {
  return typeof m === 'object' && m !== null && typeof (m as { sluice?: unknown }).sluice === 'string';
}

/** The env variable that carries the built-in simulator's URL from the primary to its workers. */
export const SIM_URL_ENV = 'SLUICE_CLUSTER_SIM_URL';
