import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { metricsUrl, readTtftTotals } from '../src/doctor/engine-ttft.ts';
import { runDoctor } from '../src/doctor/run-doctor.ts';
import { gateway, httpServer, sim } from './helpers/gateway.ts';
import { findCheck } from './helpers/doctor.ts';

/**
 * The engine's share of time to first token (issue 18), from the delta of `vllm:time_to_first_token_seconds` (or
 * SGLang's) over the probe. Neither the simulator on this branch nor a real vLLM/SGLang is available here, so the
 * parser reads hand-written expositions in their layouts (test/fixtures/engine-metrics/, marked as such), and the
 * doctor is run against a scripted engine: a real HTTP server that waits 300 ms in its "HTTP layer", then spends a
 * deliberate 200 ms before its first token and records that in its own histogram, as vLLM does.
 */

const fixture = (name: string): string => readFileSync(new URL(`fixtures/engine-metrics/${name}`, import.meta.url), 'utf8');

test('readTtftTotals: the probed model summed over engines, other models and _created left out; SGLang too; none elsewhere', () => {
  assert.deepEqual(readTtftTotals(fixture('vllm-v1.txt'), 'Qwen/Qwen3-8B'), { family: 'vllm', sum: 2.5, count: 10 });
  assert.deepEqual(readTtftTotals(fixture('vllm-v1.txt'), 'not-served'), { family: 'vllm', sum: 52.5, count: 110 }, 'no series of that model: every series');
  assert.deepEqual(readTtftTotals(fixture('sglang.txt'), 'meta-llama/Llama-3.1-8B-Instruct'), { family: 'sglang', sum: 2.5, count: 5 });
  assert.equal(readTtftTotals('# HELP sluice_requests_total x\nsluice_requests_total 3\n', 'm'), null);
  assert.equal(metricsUrl(new URL('http://10.0.0.5:8000/v1')).href, 'http://10.0.0.5:8000/metrics');
  assert.equal(metricsUrl(new URL('https://h/custom/v1/')).href, 'https://h/custom/metrics');
});

/** A scripted vLLM-like engine: its own TTFT histogram, 300 ms before its engine clock starts, 200 ms of "prefill". */
async function scriptedEngine(t: import('node:test').TestContext) {
  const state = { sum: 0, count: 0 };
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model', owned_by: 'vllm' }] }));
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(
        `# TYPE vllm:time_to_first_token_seconds histogram\nvllm:time_to_first_token_seconds_count{engine="0",model_name="m"} ${state.count.toFixed(1)}\nvllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} ${state.sum}\n`,
      );
    }
    req.resume();
    setTimeout(() => {
      const started = performance.now();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      setTimeout(() => {
        state.sum += (performance.now() - started) / 1000;
        state.count++;
        const chunk = (content: string, finish: string | null): string =>
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
        let i = 0;
        const timer = setInterval(() => {
          i++;
          if (i < 8) return void res.write(chunk(` ${i}`, null));
          clearInterval(timer);
          res.end(`${chunk('', 'stop')}data: [DONE]\n\n`);
        }, 10);
      }, 200);
    }, 300);
  });
  return { up, state };
}

test('doctor against a vLLM-like engine with /metrics: TTFT split into the engine (its histogram delta) and everything in between', async (t) => {
  const { up, state } = await scriptedEngine(t);
  const report = await runDoctor({ url: up.url });
  const c = findCheck(report, 'engine.ttft');
  assert.equal(c.status, 'pass');
  assert.equal(state.count, 1);
  const m = /time to first token (\d+) ms: (\d+) ms in the engine \(queue and prefill\), (\d+) ms everything in between/.exec(c.summary);
  assert.ok(m, c.summary);
  const [client, engine, between] = [Number(m[1]), Number(m[2]), Number(m[3])];
  assert.equal(engine, Math.round(state.sum * 1000), 'the engine share is the histogram delta');
  assert.ok(engine >= 200, c.summary);
  assert.ok(between >= 280, `the 300 ms before the engine clock are "in between": ${c.summary}`);
  assert.ok(Math.abs(client - engine - between) <= 1, c.summary);
  assert.match(c.evidence.join('\n'), /exactly one request/);
});

test('no engine TTFT check where /metrics has no such histogram (Sluice, the simulator)', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const report = await runDoctor({ url: g.url });
  assert.ok(!report.checks.some((c) => c.id === 'engine.ttft'), report.checks.map((c) => c.id).join(', '));
});
