import type { ServerResponse } from 'node:http';
import type { HttpRequest, HttpResponse } from './http-types.ts';

/**
 * CORS for browsers: an origin allowlist (`["*"]` allows any). Preflights are answered here; the request headers a
 * browser asks for are allowed (Authorization, Content-Type, and the SDKs' own `x-stainless-*` headers), and
 * `X-Request-Id` (and a resumable stream's `X-Sluice-Stream-Id`) is exposed so pages can read it.
 */
export class Cors {
  readonly #any: boolean;
  readonly #origins: Set<string>;

  constructor(origins: readonly string[]) {
    this.#any = origins.includes('*');
    this.#origins = new Set(origins);
  }

  /** The Access-Control-Allow-Origin value for this request, or undefined when not allowed. */
  allowed(req: HttpRequest): string | undefined {
    const origin = req.headers.origin;
    if (origin === undefined) return undefined;
    if (this.#any) return '*';
    return this.#origins.has(origin) ? origin : undefined;
  }

  /** Adds CORS headers to a normal response. */
  apply(req: HttpRequest, res: HttpResponse): void {
    const allow = this.allowed(req);
    if (allow === undefined) return;
    res.setHeader('access-control-allow-origin', allow);
    res.setHeader('access-control-expose-headers', 'x-request-id, retry-after, x-sluice-stream-id');
    if (allow !== '*') res.setHeader('vary', 'Origin');
  }

  /** Answers an OPTIONS preflight: 204 with the allowances, or 403 for an origin not on the list. */
  preflight(req: HttpRequest, res: HttpResponse): void {
    const allow = this.allowed(req);
    // The HTTP/2 compatibility response has the same writeHead; TypeScript cannot call the union's overloads.
    const head = (res as ServerResponse).writeHead.bind(res as ServerResponse);
    if (allow === undefined) {
      head(403, { 'content-type': 'text/plain' });
      res.end('origin not allowed');
      return;
    }
    const requested = req.headers['access-control-request-headers'];
    head(204, {
      'access-control-allow-origin': allow,
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': requested && /^[\w\-, ]{1,2000}$/.test(requested) ? requested : 'authorization, content-type, x-request-id',
      'access-control-max-age': '600',
      ...(allow === '*' ? {} : { vary: 'Origin' }),
    });
    res.end();
  }
}
