import { check, exitCodeFor, worstStatus, type Check, type CheckStatus } from './check.ts';
import { checkCors, type PreflightResult } from './checks/cors.ts';
import { checkIdle } from './checks/idle.ts';
import { compareProbes, type Comparison } from './compare.ts';
import { discoverTarget, endpointUrl, normalizeBaseUrl, type Target } from './discover.ts';
import { DoctorError } from './doctor-error.ts';
import { fetchSmall } from './fetch-small.ts';
import type { ProbeResult } from './probe-result.ts';
import type { Endpoint } from './recording.ts';
import { runProbe } from './run-probe.ts';
import { checkEngineTtft, snapshotTtft } from './engine-ttft.ts';
import type { Transport } from './http-exchange.ts';
import { HOP_REPORT_REQUEST } from './sluice-hop.ts';

/**
 * `sluice doctor`: discovers the target, streams one request per endpoint asked for, optionally an idle request, a
 * CORS preflight and the same probe against a second URL, and gathers every check into one report.
 */

export interface DoctorOptions {
  url: string;
  model?: string | null;
  key?: string | null;
  /** Extra request headers (`--header`). */
  headers?: Array<[string, string]>;
  /** Endpoints to stream; default chat only. */
  endpoints?: Endpoint[];
  compare?: string | null;
  origin?: string | null;
  /** Silence to ask for in the idle probe, seconds. */
  idleSeconds?: number | null;
  /** Fields merged over every request body (`--body`). */
  body?: Record<string, unknown>;
  /** Per-probe deadline, ms (default 120 000). */
  timeoutMs?: number;
  /** How long a response may stay open after its terminator (default 2000). */
  doneGraceMs?: number;
  connectTimeoutMs?: number;
  /** `http://` URLs over cleartext HTTP/2 with prior knowledge (`--h2c`). */
  h2c?: boolean;
  /** Extra CA certificates (PEM) to trust for `https://` (`--cacert`). */
  ca?: Buffer;
  /** Progress lines ("streaming /chat/completions…"). */
  onProgress?: (message: string) => void;
}

export interface DoctorReport {
  url: string;
  model: string;
  target: Target['kind'];
  startedAt: string;
  probes: ProbeResult[];
  idle: ProbeResult | null;
  compare: { target: Target; probe: ProbeResult; comparison: Comparison } | null;
  checks: Check[];
  status: CheckStatus;
  exitCode: 0 | 1 | 2;
}

/** Probe-mode cadence: the simulator writes a stamped token every 50 ms, 40 of them. */
export const PROBE_SIM = { probe: true, ttft_ms: 100, itl_ms: 50, tokens: 40 } as const;

