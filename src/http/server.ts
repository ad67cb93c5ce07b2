import type { ServerResponse } from 'node:http';
import { newRequestId } from '../generation/request-id.ts';
import { SluiceError, toSluiceError } from '../errors.ts';
import type { GatewayContext, LifecyclePhase } from '../generation/context.ts';
import { Cors } from './cors.ts';
import { handleGenerate } from './generate.ts';
import { handleStreams } from './resume.ts';
import { handleResponseById } from './responses-background.ts';
import { sendJsonError } from './send-error.ts';
import { hostRefusal } from '../auth/host-check.ts';
import type { RequestKind } from '../openai/request.ts';
import type { HttpRequest, HttpResponse } from './http-types.ts';
import { ConsoleMonitor } from '../console/monitor.ts';
import { ConsoleRoutes } from '../console/console-routes.ts';

const GENERATE_ROUTES: Record<string, RequestKind> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completion',
  '/v1/responses': 'responses',
  '/v1/embeddings': 'embeddings',
};

/** Sluice's entry in `Via` (RFC 9110 §7.6.3), on every response and every upstream request. */
export const VIA = '1.1 sluice';

const REQUEST_ID = /^[\w.:\-]{1,128}$/;

/** HTTP/1.1 server options, shared by every listener that speaks HTTP/1.1 (see src/http/listener.ts). */
export const HTTP1_OPTIONS = { keepAliveTimeout: 65_000, requestTimeout: 120_000 } as const;

/**
 * The gateway's request handler: routing, request ids, CORS, auth, and the JSON endpoints. The same handler serves
 * every transport: HTTP/1.1, and HTTP/2 (TLS with ALPN, or cleartext with prior knowledge) through Node's
 * compatibility API; src/http/listener.ts creates the servers.
 */
export function createRequestHandler(ctx: GatewayContext): (req: HttpRequest, res: HttpResponse) => void {
  const cors = new Cors(ctx.config.cors.origins);
  // The console (docs/console.md) exists when its monitor does (src/gateway.ts creates it when the console is on).
  const consoleRoutes = ctx.monitor instanceof ConsoleMonitor ? new ConsoleRoutes(ctx, ctx.monitor) : undefined;
  return (req, res) => {
    route(ctx, cors, consoleRoutes, req, res).catch((err: unknown) => {
      sendJsonError(res, toSluiceError(err));
    });
  };
}

