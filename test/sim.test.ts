import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sim, post, chatBody, frames } from './helpers/gateway.ts';

test('probe tokens carry the time they were written, after the first-token wait', async (t) => {
  const s = await sim(t);
  const sentAt = performance.timeOrigin + performance.now();
  const text = await (await post(`${s.url}/chat/completions`, chatBody({ sim: { probe: true, ttft_ms: 300, itl_ms: 50, tokens: 4 } }))).text();
  const stamps = frames(text)
    .map((f) => /"content":" @(\d+\.\d{3})"/.exec(f)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number);
  assert.equal(stamps.length, 4);
  assert.ok(stamps[0]! - sentAt >= 290, `first stamp ${stamps[0]! - sentAt} ms after the request, not before the 300 ms wait`);
  for (let i = 1; i < stamps.length; i++) assert.ok(stamps[i]! - stamps[i - 1]! >= 45, 'each stamp is taken when its token is written');
});
