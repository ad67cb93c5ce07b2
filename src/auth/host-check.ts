import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import type { Config } from '../config/schema.ts';
import { SluiceError } from '../errors.ts';

/**
 * The Host check against DNS rebinding: a web page on `attacker.example` whose name the attacker re-points at
 * 127.0.0.1 reads a loopback gateway as same-origin, and the only trace is the Host header, which still says
 * `attacker.example` (the class of bug behind Ollama's DNS-rebinding advisory). What passes:
 * - IP literals, any port: rebinding needs a name the attacker controls, and a page whose origin is an IP literal
 *   talks to that address itself;
 * - `localhost`, the configured `host`, and the names in `allowed_hosts` (`.example.com` also allows its subdomains);
 * - requests without a Host header (HTTP/1.0 clients; browsers always send one).
 * The check is on by default when the gateway binds a loopback address, and off when it binds anything else (0.0.0.0,
 * a LAN or public address), where arbitrary DNS names reach it, unless `allowed_hosts` is set. `["*"]` turns it off.
 */
export class HostPolicy {
  readonly #off: boolean;
  readonly #names: ReadonlySet<string>;
  readonly #suffixes: readonly string[];

  constructor(listenHost: string, allowed: readonly string[] | undefined) {
    this.#off = allowed === undefined ? !isLoopbackHost(listenHost) : allowed.includes('*');
    const names = new Set(['localhost', normalizeName(listenHost)]);
    const suffixes: string[] = [];
    for (const entry of allowed ?? []) {
      const name = normalizeName(entry);
      if (name.startsWith('.')) {
        suffixes.push(name);
        names.add(name.slice(1));
      } else {
        names.add(name);
      }
    }
    this.#names = names;
    this.#suffixes = suffixes;
  }

  /** Whether a request with this Host (or HTTP/2 `:authority`) value may be served. */
  allows(host: string | undefined): boolean {
    if (this.#off || host === undefined || host === '') return true;
    const name = hostName(host);
    if (name === undefined) return false;
    if (isIP(name) !== 0 || this.#names.has(name)) return true;
    for (const s of this.#suffixes) if (name.endsWith(s)) return true;
    return false;
  }
}

const policies = new WeakMap<Config, HostPolicy>();

/**
 * The refusal for a request whose Host is not allowed (403 SLUICE_HOST_NOT_ALLOWED), or undefined. Serves HTTP
 * requests (src/http/server.ts) and WebSocket upgrades (src/ws/hub.ts); the policy is built once per configuration.
 */
export function hostRefusal(config: Config, headers: IncomingHttpHeaders): SluiceError | undefined {
  let policy = policies.get(config);
  if (policy === undefined) {
    policy = new HostPolicy(config.host, config.allowed_hosts);
    policies.set(config, policy);
  }
  // HTTP/2 carries the authority in `:authority`; a `host` header is allowed there too (RFC 9113 §8.3.1).
  const authority = headers[':authority'];
  const host = typeof authority === 'string' ? authority : headers.host;
  if (policy.allows(host)) return undefined;
  const shown = (host ?? '').length > 100 ? `${(host ?? '').slice(0, 100)}…` : host;
  return new SluiceError(
    'SLUICE_HOST_NOT_ALLOWED',
    `Host '${shown}' is not allowed: this gateway answers to localhost, IP addresses and the names in allowed_hosts only (a defence against DNS rebinding). If clients reach it by this name, add it to allowed_hosts (--allowed-host, SLUICE_ALLOWED_HOSTS).`,
    { wireCode: 'host_not_allowed' },
  );
}

/** Whether the address the gateway binds is a loopback one (`host` in the configuration). */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/i.test(h);
}

/** Lower case, without the brackets of an IPv6 literal and without a final root dot (`localhost.`). */
function normalizeName(name: string): string {
  const n = name.toLowerCase();
  if (n.startsWith('[') && n.endsWith(']')) return n.slice(1, -1);
  return n.length > 1 && n.endsWith('.') ? n.slice(0, -1) : n;
}

/** The host part of a Host header value (`name`, `name:port`, `[v6]:port`), normalized; undefined if malformed. */
function hostName(value: string): string | undefined {
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close === -1) return undefined;
    const rest = value.slice(close + 1);
    if (rest !== '' && !/^:\d*$/.test(rest)) return undefined;
    return value.slice(1, close).toLowerCase();
  }
  const colon = value.indexOf(':');
  if (colon !== -1 && value.indexOf(':', colon + 1) !== -1) return isIP(value) === 6 ? value.toLowerCase() : undefined;
  const name = colon === -1 ? value : value.slice(0, colon);
  if (colon !== -1 && !/^\d*$/.test(value.slice(colon + 1))) return undefined;
  return normalizeName(name);
}
