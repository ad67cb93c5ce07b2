import type { Check } from './check.ts';
import type { Hop } from './hops.ts';
import type { StreamRecording } from './recording.ts';
import type { StreamMetrics } from './stream-metrics.ts';
import type { TokenArrival } from './token-arrivals.ts';

/** Everything the doctor learned from one streamed request. */
export interface ProbeResult {
  /** "chat", "completions", "responses" or "idle". */
  name: string;
  /** Base URL probed. */
  baseUrl: string;
  /** The simulator's probe stamps were asked for (the target is Sluice or its simulator) and the tokens carried them. */
  probeMode: boolean;
  recording: StreamRecording;
  tokens: TokenArrival[];
  metrics: StreamMetrics;
  hops: Hop[];
  checks: Check[];
}
