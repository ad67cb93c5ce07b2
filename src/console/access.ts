import type { Config } from '../config/schema.ts';
import { AdminKey } from '../auth/admin-key.ts';
import { isLoopbackHost } from '../auth/host-check.ts';
import type { KeyRing } from '../auth/key-ring.ts';
import { SluiceError } from '../errors.ts';
import type { HttpRequest } from '../http/http-types.ts';

/** A refusal: the error (OpenAI's shape on the wire) and the headers that go with it. */
export interface ConsoleRefusal {
  error: SluiceError;
  headers: Record<string, string>;
}

/** The realm a browser shows in its password prompt; any user name, the admin key as the password. */
const CHALLENGE = { 'www-authenticate': 'Basic realm="Sluice console", charset="UTF-8"' };

/** Whether the console is served at all: `console.enabled`, or by default when the gateway binds a loopback address. */
export function consoleEnabled(config: Config): boolean {
  return config.console.enabled ?? isLoopbackHost(config.host);
}

/**
 * Who may open the console (docs/console.md, "Access"), checked on every `/console` request, page and API alike:
 * 1. on by default only on a loopback gateway, and then for loopback clients only; `console.enabled: true` serves it
 *    to any client the listener accepts;
 * 2. same-origin only: a request whose `Origin` (or `Sec-Fetch-Site`) says another site sent it is refused, whatever
 *    `cors.origins` allows — the console's figures are for its own page (the Host check against DNS rebinding,
 *    src/auth/host-check.ts, ran before this);
 * 3. when client keys exist (`api_keys` or stored keys), the operator's `admin_key`, as `Authorization: Bearer` or as
 *    the password of HTTP Basic (which a browser asks for and then sends with every request of the page, the
 *    live feed's EventSource included); a client key never opens it. Keys can appear at run time (stored keys), so
 *    this is decided per request.
 */
export class ConsoleAccess {
  readonly #explicit: boolean;
  readonly #admin: AdminKey;
  readonly #keys: KeyRing;

  constructor(config: Config, keys: KeyRing) {
    this.#explicit = config.console.enabled === true;
    this.#admin = new AdminKey(config.admin_key);
    this.#keys = keys;
  }

  /** Why this request may not reach the console, or undefined when it may. */
  refusal(req: HttpRequest): ConsoleRefusal | undefined {
    if (!this.#explicit && !isLoopbackAddress(req.socket?.remoteAddress)) {
      return {
        error: new SluiceError('SLUICE_NOT_FOUND', 'The console is served to loopback clients only; set console.enabled: true to serve it to others (docs/console.md).', { wireCode: 'not_found' }),
        headers: {},
      };
    }
    if (crossSite(req)) {
      return {
        error: new SluiceError('SLUICE_ORIGIN_NOT_ALLOWED', 'The console answers its own page only, not requests sent by another site.', { wireCode: 'origin_not_allowed' }),
        headers: {},
      };
    }
    if (!this.#keys.enabled) return undefined;
    if (!this.#admin.enabled) {
      return {
        error: new SluiceError('SLUICE_UNAUTHORIZED', 'The console needs admin_key (SLUICE_ADMIN_KEY) when client keys are configured; client keys do not open it.', { wireCode: 'invalid_api_key' }),
        headers: {},
      };
    }
    if (this.#admin.check(bearerOf(req.headers.authorization))) return undefined;
    return {
      error: new SluiceError('SLUICE_UNAUTHORIZED', req.headers.authorization ? 'Incorrect admin key.' : 'The console needs the admin key: Authorization: Bearer <admin_key>, or the password of HTTP Basic.', { wireCode: 'invalid_api_key' }),
      headers: CHALLENGE,
    };
  }
}

/** `Basic base64(user:password)` becomes `Bearer password` (the user name is ignored); anything else is unchanged. */
function bearerOf(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]{1,4096})\s*$/i.exec(authorization);
  if (!m) return authorization;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? undefined : `Bearer ${decoded.slice(colon + 1)}`;
}

/** A request a browser sent on behalf of another site: its Origin names another host, or Sec-Fetch-Site says so. */
function crossSite(req: HttpRequest): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return true;
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  const authority = req.headers[':authority'];
  const host = typeof authority === 'string' ? authority : req.headers.host;
  if (origin === 'null' || host === undefined) return true;
  try {
    return new URL(origin).host !== host.toLowerCase();
  } catch {
    return true;
  }
}

/** Whether a peer address is a loopback one (IPv4, IPv6, and IPv4-mapped IPv6). */
export function isLoopbackAddress(address: string | undefined): boolean {
  return address !== undefined && isLoopbackHost(address);
}
