import { headerValue, headerValues } from './recording.ts';

/**
 * Names the hops a response passed through, from the headers they leave behind (`Server`, `Via`, `CF-Ray`,
 * `X-Amz-Cf-Id`, Sluice's own). Each hop carries what matters for streaming: its idle limit and how it is told to
 * stop buffering.
 */

export type HopKind =
  | 'nginx'
  | 'caddy'
  | 'haproxy'
  | 'cloudflare'
  | 'cloudfront'
  | 'aws-alb'
  | 'envoy'
  | 'varnish'
  | 'sluice'
  | 'sluice-simulator'
  | 'uvicorn'
  | 'other';

export interface Hop {
  kind: HopKind;
  /** What the header said, e.g. "nginx/1.22.1". */
  label: string;
  /** The header that revealed it. */
  evidence: string;
  /** The hop's default limit on a silent response, seconds, when known. */
  idleLimitS: number | null;
}

interface Known {
  kind: HopKind;
  test: RegExp;
  idleLimitS: number | null;
}

// Default idle limits: nginx proxy_read_timeout 60 s; AWS ALB idle timeout 60 s; CloudFront origin response timeout
// 30 s; Cloudflare proxy read timeout 100 s (error 524); Envoy route timeout 15 s (whole response, not idle).
const SERVERS: Known[] = [
  { kind: 'nginx', test: /^nginx|openresty/i, idleLimitS: 60 },
  { kind: 'caddy', test: /^caddy/i, idleLimitS: null },
  { kind: 'cloudflare', test: /^cloudflare/i, idleLimitS: 100 },
  { kind: 'aws-alb', test: /^awselb/i, idleLimitS: 60 },
  { kind: 'envoy', test: /^envoy|istio-envoy/i, idleLimitS: 15 },
  { kind: 'uvicorn', test: /^uvicorn/i, idleLimitS: null },
  { kind: 'haproxy', test: /^haproxy/i, idleLimitS: 50 },
];

/** Sluice's entry in `Via` (RFC 9110 §7.6.3): `1.1 sluice`. */
const SLUICE_VIA = /^(HTTP\/)?[\d.]+\s+sluice\b/i;

/** Hops revealed by response headers, outermost first as far as the headers tell. */
export function identifyHops(headers: ReadonlyArray<readonly [string, string]>): Hop[] {
  const hops: Hop[] = [];
  if (headerValue(headers, 'cf-ray') !== null) {
    hops.push({ kind: 'cloudflare', label: 'Cloudflare', evidence: `CF-Ray: ${headerValue(headers, 'cf-ray')}`, idleLimitS: 100 });
  }
  const cfId = headerValue(headers, 'x-amz-cf-id');
  if (cfId !== null) hops.push({ kind: 'cloudfront', label: 'Amazon CloudFront', evidence: `X-Amz-Cf-Id: ${cfId}`, idleLimitS: 30 });
  for (const via of headerValues(headers, 'via')) {
    for (const entry of via.split(',').map((s) => s.trim()).filter(Boolean)) {
      const kind: HopKind = /cloudfront/i.test(entry) ? 'cloudfront' : /varnish/i.test(entry) ? 'varnish' : /caddy/i.test(entry) ? 'caddy' : SLUICE_VIA.test(entry) ? 'sluice' : 'other';
      if (kind === 'cloudfront' && hops.some((h) => h.kind === 'cloudfront')) continue;
      // Sluice's own `Via: 1.1 sluice`: named once, from x-sluice-gateway when a hop in between kept that too.
      if (kind === 'sluice' && headerValue(headers, 'x-sluice-gateway') !== null) continue;
      hops.push({ kind, label: entry, evidence: `Via: ${entry}`, idleLimitS: kind === 'cloudfront' ? 30 : null });
    }
  }
  // Some proxies append their own Server field instead of replacing the upstream's (Caddy does), so several fields
  // list the chain from the outside in.
  for (const server of headerValues(headers, 'server')) {
    const known = SERVERS.find((k) => k.test.test(server));
    const kind = known?.kind ?? 'other';
    if (kind === 'cloudflare' && hops.some((h) => h.kind === 'cloudflare')) continue;
    hops.push({ kind, label: server, evidence: `Server: ${server}`, idleLimitS: known?.idleLimitS ?? null });
  }
  const gateway = headerValue(headers, 'x-sluice-gateway');
  if (gateway !== null) hops.push({ kind: 'sluice', label: `Sluice ${gateway}`, evidence: `x-sluice-gateway: ${gateway}`, idleLimitS: null });
  if (headerValue(headers, 'x-sluice-simulator') !== null) {
    hops.push({ kind: 'sluice-simulator', label: 'Sluice simulator', evidence: 'x-sluice-simulator: 1', idleLimitS: null });
  }
  return hops;
}

/** True when the response came from Sluice or its simulator, which accept the `sim` probe knobs. */
export function isSluiceTarget(headers: ReadonlyArray<readonly [string, string]>): boolean {
  return headerValue(headers, 'x-sluice-gateway') !== null || headerValue(headers, 'x-sluice-simulator') !== null;
}

export function hasHop(hops: readonly Hop[], kind: HopKind): Hop | undefined {
  return hops.find((h) => h.kind === kind);
}

/** "nginx/1.22.1 → uvicorn" */
export function describeHops(hops: readonly Hop[]): string {
  return hops.length === 0 ? 'no hop announced itself in the headers' : hops.map((h) => h.label).join(' → ');
}
