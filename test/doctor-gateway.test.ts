import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DoctorError } from '../src/doctor/doctor-error.ts';
import { runDoctor, type DoctorReport } from '../src/doctor/run-doctor.ts';
import { gateway, sim } from './helpers/gateway.ts';
import { pointAt, recipe, startCaddy, startHaproxy, startNginx } from './helpers/proxies.ts';
import { findCheck, probeInfo } from './helpers/doctor.ts';

/**
 * The doctor against Sluice: probe mode through the gateway (the simulator's stamps cross the gateway), and the
 * proxy recipes and known-bad set-ups of docs/proxies in front of Sluice instead of a bare engine.
 */

/** Failures and warnings, except the buffering check's warning, which a busy machine alone can cause. */
function notPassing(report: DoctorReport): string[] {
  return report.checks
    .filter((c) => c.status === 'fail' || (c.status === 'warn' && c.id !== 'buffering'))
    .map((c) => `${c.status} ${c.probe}/${c.id}: ${c.summary}`);
}

test('Sluice itself: every check passes in probe mode, chat, completions and responses', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const report = await runDoctor({ url: g.url, endpoints: ['chat', 'completions', 'responses'] });
  assert.equal(report.target, 'sluice');
  assert.deepEqual(notPassing(report), []);
  assert.notEqual(report.exitCode, 2);
  for (const p of report.probes) {
    assert.ok(p.probeMode && p.metrics.probe !== null, `${p.name} measured with probe stamps: ${probeInfo(p)}`);
    assert.ok((p.metrics.probe?.delay.p50 ?? Infinity) < 50 + p.recording.loopLag.p99, `${p.name}: the gateway adds under 50 ms at p50: ${probeInfo(p)}`);
  }
});

test('nginx with its default buffering in front of Sluice still streams (X-Accel-Buffering: no): all pass', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-default'), g.url));
  const report = await runDoctor({ url: nginx.url });
  assert.deepEqual(notPassing(report), []);
  assert.equal(findCheck(report, 'buffering').hop, null, 'no hop is blamed');
  assert.ok(report.probes[0]?.hops.some((h) => h.kind === 'nginx'), 'nginx is seen in the chain');
});

test('nginx recipe in front of Sluice: all pass, and a 3 s silence survives with heartbeats', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], heartbeatMs: 1000 });
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx'), g.url));
  const report = await runDoctor({ url: nginx.url, idleSeconds: 3 });
  assert.deepEqual(notPassing(report), []);
  assert.ok((report.idle?.metrics.heartbeats ?? 0) >= 2, 'heartbeats crossed nginx');
});

test('a proxy read timeout shorter than the silence is harmless in front of Sluice: heartbeats keep the stream alive', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], heartbeatMs: 500 });
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-short-timeout'), g.url));
  const report = await runDoctor({ url: nginx.url, idleSeconds: 4 });
  assert.equal(findCheck(report, 'idle', 'idle').status, 'pass');
  assert.deepEqual(notPassing(report), []);
});

test('HAProxy recipe in front of Sluice: all pass, heartbeats cross it during a 3 s silence', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], heartbeatMs: 1000 });
  const haproxy = await startHaproxy(t, pointAt(await recipe('haproxy.md', 'haproxy'), g.url));
  const report = await runDoctor({ url: haproxy.url, idleSeconds: 3 });
  assert.deepEqual(notPassing(report), []);
  assert.ok((report.idle?.metrics.heartbeats ?? 0) >= 2, 'heartbeats crossed HAProxy');
});

test('Caddy recipe in front of Sluice: all pass, heartbeats cross it during a 3 s silence', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], heartbeatMs: 1000 });
  const caddy = await startCaddy(t, pointAt(await recipe('caddy.md', 'caddy'), g.url));
  const report = await runDoctor({ url: caddy.url, idleSeconds: 3 });
  assert.deepEqual(notPassing(report), []);
  assert.ok((report.idle?.metrics.heartbeats ?? 0) >= 2, 'heartbeats crossed Caddy');
});

test('--compare Sluice behind nginx with Sluice directly: the hop adds little, measured with stamps', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx'), g.url));
  const report = await runDoctor({ url: nginx.url, compare: g.url });
  const c = findCheck(report, 'compare', 'compare');
  assert.notEqual(c.status, 'fail', c.summary);
  assert.match(c.summary, /measured with probe stamps/, `${probeInfo(report.probes[0])} vs ${probeInfo(report.compare?.probe)}`);
  const lag = Math.max(report.probes[0]?.recording.loopLag.p99 ?? 0, report.compare?.probe.recording.loopLag.p99 ?? 0);
  assert.ok(Math.abs(report.compare?.comparison.deltas.probeDelayP50Ms ?? Infinity) < 20 + lag, c.summary);
});

test('CORS: the gateway allows the configured origin and the doctor sees it; another origin is blocked', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], cors: { origins: ['https://app.example'] }, api_keys: ['sk-doctor-test-key'] });
  const ok = await runDoctor({ url: g.url, key: 'sk-doctor-test-key', origin: 'https://app.example' });
  assert.equal(findCheck(ok, 'cors.preflight', 'cors').status, 'pass');
  assert.equal(findCheck(ok, 'cors.response', 'cors').status, 'pass');
  const blocked = await runDoctor({ url: g.url, key: 'sk-doctor-test-key', origin: 'https://evil.example' });
  assert.equal(blocked.exitCode, 2);
  assert.equal(findCheck(blocked, 'cors.response', 'cors').status, 'fail');
});

test('a gateway that wants a key: a clear 401 error naming --key', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], api_keys: ['sk-doctor-test-key'] });
  await assert.rejects(runDoctor({ url: g.url }), (err: unknown) => {
    assert.ok(err instanceof DoctorError);
    assert.equal(err.code, 'SLUICE_DOCTOR_UNAUTHORIZED');
    assert.match(err.message, /401.*--key/);
    return true;
  });
});
