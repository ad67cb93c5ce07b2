import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { UpstreamConfig } from '../config/schema.ts';
import { ConfigError } from '../config/load.ts';

/** How long start-up waits for the resolver; past it, the name is left to discovery (a slow resolver is no typo). */
const LOOKUP_TIMEOUT_MS = 5_000;

type Lookup = (host: string) => Promise<unknown>;

/**
 * Start-up check of `sluice serve`: an upstream host name that the resolver says does not exist (ENOTFOUND) is a
 * typo far more often than an engine that will appear later, and with it the gateway would start and answer every
 * request with 503. It stops start-up with one line naming the upstream and the name, as nginx and HAProxy do for
 * an upstream host they cannot resolve. A name that resolves to an engine that is down is not a start-up error
 * (`/ready` says so), nor is a resolver that fails for now (EAI_AGAIN) or does not answer in time.
 */
export async function checkUpstreamHosts(upstreams: readonly UpstreamConfig[], resolve: Lookup = lookup): Promise<void> {
  const checks = upstreams.map(async (u, i) => {
    const host = new URL(u.url).hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), LOOKUP_TIMEOUT_MS)));
    try {
      await Promise.race([resolve(host), late]);
      return undefined;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      return code === 'ENOTFOUND' ? new ConfigError(`upstreams[${i}].url: the host name '${host}' does not resolve (${code}); check the name`) : undefined;
    } finally {
      clearTimeout(timer);
    }
  });
  const failure = (await Promise.all(checks)).find((e) => e !== undefined);
  if (failure) throw failure;
}
