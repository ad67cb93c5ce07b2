import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.ts';
import { startGatewayWithConfig, type Gateway } from '../gateway.ts';
import { intOption } from './args.ts';
import { redactUrl } from '../openai/redact.ts';
import { levelEnabled } from '../logger.ts';
import type { LogLevel } from '../config/schema.ts';
import { checkUpstreamHosts } from '../upstream/check-hosts.ts';
import { listenFailure } from './listen-failure.ts';
import { existsSync } from 'node:fs';
import { DEFAULT_STATE_URL, sqlitePath, StateUrlError } from '../state/store.ts';
import cluster from 'node:cluster';
import { workerCount } from '../cluster/workers.ts';
import { runPrimary, WORKER_INDEX_ENV } from '../cluster/primary.ts';
import { joinCluster } from '../cluster/worker.ts';
import { SIM_URL_ENV } from '../cluster/ipc.ts';
import { consoleEnabled } from '../console/access.ts';
import { freezeYoungGeneration } from './young-generation.ts';

export const SERVE_HELP = `Usage: sluice serve [options]

Runs the gateway. With no upstream configured it starts the built-in simulator (no model) as its upstream.

Options (each has an env twin; the config file has every key, see docs/config.md):
  --host HOST       address to bind (default 127.0.0.1; env SLUICE_HOST)
  --port N          port (default 8080; env SLUICE_PORT)
  --upstream URL    OpenAI-compatible base URL ending in /v1, repeatable (env SLUICE_UPSTREAMS, comma-separated)
  --config FILE     YAML config file (env SLUICE_CONFIG)
  --api-key KEY     a client key clients must send as 'Authorization: Bearer KEY', repeatable
                    (env SLUICE_API_KEYS, comma-separated)
  --allowed-host H  a host name clients reach the gateway by, repeatable (.example.com: with subdomains; *: any);
                    other names are refused (DNS rebinding). Default: checked only on loopback, where localhost
                    and IP addresses pass (env SLUICE_ALLOWED_HOSTS, comma-separated)
  --heartbeat-ms N  heartbeat interval on streams (default 15000; env SLUICE_HEARTBEAT_MS)
  --tls-cert FILE   serve HTTPS with this PEM certificate (chain); HTTP/2 and HTTP/1.1 by ALPN (env SLUICE_TLS_CERT)
  --tls-key FILE    the certificate's PEM private key (env SLUICE_TLS_KEY)
  --h2c             without TLS, also accept cleartext HTTP/2 with prior knowledge on the same port (env SLUICE_H2C=1)
  --workers N|auto  gateway processes sharing the port, 'auto' = one per core (default 1; env SLUICE_WORKERS;
                    docs/deploy.md)
  --state URL       keys, limits and the usage ledger: sqlite:PATH or redis://HOST:PORT (env SLUICE_STATE;
                    default: ./sluice.db when that file exists, else none; docs/keys.md)
  --routing S       how a model's replica is chosen: auto (default), least-loaded, engine-aware, prefix-aware or
                    round-robin (env SLUICE_ROUTING; docs/routing.md)
  --quiet           no per-request log lines (env SLUICE_QUIET=1)
  --log-level L     error, warn, info (default) or debug (env SLUICE_LOG_LEVEL)
  --log-format F    json (default) or text: one readable line per event (env SLUICE_LOG_FORMAT)
Precedence: flags > environment > config file > defaults.`;