async function route(ctx: GatewayContext, cors: Cors, consoleRoutes: ConsoleRoutes | undefined, req: HttpRequest, res: HttpResponse): Promise<void> {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : newRequestId();
  res.setHeader('x-request-id', id);
  res.setHeader('x-sluice-gateway', ctx.version);
  // RFC 9110 §7.6.3: an intermediary names itself (its received protocol is the upstream's HTTP/1.1), so that a
  // client, and `sluice doctor`, can tell Sluice's hop from those before and behind it.
  res.setHeader('via', VIA);
  cors.apply(req, res);
  const phase = ctx.lifecycle.phase;
  // Shutting down: each HTTP/1.1 connection closes after its response, so a client (or a load balancer's kept-alive
  // connection) opens a new one, which lands elsewhere; HTTP/2 sessions got GOAWAY instead (src/shutdown.ts).
  if (phase !== 'serving' && req.httpVersionMajor === 1) res.setHeader('connection', 'close');
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const method = req.method ?? 'GET';
  // /health is exempt: probes use whatever Host they like (a pod IP, a load balancer's name), and it tells nothing.
  const badHost = path === '/health' ? undefined : hostRefusal(ctx.config, req.headers);
  if (badHost) return sendJsonError(res, badHost);

  if (method === 'OPTIONS') return cors.preflight(req, res);

  if (path === '/health') return json(res, 200, { status: 'ok' });
  if (path === '/ready') return ready(ctx, req, res, phase);

  if (path === '/metrics' && ctx.metrics) {
    // Behind the client keys when there are any: the figures name models and upstreams (docs/metrics.md).
    if (!ctx.keys.check(req.headers.authorization)) return unauthorized(req, res);
    if (method !== 'GET') return methodNotAllowed(req, res, 'GET');
    const text = await ctx.metrics.text();
    (res as ServerResponse).writeHead(200, { 'content-type': ctx.metrics.contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }

  if (consoleRoutes !== undefined && ConsoleRoutes.owns(path)) return consoleRoutes.handle(req, res, path, method);
  // The operator's API: only with admin_key, and only with it (src/admin/admin-api.ts).
  if (ctx.admin && (path === '/admin' || path.startsWith('/admin/'))) return ctx.admin.handle(req, res, path, q === -1 ? '' : url.slice(q + 1));

  // Every /v1/ request: static keys and stored keys, from memory (src/auth/key-ring.ts).
  const principal = path.startsWith('/v1/') ? ctx.keys.authenticate(req.headers.authorization) : 'static';
  if (principal === undefined) return unauthorized(req, res);

  if (path === '/v1/models') {
    if (method !== 'GET') return methodNotAllowed(req, res, 'GET');
    // A key limited to some models sees those.
    const allowed = principal === 'static' ? null : principal.record.models;
    const data = ctx.registry
      .models()
      .filter((m) => allowed === null || allowed.includes(m.id))
      .map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: m.owned_by }));
    return json(res, 200, { object: 'list', data });
  }
  if (path.startsWith('/v1/streams/')) return handleStreams(ctx, req, res, path, q === -1 ? '' : url.slice(q + 1));
  if (path.startsWith('/v1/responses/')) return handleResponseById(ctx, req, res, path, q === -1 ? '' : url.slice(q + 1));
  const kind = GENERATE_ROUTES[path];
  if (kind !== undefined) {
    if (method !== 'POST') return methodNotAllowed(req, res, 'POST');
    // Past the announce window: a request on a connection opened before it (HTTP/1.1 keep-alive) is turned away,
    // with the status a load balancer retries elsewhere. During the window requests are served as usual.
    if (phase === 'draining') {
      req.resume();
      return sendJsonError(res, new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down; retry on another instance'));
    }
    const session = req.headers[ctx.config.routing.session_header.toLowerCase()];
    return handleGenerate(ctx, req, res, { id, method, path, kind, startedPerf: performance.now(), principal, session: typeof session === 'string' && session !== '' ? session : undefined });
  }
  req.resume();
  sendJsonError(res, new SluiceError('SLUICE_NOT_FOUND', `Unknown endpoint: ${method} ${path}`, { wireCode: 'not_found' }));
}

/**
 * `/ready`: 200 while the gateway takes requests and some upstream is reachable now (src/upstream/registry.ts: active
 * checks and failed requests), else 503. With client keys configured, an unauthenticated probe (a load balancer's)
 * sees each upstream's name and health, not the models that /v1/models protects nor the upstreams' errors; a valid
 * key sees everything.
 */
function ready(ctx: GatewayContext, req: HttpRequest, res: HttpResponse, phase: LifecyclePhase): void {
  const full = !ctx.keys.enabled || ctx.keys.check(req.headers.authorization);
  const upstreams = ctx.registry.upstreams.map((u) => {
    const healthy = u.state === 'up';
    if (!full) return { name: u.name, healthy };
    return {
      name: u.name,
      healthy,
      state: u.state,
      last_check: u.lastCheck === undefined ? null : new Date(u.lastCheck).toISOString(),
      models: [...u.models],
      ...(u.lastError ? { error: u.lastError } : {}),
      // How its streams arrive (issue 18), once it has relayed one: a buffering hop between Sluice and this engine.
      ...(u.arrivals.streams > 0 ? { arrivals: u.arrivals.detail() } : {}),
    };
  });
  const status = phase !== 'serving' ? 'draining' : ctx.registry.anyHealthy ? 'ready' : 'unavailable';
  json(res, status === 'ready' ? 200 : 503, { status, upstreams });
}

function unauthorized(req: HttpRequest, res: HttpResponse): void {
  req.resume();
  sendJsonError(
    res,
    new SluiceError('SLUICE_UNAUTHORIZED', req.headers.authorization ? 'Incorrect API key provided.' : "Missing API key: send 'Authorization: Bearer <key>'.", { wireCode: 'invalid_api_key' }),
    { 'www-authenticate': 'Bearer' },
  );
}

function methodNotAllowed(req: HttpRequest, res: HttpResponse, allow: string): void {
  req.resume();
  sendJsonError(res, new SluiceError('SLUICE_METHOD_NOT_ALLOWED', `${req.method} is not allowed here; use ${allow}.`), { allow });
}

function json(res: HttpResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
