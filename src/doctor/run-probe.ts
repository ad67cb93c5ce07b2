import { checkBuffering } from './checks/buffering.ts';
import { checkHeaders } from './checks/headers.ts';
import { checkSdkCompat } from './checks/sdk-compat.ts';
import { endpointUrl, errorMessage, unauthorized } from './discover.ts';
import { DoctorError } from './doctor-error.ts';
import type { Transport } from './http-exchange.ts';
import { identifyHops } from './hops.ts';
import type { ProbeResult } from './probe-result.ts';
import { ENDPOINT_PATHS, headerValue, type Endpoint, type StreamRecording } from './recording.ts';
import { recordStream } from './record-stream.ts';
import { auditFraming } from './sse-framing.ts';
import { computeMetrics } from './stream-metrics.ts';
import { tokenArrivals } from './token-arrivals.ts';
import { readSluiceHop } from './sluice-hop.ts';
import { checkSides } from './checks/sides.ts';

/** One streamed request against one endpoint, recorded and judged. */

/** A prompt that makes a real model write many short tokens. */
export const PROBE_PROMPT = 'Count from 1 to 200, separated by spaces. Output only the numbers.';
export const PROBE_MAX_TOKENS = 64;

export interface ProbeSpec {
  name: string;
  base: URL;
  endpoint: Endpoint;
  model: string;
  headers: Array<[string, string]>;
  /** Extra fields merged over the request body (`--body`). */
  extraBody: Record<string, unknown>;
  /** The `sim` knobs for a Sluice or simulator target, else null. */
  sim: Record<string, unknown> | null;
  deadlineMs: number;
  doneGraceMs: number;
  connectTimeoutMs: number;
  transport?: Transport | undefined;
  /** Idle probes keep non-2xx answers (a proxy's 504) for the idle check instead of failing. */
  keepErrors: boolean;
}

/** The JSON body for an endpoint. */
export function requestBody(endpoint: Endpoint, model: string, extra: Record<string, unknown>, sim: Record<string, unknown> | null): Record<string, unknown> {
  const body: Record<string, unknown> =
    endpoint === 'chat'
      ? { model, messages: [{ role: 'user', content: PROBE_PROMPT }], max_tokens: PROBE_MAX_TOKENS, stream: true }
      : endpoint === 'completions'
        ? { model, prompt: PROBE_PROMPT, max_tokens: PROBE_MAX_TOKENS, stream: true }
        : { model, input: PROBE_PROMPT, max_output_tokens: PROBE_MAX_TOKENS, stream: true };
  if (sim !== null) body['sim'] = sim;
  return { ...body, ...extra };
}

/** Sends the probe and returns the recording with its metrics (and, unless `keepErrors`, its checks). */
export async function runProbe(spec: ProbeSpec): Promise<ProbeResult> {
  const url = endpointUrl(spec.base, ENDPOINT_PATHS[spec.endpoint]);
  const record = (sim: Record<string, unknown> | null): Promise<StreamRecording> =>
    recordStream({
      url,
      endpoint: spec.endpoint,
      headers: spec.headers,
      body: requestBody(spec.endpoint, spec.model, spec.extraBody, sim),
      deadlineMs: spec.deadlineMs,
      doneGraceMs: spec.doneGraceMs,
      connectTimeoutMs: spec.connectTimeoutMs,
      transport: spec.transport,
    });
  let rec = await record(spec.sim);
  let asked = spec.sim !== null;
  // A Sluice gateway in front of a real engine forwards `sim`; an engine that rejects unknown fields answers 400.
  if (asked && rec.head.status === 400 && /\bsim\b/.test(rec.body.toString('utf8'))) {
    rec = await record(null);
    asked = false;
  }
  const status = rec.head.status;
  if (!spec.keepErrors) {
    if (status === 401 || status === 403) throw unauthorized(url, rec.head, rec.body);
    if (status < 200 || status >= 300) {
      const message = errorMessage(rec.body);
      throw new DoctorError('SLUICE_DOCTOR_HTTP_ERROR', `${url.href} answered ${status} ${rec.head.statusText}${message ? `: ${message}` : ''}`, { status });
    }
    assertEventStream(url, rec);
  }
  const tokens = tokenArrivals(rec);
  // Probe mode is what arrived, not what was asked: a Sluice in front of a real engine forwards `sim`, and an engine
  // that ignores unknown fields answers with ordinary, unstamped tokens.
  const probeMode = asked && tokens.some((tk) => tk.stamp !== null);
  const itl = probeMode && spec.sim !== null ? spec.sim['itl_ms'] : null;
  const metrics = computeMetrics(rec, tokens, { expectedItlMs: typeof itl === 'number' ? itl : null });
  const hops = identifyHops(rec.head.headers);
  const sluiceHop = readSluiceHop(rec);
  const result: ProbeResult = { name: spec.name, baseUrl: spec.base.href.replace(/\/+$/, ''), probeMode, recording: rec, tokens, metrics, hops, sluiceHop, checks: [] };
  if (!spec.keepErrors) {
    const buffering = checkBuffering(rec, metrics, hops, sluiceHop);
    const sides = sluiceHop === null ? [] : [checkSides(rec, metrics, sluiceHop, buffering.status === 'fail' || buffering.status === 'warn')];
    result.checks = [buffering, ...sides, ...checkHeaders(rec, hops, buffering.status !== 'fail'), ...checkSdkCompat(rec, auditFraming(rec.body))];
  }
  return result;
}

/** Throws NOT_SSE when a 2xx answer is not an event stream at all. */
function assertEventStream(url: URL, rec: StreamRecording): void {
  const ct = headerValue(rec.head.headers, 'content-type') ?? '';
  if (/text\/event-stream/i.test(ct)) return;
  const start = rec.body.subarray(0, 64).toString('utf8').replace(/^\uFEFF/, '');
  if (rec.events.length > 0 && /^(data|event|id|retry)?:/.test(start)) return;
  const preview = rec.body.subarray(0, 200).toString('utf8').replace(/\s+/g, ' ').trim();
  const hint = /json/i.test(ct)
    ? 'the endpoint (or a hop) ignored "stream": true and sent the whole answer as JSON'
    : /html/i.test(ct)
      ? 'an HTML page came back: the URL probably points at a web server, not the API'
      : 'this is not an OpenAI-compatible streaming endpoint';
  throw new DoctorError(
    'SLUICE_DOCTOR_NOT_SSE',
    `${url.href} answered ${rec.head.status} with Content-Type ${ct === '' ? '(none)' : `"${ct}"`}, not an event stream: ${hint}${preview ? `. Body: ${preview}${rec.body.length > 200 ? '…' : ''}` : ''}`,
    { status: rec.head.status },
  );
}