/** `sluice serve`: runs until SIGINT/SIGTERM, then drains in-flight streams. */
export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      upstream: { type: 'string', multiple: true },
      config: { type: 'string' },
      'api-key': { type: 'string', multiple: true },
      'allowed-host': { type: 'string', multiple: true },
      'heartbeat-ms': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      h2c: { type: 'boolean' },
      state: { type: 'string' },
      workers: { type: 'string' },
      routing: { type: 'string' },
      quiet: { type: 'boolean' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  // Memory per open stream: V8's young generation stays at its start-up size (src/cli/young-generation.ts).
  freezeYoungGeneration();
  let config;
  try {
    config = loadConfig(values.config ?? (process.env['SLUICE_CONFIG'] || undefined), process.env, {
      host: values.host,
      port: values.port === undefined ? undefined : intOption('--port', values.port, 8080, 0, 65535),
      upstreams: values.upstream,
      apiKeys: values['api-key'],
      allowedHosts: values['allowed-host'],
      heartbeatMs: values['heartbeat-ms'] === undefined ? undefined : intOption('--heartbeat-ms', values['heartbeat-ms'], 15_000, 10),
      tlsCert: values['tls-cert'],
      tlsKey: values['tls-key'],
      h2c: values.h2c,
      logLevel: values['log-level'],
      logFormat: values['log-format'],
      state: values.state,
      workers: values.workers === undefined ? undefined : values.workers === 'auto' ? 'auto' : intOption('--workers', values.workers, 1, 1, 256),
      routing: values.routing,
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`sluice serve: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (values.quiet) config = { ...config, log: { ...config.log, requests: false } };
  // The default store is used when it exists (made by `sluice keys create`): serving alone never creates a file.
  if (config.state.url === undefined && existsSync(sqlitePath(DEFAULT_STATE_URL))) config = { ...config, state: { ...config.state, url: DEFAULT_STATE_URL } };
  // The banner is for the person who started the gateway: plain text in either log format, at info (so not at
  // log.level warn or error), with the warning about an open port at warn. Of several workers, the first says it.
  const level = config.log.level;
  const banner = !cluster.isWorker || process.env[WORKER_INDEX_ENV] === '1';
  const say = (s: string, at: LogLevel = 'info'): void => {
    if (levelEnabled(level, at) && (banner || at !== 'info')) process.stderr.write(`${s}\n`);
  };
  const workers = workerCount(config.workers);
  if (workers > 1 && cluster.isPrimary) {
    if (config.state.url?.startsWith('sqlite:') || (config.state.url === undefined && existsSync(sqlitePath(DEFAULT_STATE_URL)))) {
      say(`sluice: ${workers} workers on a SQLite store: keys and the ledger are shared, but each worker counts rate limits on its own (a key may get up to ${workers}× its limits); state.url redis://… shares them (docs/keys.md)`, 'warn');
    }
    return runPrimary({ config, workers, say });
  }
  // A worker acts on the primary's signals only (src/cluster/worker.ts); one that is asked to stop before it serves
  // has nothing to drain.
  let onSignal: (signal: 'SIGINT' | 'SIGTERM') => void = () => process.exit(0);
  const member = cluster.isWorker ? joinCluster((signal) => onSignal(signal)) : undefined;
  const simUrl = process.env[SIM_URL_ENV];
  if (member && simUrl && config.upstreams.length === 0) config = { ...config, upstreams: [{ url: simUrl, name: 'simulator', dialect: 'vllm' as const, max_connections: 0 }] };
  let gateway;
  try {
    await checkUpstreamHosts(config.upstreams);
    gateway = await startGatewayWithConfig(config);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StateUrlError) {
      console.error(`sluice serve: ${err.message}`);
      member?.leave();
      return 2;
    }
    const failure = listenFailure(err, config);
    if (failure) {
      console.error(`sluice serve: ${failure.message}`);
      member?.leave();
      return failure.exitCode;
    }
    member?.leave();
    throw err;
  }
  member?.serveMetrics(gateway.metrics);
  const root = gateway.url.replace(/\/v1$/, '');
  say(`sluice gateway listening on ${gateway.url}`);
  if (gateway.simulator || (member && simUrl)) {
    say(`no upstream configured: using the built-in simulator (generated text, no model) at ${gateway.simulator?.url ?? `${simUrl} (in the primary process)`}`);
  } else {
    // Never the URL's user:password (issue 12): start-up lines end up in journals and CI logs.
    for (const u of gateway.config.upstreams) say(`upstream ${u.name ?? new URL(u.url).host}: ${redactUrl(u.url)}${hasUserinfo(u.url) ? ' (credentials from the URL sent as HTTP Basic auth)' : ''}`);
  }
  const models = gateway.models();
  const model = models[0] ?? 'MODEL';
  say(`models: ${models.join(', ') || `(none discovered yet; see ${root}/ready)`}`);
  const auth = config.api_keys.length > 0 || gateway.store ? ` -H 'Authorization: Bearer YOUR_KEY'` : '';
  const http = config.tls ? 'HTTPS with HTTP/2 and HTTP/1.1 (ALPN)' : config.h2c ? 'HTTP/1.1 and cleartext HTTP/2 (prior knowledge)' : 'HTTP/1.1';
  // Whole URLs: a bare "/ws" beside a /v1 URL was read as the root's /ws, which is 404 (issue 13).
  const wsBase = gateway.url.replace(/^http/, 'ws');
  const ws = config.websocket.enabled ? `; WebSocket on ${wsBase}/responses (Responses WebSocket mode) and ${wsBase}/ws (multiplexed chat)` : '';
  say(`transports: ${http}${ws}`);
  say(`probes: ${root}/health (live), ${root}/ready (ready)${config.metrics.enabled ? `; metrics: ${root}/metrics` : ''}`);
  if (consoleEnabled(config)) {
    const keyed = config.api_keys.length > 0 || gateway.store !== undefined;
    say(`console: ${root}/console (playground and live view${keyed ? (config.admin_key ? '; with client keys it asks for admin_key' : '; with client keys it needs admin_key, which is not set') : ''}; docs/console.md)`);
  }
  say(gateway.store ? `state: ${gateway.store.url} (stored keys, limits and the usage ledger; docs/keys.md)` : 'state: none (static api_keys only, no usage ledger; --state or `sluice keys create` to have one)');
  say(`try: curl -N ${config.tls ? '--http2 ' : config.h2c ? '--http2-prior-knowledge ' : ''}${gateway.url}/chat/completions -H 'Content-Type: application/json'${auth} -d '{"model":"${model}","stream":true,"messages":[{"role":"user","content":"Hello"}]}'`);
  if (!isLoopback(config.host) && config.api_keys.length === 0) {
    say(`\n*** WARNING: listening on ${config.host} without API keys: anyone who can reach this port can use your upstreams. ***\n*** Set --api-key / SLUICE_API_KEYS / api_keys, or bind 127.0.0.1. ***\n`, 'warn');
  }
  if (config.drain_timeout_ms !== undefined) say(`sluice: drain_timeout_ms is deprecated; it was read as drain.timeout_ms = ${config.drain.timeout_ms}`, 'warn');
  await untilStopped(gateway, say, (handler) => {
    if (member) onSignal = handler;
    else {
      process.on('SIGINT', handler);
      process.on('SIGTERM', handler);
    }
  });
  member?.leave();
  return 0;
}

