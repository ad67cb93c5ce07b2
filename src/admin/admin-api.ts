import type { ServerResponse } from 'node:http';
import type { AdminKey } from '../auth/admin-key.ts';
import type { KeyRing } from '../auth/key-ring.ts';
import { SluiceError, toSluiceError } from '../errors.ts';
import { readBody } from '../http/body.ts';
import { contentTypeRefusal } from '../http/content-type.ts';
import type { HttpRequest, HttpResponse } from '../http/http-types.ts';
import { sendJsonError } from '../http/send-error.ts';
import type { UsageGrouping } from '../ledger/usage-report.ts';
import { KeyExistsError, type StateStore, type UsageFilter } from '../state/store.ts';
import { createKey, GROUPINGS, KEY_NAME, KEY_NAME_RULE, KeyInputError, limitsFromJson, listKeys, parseDate, revokeKey, updateKey, usageJson, usageReport } from './key-operations.ts';

/** An admin request's body is a key's name and limits: a few hundred bytes. */
const MAX_BODY_BYTES = 64 * 1024;
const USAGE_PARAMS = ['key', 'model', 'since', 'until', 'by'];

/**
 * The admin HTTP API (docs/keys.md, "Admin API"): the operations of `sluice keys` and `sluice usage` over HTTP, for
 * the operator holding `admin_key`. It exists only when `admin_key` is set (else `/admin/` is 404 like any unknown
 * path), and only the admin key opens it: client keys, static or stored, never do. Every answer is JSON; every
 * error is OpenAI's error object.
 *
 *   GET    /admin/keys               every key, revoked ones included
 *   POST   /admin/keys               {"name", "rpm"?, "tpm"?, "concurrency"?, "models"?, "expires"?}: 201 with the key
 *   GET    /admin/keys/NAME          one key
 *   PATCH  /admin/keys/NAME          the limits to change; null removes one
 *   DELETE /admin/keys/NAME          revokes the key (it stays listed, revoked)
 *   GET    /admin/usage?key=&model=&since=&until=&by=key|model|day
 */
export class AdminApi {
  readonly #admin: AdminKey;
  readonly #store: StateStore | undefined;
  readonly #keys: KeyRing;

  constructor(admin: AdminKey, store: StateStore | undefined, keys: KeyRing) {
    this.#admin = admin;
    this.#store = store;
    this.#keys = keys;
  }

  /** Answers one request under `/admin/` (src/http/server.ts routes `/admin` and `/admin/…` here). */
  async handle(req: HttpRequest, res: HttpResponse, path: string, query: string): Promise<void> {
    try {
      // The key first, before anything about the path is told: an unknown route is a 401 too without the key.
      if (!this.#admin.check(req.headers.authorization)) {
        req.resume();
        const msg = req.headers.authorization ? 'This endpoint needs the admin key (admin_key); client keys never open it.' : "Missing admin key: send 'Authorization: Bearer <admin_key>'.";
        return sendJsonError(res, new SluiceError('SLUICE_UNAUTHORIZED', msg, { wireCode: 'invalid_api_key' }), { 'www-authenticate': 'Bearer' });
      }
      const store = this.#store;
      if (store === undefined) {
        req.resume();
        throw new SluiceError('SLUICE_NOT_FOUND', 'This gateway has no state store (state.url), so there are no stored keys or ledger to manage.', { wireCode: 'not_found' });
      }
      await this.#route(req, res, path, query, store);
    } catch (err) {
      sendJsonError(res, adminError(err));
    }
  }

