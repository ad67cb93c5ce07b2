import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startCli, stop, type CliRun } from './helpers/cli.ts';
import { gateway, post } from './helpers/gateway.ts';

// Chaos, bounded (issue 15): 200 concurrent streams over two simulator replica processes (`sluice sim`), one of which
// is killed (SIGKILL) mid-run. With mid-stream failover on, every stream ends with [DONE] and exactly the text it
// would have had uninterrupted; off, the streams the dead replica was serving end with an error frame and no [DONE].

const STREAMS = 200;
const TOKENS = 48;
const ITL_MS = 60;

/** A `sluice sim` process on a free loopback port, ready once it says it listens; stopped after the test. */
async function simProcess(t: TestContext): Promise<{ run: CliRun; url: string }> {
  const port = await freePort();
  const run = startCli(['sim', '--port', String(port), '--tokens', String(TOKENS), '--itl-ms', String(ITL_MS), '--ttft-ms', '50']);
  t.after(() => stop(run));
  for (let i = 0; i < 600 && !run.stdout.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(run.stdout, /listening on/, `sluice sim did not start: ${run.stderr}`);
  return { run, url: `http://127.0.0.1:${port}/v1` };
}

const bodyOf = (i: number): Record<string, unknown> => ({ model: 'sluice-sim', messages: [{ role: 'user', content: `Stream number ${i}` }], stream: true });

interface Ended {
  text: string;
  done: boolean;
  error: Record<string, unknown> | undefined;
  ids: Set<unknown>;
}

/** Reads a stream to its end: its text, whether it ended with [DONE], its error frame. */
function read(raw: string): Ended {
  let text = '';
  let error: Record<string, unknown> | undefined;
  const ids = new Set<unknown>();
  for (const f of raw.split('\n\n')) {
    if (!f.startsWith('data: {')) continue;
    const o = JSON.parse(f.slice(6)) as Record<string, unknown>;
    if ('error' in o) error = o['error'] as Record<string, unknown>;
    else ids.add(o['id']);
    for (const c of (o['choices'] as Array<{ delta?: { content?: string } }> | undefined) ?? []) text += c.delta?.content ?? '';
  }
  return { text, done: raw.endsWith('data: [DONE]\n\n'), error, ids };
}

/** Runs the 200 streams through a gateway over replicas A and B, killing A once every stream is under way. */
async function chaos(t: TestContext, midStream: boolean) {
  const [a, b] = await Promise.all([simProcess(t), simProcess(t)]);
  const g = await gateway(t, { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], failover: { mid_stream: midStream } });
  assert.deepEqual(g.models(), ['sluice-sim']);
  // Each stream is read as it comes; A is killed once every stream has received tokens, so that it dies mid-answer
  // for its streams however loaded the machine is (an answer takes TOKENS × ITL_MS ≈ 3 s).
  let started = 0;
  let killed = false;
  const bodies = Array.from({ length: STREAMS }, async (_, i) => {
    const res = await post(`${g.url}/chat/completions`, bodyOf(i));
    assert.equal(res.status, 200);
    let raw = '';
    let frames = 0;
    const decoder = new TextDecoder();
    for await (const part of res.body as AsyncIterable<Uint8Array>) {
      const s = decoder.decode(part, { stream: true });
      raw += s;
      if (frames < 3 && (frames += s.split('data: {').length - 1) >= 3 && ++started === STREAMS) {
        killed = true;
        a.run.child.kill('SIGKILL');
      }
    }
    return raw;
  });
  const ended = (await Promise.all(bodies)).map(read);
  assert.ok(killed, 'A was killed mid-run');
  // The uninterrupted answers, from the replica that lived, asked directly and without delays.
  const want = await Promise.all(
    Array.from({ length: STREAMS }, async (_, i) => {
      const res = await post(`${b.url}/chat/completions`, { ...bodyOf(i), stream: false, sim: { ttft_ms: 0, itl_ms: 0 } });
      return ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
    }),
  );
  for (let i = 0; i < 200 && g.logs.length < STREAMS; i++) await new Promise((r) => setTimeout(r, 10));
  return { g, ended, want };
}

test('failover on: a replica killed mid-run; all 200 streams end with [DONE] and exactly the uninterrupted text', async (t) => {
  const { g, ended, want } = await chaos(t, true);
  const problems: string[] = [];
  ended.forEach((e, i) => {
    if (!e.done || e.error !== undefined) problems.push(`stream ${i}: ${e.done ? '' : 'no [DONE]'} ${e.error ? JSON.stringify(e.error) : ''}`);
    else if (e.text !== want[i]) problems.push(`stream ${i}: text differs:\n  got  ${JSON.stringify(e.text)}\n  want ${JSON.stringify(want[i])}`);
    if (e.ids.size !== 1) problems.push(`stream ${i}: ${e.ids.size} ids`);
  });
  assert.deepEqual(problems, []);
  const failedOver = g.logs.filter((l) => l.failovers !== undefined);
  t.diagnostic(`${failedOver.length} of ${STREAMS} streams were on the killed replica mid-answer and failed over`);
  // How many depends on the machine's load (streams start over a spread); a few is enough to prove the kill hit them.
  assert.ok(failedOver.length >= 5, `the killed replica was serving streams: ${failedOver.length} failed over`);
  for (const l of failedOver) {
    assert.equal(l.outcome, 'completed');
    assert.equal(l.upstream, 'b');
    assert.deepEqual(l.failovers?.map((f) => `${f.from}>${f.to}:${f.reason}`), ['a>b:connection_lost']);
    assert.equal(l.tokens_out, TOKENS);
  }
  const metrics = await (await fetch(g.url.replace(/\/v1$/, '/metrics'))).text();
  assert.match(metrics, new RegExp(`sluice_mid_stream_failovers_total\\{reason="connection_lost",from="a",to="b"\\} ${failedOver.length}\\n`));
});

test('failover off: the streams of the killed replica end with an error frame, none with [DONE]', async (t) => {
  const { g, ended, want } = await chaos(t, false);
  let cut = 0;
  const problems: string[] = [];
  ended.forEach((e, i) => {
    if (e.error !== undefined) {
      cut++;
      if (e.done) problems.push(`stream ${i}: an error frame and [DONE]`);
      if (!(want[i] as string).startsWith(e.text) || e.text === want[i]) problems.push(`stream ${i}: a cut stream must hold a strict beginning of the answer`);
    } else if (!e.done || e.text !== want[i]) {
      problems.push(`stream ${i}: neither an error frame nor the whole answer with [DONE]`);
    }
  });
  assert.deepEqual(problems, []);
  t.diagnostic(`${cut} of ${STREAMS} streams were on the killed replica mid-answer and were cut`);
  assert.ok(cut >= 5, `the killed replica was serving streams: ${cut} cut`);
  // The cut ones are exactly A's streams that had not ended when it was killed.
  const cutOnA = g.logs.filter((l) => l.upstream === 'a' && l.outcome !== 'completed');
  assert.equal(cutOnA.length, cut);
  for (const l of cutOnA) assert.equal(l.outcome, 'truncated');
  assert.ok(g.logs.filter((l) => l.upstream === 'b').every((l) => l.outcome === 'completed'));
});
