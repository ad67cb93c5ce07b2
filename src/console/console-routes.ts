import type { ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { TIMELINE_CSS } from '../timeline/timeline.js';
import { SluiceError } from '../errors.ts';
import type { GatewayContext } from '../generation/context.ts';
import type { HttpRequest, HttpResponse } from '../http/http-types.ts';
import { sendJsonError } from '../http/send-error.ts';
import { ConsoleAccess } from './access.ts';
import { LiveFeed } from './live-feed.ts';
import type { ConsoleMonitor } from './monitor.ts';
import { consoleSnapshot } from './snapshot.ts';

/** The files of the page, served as they are (no build step): a fixed list, so no path reaches the file system. */
const ASSETS: Record<string, { file: URL; type: string }> = {
  'console.js': { file: new URL('./assets/console.js', import.meta.url), type: 'text/javascript; charset=utf-8' },
  'console.css': { file: new URL('./assets/console.css', import.meta.url), type: 'text/css; charset=utf-8' },
  // The shared stream timeline: the same module `sluice doctor --html` draws with.
  'timeline.js': { file: new URL('../timeline/timeline.js', import.meta.url), type: 'text/javascript; charset=utf-8' },
};
const PAGE = new URL('./assets/index.html', import.meta.url);

/** The timeline's own `<style>` element (src/timeline/timeline.js), allowed by its hash: no inline style else. */
const TIMELINE_STYLE = `'sha256-${createHash('sha256').update(TIMELINE_CSS).digest('base64')}'`;
/** Scripts, styles and connections to the gateway itself only; no frames, no forms posting elsewhere. */
const PAGE_CSP = `default-src 'none'; script-src 'self'; style-src 'self' ${TIMELINE_STYLE}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
const COMMON = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' };
const REQUEST_ID = /^[\w.:\-]{1,128}$/;

const cache = new Map<URL, Buffer>();
const read = (file: URL): Buffer => {
  let b = cache.get(file);
  if (b === undefined) cache.set(file, (b = readFileSync(file)));
  return b;
};

/**
 * The console (docs/console.md): the page at `/console`, its files, and its JSON and Server-Sent Events API under
 * `/console/api/`. Every request passes the access rule first (src/console/access.ts).
 */
export class ConsoleRoutes {
  readonly #ctx: GatewayContext;
  readonly #monitor: ConsoleMonitor;
  readonly #access: ConsoleAccess;
  readonly #feed: LiveFeed;

  constructor(ctx: GatewayContext, monitor: ConsoleMonitor) {
    this.#ctx = ctx;
    this.#monitor = monitor;
    this.#access = new ConsoleAccess(ctx.config, ctx.keys);
    this.#feed = new LiveFeed(monitor, () => JSON.stringify(consoleSnapshot(ctx, monitor)), ctx.config.console.max_live_clients, ctx.config.heartbeat_ms);
  }

  /** Live-view feeds open now. */
  get liveClients(): number {
    return this.#feed.size;
  }

  /** Whether a path belongs to the console. */
  static owns(path: string): boolean {
    return path === '/console' || path.startsWith('/console/');
  }

  handle(req: HttpRequest, res: HttpResponse, path: string, method: string): void {
    const refused = this.#access.refusal(req);
    if (refused) {
      req.resume();
      return sendJsonError(res, refused.error, { ...COMMON, 'cache-control': 'no-store', ...refused.headers });
    }
    if (method !== 'GET') {
      req.resume();
      return sendJsonError(res, new SluiceError('SLUICE_METHOD_NOT_ALLOWED', `${method} is not allowed here; use GET.`), { allow: 'GET' });
    }
    if (path === '/console' || path === '/console/') return send(res, 200, 'text/html; charset=utf-8', read(PAGE), { 'content-security-policy': PAGE_CSP, 'cache-control': 'no-cache' });
    if (path.startsWith('/console/assets/')) {
      const asset = ASSETS[path.slice('/console/assets/'.length)];
      if (asset !== undefined) return send(res, 200, asset.type, read(asset.file), { 'cache-control': 'no-cache' });
    }
    const ctx = this.#ctx;
    if (path === '/console/api/info') {
      return json(res, {
        version: ctx.version,
        client_keys: ctx.keys.enabled,
        websocket: ctx.config.websocket.enabled,
        heartbeat_ms: ctx.config.heartbeat_ms,
        recent_requests: ctx.config.console.recent_requests,
      });
    }
    if (path === '/console/api/state') return json(res, consoleSnapshot(ctx, this.#monitor));
    if (path.startsWith('/console/api/requests/')) {
      const id = decodeURIComponentSafe(path.slice('/console/api/requests/'.length));
      const found = id !== undefined && REQUEST_ID.test(id) ? this.#monitor.find(id) : undefined;
      if (found !== undefined) return json(res, found);
      return sendJsonError(res, new SluiceError('SLUICE_NOT_FOUND', 'No such request among those in flight or recent.', { wireCode: 'not_found' }), { ...COMMON, 'cache-control': 'no-store' });
    }
    if (path === '/console/api/events') {
      if (this.#feed.full) {
        return sendJsonError(
          res,
          new SluiceError('SLUICE_RATE_LIMITED', `Too many live-view feeds open (console.max_live_clients: ${ctx.config.console.max_live_clients}).`, { wireCode: 'too_many_live_clients' }),
          { ...COMMON, 'retry-after': '5' },
        );
      }
      for (const [k, v] of Object.entries(COMMON)) res.setHeader(k, v);
      return this.#feed.open(req, res);
    }
    sendJsonError(res, new SluiceError('SLUICE_NOT_FOUND', `Unknown endpoint: ${method} ${path}`, { wireCode: 'not_found' }));
  }

  /** Ends the live feeds (the gateway is closing). */
  close(): void {
    this.#feed.close();
  }
}

function send(res: HttpResponse, status: number, type: string, body: Buffer | string, headers: Record<string, string>): void {
  (res as ServerResponse).writeHead(status, { ...COMMON, ...headers, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function json(res: HttpResponse, body: unknown): void {
  send(res, 200, 'application/json', JSON.stringify(body), { 'cache-control': 'no-store' });
}

function decodeURIComponentSafe(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
