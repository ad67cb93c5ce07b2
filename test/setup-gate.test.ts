import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { SetupGate } from '../src/generation/setup-gate.ts';
import { gateway, sim } from './helpers/gateway.ts';

test('the gate lets set-ups through at once within a slice, then one turn of the loop at a time, in arrival order', async () => {
  let now = 0;
  const gate = new SetupGate(4, () => now);
  // A quiet gateway: a set-up passes without a promise.
  assert.equal(gate.enter(), undefined);
  now = 3;
  assert.equal(gate.enter(), undefined, 'still inside the 4 ms slice');
  now = 5;
  const order: number[] = [];
  const waits = [1, 2, 3].map((n) => {
    const w = gate.enter();
    assert.ok(w instanceof Promise, `set-up ${n} past the slice waits`);
    return w.then(() => {
      order.push(n);
      now += 3; // each resumed set-up takes 3 ms
    });
  });
  assert.equal(gate.waiting, 3);
  // Once a set-up waits, later arrivals queue behind it even though their own slice check would pass.
  assert.ok(gate.enter() instanceof Promise);
  assert.equal(gate.waiting, 4);

  await nextTurn();
  // The next turn opened a slice at 5 ms: set-up 1 runs (5 → 8 ms), set-up 2 starts (3 ms < 4) and runs to 11 ms,
  // then the slice is spent.
  assert.deepEqual(order, [1, 2]);
  assert.equal(gate.waiting, 2);
  await nextTurn();
  assert.deepEqual(order, [1, 2, 3]);
  await Promise.all(waits);
  await nextTurn();
  assert.equal(gate.waiting, 0, 'the fourth one ran in the same slice or the next');
});

test('a slice always resumes at least one set-up, however long set-ups take', async () => {
  let now = 0;
  const gate = new SetupGate(1, () => now);
  assert.equal(gate.enter(), undefined);
  now = 10;
  const done: number[] = [];
  const waits = [1, 2, 3].map((n) =>
    (gate.enter() as Promise<void>).then(() => {
      done.push(n);
      now += 50;
    }),
  );
  for (let turn = 1; turn <= 3; turn++) {
    await nextTurn();
    assert.equal(done.length, turn, `turn ${turn} resumed exactly one`);
  }
  await Promise.all(waits);
});

test('with a tiny slice, a burst of 60 streams through the gateway all complete whole, and the gateway stays idle after', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 2, tokens: 4 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], setup_slice_ms: 0.01 });
  const one = async (): Promise<string> => {
    const r = await fetch(`${g.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sluice-sim', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200);
    return r.text();
  };
  const bodies = await Promise.all(Array.from({ length: 60 }, one));
  for (const b of bodies) {
    assert.ok(b.endsWith('data: [DONE]\n\n'));
    assert.match(b, /"finish_reason":"stop"/);
    assert.equal(b.match(/"content":"[^"]+"/g)?.length, 4, 'every token');
  }
  assert.equal(g.logs.filter((l) => l.outcome === 'completed').length, 60);
  assert.equal(s.stats.inFlight, 0);
});
