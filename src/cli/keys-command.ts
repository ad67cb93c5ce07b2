import { parseArgs } from 'node:util';
import { UsageError, intOption } from './args.ts';
import { dateOption, openStateFor, STATE_HELP, STATE_OPTIONS } from './state-option.ts';
import { KeyExistsError, type KeyLimits, type StateStore } from '../state/store.ts';
import { createKey, describeLimits, KEY_NAME, KEY_NAME_RULE, KeyInputError, listKeys, revokeKey, updateKey } from '../admin/key-operations.ts';

export const KEYS_HELP = `Usage: sluice keys <create|list|update|revoke> [NAME] [options]

Client keys with limits, kept in the state store (docs/keys.md). A running gateway on the same store sees a change
within state.refresh_ms (500 ms by default).

  sluice keys create NAME [limits]   make a key; it is printed once (only its SHA-256 is stored)
  sluice keys list [--json]          name, key prefix, limits, created, last used, status
  sluice keys update NAME [limits]   change limits; 'none' removes one (--rpm none)
  sluice keys revoke NAME            refuse the key from now on (within state.refresh_ms on every gateway)

Limits:
  --rpm N           requests per minute (a sliding 60 s window)
  --tpm N           prompt + completion tokens per minute (reserved at admission, settled with real usage)
  --concurrency N   requests in flight at once
  --models a,b      models (or aliases) the key may use
  --expires DATE    refuse the key from this date (2027-01-31 is UTC midnight, or 2027-01-31T12:00:00Z)
Options:
${STATE_HELP}
  --config FILE     read state.url from this config file`;

const OPTIONS = {
  ...STATE_OPTIONS,
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  concurrency: { type: 'string' },
  models: { type: 'string' },
  expires: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** `sluice keys ...`; resolves to the exit code. */
export async function keysCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [action, name, ...extra] = positionals;
  if (values.help || action === undefined) {
    console.log(KEYS_HELP);
    return values.help ? 0 : 2;
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  const needsName = action === 'create' || action === 'update' || action === 'revoke';
  if (!['create', 'list', 'update', 'revoke'].includes(action)) throw new UsageError(`unknown action '${action}' (create, list, update, revoke)`);
  if (needsName && (name === undefined || !KEY_NAME.test(name))) throw new UsageError(`${action} needs a NAME: ${KEY_NAME_RULE}`);
  if (action === 'list' && name !== undefined) throw new UsageError(`unexpected argument '${name}'`);
  const limits = readLimits(values, action === 'update');
  if (action !== 'create' && action !== 'update' && Object.keys(limits).length > 0) throw new UsageError(`${action} takes no limits`);
  const store = await openStateFor(values, process.env);
  try {
    if (action === 'create') return await create(store, name as string, limits);
    if (action === 'update') return await update(store, name as string, limits);
    if (action === 'revoke') return await revoke(store, name as string);
    return await list(store, values.json === true);
  } finally {
    await store.close();
  }
}

/** The limits given as flags; with `clearable`, 'none' sets one to null (update). */
function readLimits(v: Values, clearable: boolean): Partial<KeyLimits> {
  const out: Partial<KeyLimits> = {};
  const cleared = (raw: string | undefined): boolean => clearable && raw === 'none';
  for (const k of ['rpm', 'tpm', 'concurrency'] as const) {
    const raw = v[k];
    if (raw === undefined) continue;
    out[k] = cleared(raw) ? null : intOption(`--${k}`, raw, 0, 1);
  }
  if (v.models !== undefined) {
    const models = v.models.split(',').map((s) => s.trim()).filter(Boolean);
    if (!cleared(v.models) && models.length === 0) throw new UsageError(`--models: give model names separated by commas`);
    out.models = cleared(v.models) ? null : models;
  }
  if (v.expires !== undefined) out.expires_at = cleared(v.expires) ? null : dateOption('--expires', v.expires);
  return out;
}

async function create(store: StateStore, name: string, limits: Partial<KeyLimits>): Promise<number> {
  let made: Awaited<ReturnType<typeof createKey>>;
  try {
    made = await createKey(store, name, limits);
  } catch (err) {
    if (err instanceof KeyExistsError) {
      console.error(`sluice keys: ${err.message}`);
      return 1;
    }
    throw err;
  }
  // The key alone on stdout (scripts capture it); the explanation on stderr.
  console.log(made.key);
  console.error(`key '${name}' created in ${store.url} (${describeLimits(made.record)}). This is the only time it is shown: only its hash is stored.`);
  return 0;
}

async function update(store: StateStore, name: string, limits: Partial<KeyLimits>): Promise<number> {
  if (Object.keys(limits).length === 0) throw new UsageError('update needs at least one of --rpm, --tpm, --concurrency, --models, --expires');
  let row;
  try {
    row = await updateKey(store, name, limits);
  } catch (err) {
    if (err instanceof KeyInputError) throw new UsageError(err.message);
    throw err;
  }
  if (row === undefined) {
    console.error(`sluice keys: no key named '${name}'`);
    return 1;
  }
  console.error(`key '${name}' updated: ${describeLimits({ ...row, expires_at: row.expires_at === null ? null : Date.parse(row.expires_at) })}`);
  return 0;
}

async function revoke(store: StateStore, name: string): Promise<number> {
  if ((await revokeKey(store, name)) === undefined) {
    console.error(`sluice keys: no live key named '${name}'`);
    return 1;
  }
  console.error(`key '${name}' revoked`);
  return 0;
}

async function list(store: StateStore, json: boolean): Promise<number> {
  const rows = await listKeys(store);
  if (json) {
    console.log(JSON.stringify(rows, null, 2));
    return 0;
  }
  const header = ['NAME', 'KEY', 'RPM', 'TPM', 'CONC', 'MODELS', 'EXPIRES', 'CREATED', 'LAST USED', 'STATUS'];
  const dash = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));
  const day = (s: string | null): string => (s === null ? '-' : s.slice(0, 16).replace('T', ' '));
  const table = rows.map((r) => [r.name, `${r.prefix}…`, dash(r.rpm), dash(r.tpm), dash(r.concurrency), r.models?.join(',') ?? 'any', day(r.expires_at), day(r.created_at), day(r.last_used_at), r.status]);
  console.log(formatTable(header, table));
  return 0;
}

/** Columns padded to their widest cell. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
