import type { ProfileName, SimKnobs } from './phase.ts';

/**
 * The load profiles of issue 5. `quick` sizes keep `npm run bench` at about five minutes (with the upstream's
 * warm-up); `full` sizes are the (500 streams at 20 tokens/s, 200 as fast as the upstream goes, 5,000 idle,
 * churn).
 */
export interface Profile {
  name: ProfileName;
  what: string;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  sim: SimKnobs;
  rate: number;
  abortEveryMs: number;
  openPerSecond: number;
  background: number;
  waveEveryMs: number;
}

const BASE = { rate: 0, abortEveryMs: 0, openPerSecond: 0, background: 0, waveEveryMs: 0 };

export function profile(name: ProfileName, full: boolean): Profile {
  switch (name) {
    case 'latency':
      // vLLM-like: 120 ms to the first token, then 20 tokens/s; every stream of a wave starts at once, as a batch
      // does, and the waves repeat. One abort probe every 100 ms measures abort propagation under this load.
      return {
        ...BASE,
        name,
        what: 'streams × 20 tokens/s (40 tokens, 120 ms to first token), all starting at once; abort probes 10/s',
        concurrency: 500,
        durationMs: full ? 60_000 : 12_000,
        warmupMs: full ? 5_000 : 3_000,
        sim: { ttft_ms: 120, itl_ms: 50, tokens: 40, jitter_ms: 0 },
        abortEveryMs: 100,
      };
    case 'throughput':
      return {
        ...BASE,
        name,
        what: 'streams as fast as the upstream goes (200 tokens, no pause between tokens)',
        concurrency: 200,
        durationMs: full ? 30_000 : 8_000,
        warmupMs: 2_000,
        sim: { ttft_ms: 0, itl_ms: 0, tokens: 200, jitter_ms: 0 },
      };
    case 'idle':
      return {
        ...BASE,
        name,
        what: 'open streams, one token every 3 s; then every client leaves at once',
        concurrency: full ? 5_000 : 1_000,
        durationMs: full ? 30_000 : 8_000,
        warmupMs: 1_000,
        sim: { ttft_ms: 0, itl_ms: 3_000, tokens: 0, jitter_ms: 0 },
        openPerSecond: 2_000,
      };
    case 'churn':
      return {
        ...BASE,
        name,
        what: 'new connections per second, one short stream each (5 tokens), open loop',
        concurrency: 2_000,
        durationMs: full ? 30_000 : 8_000,
        warmupMs: 1_000,
        sim: { ttft_ms: 0, itl_ms: 1, tokens: 5, jitter_ms: 0 },
        rate: full ? 500 : 200,
      };
    case 'wave':
      // Issue 16's fairness question: while a wave of new requests arrives at once (a batch job, a retry storm), do
      // the streams already open keep their pace? The background streams' per-chunk delay is what is measured; the
      // wave's requests give the time to first byte (120 ms to first token, then 5 tokens at 20 tokens/s).
      return {
        ...BASE,
        name,
        what: 'new streams at once every 2 s (120 ms to first token, 5 tokens), while 200 streams at 20 tokens/s stay open and are measured',
        concurrency: 500,
        background: 200,
        waveEveryMs: 2_000,
        durationMs: full ? 30_000 : 10_000,
        warmupMs: 2_000,
        sim: { ttft_ms: 120, itl_ms: 50, tokens: 5, jitter_ms: 0 },
      };
  }
}
