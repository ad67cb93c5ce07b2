import { parseArgs } from 'node:util';
import { UsageError, intOption } from './args.ts';
import { dateOption, openStateFor, STATE_HELP, STATE_OPTIONS } from './state-option.ts';
import { generateKey, hashKey, shownPrefix } from '../auth/api-key.ts';
import { KeyExistsError, type KeyLimits, type StateStore, type StoredKey } from '../state/store.ts';

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
  if (needsName && (name === undefined || !/^[\w.@:-]{1,64}$/.test(name))) {
    throw new UsageError(`${action} needs a NAME: 1 to 64 letters, digits, '_', '-', '.', '@' or ':'`);
  }
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
  const key = generateKey();
  const record: StoredKey = {
    name,
    hash: hashKey(key).toString('hex'),
    prefix: shownPrefix(key),
    rpm: limits.rpm ?? null,
    tpm: limits.tpm ?? null,
    concurrency: limits.concurrency ?? null,
    models: limits.models ?? null,
    expires_at: limits.expires_at ?? null,
    created_at: Date.now(),
    revoked_at: null,
  };
  try {
    await store.createKey(record);
  } catch (err) {
    if (err instanceof KeyExistsError) {
      console.error(`sluice keys: ${err.message}`);
      return 1;
    }
    throw err;
  }
  // The key alone on stdout (scripts capture it); the explanation on stderr.
  console.log(key);
  console.error(`key '${name}' created in ${store.url} (${describe(record)}). This is the only time it is shown: only its hash is stored.`);
  return 0;
}

async function update(store: StateStore, name: string, limits: Partial<KeyLimits>): Promise<number> {
  if (Object.keys(limits).length === 0) throw new UsageError('update needs at least one of --rpm, --tpm, --concurrency, --models, --expires');
  if (!(await store.updateKey(name, limits))) {
    console.error(`sluice keys: no key named '${name}'`);
    return 1;
  }
  const k = (await store.listKeys()).find((x) => x.name === name);
  console.error(`key '${name}' updated: ${k ? describe(k) : ''}`);
  return 0;
}

async function revoke(store: StateStore, name: string): Promise<number> {
  if (!(await store.revokeKey(name, Date.now()))) {
    console.error(`sluice keys: no live key named '${name}'`);
    return 1;
  }
  console.error(`key '${name}' revoked`);
  return 0;
}

const iso = (t: number | null | undefined): string | null => (t === null || t === undefined ? null : new Date(t).toISOString());

async function list(store: StateStore, json: boolean): Promise<number> {
  const keys = await store.listKeys();
  const used = await store.lastUsed();
  const now = Date.now();
  const rows = keys.map((k) => ({
    name: k.name,
    prefix: k.prefix,
    rpm: k.rpm,
    tpm: k.tpm,
    concurrency: k.concurrency,
    models: k.models,
    expires_at: iso(k.expires_at),
    created_at: iso(k.created_at) as string,
    last_used_at: iso(used.get(k.name)),
    revoked_at: iso(k.revoked_at),
    status: k.revoked_at !== null ? 'revoked' : k.expires_at !== null && now >= k.expires_at ? 'expired' : 'active',
  }));
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

/** One line of a key's limits. */
function describe(k: KeyLimits): string {
  const parts: string[] = [];
  if (k.rpm !== null) parts.push(`rpm ${k.rpm}`);
  if (k.tpm !== null) parts.push(`tpm ${k.tpm}`);
  if (k.concurrency !== null) parts.push(`concurrency ${k.concurrency}`);
  if (k.models !== null) parts.push(`models ${k.models.join(',')}`);
  if (k.expires_at !== null) parts.push(`expires ${new Date(k.expires_at).toISOString()}`);
  return parts.length > 0 ? parts.join(', ') : 'no limits';
}

/** Columns padded to their widest cell. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
