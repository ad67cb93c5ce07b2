import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { configSchema } from '../src/config/schema.ts';
import { loadConfig, validateConfig } from '../src/config/load.ts';

// sluice.example.yaml is what a new operator copies: it must load as it is, its commented-out settings must be valid
// when uncommented, and it must show every top-level key the schema has (issue 13).

const FILE = 'sluice.example.yaml';
const path = new URL(`../${FILE}`, import.meta.url).pathname;
const text = readFileSync(path, 'utf8');

/** The file with every commented-out setting (`# key: value`, `#   - item`) turned on; prose comments stay. */
function uncommented(yaml: string): { yaml: string; count: number } {
  let count = 0;
  const out = yaml.replace(/^(\s*)# (\s*(?:- |[a-z_]+:))/gm, (_m, indent: string, rest: string) => {
    count++;
    return `${indent}${rest}`;
  });
  return { yaml: out, count };
}

test(`${FILE} loads as sluice serve --config loads it`, () => {
  const config = loadConfig(path, {}, {});
  assert.deepEqual(config.upstreams.map((u) => u.url), ['http://gpu1:8000/v1', 'http://gpu2:8000/v1']);
  assert.equal(config.log.format, 'json');
});

test(`${FILE}: its commented-out settings are valid too`, () => {
  const { yaml, count } = uncommented(text);
  assert.ok(count >= 10, `only ${count} commented-out settings found: is the '# key: value' convention still followed?`);
  const config = validateConfig(parseYaml(yaml), `${FILE} (uncommented)`);
  assert.ok(config.tls, 'the tls example is among them');
  assert.equal(config.upstreams.length, 3);
  assert.equal(config.api_keys.length, 2);
});

/** Keys kept only so that old files still load: the example shows their successors. */
const DEPRECATED = new Set(['drain_timeout_ms']);

test(`${FILE} shows every top-level key of the schema`, () => {
  const missing = Object.keys(configSchema.shape).filter((key) => !DEPRECATED.has(key) && !new RegExp(`^#? ?${key}:|\`${key}: `, 'm').test(text));
  assert.deepEqual(missing, [], `keys of src/config/schema.ts that ${FILE} does not show (set, or as '# key: value')`);
});

test(`README.md and docs/config.md link to ${FILE}`, () => {
  for (const doc of ['README.md', 'docs/config.md']) {
    const md = readFileSync(new URL(`../${doc}`, import.meta.url), 'utf8');
    assert.ok(/\]\((\.\.\/)?sluice\.example\.yaml\)/.test(md), `${doc} has no link to ${FILE}`);
  }
});
