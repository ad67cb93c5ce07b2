import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ERROR_CODES, type SluiceErrorCode } from '../src/errors.ts';
import { configSchema } from '../src/config/schema.ts';
import { ConfigError, loadConfig, validateConfig } from '../src/config/load.ts';
import { SERVE_HELP, serveCommand } from '../src/cli/serve-command.ts';

// Keeps docs/errors.md and docs/config.md in step with the code, as fastify's test/internals/errors.test.js does for
// its docs (issue 11, "Habits that keep it so"). Each test collects every mismatch and fails with the whole list, each
// entry naming the file, line and key or code.

const read = (rel: string): string => readFileSync(new URL(`../${rel}`, import.meta.url), 'utf8');
const ERRORS_MD = 'docs/errors.md';
const CONFIG_MD = 'docs/config.md';
const errorsMd = read(ERRORS_MD);
const configMd = read(CONFIG_MD);

// ---- Markdown tables ----------------------------------------------------------------------------------------------

interface Row {
  line: number;
  cells: ReadonlyMap<string, string>;
}

/** The pipe tables of a Markdown text (outside code fences), each row's cells keyed by the lower-cased header. */
function tables(md: string): { header: string[]; rows: Row[] }[] {
  const lines = md.split('\n');
  const isRow = (l: string | undefined): l is string => l !== undefined && /^\s*\|.*\|\s*$/.test(l);
  const isRule = (l: string | undefined): boolean => l !== undefined && /^\s*\|(\s*:?-+:?\s*\|)+\s*$/.test(l);
  const cells = (l: string): string[] => l.trim().slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim().replaceAll('\\|', '|'));
  const out: { header: string[]; rows: Row[] }[] = [];
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trimStart().startsWith('```')) fenced = !fenced;
    if (fenced || !isRow(line) || !isRule(lines[i + 1])) continue;
    const header = cells(line).map((h) => h.toLowerCase());
    const rows: Row[] = [];
    for (i += 2; isRow(lines[i]); i++) {
      const c = cells(lines[i] as string);
      rows.push({ line: i + 1, cells: new Map(header.map((h, j) => [h, c[j] ?? ''])) });
    }
    out.push({ header, rows });
  }
  return out;
}

function rowsOf(md: string, file: string, firstColumn: string): Row[] {
  const found = tables(md).filter((t) => t.header[0] === firstColumn);
  assert.ok(found.length > 0, `${file}: no table whose first column is '${firstColumn}'`);
  return found.flatMap((t) => t.rows);
}

/** The text outside code fences. */
const prose = (md: string): string => md.replace(/^```[\s\S]*?^```/gm, '');
const backticked = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
const mentionedSluiceNames = (text: string): Set<string> => new Set(text.match(/\bSLUICE_[A-Z0-9_]*[A-Z0-9]\b/g) ?? []);

// ---- docs/errors.md -----------------------------------------------------------------------------------------------

/**
 * Codes that never reach a client, documented with status `— (log only)` and type `—`, each with the reason. Their
 * status and type in ERROR_CODES (499, 408) are not compared with the doc: no client sees them. That a code belongs
 * here is this list's claim, not something this test can observe; a code added to it must say why.
 */
const LOG_ONLY: ReadonlyMap<SluiceErrorCode, string> = new Map<SluiceErrorCode, string>([
  ['SLUICE_CLIENT_ABORTED', 'raised only once the client has gone (closed mid-stream or mid-body); only the request log line sees it'],
  ['SLUICE_CLIENT_STALLED', 'the relay destroys the connection of a client that stopped reading instead of writing it an error'],
]);

/** Codes that carry the upstream's own status and type when it gave them; ERROR_CODES holds the fallback. */
const UPSTREAM_STATUS: ReadonlySet<SluiceErrorCode> = new Set<SluiceErrorCode>(['SLUICE_UPSTREAM_ERROR']);

const isCode = (s: string): s is SluiceErrorCode => Object.hasOwn(ERROR_CODES, s);

/** The status and type cells docs/errors.md must show for a code. */
function expectedErrorCells(code: SluiceErrorCode): { status: string; type: string } {
  const { status, type } = ERROR_CODES[code];
  if (LOG_ONLY.has(code)) return { status: '— (log only)', type: '—' };
  if (UPSTREAM_STATUS.has(code)) return { status: `upstream's, else ${status}`, type: `upstream's, else ${type}` };
  return { status: String(status), type };
}

