import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { runDoctor } from '../src/doctor/run-doctor.ts';
import { renderText } from '../src/doctor/render-text.ts';
import { gateway, sim } from './helpers/gateway.ts';
import { findCheck } from './helpers/doctor.ts';
import { loadFixture, loadResponsesFixture, replayUpstream } from './helpers/replay.ts';

/**
 * The doctor says only what is true (issue 18): a check that could not set up its condition says it was skipped and
 * why, probe mode is claimed only when the tokens carried the simulator's stamps, and every fix text that says what
 * Sluice does is true of Sluice.
 */

test('--idle against Sluice in front of a fast real engine: skipped, could not create silence, never "survived"; no probe mode claimed', async (t) => {
  const up = await replayUpstream(t, loadFixture('llamacpp', 'chat-text'));
  const g = await gateway(t, { upstreams: [{ url: up.url }] });
  const report = await runDoctor({ url: g.url, idleSeconds: 3 });
  assert.equal(report.target, 'sluice');
  const idle = findCheck(report, 'idle', 'idle');
  assert.equal(idle.status, 'skip', idle.summary);
  assert.match(idle.summary, /^skipped: could not create silence: the first token came at \d+ ms, not after 3 s \(no simulator stamps/);
  assert.doesNotMatch(idle.summary, /survived/);
  assert.ok(report.probes.every((p) => !p.probeMode), 'the engine sent no stamps: not probe mode');
  assert.equal(report.idle?.probeMode, false);
  const text = renderText(report, { color: false });
  assert.doesNotMatch(text, /probe mode/);
  assert.match(text.split('\n')[0] ?? '', /Sluice: no probe stamps arrived/);
  assert.notEqual(report.exitCode, 2, 'a skipped check is not a failure');
});

test('--idle against Sluice on its simulator: the silence is created and survives with heartbeats; probe mode', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], heartbeat_ms: 500 });
  const report = await runDoctor({ url: g.url, idleSeconds: 2 });
  const idle = findCheck(report, 'idle', 'idle');
  assert.equal(idle.status, 'pass', idle.summary);
  assert.match(idle.summary, /survived 2 s of silence with heartbeats flowing/);
  assert.ok(report.probes.every((p) => p.probeMode));
  assert.match(renderText(report, { color: false }).split('\n')[0] ?? '', /Sluice: probe mode/);
});

test("the Responses schema check fails llama.cpp's own stream on what breaks the SDKs, and passes it through Sluice", async (t) => {
  const up = await replayUpstream(t, loadResponsesFixture('llamacpp-80fb11a'));
  const direct = await runDoctor({ url: up.url, endpoints: ['responses'] });
  const schema = findCheck(direct, 'sdk.schema', 'responses');
  assert.equal(schema.status, 'fail');
  assert.match(schema.summary, /response\.created has no `response\.output` array/);
  assert.match(schema.fix ?? '', /Sluice fills these in for llama\.cpp/);
  assert.ok(schema.evidence.some((e) => /output_text\.delta has no `output_index`/.test(e)));

  const g = await gateway(t, { upstreams: [{ url: up.url }] });
  const through = await runDoctor({ url: g.url, endpoints: ['responses'] });
  const fixed = findCheck(through, 'sdk.schema', 'responses');
  assert.equal(fixed.status, 'pass', `${fixed.summary} ${fixed.evidence.join('; ')}`);
});

test('every "Sluice does/sends/normalizes/synthesizes" in a fix text names something Sluice does', () => {
  // Each claim, with the source that makes it true. A new claim fails this test until it is added here.
  const claims: Array<[RegExp, string, RegExp]> = [
    [/X-Accel-Buffering: no`, as Sluice does/, 'src/http/sse-writer.ts', /'x-accel-buffering': 'no'/],
    [/X-Accel-Buffering: no` on streams \(Sluice does\)/, 'src/http/sse-writer.ts', /'x-accel-buffering': 'no'/],
    [/no-cache, no-transform` \(Sluice does\)/, 'src/http/sse-writer.ts', /'cache-control': 'no-cache, no-transform'/],
    [/keep-alive\\\\n\\\\n` comments every 15 s .*\(Sluice does, every `heartbeat_ms`, 15 s by default\)/, 'src/config/schema.ts', /heartbeat_ms: .*15[_]?000/],
    [/Sluice sends one every 15 s by default/, 'src/config/schema.ts', /heartbeat_ms: .*15[_]?000/],
    [/\(Sluice synthesizes it\)/, 'src/openai/chat-stream.ts', /synthesize it/],
    [/\(Sluice normalizes this\)/, 'src/sse/encode.ts', /`data: \$\{payload\}\\n\\n`/],
    [/Sluice does this for SGLang, llama\.cpp, Ollama and TGI/, 'src/openai/dialects/create-normalizer.ts', /case 'sglang':[\s\S]*case 'llamacpp':[\s\S]*case 'ollama':[\s\S]*case 'tgi':/],
    [/Sluice fills these in for llama\.cpp, SGLang and Ollama/, 'src/openai/dialects/responses-events.ts', /case 'llamacpp':\s*case 'sglang':\s*case 'ollama':\s*return new ResponsesEventFiller/],
  ];
  const dir = new URL('../src/doctor/checks/', import.meta.url);
  const texts = readdirSync(dir).map((f) => readFileSync(new URL(f, dir), 'utf8'));
  const said = texts.flatMap((src) => src.split('\n').filter((l) => !/^\s*(\/|\*)/.test(l) && /Sluice (does|sends|normalizes|synthesizes|fills)|as Sluice does/.test(l)));
  assert.ok(said.length >= claims.length);
  for (const line of said) {
    const claim = claims.find(([re]) => re.test(line));
    assert.ok(claim, `a fix text claims something of Sluice that this test does not back: ${line.trim()}`);
  }
  for (const [re, file, proof] of claims) {
    assert.ok(texts.some((src) => re.test(src)), `the claim ${re} is still made`);
    assert.match(readFileSync(new URL(`../${file}`, import.meta.url), 'utf8'), proof, `${file} does what ${re} says`);
  }
});
