import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryLogStore } from '../src/resume/memory-log-store.ts';
import { isStreamId, newStreamId, ownerOf, sameOwner } from '../src/resume/stream-id.ts';
import { resumeMode } from '../src/resume/mode.ts';
import { logStoreContract } from './helpers/log-store-contract.ts';

// The in-memory log store keeps the store contract (test/helpers/log-store-contract.ts), which a Redis backend must
// keep too.
logStoreContract('memory', (limits) => new MemoryLogStore(limits));

test('the memory store counts its bytes within the total bound, and none once closed', async () => {
  const store = new MemoryLogStore({ maxStreamBytes: 100, maxTotalBytes: 250, maxReaders: 2, ttlMs: 60_000 });
  for (let i = 0; i < 5; i++) {
    const w = store.create({ id: newStreamId(), owner: '', kind: 'chat', ids: false, createdAt: Date.now(), model: 'm', background: false }, () => {});
    w.append(['x'.repeat(60)]);
    w.end(['y'.repeat(10)]);
    assert.ok(store.totalBytes <= 250 + 10);
  }
  await store.close();
  assert.equal(store.totalBytes, 0);
  assert.equal(store.size, 0);
});

test('ids are unguessable in form, owners are hashes, the header is strict', () => {
  const ids = new Set(Array.from({ length: 1000 }, () => newStreamId()));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.ok(isStreamId(id));
  assert.ok(isStreamId(newStreamId('resp')));
  for (const bad of ['strm_', 'strm_short', `strm_${'a'.repeat(25)}`, `strm_${'a'.repeat(23)}/`, `x_${'a'.repeat(24)}`]) assert.equal(isStreamId(bad), false, bad);
  const o = ownerOf('Bearer sk-abc12345');
  assert.match(o, /^[0-9a-f]{64}$/);
  assert.ok(!o.includes('sk-abc'));
  assert.ok(sameOwner(o, ownerOf('bearer  sk-abc12345')));
  assert.ok(!sameOwner(o, ownerOf('Bearer sk-abc12346')));
  assert.equal(ownerOf(undefined), '');
  assert.deepEqual(resumeMode('1', false), { ids: false });
  assert.deepEqual(resumeMode('IDS', false), { ids: true });
  assert.equal(resumeMode('0', true), undefined);
  assert.deepEqual(resumeMode(undefined, true), { ids: false });
  assert.equal(resumeMode(undefined, false), undefined);
  assert.throws(() => resumeMode('yes', false), /X-Sluice-Resume/);
});
