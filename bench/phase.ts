/**
 * The contract between the orchestrator (bench/run.ts) and the load generator (bench/load.ts): what one phase runs
 * and what it reports. A phase is one profile against one target (direct, nginx or Sluice).
 */
import type { Summary } from './stats.ts';
import type { SyscallCounts } from './syscalls.ts';

export type ProfileName = 'latency' | 'throughput' | 'idle' | 'churn' | 'wave';
export const PROFILES: readonly ProfileName[] = ['latency', 'throughput', 'idle', 'churn', 'wave'];

/** Per-request simulator knobs (docs/simulator.md); `probe` is always on. */
export interface SimKnobs {
  ttft_ms: number;
  itl_ms: number;
  tokens: number;
  jitter_ms: number;
}

export interface PhaseSpec {
  profile: ProfileName;
  target: string;
  /** Base URL ending in /v1. */
  url: string;
  /** The simulator's own base URL (for /sim/stats), whatever the target. */
  upstreamUrl: string;
  pids: { upstream: number; proxy?: number };
  /** Streams kept open (latency, throughput, idle); churn: the cap on requests in flight. */
  concurrency: number;
  /** Length of the measurement window. */
  durationMs: number;
  /** Load before the window opens (connections, JIT, pools), not measured. */
  warmupMs: number;
  sim: SimKnobs;
  /** churn: new connections (one request each) per second. */
  rate: number;
  /** latency: one abort probe every this many ms during the window (0: none). */
  abortEveryMs: number;
  /** idle: streams opened per second while ramping up. */
  openPerSecond: number;
  /** wave: streams kept open (and measured) while the waves arrive; `concurrency` is the size of each wave. */
  background: number;
  /** wave: a wave starts this often during the window. */
  waveEveryMs: number;
  /** Size of each request's prompt (the user message), bytes: what a proxy may hold per open stream. */
  promptBytes: number;
  /** Count the proxy's system calls over the window with `perf stat`. */
  syscalls: boolean;
  /** An `Authorization` header for every request (a stored key, when the target runs with keys on: bench/keys.ts). */
  authorization?: string | undefined;
}

export interface ErrorCount {
  /** Socket errors, refused connections, resets before the end. */
  socket: number;
  /** Non-200 answers. */
  status: number;
  /** In-band `data: {"error":…}` frames. */
  frame: number;
  /** Streams that ended without every token, the finish chunk and `[DONE]`. */
  truncated: number;
  /** A few examples, for the report. */
  examples: string[];
}

export interface PhaseResult {
  profile: ProfileName;
  target: string;
  windowMs: number;
  /** Requests started in the window, and all requests finished correctly in the phase. */
  started: number;
  completed: number;
  errors: ErrorCount;
  /** churn: requests not started because `concurrency` were already in flight (the target could not keep up). */
  skipped: number;
  /** SSE data events received in the window (tokens, role, finish; not `[DONE]`, not comments). */
  chunks: number;
  /** SSE comments (heartbeats) received in the window. */
  comments: number;
  /** Per-token delay, arrival − the simulator's stamp, ms (tokens that arrived in the window). */
  delay: Summary;
  /**
   * The same without each stream's first two and last two tokens: at a stream's start and end the proxy runs its
   * per-request work (set-up, finish, teardown) in the same loop; mid-stream it only relays. Absent in older JSON.
   */
  delayMid?: Summary;
  /** Request sent → first data event, ms (requests started in the window). */
  ttfb: Summary;
  /** Request sent → end of stream, ms (churn). */
  total: Summary;
  /** CPU used in the window, ms, by process (from /proc/<pid>/stat): proxy, upstream, load; and `machine`, every
   * process on the machine (from /proc/stat), to see what else ran. */
  cpuMs: Record<string, number>;
  /** The proxy's system calls in the window (with `syscalls`). */
  syscalls: SyscallCounts | null;
  /** Proxy RSS, KiB: before the streams were opened and the highest seen while they were open (idle). */
  rss: { baseKiB: number; openKiB: number; streams: number } | null;
  /** Client-side close times of the streams this phase aborted: [id, epoch ms]. */
  clientCloses: [string, number][];
  /** Streams still open at the upstream a while after every client left (should be 0). */
  upstreamLeft: number;
}

/** Messages from the load generator to the orchestrator. */
export type LoadMessage =
  | { type: 'ready' }
  | { type: 'progress'; text: string }
  | { type: 'result'; seq: number; result: PhaseResult }
  | { type: 'failed'; seq: number; message: string };

/** Messages from the orchestrator to the load generator. */
export type LoadCommand = { type: 'run'; seq: number; spec: PhaseSpec };
