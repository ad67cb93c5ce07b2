import { check, type Check } from '../check.ts';
import { headerValue } from '../recording.ts';

/**
 * Can a browser page on `origin` read the stream? Per the Fetch standard (§4.8 CORS-preflight fetch, §4.9 CORS check):
 * the preflight needs an ok status, a matching Access-Control-Allow-Origin, and Access-Control-Allow-Headers listing
 * every non-safelisted request header (`*` covers them all except Authorization); POST itself is safelisted. The
 * actual response needs a matching Access-Control-Allow-Origin too, or the page cannot read a byte of the stream.
 */

export interface PreflightResult {
  status: number;
  headers: Array<[string, string]>;
}

/** Request headers whose names never need to be allowed (Fetch "CORS-safelisted request-header", simplified). */
const SAFELISTED = new Set(['accept', 'accept-language', 'content-language']);

export function checkCors(
  origin: string,
  preflight: PreflightResult | string,
  actual: Array<[string, string]> | null,
  requestHeaderNames: readonly string[],
): Check[] {
  const base = { group: 'cors', probe: 'cors' } as const;
  const out: Check[] = [];
  const needed = [...new Set(requestHeaderNames.map((n) => n.toLowerCase()).filter((n) => !SAFELISTED.has(n)))];
  const originFix = `answer with \`Access-Control-Allow-Origin: ${origin}\` (or \`*\`) on the preflight and on the streamed response`;

  if (typeof preflight === 'string') {
    out.push(check({ ...base, id: 'cors.preflight', title: 'CORS preflight', status: 'fail', summary: `the preflight failed: ${preflight}`, fix: 'answer OPTIONS requests on the API routes' }));
  } else {
    const evidence = [`OPTIONS → HTTP ${preflight.status}`];
    const problems: string[] = [];
    let fix = originFix;
    const acao = headerValue(preflight.headers, 'access-control-allow-origin');
    const acah = headerValue(preflight.headers, 'access-control-allow-headers');
    const acam = headerValue(preflight.headers, 'access-control-allow-methods');
    evidence.push(`Access-Control-Allow-Origin: ${acao ?? '(none)'}`, `Access-Control-Allow-Headers: ${acah ?? '(none)'}`, `Access-Control-Allow-Methods: ${acam ?? '(none)'}`);
    if (preflight.status < 200 || preflight.status >= 300) problems.push(`the preflight answered ${preflight.status}, not a 2xx`);
    if (acao === null) problems.push('no Access-Control-Allow-Origin on the preflight');
    else if (acao.trim() !== '*' && acao.trim() !== origin) problems.push(`Access-Control-Allow-Origin is "${acao}", not "${origin}" or "*"`);
    const allowed = (acah ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
    const wildcard = allowed.includes('*');
    const missing = needed.filter((n) => !allowed.includes(n) && !(wildcard && n !== 'authorization'));
    if (missing.length > 0) {
      problems.push(`Access-Control-Allow-Headers does not allow ${missing.join(', ')}${wildcard && missing.includes('authorization') ? ' (`*` never covers Authorization)' : ''}`);
      fix = `allow the request headers: \`Access-Control-Allow-Headers: ${needed.join(', ')}\``;
    }
    if (problems.length > 0) {
      out.push(check({ ...base, id: 'cors.preflight', title: 'CORS preflight', status: 'fail', summary: `the browser would block the request: ${problems[0]}`, evidence: [...evidence, ...problems], fix }));
    } else {
      out.push(check({ ...base, id: 'cors.preflight', title: 'CORS preflight', status: 'pass', summary: `a page on ${origin} may send the request`, evidence }));
    }
  }

  if (actual !== null) {
    const acao = headerValue(actual, 'access-control-allow-origin');
    const evidence = [`streamed response: Access-Control-Allow-Origin: ${acao ?? '(none)'}`];
    if (acao === null || (acao.trim() !== '*' && acao.trim() !== origin)) {
      out.push(
        check({
          ...base,
          id: 'cors.response',
          title: 'CORS on the streamed response',
          status: 'fail',
          summary: `the browser would block reading the stream: ${acao === null ? 'no Access-Control-Allow-Origin on it' : `Access-Control-Allow-Origin is "${acao}"`}`,
          evidence,
          fix: originFix,
        }),
      );
    } else {
      out.push(check({ ...base, id: 'cors.response', title: 'CORS on the streamed response', status: 'pass', summary: `a page on ${origin} can read the stream`, evidence }));
    }
  }
  return out;
}
