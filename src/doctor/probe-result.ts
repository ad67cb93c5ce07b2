import type { Check } from './check.ts';
import type { Hop } from './hops.ts';
import type { StreamRecording } from './recording.ts';
import type { StreamMetrics } from './stream-metrics.ts';
import type { TokenArrival } from './token-arrivals.ts';
import type { SluiceHop } from './sluice-hop.ts';

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
  /** Sluice's hop report (how its upstream's stream arrived at it), when the target is Sluice and sent one. */
  sluiceHop: SluiceHop | null;
  checks: Check[];
}