test('every error code in src/errors.ts has one row in docs/errors.md with its status and type', () => {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  for (const row of rowsOf(errorsMd, ERRORS_MD, 'code')) {
    const at = `${ERRORS_MD}:${row.line}`;
    const m = /^`(SLUICE_[A-Z0-9_]+)`$/.exec(row.cells.get('code') ?? '');
    if (!m) {
      problems.push(`${at}: the code cell must name exactly one code in backticks, not '${row.cells.get('code')}'`);
      continue;
    }
    const code = m[1] as string;
    if (seen.has(code)) problems.push(`${at}: ${code} has a second row (first on line ${seen.get(code)})`);
    seen.set(code, row.line);
    if (!isCode(code)) {
      problems.push(`${at}: ${code} is documented but is not a key of ERROR_CODES in src/errors.ts`);
      continue;
    }
    const want = expectedErrorCells(code);
    for (const column of ['status', 'type'] as const) {
      const got = row.cells.get(column);
      const why = LOG_ONLY.has(code) ? ` (log only: ${LOG_ONLY.get(code)})` : '';
      if (got !== want[column]) problems.push(`${at}: ${code} ${column} is '${got}', src/errors.ts says '${want[column]}'${why}`);
    }
  }
  for (const code of Object.keys(ERROR_CODES)) {
    if (!seen.has(code)) problems.push(`${code} (src/errors.ts) has no row in ${ERRORS_MD}`);
  }
  assert.deepEqual(problems, []);
});

test('docs/errors.md names no code that src/errors.ts lacks, and the log-only list names real codes', () => {
  const problems: string[] = [];
  for (const name of mentionedSluiceNames(errorsMd)) {
    if (!isCode(name)) problems.push(`${ERRORS_MD} mentions ${name}, which is not a key of ERROR_CODES in src/errors.ts`);
  }
  for (const code of [...LOG_ONLY.keys(), ...UPSTREAM_STATUS]) {
    if (!isCode(code)) problems.push(`test/docs-sync.test.ts lists ${code}, which is not a key of ERROR_CODES`);
  }
  assert.deepEqual(problems, []);
});

// ---- The configuration schema -------------------------------------------------------------------------------------

type Schema = z.core.$ZodType;
interface Leaf {
  /** Neither optional nor defaulted inside its object. */
  required: boolean;
  /** The leaf's own `.default()`, if any. */
  ownDefault: { value: unknown } | undefined;
}

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'nonoptional']);

/** Strips zod 4's wrappers (each keeps the wrapped schema in `def.innerType`; a pipe's input side is `def.in`). */
function unwrap(schema: Schema): { inner: Schema; leaf: Leaf } {
  let s = schema;
  const leaf: Leaf = { required: true, ownDefault: undefined };
  for (;;) {
    const def = s._zod.def;
    if (def.type === 'pipe') {
      s = (def as z.core.$ZodPipeDef).in;
      continue;
    }
    if (!WRAPPERS.has(def.type)) return { inner: s, leaf };
    if (def.type === 'optional' || def.type === 'default' || def.type === 'prefault') leaf.required = false;
    if (def.type === 'default' && leaf.ownDefault === undefined) leaf.ownDefault = { value: (def as z.core.$ZodDefaultDef).defaultValue };
    s = (def as z.core.$ZodOptionalDef).innerType;
  }
}

/** Every key of the schema as docs/config.md spells it: `timeouts.idle_ms`, `upstreams[].url`. */
function schemaKeys(schema: Schema): { leaves: Map<string, Leaf>; containers: Set<string> } {
  const leaves = new Map<string, Leaf>();
  const containers = new Set<string>();
  const visit = (s: Schema, path: string): void => {
    const { inner, leaf } = unwrap(s);
    const def = inner._zod.def;
    if (def.type === 'object') {
      if (path) containers.add(path);
      for (const [key, child] of Object.entries((def as z.core.$ZodObjectDef).shape)) visit(child, path ? `${path}.${key}` : key);
    } else if (def.type === 'array' && unwrap((def as z.core.$ZodArrayDef).element).inner._zod.def.type === 'object') {
      containers.add(`${path}[]`);
      visit((def as z.core.$ZodArrayDef).element, `${path}[]`);
    } else if (def.type === 'union' && (def as z.core.$ZodUnionDef).options.every((o) => ['number', 'string', 'literal', 'boolean', 'enum'].includes(unwrap(o as Schema).inner._zod.def.type))) {
      // A union of scalars (`workers: N | 'auto'`) is one key.
      leaves.set(path, leaf);
    } else if (def.type === 'union' || def.type === 'intersection' || def.type === 'lazy') {
      // Keys could hide inside: teach this walker the new shape rather than let them go unchecked.
      assert.fail(`test/docs-sync.test.ts cannot walk the ${def.type} at '${path}' in src/config/schema.ts`);
    } else {
      leaves.set(path, leaf);
    }
  };
  visit(schema, '');
  return { leaves, containers };
}

const { leaves, containers } = schemaKeys(configSchema);
const isConfigKey = (k: string): boolean => leaves.has(k) || containers.has(k);
const configRows = rowsOf(configMd, CONFIG_MD, 'key');

