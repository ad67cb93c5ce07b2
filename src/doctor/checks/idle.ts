import { check, type Check } from '../check.ts';
import { describeHops, type Hop } from '../hops.ts';
import type { StreamRecording } from '../recording.ts';
import { tokenArrivals } from '../token-arrivals.ts';

/**
 * Idle survival: a request whose first token comes only after a long silence (a long prefill, a queue). Hops with an
 * idle timeout cut such streams unless heartbeats keep bytes flowing. The length of the silence before the cut names
 * the likely hop.
 */

interface KnownLimit {
  seconds: number;
  who: string;
  fix: string;
}

const KNOWN_LIMITS: KnownLimit[] = [
  { seconds: 15, who: 'Envoy (route timeout 15 s)', fix: 'raise the route `timeout` (or set it to 0) for the API' },
  { seconds: 30, who: 'Amazon CloudFront (origin response timeout 30 s)', fix: 'raise the origin response timeout, and send heartbeats more often than every 30 s' },
  { seconds: 50, who: 'HAProxy (Debian\'s default `timeout server 50s` / `timeout client 50s`)', fix: 'raise `timeout server` and `timeout client` above the heartbeat interval (see docs/proxies/haproxy.md)' },
  { seconds: 60, who: 'nginx (`proxy_read_timeout 60s`) or an AWS ALB (idle timeout 60 s)', fix: 'nginx: raise `proxy_read_timeout` (and `proxy_send_timeout`) above the heartbeat interval; ALB: raise the idle timeout' },
  { seconds: 100, who: 'Cloudflare (100 s proxy read timeout, error 524)', fix: 'send heartbeats more often than every 100 s (Sluice sends one every 15 s by default)' },
];

const HEARTBEAT_FIX = 'send `: keep-alive\\n\\n` comments every 15 s from the moment the headers go out (Sluice does, every `heartbeat_ms`, 15 s by default); or put Sluice in front of the engine';

/** A first token earlier than this share of the silence asked for means the silence was not created. */
const CREATED_SILENCE = 0.9;