/**
 * Runs until a signal, then shuts down (src/shutdown.ts, docs/deploy.md). SIGTERM is how orchestrators stop a
 * process: it gets the announce window, so load balancers deregister the instance before it stops listening.
 * SIGINT is a terminal's Ctrl-C, with no balancer in front: it skips the window; in-flight streams still finish.
 * A second signal of either kind ends everything at once. The handlers stay installed until the process exits, so
 * no signal kills it with a non-zero code mid-shutdown.
 */
async function untilStopped(gateway: Gateway, say: (s: string) => void, listen: (handler: (signal: 'SIGINT' | 'SIGTERM') => void) => void): Promise<void> {
  const { announce_ms: announce, timeout_ms: timeout } = gateway.config.drain;
  let stopping: Promise<void> | undefined;
  await new Promise<void>((resolve) => {
    const onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
      if (stopping !== undefined) {
        say(`sluice: ${signal} again: ending ${inFlight(gateway)} at once`);
        void gateway.terminate().then(resolve);
        return;
      }
      if (signal === 'SIGTERM') {
        say(`sluice: SIGTERM: draining; /ready answers 503, new connections are accepted for ${announce} ms (drain.announce_ms), streams in flight have ${timeout} ms (drain.timeout_ms); a second signal ends them at once`);
        stopping = gateway.shutdown();
      } else if (gateway.inFlight === 0) {
        say(`sluice: ${signal}: stopping`);
        stopping = gateway.close();
      } else {
        say(`sluice: ${signal}: letting ${inFlight(gateway)} finish (up to ${timeout} ms, drain.timeout_ms); press Ctrl-C again to end them at once`);
        stopping = gateway.close();
      }
      void stopping.then(resolve);
    };
    listen(onSignal);
  });
  say('sluice: stopped');
}

function inFlight(gateway: Gateway): string {
  const n = gateway.inFlight;
  return n === 1 ? '1 stream in flight' : `${n} streams in flight`;
}

function hasUserinfo(url: string): boolean {
  const u = new URL(url);
  return u.username !== '' || u.password !== '';
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