/** The keys a row documents: a comma-separated list of full paths in backticks, e.g. `tls.cert_file`, `tls.key_file`. */
function rowKeys(row: Row, problems: string[]): string[] {
  const cell = row.cells.get('key') ?? '';
  const keys = backticked(cell);
  if (keys.length === 0 || cell.replace(/`[^`]+`/g, '').replace(/[\s,]/g, '') !== '') {
    problems.push(`${CONFIG_MD}:${row.line}: the key cell must list full keys in backticks separated by commas, not '${cell}'`);
  }
  return keys;
}

test('every key of the config schema is documented in docs/config.md, and every documented key exists', () => {
  const problems: string[] = [];
  const documented = new Map<string, number>();
  for (const row of configRows) {
    for (const key of rowKeys(row, problems)) {
      if (documented.has(key)) problems.push(`${CONFIG_MD}:${row.line}: \`${key}\` is documented twice (also line ${documented.get(key)})`);
      documented.set(key, row.line);
      if (!isConfigKey(key)) problems.push(`${CONFIG_MD}:${row.line}: \`${key}\` is documented but is not a key of configSchema in src/config/schema.ts`);
    }
  }
  for (const key of leaves.keys()) {
    if (!documented.has(key)) problems.push(`\`${key}\` (src/config/schema.ts) is missing from the key tables of ${CONFIG_MD}`);
  }
  assert.deepEqual(problems, []);
});

/** What a default cell says: a value (`8080`, `[]`, 16 MiB, 0 (no limit)), another key's name, or words ("none"). */
function documentedDefault(text: string): { value: unknown } | { words: string } {
  const size = /^(\d+) (KiB|MiB|GiB)\b/.exec(text);
  if (size) return { value: Number(size[1]) * 1024 ** (['KiB', 'MiB', 'GiB'].indexOf(size[2] as string) + 1) };
  const literal = /^`([^`]+)`/.exec(text)?.[1];
  if (literal !== undefined) {
    if (isConfigKey(literal)) return { words: text }; // falls back to another key's value
    try {
      return { value: JSON.parse(literal) as unknown };
    } catch {
      return { value: literal };
    }
  }
  const number = /^(\d+)\b/.exec(text);
  if (number) return { value: Number(number[1]) };
  return { words: text };
}

test('the defaults in docs/config.md are the schema\'s', () => {
  const problems: string[] = [];
  const parsedDefaults: unknown = configSchema.parse({});
  const lookup = (path: string): unknown =>
    path.replace(/\[\]$/, '').split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), parsedDefaults);
  for (const row of configRows) {
    const keys = rowKeys(row, []).filter(isConfigKey);
    const cell = row.cells.get('default') ?? '';
    const parts = cell.split(/,\s+/);
    const texts = keys.length > 1 && parts.length === keys.length ? parts : keys.map(() => cell);
    keys.forEach((key, i) => {
      const text = texts[i] as string;
      // What a user gets: the parsed empty config, or (inside an array's elements) the element key's own default.
      const actual = key.includes('[].') ? leaves.get(key)?.ownDefault?.value : lookup(key);
      const doc = documentedDefault(text);
      if ('value' in doc) {
        if (!isDeepStrictEqual(doc.value, actual)) problems.push(`${CONFIG_MD}:${row.line}: \`${key}\` default is documented as '${text}', the schema's is ${JSON.stringify(actual)}`);
      } else if (actual !== undefined) {
        problems.push(`${CONFIG_MD}:${row.line}: \`${key}\` default is documented as '${text}' (no value), the schema's is ${JSON.stringify(actual)}`);
      } else if (text === 'required' && leaves.get(key)?.required !== true) {
        problems.push(`${CONFIG_MD}:${row.line}: \`${key}\` is documented as required, the schema has it optional`);
      }
    });
  }
  assert.deepEqual(problems, []);
});

// ---- Flags and environment twins -----------------------------------------------------------------------------------

/** Whether `sluice serve` accepts a flag: parseArgs (strict) rejects unknown ones before `--help` is acted on. */
async function serveAccepts(flag: string): Promise<boolean> {
  try {
    await serveCommand([`${flag}=x`, '--help']);
    return true;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return false;
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return true; // a known boolean flag given a value
    throw err;
  }
}

test('each flag documented in docs/config.md is accepted by sluice serve', async (t) => {
  t.mock.method(console, 'log', () => {}); // the help text
  const problems: string[] = [];
  for (const row of configRows) {
    for (const flag of backticked(row.cells.get('flag') ?? '').map((f) => /^--[a-z0-9-]+/.exec(f)?.[0] ?? f)) {
      if (!(await serveAccepts(flag))) problems.push(`${CONFIG_MD}:${row.line}: ${flag} is documented but sluice serve does not accept it (src/cli/serve-command.ts)`);
    }
  }
  assert.deepEqual(problems, []);
});

