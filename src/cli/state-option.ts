import { UsageError } from './args.ts';
import { parseDate } from '../admin/key-operations.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import { DEFAULT_STATE_URL, openStore, StateUrlError, type StateStore } from '../state/store.ts';

/** The options every state command (`keys`, `usage`) takes, as `serve` does. */
export const STATE_OPTIONS = {
  state: { type: 'string' },
  config: { type: 'string' },
} as const;

export const STATE_HELP = `  --state URL       the state store: sqlite:PATH or redis://HOST:PORT (env SLUICE_STATE; default ${DEFAULT_STATE_URL},
                    or state.url of --config FILE / SLUICE_CONFIG)`;

/** The state URL: --state > SLUICE_STATE > the config file's state.url > sqlite:./sluice.db. */
export function stateUrl(values: { state?: string | undefined; config?: string | undefined }, env: NodeJS.ProcessEnv): string {
  if (values.state !== undefined && values.state !== '') return values.state;
  const file = values.config ?? (env['SLUICE_CONFIG'] || undefined);
  try {
    return loadConfig(file, env, {}).state.url ?? DEFAULT_STATE_URL;
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/** Opens the store for a command; a bad URL is a usage error. */
export async function openStateFor(values: { state?: string | undefined; config?: string | undefined }, env: NodeJS.ProcessEnv): Promise<StateStore> {
  try {
    return await openStore(stateUrl(values, env));
  } catch (err) {
    if (err instanceof StateUrlError) throw new UsageError(err.message);
    throw err;
  }
}

/** A date for --expires, --since, --until: an ISO date (UTC midnight) or date-time. */
export function dateOption(name: string, raw: string): number {
  const t = parseDate(raw);
  if (t === undefined) throw new UsageError(`${name}: '${raw}' is not a date (2027-01-31, or 2027-01-31T12:00:00Z)`);
  return t;
}