/** Runs the diagnosis. Rejects with a DoctorError when the target cannot be probed at all. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const startedAt = new Date().toISOString();
  const progress = options.onProgress ?? ((): void => undefined);
  const base = normalizeBaseUrl(options.url);
  const deadlineMs = options.timeoutMs ?? 120_000;
  const doneGraceMs = options.doneGraceMs ?? 2000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const transport: Transport = { h2c: options.h2c === true, ca: options.ca };
  const extraBody = options.body ?? {};
  const plainHeaders = requestHeaders(options);
  const endpoints = options.endpoints && options.endpoints.length > 0 ? options.endpoints : (['chat'] as Endpoint[]);

  progress(`discovering ${base.href} …`);
  const target = await discoverTarget(base, baseHeaders(options), options.model ?? null, connectTimeoutMs, transport);
  const probeSim = target.kind === 'other' ? null : { ...PROBE_SIM };
  const probes: ProbeResult[] = [];
  // Sluice tells what it saw from its upstream when asked (a comment at the end of the stream, ignored by SDKs).
  const headers = target.kind === 'sluice' ? [...plainHeaders, HOP_REPORT_REQUEST as [string, string]] : plainHeaders;
  // vLLM and SGLang: the engine's own TTFT histogram around the first probe splits its time to first token.
  let ttftBefore = await snapshotTtft(base, baseHeaders(options), target.model, connectTimeoutMs, transport);
  for (const endpoint of endpoints) {
    progress(`streaming ${endpoint} (${target.kind === 'other' ? 'model' : 'asking for probe stamps'}: ${target.model}) …`);
    probes.push(
      await runProbe({ name: endpoint, base, endpoint, model: target.model, headers, extraBody, sim: probeSim, deadlineMs, doneGraceMs, connectTimeoutMs, transport, keepErrors: false }),
    );
    if (ttftBefore !== null) {
      const after = await snapshotTtft(base, baseHeaders(options), target.model, connectTimeoutMs, transport);
      const p = probes[probes.length - 1] as ProbeResult;
      if (after !== null) p.checks.push(checkEngineTtft(ttftBefore, after, p.metrics.ttftMs, p.name));
      ttftBefore = null;
    }
  }
  const checks: Check[] = probes.flatMap((p) => p.checks);

  let idle: ProbeResult | null = null;
  if (options.idleSeconds != null && options.idleSeconds > 0) {
    const silenceMs = Math.round(options.idleSeconds * 1000);
    if (target.kind === 'other') {
      checks.push(
        check({
          id: 'idle',
          group: 'idle',
          probe: 'idle',
          title: `A silent stream survives ${options.idleSeconds} s`,
          status: 'skip',
          summary: 'not run: only Sluice or its simulator can be asked for a slow first token',
          fix: 'run the idle test against Sluice deployed behind the same hops (`sluice serve` uses its simulator when no upstream is set)',
        }),
      );
    } else {
      progress(`idle test: asking for ${options.idleSeconds} s of silence …`);
      idle = await runProbe({
        name: 'idle',
        base,
        endpoint: 'chat',
        model: target.model,
        headers,
        extraBody,
        sim: { probe: true, ttft_ms: silenceMs, itl_ms: 20, tokens: 5 },
        deadlineMs: silenceMs + 60_000,
        doneGraceMs,
        connectTimeoutMs,
        transport,
        keepErrors: true,
      });
      const c = checkIdle(idle.recording, silenceMs, idle.hops);
      idle.checks = [c];
      checks.push(c);
    }
  }

  if (options.origin) {
    progress(`CORS preflight as ${options.origin} …`);
    const names = plainHeaders.map(([k]) => k).filter((k) => !['user-agent', 'accept-encoding', 'origin', 'accept', 'content-length'].includes(k.toLowerCase()));
    let preflight: PreflightResult | string;
    try {
      const res = await fetchSmall({
        url: endpointUrl(base, '/chat/completions'),
        method: 'OPTIONS',
        headers: [
          ['User-Agent', 'sluice-doctor'],
          ['Origin', options.origin],
          ['Access-Control-Request-Method', 'POST'],
          ['Access-Control-Request-Headers', names.map((n) => n.toLowerCase()).sort().join(',')],
        ],
        timeoutMs: connectTimeoutMs,
        transport,
      });
      preflight = { status: res.head.status, headers: res.head.headers };
    } catch (err) {
      if (!(err instanceof DoctorError)) throw err;
      preflight = err.message;
    }
    const chat = probes.find((p) => p.recording.endpoint === 'chat') ?? probes[0];
    checks.push(...checkCors(options.origin, preflight, chat?.recording.head.headers ?? null, names));
  }

  let compare: DoctorReport['compare'] = null;
  if (options.compare) {
    const otherBase = normalizeBaseUrl(options.compare);
    progress(`comparing with ${otherBase.href} …`);
    const a = probes[0] as ProbeResult;
    try {
      // `--h2c` is for the URL under test; the comparison URL (often the engine, HTTP/1.1) gets what its scheme says.
      const otherTransport: Transport = { ca: options.ca };
      const other = await discoverTarget(otherBase, baseHeaders(options), null, connectTimeoutMs, otherTransport);
      const model = options.model ?? (other.models.includes(target.model) ? target.model : other.model);
      const b = await runProbe({
        name: `compare:${a.recording.endpoint}`,
        base: otherBase,
        endpoint: a.recording.endpoint,
        model,
        headers: other.kind === 'sluice' ? [...plainHeaders, HOP_REPORT_REQUEST as [string, string]] : plainHeaders,
        extraBody,
        sim: other.kind === 'other' ? null : { ...PROBE_SIM },
        deadlineMs,
        doneGraceMs,
        connectTimeoutMs,
        transport: otherTransport,
        keepErrors: false,
      });
      const comparison = compareProbes(a, b);
      checks.push(comparison.check);
      compare = { target: other, probe: b, comparison };
    } catch (err) {
      if (!(err instanceof DoctorError)) throw err;
      // The URL under test was probed; a comparison URL that cannot be is a failed comparison, not a lost report.
      checks.push(
        check({
          id: 'compare',
          group: 'compare',
          probe: 'compare',
          title: 'Where the two URLs differ',
          status: 'fail',
          summary: `could not probe ${otherBase.href}: ${err.message}`,
          evidence: [`${err.code}`],
          fix: 'check the --compare URL (it is probed with the same headers and key)',
        }),
      );
    }
  }

  return {
    url: target.baseUrl,
    model: target.model,
    target: target.kind,
    startedAt,
    probes,
    idle,
    compare,
    checks,
    status: worstStatus(checks),
    exitCode: exitCodeFor(checks),
  };
}

/** Headers for every request (auth, the user's own). */
function baseHeaders(options: DoctorOptions): Array<[string, string]> {
  const h: Array<[string, string]> = [
    ['User-Agent', 'sluice-doctor'],
    ['Accept', 'application/json'],
  ];
  if (options.key) h.push(['Authorization', `Bearer ${options.key}`]);
  for (const pair of options.headers ?? []) h.push(pair);
  return h;
}

/** Headers for the streamed requests: what the OpenAI SDKs send (they ask for compression and JSON). */
function requestHeaders(options: DoctorOptions): Array<[string, string]> {
  const h = baseHeaders(options);
  h.push(['Content-Type', 'application/json'], ['Accept-Encoding', 'gzip, deflate, br']);
  if (options.origin) h.push(['Origin', options.origin]);
  return h;
}
