import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { SluiceError } from '../errors.ts';
import type { KeyRing, Principal } from '../auth/key-ring.ts';

/**
 * Subprotocol prefixes that carry an API key. Browsers cannot set headers on a WebSocket, so, like OpenAI's Realtime
 * API (`openai-insecure-api-key.<key>`), a page passes the key as an offered subprotocol:
 * `new WebSocket(url, ['sluice.v1', 'sluice-api-key.' + key])`. OpenAI's own prefix is accepted too.
 */
export const KEY_PROTOCOL_PREFIXES = ['sluice-api-key.', 'openai-insecure-api-key.'] as const;

const keyOf = (protocol: string): string | undefined => {
  for (const p of KEY_PROTOCOL_PREFIXES) if (protocol.startsWith(p) && protocol.length > p.length) return protocol.slice(p.length);
  return undefined;
};

/** The subprotocols a client offered (`Sec-WebSocket-Protocol`, comma-separated). */
export function offeredProtocols(req: IncomingMessage): string[] {
  const h = req.headers['sec-websocket-protocol'];
  return h === undefined ? [] : h.split(',').map((s) => s.trim()).filter(Boolean);
}

/**
 * The subprotocol to answer with. A browser fails the handshake when it offered protocols and none is selected, so
 * one is always picked when any was offered: the first that does not carry a key, else the key carrier itself.
 */
export function selectProtocol(offered: Set<string>): string | false {
  let carrier: string | undefined;
  for (const p of offered) {
    if (keyOf(p) === undefined) return p;
    carrier ??= p;
  }
  return carrier ?? false;
}

/** Who may open a socket: browsers are held to an Origin allowlist (WebSocket is not covered by CORS). */
export class OriginPolicy {
  readonly #any: boolean;
  readonly #origins: Set<string>;

  constructor(origins: readonly string[]) {
    this.#any = origins.includes('*');
    this.#origins = new Set(origins);
  }

  /** Clients that send no Origin (servers, CLIs, SDKs) pass; a browser's Origin must be on the list. */
  allows(origin: string | undefined): boolean {
    return origin === undefined || this.#any || this.#origins.has(origin);
  }
}

/**
 * Checks an upgrade request before the handshake: its Origin, then its key (an `Authorization: Bearer` header, or a
 * key-carrying subprotocol). Returns the error to answer with as a plain HTTP response, or who the socket belongs to.
 */
export function checkUpgrade(req: IncomingMessage, keys: KeyRing, origins: OriginPolicy): SluiceError | Principal {
  const origin = req.headers.origin;
  if (!origins.allows(origin) && !sameOrigin(origin, req.headers.host)) {
    return new SluiceError('SLUICE_ORIGIN_NOT_ALLOWED', `Origin '${origin}' may not open a WebSocket here; add it to websocket.origins (or cors.origins).`, { wireCode: 'origin_not_allowed' });
  }
  if (!keys.enabled) return 'static';
  const wrong = (): SluiceError => new SluiceError('SLUICE_UNAUTHORIZED', 'Incorrect API key provided.', { wireCode: 'invalid_api_key' });
  const auth = req.headers.authorization;
  // Only a Bearer header is a key: a browser adds the HTTP Basic credentials it holds for the origin (the console's,
  // src/console/access.ts) to its WebSocket handshakes, and the key that page offers is in the subprotocol.
  if (auth !== undefined && (/^Bearer\s/i.test(auth) || !offeredProtocols(req).some((p) => keyOf(p) !== undefined))) return keys.authenticate(auth) ?? wrong();
  for (const p of offeredProtocols(req)) {
    const key = keyOf(p);
    if (key !== undefined) return keys.authenticateKey(key) ?? wrong();
  }
  return new SluiceError(
    'SLUICE_UNAUTHORIZED',
    "Missing API key: send 'Authorization: Bearer <key>', or from a browser offer the subprotocol 'sluice-api-key.<key>'.",
    { wireCode: 'invalid_api_key' },
  );
}

/**
 * A page the gateway served itself (the console, docs/console.md) opened at an IP address or `localhost`: its Origin
 * names the very host the socket is opened to. It needs no entry in websocket.origins. Only for those names: DNS
 * rebinding needs a name the attacker controls (`attacker.example` re-pointed at the gateway has Origin and Host
 * equal too), and when the Host check is off (a gateway bound beyond loopback without allowed_hosts) nothing else
 * stops it; a console reached by a DNS name needs that origin in websocket.origins.
 */
function sameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined || host === undefined || origin === 'null') return false;
  try {
    const u = new URL(origin);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
    const name = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    return (name === 'localhost' || isIP(name) !== 0) && u.host === host.toLowerCase();
  } catch {
    return false;
  }
}
