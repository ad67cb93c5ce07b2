import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runRoutingBench } from '../bench/routing.ts';

// The routing benchmark's harness at the smallest size: it starts the replicas and a `sluice serve` per strategy,
// drives conversations through it and reads the engines' cache counters. No figure is asserted but the cache's: the
// machine is not quiet, and the benchmark is where speed is measured.
test('npm run bench -- --profile routing runs end to end at a tiny size', async (t) => {
  const lines: string[] = [];
  t.mock.method(console, 'log', (line: unknown) => void lines.push(String(line)));
  t.mock.method(process.stderr, 'write', () => true);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-routing-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'out.json');
  const code = await runRoutingBench(['--profile', 'routing', '--concurrency', '2', '--conversations', '2', '--turns', '3', '--strategies', 'prefix-aware', '--workloads', 'multi-turn', '--json', json]);
  assert.equal(code, 0, lines.join('\n'));
  const table = lines.join('\n');
  assert.match(table, /\| prefix-aware \| 6 \| 0 \|/);
  const out = JSON.parse(readFileSync(json, 'utf8')) as { results: Array<{ strategy: string; cacheHitRate: number; perReplica: number[] }> };
  const prefix = out.results.find((r) => r.strategy === 'prefix-aware');
  assert.ok(prefix && prefix.cacheHitRate > 0.3, `prefix-aware found the conversations' history in the engines' caches (${prefix?.cacheHitRate})`);
  assert.equal(prefix.perReplica.reduce((a, b) => a + b, 0), 6);
});
