import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.ts';
import { redactUrl } from '../openai/redact.ts';

/** A configuration mistake, reported as one line naming the key, the value and what is allowed. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Flags given on the command line (already parsed); undefined = not given. */
export interface ConfigOverrides {
  host?: string | undefined;
  port?: number | undefined;
  upstreams?: string[] | undefined;
  apiKeys?: string[] | undefined;
  allowedHosts?: string[] | undefined;
  heartbeatMs?: number | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  h2c?: boolean | undefined;
  logLevel?: string | undefined;
  logFormat?: string | undefined;
  state?: string | undefined;
  workers?: number | 'auto' | undefined;
  routing?: string | undefined;
}

/**
 * Builds the configuration: defaults < config file < environment (SLUICE_*) < flags, then validates it.
 * Throws ConfigError with a one-line message.
 */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv, flags: ConfigOverrides): Config {
  let raw: Record<string, unknown> = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`config: cannot read ${file}: ${(err as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new ConfigError(`config: ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config: ${file} must be a YAML mapping`);
      raw = doc as Record<string, unknown>;
    }
  }
  const envNum = (name: string): number | string | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    return Number.isFinite(n) ? n : v; // a non-number is left for the schema to reject by name
  };
  const envList = (name: string): string[] | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean);
  };
  const set = (key: string, value: unknown): void => {
    if (value !== undefined) raw[key] = value;
  };
  set('host', env['SLUICE_HOST']);
  set('port', envNum('SLUICE_PORT'));
  set('heartbeat_ms', envNum('SLUICE_HEARTBEAT_MS'));
  set('api_keys', envList('SLUICE_API_KEYS'));
  set('admin_key', env['SLUICE_ADMIN_KEY'] || undefined);
  set('allowed_hosts', envList('SLUICE_ALLOWED_HOSTS'));
  set('upstream_client', env['SLUICE_UPSTREAM_CLIENT'] || undefined);
  const envWorkers = env['SLUICE_WORKERS'];
  if (envWorkers !== undefined && envWorkers !== '') raw['workers'] = envWorkers === 'auto' ? 'auto' : envNum('SLUICE_WORKERS');
  const envUpstreams = envList('SLUICE_UPSTREAMS');
  if (envUpstreams) raw['upstreams'] = envUpstreams.map((url) => ({ url }));
  const setState = (value: string | undefined): void => {
    if (value !== undefined && value !== '') raw['state'] = { ...(raw['state'] as object | undefined), url: value };
  };
  setState(env['SLUICE_STATE']);
  const setRouting = (value: string | undefined): void => {
    if (value !== undefined && value !== '') raw['routing'] = { ...routingObject(raw['routing']), strategy: value };
  };
  setRouting(env['SLUICE_ROUTING']);
  const quiet = env['SLUICE_QUIET'];
  if (quiet !== undefined && quiet !== '' && quiet !== '0' && quiet !== 'false') raw['log'] = { ...(raw['log'] as object | undefined), requests: false };
  const setLog = (key: 'level' | 'format', value: string | undefined): void => {
    if (value !== undefined && value !== '') raw['log'] = { ...(raw['log'] as object | undefined), [key]: value };
  };
  setLog('level', env['SLUICE_LOG_LEVEL']);
  setLog('format', env['SLUICE_LOG_FORMAT']);
  const origins = envList('SLUICE_CORS_ORIGINS');
  if (origins) raw['cors'] = { ...(raw['cors'] as object | undefined), origins };
  const setTls = (key: 'cert_file' | 'key_file', value: string | undefined): void => {
    if (value !== undefined && value !== '') raw['tls'] = { ...(raw['tls'] as object | undefined), [key]: value };
  };
  setTls('cert_file', env['SLUICE_TLS_CERT']);
  setTls('key_file', env['SLUICE_TLS_KEY']);
  const envH2c = env['SLUICE_H2C'];
  if (envH2c !== undefined && envH2c !== '') raw['h2c'] = envH2c === '1' || envH2c === 'true' ? true : envH2c === '0' || envH2c === 'false' ? false : envH2c;
  const envConsole = env['SLUICE_CONSOLE'];
  if (envConsole !== undefined && envConsole !== '') {
    const enabled = envConsole === '1' || envConsole === 'true' ? true : envConsole === '0' || envConsole === 'false' ? false : envConsole;
    raw['console'] = { ...(raw['console'] as object | undefined), enabled };
  }

  set('host', flags.host);
  set('port', flags.port);
  set('heartbeat_ms', flags.heartbeatMs);
  set('api_keys', flags.apiKeys);
  set('allowed_hosts', flags.allowedHosts);
  set('workers', flags.workers);
  setTls('cert_file', flags.tlsCert);
  setTls('key_file', flags.tlsKey);
  if (flags.h2c) raw['h2c'] = true;
  setLog('level', flags.logLevel);
  setLog('format', flags.logFormat);
  setState(flags.state);
  setRouting(flags.routing);
  if (flags.upstreams && flags.upstreams.length > 0) raw['upstreams'] = flags.upstreams.map((url) => ({ url }));

  return validateConfig(raw, file ?? 'config');
}

/** Validates a raw configuration object; throws ConfigError naming the first bad key. */
export function validateConfig(raw: unknown, source = 'config'): Config {
  // `routing: prefix-aware`, the one line issue 17 promises, is `routing.strategy`.
  if (raw !== null && typeof raw === 'object' && typeof (raw as Record<string, unknown>)['routing'] === 'string') {
    raw = { ...raw, routing: routingObject((raw as Record<string, unknown>)['routing']) };
  }
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (result.success) {
    const legacy = result.data.drain_timeout_ms;
    if (legacy !== undefined) {
      // The key before issue 13; configs that set it keep working. Both set would leave one silently ignored.
      const given = (raw as { drain?: { timeout_ms?: unknown } }).drain?.timeout_ms;
      if (given !== undefined) throw new ConfigError(`${source}: drain_timeout_ms = ${legacy}: deprecated alias of drain.timeout_ms, which is set too (keep drain.timeout_ms)`);
      result.data.drain = { ...result.data.drain, timeout_ms: legacy };
    }
    // With TLS, HTTP/2 is negotiated by ALPN; h2c (prior knowledge) is the cleartext way to it.
    if (result.data.tls && result.data.h2c) throw new ConfigError(`${source}: h2c = true: h2c is cleartext HTTP/2; with tls set, HTTP/2 is negotiated by ALPN (drop one of them)`);
    return result.data;
  }
  throw new ConfigError(`${source}: ${describeIssue(result.error.issues[0] as z.core.$ZodIssue, raw)}`);
}

/** The `routing` section as an object: a plain strategy name is its `strategy`. */
function routingObject(v: unknown): object | undefined {
  return typeof v === 'string' ? { strategy: v } : (v as object | undefined);
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const key = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
  if (issue.code === 'unrecognized_keys') {
    const where = key ? `${key}.` : '';
    return `unknown key '${where}${issue.keys.join(`', '${where}`)}' (see docs/config.md for the keys)`;
  }
  let value: unknown = raw;
  for (const p of issue.path) value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[p as PropertyKey] : undefined;
  // A URL's user:password never reaches a terminal or a log (issue 12).
  const shown = value === undefined ? 'missing' : JSON.stringify(typeof value === 'string' ? redactUrl(value) : value);
  return `${key || 'config'} = ${shown}: ${issue.message}`;
}