  async #route(req: HttpRequest, res: HttpResponse, path: string, query: string, store: StateStore): Promise<void> {
    const method = req.method ?? 'GET';
    if (path === '/admin/keys') {
      if (method === 'GET') return json(res, 200, { object: 'list', data: await listKeys(store) });
      if (method !== 'POST') return notAllowed(req, method, 'GET, POST');
      const body = await readObject(req);
      const name = body['name'];
      if (typeof name !== 'string' || !KEY_NAME.test(name)) throw new KeyInputError(`name: expected a string of ${KEY_NAME_RULE}`);
      const made = await createKey(store, name, limitsFromJson(body, false, ['name']));
      await this.#keys.refresh(true);
      return json(res, 201, { ...made.row, key: made.key });
    }
    const one = /^\/admin\/keys\/([^/]+)$/.exec(path);
    if (one) {
      const name = decodeName(one[1] as string);
      if (method === 'GET') {
        req.resume();
        return found(res, name, (await listKeys(store)).find((k) => k.name === name));
      }
      if (method === 'PATCH') {
        const patch = limitsFromJson(await readObject(req), true);
        const row = await updateKey(store, name, patch);
        await this.#keys.refresh(true);
        return found(res, name, row);
      }
      if (method === 'DELETE') {
        req.resume();
        const row = await revokeKey(store, name);
        await this.#keys.refresh(true);
        return found(res, name, row, 'live ');
      }
      return notAllowed(req, method, 'GET, PATCH, DELETE');
    }
    if (path === '/admin/usage') {
      if (method !== 'GET') return notAllowed(req, method, 'GET');
      req.resume();
      const { filter, by } = usageQuery(query);
      return json(res, 200, { object: 'list', by, data: usageJson(await usageReport(store, filter, by), by) });
    }
    req.resume();
    throw new SluiceError('SLUICE_NOT_FOUND', `Unknown admin endpoint: ${method} ${path.length > 200 ? `${path.slice(0, 200)}…` : path}`, { wireCode: 'not_found' });
  }
}

/** A JSON object body, bounded, declared as JSON. */
async function readObject(req: HttpRequest): Promise<Record<string, unknown>> {
  const refusal = contentTypeRefusal(req);
  if (refusal) {
    req.resume();
    throw refusal;
  }
  const text = await readBody(req, MAX_BODY_BYTES);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new SluiceError('SLUICE_INVALID_JSON', 'The request body is not valid JSON.');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new KeyInputError('the body must be a JSON object');
  return v as Record<string, unknown>;
}

/** A key name from the path: percent-decoded once, then held to the same rule as `sluice keys`. */
function decodeName(segment: string): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new KeyInputError('the key name in the path is not valid percent-encoding');
  }
  if (!KEY_NAME.test(name)) throw new KeyInputError(`a key name is ${KEY_NAME_RULE}`);
  return name;
}

/** `sluice usage`'s filters as query parameters. */
function usageQuery(query: string): { filter: UsageFilter; by: UsageGrouping } {
  const params = new URLSearchParams(query);
  const seen = new Set<string>();
  for (const k of params.keys()) {
    if (!USAGE_PARAMS.includes(k)) throw new KeyInputError(`unknown parameter '${k.slice(0, 64)}' (expected ${USAGE_PARAMS.join(', ')})`);
    if (seen.has(k)) throw new KeyInputError(`parameter '${k}' given twice`);
    seen.add(k);
  }
  const date = (k: string): number | undefined => {
    const raw = params.get(k);
    if (raw === null) return undefined;
    const t = parseDate(raw);
    if (t === undefined) throw new KeyInputError(`${k}: expected a date (2027-01-31, or 2027-01-31T12:00:00Z)`);
    return t;
  };
  const by = (params.get('by') ?? 'key') as UsageGrouping;
  if (!GROUPINGS.includes(by)) throw new KeyInputError(`by: expected one of ${GROUPINGS.join(', ')}`);
  return { filter: { key: params.get('key') ?? undefined, model: params.get('model') ?? undefined, since: date('since'), until: date('until') }, by };
}

function found(res: HttpResponse, name: string, row: unknown, what = ''): void {
  if (row === undefined) throw new SluiceError('SLUICE_NOT_FOUND', `No ${what}key named '${name}'.`, { wireCode: 'not_found' });
  json(res, 200, row);
}

function notAllowed(req: HttpRequest, method: string, allow: string): void {
  req.resume();
  throw new SluiceError('SLUICE_METHOD_NOT_ALLOWED', `${method} is not allowed here; use ${allow}.`, { headers: { allow } });
}

/** Input errors are 400, a taken name 409; a store that fails is 503 (its message may name hosts: not sent). */
function adminError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  if (err instanceof KeyInputError) return new SluiceError('SLUICE_INVALID_REQUEST', err.message);
  if (err instanceof KeyExistsError) return new SluiceError('SLUICE_KEY_EXISTS', err.message);
  if (err instanceof Error) return new SluiceError('SLUICE_STATE_STORE_UNAVAILABLE', 'The state store did not answer; try again (a change asked for may or may not have been made: list the keys to see).', { cause: err });
  return toSluiceError(err);
}

function json(res: HttpResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
