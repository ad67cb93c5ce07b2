import type { DatabaseSync, StatementSync, SQLInputValue } from 'node:sqlite';
import { KeyExistsError, type KeyLimits, type StateStore, type StoredKey, type UsageFilter, type UsageRecord } from './store.ts';

/**
 * Loads Node's built-in SQLite. In Node 24 `node:sqlite` works without flags but is "Stability 1.1, active
 * development", and loading it prints an ExperimentalWarning on every run of every command. That one warning is
 * dropped, only while the module loads; every other warning is printed as usual. docs/dependencies.md says why the
 * built-in was chosen anyway and what its status means for users.
 */
function loadSqlite(): typeof import('node:sqlite') {
  const emit = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]): void {
    const text = typeof warning === 'string' ? warning : warning.message;
    if (text.startsWith('SQLite is an experimental feature')) return;
    (emit as (w: string | Error, ...r: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
  try {
    return process.getBuiltinModule('node:sqlite');
  } finally {
    process.emitWarning = emit;
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', 1), ('keys_version', 0);
CREATE TABLE IF NOT EXISTS keys (
  name TEXT PRIMARY KEY,
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  rpm INTEGER, tpm INTEGER, concurrency INTEGER,
  models TEXT,
  expires_at INTEGER,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS usage (
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  key TEXT, model TEXT, upstream TEXT,
  endpoint TEXT NOT NULL,
  stream INTEGER NOT NULL,
  prompt_tokens INTEGER, completion_tokens INTEGER, tokens_source TEXT,
  outcome TEXT NOT NULL, status INTEGER NOT NULL, error_code TEXT,
  ttft_ms REAL, duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key, ts);
`;

const LIMIT_COLUMNS = ['rpm', 'tpm', 'concurrency', 'models', 'expires_at'] as const satisfies readonly (keyof KeyLimits)[];

type Row = Record<string, SQLInputValue>;

/**
 * The embedded store: one SQLite file (WAL mode, so `sluice keys` and `sluice usage` work while gateways run on the
 * same file). Statements run synchronously; each is a few microseconds, and the gateway runs them only from its
 * once-per-interval key refresh and ledger flush, never per request.
 */
export class SqliteStore implements StateStore {
  readonly url: string;
  readonly #db: DatabaseSync;
  readonly #version: StatementSync;
  readonly #bump: StatementSync;
  readonly #insertUsage: StatementSync;
  #closed = false;

  private constructor(path: string) {
    const { DatabaseSync } = loadSqlite();
    this.url = `sqlite:${path}`;
    this.#db = new DatabaseSync(path);
    // WAL: readers (the gateways' refresh) never block the writer (the CLI), nor the other way round. NORMAL
    // synchronous is durable across a crash of the process (not of the machine's power) and costs no fsync per batch.
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
    this.#db.exec(SCHEMA);
    this.#version = this.#db.prepare(`SELECT v FROM meta WHERE k = 'keys_version'`);
    this.#bump = this.#db.prepare(`UPDATE meta SET v = v + 1 WHERE k = 'keys_version'`);
    this.#insertUsage = this.#db.prepare(
      `INSERT INTO usage (ts, request_id, key, model, upstream, endpoint, stream, prompt_tokens, completion_tokens, tokens_source, outcome, status, error_code, ttft_ms, duration_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /** Opens (and creates, on first use) the database file. */
  static open(path: string): Promise<SqliteStore> {
    return Promise.resolve(new SqliteStore(path));
  }

  #tx<T>(fn: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const r = fn();
      this.#db.exec('COMMIT');
      return r;
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  createKey(k: StoredKey): Promise<void> {
    this.#tx(() => {
      const existing = this.#db.prepare('SELECT revoked_at FROM keys WHERE name = ?').get(k.name);
      if (existing !== undefined && existing['revoked_at'] === null) throw new KeyExistsError(`a key named '${k.name}' exists; revoke it first or choose another name`);
      this.#db.prepare('DELETE FROM keys WHERE name = ?').run(k.name);
      this.#db
        .prepare('INSERT INTO keys (name, hash, prefix, rpm, tpm, concurrency, models, expires_at, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)')
        .run(k.name, k.hash, k.prefix, k.rpm, k.tpm, k.concurrency, k.models === null ? null : JSON.stringify(k.models), k.expires_at, k.created_at);
      this.#bump.run();
    });
    return Promise.resolve();
  }

  updateKey(name: string, patch: Partial<KeyLimits>): Promise<boolean> {
    const sets: string[] = [];
    const values: SQLInputValue[] = [];
    for (const c of LIMIT_COLUMNS) {
      if (!(c in patch)) continue;
      const v = patch[c];
      sets.push(`${c} = ?`);
      values.push(v === undefined || v === null ? null : Array.isArray(v) ? JSON.stringify(v) : v);
    }
    return Promise.resolve(
      this.#tx(() => {
        const exists = this.#db.prepare('SELECT 1 FROM keys WHERE name = ?').get(name) !== undefined;
        if (!exists) return false;
        if (sets.length > 0) this.#db.prepare(`UPDATE keys SET ${sets.join(', ')} WHERE name = ?`).run(...values, name);
        this.#bump.run();
        return true;
      }),
    );
  }

  revokeKey(name: string, at: number): Promise<boolean> {
    return Promise.resolve(
      this.#tx(() => {
        const r = this.#db.prepare('UPDATE keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL').run(at, name);
        if (Number(r.changes) === 0) return false;
        this.#bump.run();
        return true;
      }),
    );
  }

  listKeys(): Promise<StoredKey[]> {
    return Promise.resolve(this.#db.prepare('SELECT * FROM keys ORDER BY name').all().map(toKey));
  }

  keysVersion(): Promise<number> {
    return Promise.resolve(Number(this.#version.get()?.['v'] ?? 0));
  }

  lastUsed(): Promise<Map<string, number>> {
    const rows = this.#db.prepare('SELECT key, MAX(ts) AS ts FROM usage WHERE key IS NOT NULL GROUP BY key').all();
    return Promise.resolve(new Map(rows.map((r) => [String(r['key']), Number(r['ts'])])));
  }

  appendUsage(records: readonly UsageRecord[]): Promise<void> {
    if (records.length === 0 || this.#closed) return Promise.resolve();
    // One transaction per batch: one commit for many rows.
    this.#tx(() => {
      for (const r of records) {
        this.#insertUsage.run(r.ts, r.request_id, r.key, r.model, r.upstream, r.endpoint, r.stream ? 1 : 0, r.prompt_tokens, r.completion_tokens, r.tokens_source, r.outcome, r.status, r.error_code, r.ttft_ms, r.duration_ms);
      }
    });
    return Promise.resolve();
  }

  async *readUsage(f: UsageFilter): AsyncIterable<UsageRecord> {
    const where: string[] = [];
    const values: SQLInputValue[] = [];
    const add = (sql: string, v: SQLInputValue | undefined): void => {
      if (v === undefined) return;
      where.push(sql);
      values.push(v);
    };
    add('key = ?', f.key);
    add('model = ?', f.model);
    add('ts >= ?', f.since);
    add('ts < ?', f.until);
    const sql = `SELECT * FROM usage${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ts, id`;
    for (const row of this.#db.prepare(sql).iterate(...values)) yield toUsage(row as Row);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#db.close();
    }
    return Promise.resolve();
  }
}

const num = (v: SQLInputValue | undefined): number | null => (v === null || v === undefined ? null : Number(v));
const str = (v: SQLInputValue | undefined): string | null => (v === null || v === undefined ? null : String(v));

function toKey(r: Row): StoredKey {
  const models = str(r['models']);
  return {
    name: String(r['name']),
    hash: String(r['hash']),
    prefix: String(r['prefix']),
    rpm: num(r['rpm']),
    tpm: num(r['tpm']),
    concurrency: num(r['concurrency']),
    models: models === null ? null : (JSON.parse(models) as string[]),
    expires_at: num(r['expires_at']),
    created_at: Number(r['created_at']),
    revoked_at: num(r['revoked_at']),
  };
}

function toUsage(r: Row): UsageRecord {
  const source = str(r['tokens_source']);
  return {
    ts: Number(r['ts']),
    request_id: String(r['request_id']),
    key: str(r['key']),
    model: str(r['model']),
    upstream: str(r['upstream']),
    endpoint: String(r['endpoint']),
    stream: Number(r['stream']) === 1,
    prompt_tokens: num(r['prompt_tokens']),
    completion_tokens: num(r['completion_tokens']),
    tokens_source: source === 'reported' || source === 'counted' ? source : null,
    outcome: String(r['outcome']),
    status: Number(r['status']),
    error_code: str(r['error_code']),
    ttft_ms: num(r['ttft_ms']),
    duration_ms: Number(r['duration_ms']),
  };
}
