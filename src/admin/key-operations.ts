import { generateKey, hashKey, shownPrefix } from '../auth/api-key.ts';
import type { KeyLimits, StateStore, StoredKey, UsageFilter } from '../state/store.ts';
import { summarizeUsage, type UsageGrouping, type UsageRow } from '../ledger/usage-report.ts';

/**
 * The key and usage operations of `sluice keys`, `sluice usage` and the admin API (`/admin/`): one implementation
 * over the state store, so the command line and HTTP answer the same. Input errors are KeyInputError (the CLI's exit
 * code 2, HTTP's 400).
 */

/** A key name: 1 to 64 letters, digits, `_`, `-`, `.`, `@` or `:`. */
export const KEY_NAME = /^[\w.@:-]{1,64}$/;
export const KEY_NAME_RULE = "1 to 64 letters, digits, '_', '-', '.', '@' or ':'";
export const GROUPINGS: readonly UsageGrouping[] = ['key', 'model', 'day'];

/** Input that cannot be used (a bad name, date or limit). */
export class KeyInputError extends Error {
  override name = 'KeyInputError';
}

/** An ISO date (UTC midnight) or date-time as Unix ms; undefined when it is not one. */
export function parseDate(raw: string): number | undefined {
  const t = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(raw) ? Date.parse(raw) : Number.NaN;
  return Number.isFinite(t) ? t : undefined;
}

/** A key as `keys list --json` and `GET /admin/keys` show it. */
export interface KeyRow {
  name: string;
  prefix: string;
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
  models: string[] | null;
  expires_at: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  status: 'active' | 'expired' | 'revoked';
}

const iso = (t: number | null | undefined): string | null => (t === null || t === undefined ? null : new Date(t).toISOString());

export function keyRow(k: StoredKey, lastUsed: number | undefined, now = Date.now()): KeyRow {
  return {
    name: k.name,
    prefix: k.prefix,
    rpm: k.rpm,
    tpm: k.tpm,
    concurrency: k.concurrency,
    models: k.models,
    expires_at: iso(k.expires_at),
    created_at: iso(k.created_at) as string,
    last_used_at: iso(lastUsed),
    revoked_at: iso(k.revoked_at),
    status: k.revoked_at !== null ? 'revoked' : k.expires_at !== null && now >= k.expires_at ? 'expired' : 'active',
  };
}

/** Makes a key; returns it (the only time it exists outside the client) and its row. Throws KeyExistsError. */
export async function createKey(store: StateStore, name: string, limits: Partial<KeyLimits>): Promise<{ key: string; record: StoredKey; row: KeyRow }> {
  if (!KEY_NAME.test(name)) throw new KeyInputError(`a key name is ${KEY_NAME_RULE}`);
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
  await store.createKey(record);
  return { key, record, row: keyRow(record, undefined) };
}

/** Every key, revoked ones included, with its last use from the ledger. */
export async function listKeys(store: StateStore): Promise<KeyRow[]> {
  const keys = await store.listKeys();
  const used = await store.lastUsed();
  const now = Date.now();
  return keys.map((k) => keyRow(k, used.get(k.name), now));
}

/** One key's row; undefined when there is none of that name. */
export async function findKey(store: StateStore, name: string): Promise<KeyRow | undefined> {
  return (await listKeys(store)).find((k) => k.name === name);
}

/** Changes a key's limits; its row after the change, or undefined when there is no such key. */
export async function updateKey(store: StateStore, name: string, patch: Partial<KeyLimits>): Promise<KeyRow | undefined> {
  if (Object.keys(patch).length === 0) throw new KeyInputError('nothing to change: give at least one of rpm, tpm, concurrency, models, expires');
  if (!(await store.updateKey(name, patch))) return undefined;
  return findKey(store, name);
}

/** Revokes a live key; its row after, or undefined when no live key has that name. */
export async function revokeKey(store: StateStore, name: string): Promise<KeyRow | undefined> {
  if (!(await store.revokeKey(name, Date.now()))) return undefined;
  return findKey(store, name);
}

/** The ledger summed by key, model or day, as `sluice usage --json` and `GET /admin/usage` give it. */
export async function usageReport(store: StateStore, filter: UsageFilter, by: UsageGrouping): Promise<UsageRow[]> {
  return summarizeUsage(store.readUsage(filter), by);
}

/** The JSON form of a report: each group under the grouping's own name (`{"key": "team-a", "requests": …}`). */
export function usageJson(rows: readonly UsageRow[], by: UsageGrouping): Record<string, unknown>[] {
  return rows.map(({ group, ...r }) => ({ [by]: group, ...r }));
}

/** One line of a key's limits. */
export function describeLimits(k: KeyLimits): string {
  const parts: string[] = [];
  if (k.rpm !== null) parts.push(`rpm ${k.rpm}`);
  if (k.tpm !== null) parts.push(`tpm ${k.tpm}`);
  if (k.concurrency !== null) parts.push(`concurrency ${k.concurrency}`);
  if (k.models !== null) parts.push(`models ${k.models.join(',')}`);
  if (k.expires_at !== null) parts.push(`expires ${new Date(k.expires_at).toISOString()}`);
  return parts.length > 0 ? parts.join(', ') : 'no limits';
}

const MAX_MODELS = 256;
const LIMIT_FIELDS = ['rpm', 'tpm', 'concurrency', 'models', 'expires'] as const;

/**
 * Limits from a JSON object (the admin API's body): `rpm`, `tpm`, `concurrency` (whole numbers ≥ 1), `models` (an
 * array of names), `expires` (a date, as `--expires` takes it). With `clearable` (an update), null removes a limit.
 * Other fields, besides those in `allowed`, are refused.
 */
export function limitsFromJson(body: Record<string, unknown>, clearable: boolean, allowed: readonly string[] = []): Partial<KeyLimits> {
  for (const f of Object.keys(body)) {
    if (!(LIMIT_FIELDS as readonly string[]).includes(f) && !allowed.includes(f)) throw new KeyInputError(`unknown field '${f.slice(0, 64)}' (expected ${[...allowed, ...LIMIT_FIELDS].join(', ')})`);
  }
  const out: Partial<KeyLimits> = {};
  const nullable = (f: string, v: unknown): v is null => {
    if (v !== null) return false;
    if (!clearable) throw new KeyInputError(`${f}: null only removes a limit in an update; leave the field out instead`);
    return true;
  };
  for (const f of ['rpm', 'tpm', 'concurrency'] as const) {
    const v = body[f];
    if (v === undefined) continue;
    if (nullable(f, v)) out[f] = null;
    else if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1) out[f] = v;
    else throw new KeyInputError(`${f}: expected a whole number from 1${clearable ? ', or null to remove the limit' : ''}`);
  }
  const models = body['models'];
  if (models !== undefined) {
    if (nullable('models', models)) out.models = null;
    else if (Array.isArray(models) && models.length > 0 && models.length <= MAX_MODELS && models.every((m) => typeof m === 'string' && m.length > 0 && m.length <= 256)) out.models = models as string[];
    else throw new KeyInputError(`models: expected an array of 1 to ${MAX_MODELS} model names`);
  }
  const expires = body['expires'];
  if (expires !== undefined) {
    if (nullable('expires', expires)) out.expires_at = null;
    else {
      const t = typeof expires === 'string' && expires.length <= 64 ? parseDate(expires) : undefined;
      if (t === undefined) throw new KeyInputError(`expires: expected a date (2027-01-31, or 2027-01-31T12:00:00Z)`);
      out.expires_at = t;
    }
  }
  return out;
}
