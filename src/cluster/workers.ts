import { availableParallelism } from 'node:os';

/** How many processes `workers` asks for: `auto` is one per core the process may run on. */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? Math.max(1, availableParallelism()) : workers;
}