/** The leaf paths where two configurations differ, spelled as docs/config.md does (`upstreams[]`, `log.requests`). */
function changedKeys(a: unknown, b: unknown, path = ''): string[] {
  if (isDeepStrictEqual(a, b)) return [];
  const isPlain = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isPlain(a) && isPlain(b) && !(path && leaves.has(path))) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((k) => changedKeys(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return [containers.has(`${path}[]`) ? `${path}[]` : path];
}

test('each environment variable documented in docs/config.md sets the key of its row', () => {
  const problems: string[] = [];
  const base = loadConfig(undefined, {}, {});
  for (const row of configRows) {
    const keys = rowKeys(row, []);
    for (const m of (row.cells.get('env') ?? '').matchAll(/`(SLUICE_[A-Z0-9_]+)(?:=([^`]*))?`/g)) {
      const name = m[1] as string;
      // The documented value (SLUICE_H2C=1), else one that differs from every default and that each key either
      // takes (a host, a key, a URL, an origin) or rejects with its name (a number, a file pair).
      const value = m[2] ?? 'http://127.0.0.1:1/v1';
      let touched: string[];
      try {
        touched = changedKeys(base, loadConfig(undefined, { [name]: value }, {}));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        // A value the key rejects proves the variable reaches it: the one-line error names the key.
        const key = /^config: (\S+) = /.exec(err.message)?.[1];
        touched = key === undefined ? [] : [key.replace(/\[\d+\]/g, '[]')];
        if (key === undefined) problems.push(`${CONFIG_MD}:${row.line}: ${name}=${value} gave an error that names no key: ${err.message}`);
      }
      const covers = (k: string, t: string): boolean => t === k || t.startsWith(`${k}.`) || t.startsWith(`${k}[]`);
      if (!touched.some((t) => keys.some((k) => covers(k, t)))) {
        problems.push(`${CONFIG_MD}:${row.line}: ${name} is documented for ${keys.join(', ')}, but ${name}=${value} changes ${touched.join(', ') || 'nothing'} (src/config/load.ts)`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('docs/config.md names every flag and variable sluice serve reads, and no SLUICE_ name that does not exist', () => {
  const problems: string[] = [];
  const sources = ['src/config/load.ts', 'src/cli/serve-command.ts'];
  const envNames = new Set(sources.flatMap((f) => [...read(f).matchAll(/'(SLUICE_[A-Z0-9_]+)'/g)].map((m) => m[1] as string)));
  assert.ok(envNames.has('SLUICE_PORT'), `no SLUICE_ variable found in ${sources.join(', ')}: the pattern is stale`);
  for (const name of envNames) {
    if (!configMd.includes(name)) problems.push(`${name} is read in ${sources.join(' or ')} but ${CONFIG_MD} does not mention it`);
  }
  for (const [, flag] of SERVE_HELP.matchAll(/^ {2}(--[a-z0-9-]+)/gm)) {
    if (!configMd.includes(`\`${flag}`)) problems.push(`${flag} is in sluice serve --help but ${CONFIG_MD} does not mention it`);
  }
  for (const name of mentionedSluiceNames(configMd)) {
    if (!envNames.has(name) && !isCode(name)) problems.push(`${CONFIG_MD} mentions ${name}, which is neither an error code nor a variable src/ reads`);
  }
  assert.deepEqual(problems, []);
});

// ---- Keys mentioned elsewhere -------------------------------------------------------------------------------------

test('config keys named in the prose of docs/errors.md and docs/config.md exist, and the YAML example validates', () => {
  const problems: string[] = [];
  const topLevel = new Set([...leaves.keys(), ...containers].map((k) => k.split(/[.[]/)[0]));
  for (const [file, md] of [[ERRORS_MD, errorsMd], [CONFIG_MD, configMd]] as const) {
    for (const token of new Set(backticked(prose(md)))) {
      const key = token.replace(/\[\d+\]/g, '[]');
      if (/^[a-z_]+(\[\])?(\.[a-z_]+(\[\])?)+$/.test(key) && topLevel.has(key.split(/[.[]/)[0] as string) && !isConfigKey(key)) {
        problems.push(`${file} mentions \`${token}\`, which is not a key of configSchema`);
      }
    }
  }
  const examples = [...configMd.matchAll(/^```yaml\n([\s\S]*?)^```/gm)].map((m) => m[1] as string);
  assert.ok(examples.length > 0, `${CONFIG_MD} has no yaml example`);
  for (const yaml of examples) {
    try {
      validateConfig(parseYaml(yaml), `${CONFIG_MD} example`);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  assert.deepEqual(problems, []);
});