/** Judges the idle probe. `silenceMs` is the silence the probe asked for. */
export function checkIdle(rec: StreamRecording, silenceMs: number, hops: readonly Hop[]): Check {
  const base = { id: 'idle', group: 'idle', probe: 'idle', title: `A silent stream survives ${fmtS(silenceMs)}` } as const;
  const tokens = tokenArrivals(rec);
  const firstToken = tokens[0]?.at ?? null;
  const beats = rec.events.filter((e) => e.kind === 'comment' && (firstToken === null || e.at <= firstToken)).map((e) => e.at);
  const evidence: string[] = [`asked for ${fmtS(silenceMs)} of silence before the first token; headers arrived at ${fmtMs(rec.head.at)}`];
  if (beats.length > 0) {
    const gaps = beats.map((t, i) => t - (i === 0 ? rec.head.at : (beats[i - 1] as number)));
    evidence.push(`${beats.length} heartbeat comment(s) during the silence, at most ${fmtMs(Math.max(...gaps))} apart`);
  } else {
    evidence.push('no heartbeat comment during the silence');
  }
  if (rec.head.status < 200 || rec.head.status >= 300) {
    const limit = nearestLimit(rec.head.at) ?? limitFromHops(hops, rec.head.at);
    evidence.push(`HTTP ${rec.head.status} ${rec.head.statusText} after ${fmtMs(rec.head.at)}`);
    return check({
      ...base,
      status: 'fail',
      summary: `a hop gave up waiting and answered ${rec.head.status} after ${fmtMs(rec.head.at)}${limit ? `; likely ${limit.who}` : ''}`,
      evidence,
      fix: limit ? `${limit.fix}; ${HEARTBEAT_FIX}` : HEARTBEAT_FIX,
      hop: limit?.who ?? null,
    });
  }
  if (firstToken === null) {
    const lastByte = rec.reads.length > 0 ? (rec.reads[rec.reads.length - 1]?.at ?? rec.head.at) : rec.head.at;
    const silent = rec.end.at - lastByte;
    const limit = nearestLimit(silent) ?? limitFromHops(hops, silent);
    evidence.push(`the response ${rec.end.reason === 'timeout' ? 'was still silent at the probe\'s deadline' : `ended (${rec.end.reason}${rec.end.detail ? `: ${rec.end.detail}` : ''}) at ${fmtMs(rec.end.at)}`}, ${fmtMs(silent)} after the last byte`);
    evidence.push(`hops: ${describeHops(hops)}`);
    if (rec.end.reason === 'timeout') {
      return check({ ...base, status: 'fail', summary: 'no token arrived after the silence', evidence, fix: 'look for a hop that holds the stream or a hung upstream' });
    }
    return check({
      ...base,
      status: 'fail',
      summary: `the stream was cut after ${fmtMs(silent)} of silence${limit ? `; likely ${limit.who}` : ''}`,
      evidence,
      fix: limit ? `${limit.fix}; ${beats.length > 0 ? 'heartbeats arrive, so make the hop\'s idle timeout longer than their interval' : HEARTBEAT_FIX}` : HEARTBEAT_FIX,
      hop: limit?.who ?? 'a hop with an idle timeout',
    });
  }
  evidence.push(`first token at ${fmtMs(firstToken)}; the stream ${rec.doneAt !== null ? 'completed' : `ended (${rec.end.reason})`}`);
  if (firstToken < silenceMs * CREATED_SILENCE) {
    // The silence is asked of the simulator (`sim.ttft_ms`); a Sluice in front of a real engine forwards the knob and
    // the engine ignores it. A fast first token is then no evidence either way about how hops treat silence.
    const stamped = tokens.some((tk) => tk.stamp !== null);
    return check({
      ...base,
      status: 'skip',
      summary: `skipped: could not create silence: the first token came at ${fmtMs(firstToken)}, not after ${fmtS(silenceMs)}${stamped ? '' : ' (no simulator stamps: the engine behind this endpoint ignores `sim.ttft_ms`)'}`,
      evidence,
      fix: 'run the idle test against a Sluice on its simulator behind the same hops (`sluice serve` with no upstream), or against a Sluice whose upstream is `sluice sim`',
    });
  }
  if (rec.doneAt === null && rec.end.reason !== 'complete') {
    return check({ ...base, status: 'fail', summary: `the stream was cut after the silence (${rec.end.reason})`, evidence, fix: HEARTBEAT_FIX, hop: 'a hop with an idle or total timeout' });
  }
  if (beats.length === 0) {
    return check({
      ...base,
      status: 'warn',
      summary: `survived ${fmtS(silenceMs)} of silence, but no heartbeats arrived: hops with idle limits (CloudFront 30 s, nginx and ALB 60 s, Cloudflare 100 s) cut longer silences`,
      evidence,
      fix: HEARTBEAT_FIX,
    });
  }
  return check({ ...base, status: 'pass', summary: `survived ${fmtS(silenceMs)} of silence with heartbeats flowing`, evidence });
}

/** When the silence matches no default, the first hop in the chain known to cut silent streams (set shorter here). */
function limitFromHops(hops: readonly Hop[], silentMs: number): KnownLimit | null {
  const s = Math.round(silentMs / 100) / 10;
  for (const hop of hops) {
    switch (hop.kind) {
      case 'nginx':
        return { seconds: s, who: `nginx (${hop.evidence}; \`proxy_read_timeout\` looks set to ~${s} s)`, fix: 'raise `proxy_read_timeout` (and `proxy_send_timeout`) above the heartbeat interval — see docs/proxies/nginx.md' };
      case 'aws-alb':
        return { seconds: s, who: `an AWS ALB (${hop.evidence}; idle timeout ~${s} s)`, fix: 'raise the load balancer\'s idle timeout above the heartbeat interval' };
      case 'cloudfront':
        return { seconds: s, who: `Amazon CloudFront (${hop.evidence})`, fix: 'raise the origin response timeout above the heartbeat interval' };
      case 'cloudflare':
        return { seconds: s, who: `Cloudflare (${hop.evidence})`, fix: 'send heartbeats more often than the proxy read timeout' };
      case 'envoy':
        return { seconds: s, who: `Envoy (${hop.evidence}; route timeout or stream_idle_timeout ~${s} s)`, fix: 'raise the route `timeout` and `stream_idle_timeout`' };
      default:
        break;
    }
  }
  return null;
}

/** The known default limit within 10% (or 1.5 s) of a silence length. */
function nearestLimit(silentMs: number): KnownLimit | null {
  for (const l of KNOWN_LIMITS) {
    const ms = l.seconds * 1000;
    if (Math.abs(silentMs - ms) <= Math.max(1500, ms * 0.1)) return l;
  }
  return null;
}

function fmtS(ms: number): string {
  return `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}
