import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runDoctor, type DoctorReport } from '../src/doctor/run-doctor.ts';
import { DoctorError } from '../src/doctor/doctor-error.ts';
import { gateway, sim } from './helpers/gateway.ts';
import { testCert } from './helpers/tls.ts';
import { pointAt, recipe, startNginx } from './helpers/proxies.ts';
import { findCheck, probeInfo } from './helpers/doctor.ts';
import { runCli } from './helpers/cli.ts';

/**
 * The doctor over HTTP/2 (issue 18): `https://` with ALPN h2 against Sluice serving TLS (a self-signed certificate made
 * with openssl, trusted with `ca` / `--cacert`), and `--h2c` (prior knowledge) against Sluice with `h2c: true`. The
 * doctor's HTTP/2 client groups DATA frames by socket read, so token-by-token streaming and buffering bursts look the
 * same as over HTTP/1.1.
 */

const failures = (r: DoctorReport): string[] => r.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.summary}`);

test('https:// with ALPN h2 against Sluice over TLS: HTTP/2, probe mode, tokens one per read, the hop report', async (t) => {
  const cert = await testCert();
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], tls: { cert_file: cert.certFile, key_file: cert.keyFile } });
  assert.match(g.url, /^https:/);
  const report = await runDoctor({ url: g.url, ca: cert.cert });
  const p = report.probes[0];
  assert.equal(p?.recording.head.httpVersion, '2');
  assert.deepEqual(failures(report), []);
  assert.equal(p?.probeMode, true);
  assert.ok((p?.metrics.tokensPerDelivery ?? 99) < 1.5, `one token per read over HTTP/2: ${probeInfo(p)}`);
  assert.equal(findCheck(report, 'headers.http-version').status, 'pass');
  assert.match(findCheck(report, 'headers.http-version').summary, /^HTTP\/2/);
  assert.ok(p?.sluiceHop, 'the hop report arrives over HTTP/2');
  assert.equal(p.sluiceHop.buffered, false);
  assert.equal(findCheck(report, 'headers.hops').summary.includes('Sluice'), true);

  // Without trusting the certificate the doctor refuses to connect, and says so.
  await assert.rejects(runDoctor({ url: g.url }), (err: unknown) => err instanceof DoctorError && err.code === 'SLUICE_DOCTOR_UNREACHABLE' && /certificate/i.test(err.message));
});

test('--h2c against Sluice with h2c on: HTTP/2 with prior knowledge; without it, HTTP/1.1 on the same port', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], h2c: true });
  const h2 = await runDoctor({ url: g.url, h2c: true });
  assert.equal(h2.probes[0]?.recording.head.httpVersion, '2');
  assert.deepEqual(failures(h2), []);
  assert.ok((h2.probes[0]?.metrics.tokensPerDelivery ?? 99) < 1.5, probeInfo(h2.probes[0]));
  assert.equal(h2.probes[0]?.probeMode, true);
  const h1 = await runDoctor({ url: g.url });
  assert.equal(h1.probes[0]?.recording.head.httpVersion, '1.1');

  // The CLI flags: --h2c, and --cacert read from a file (here: a missing one is a usage error).
  const cli = await runCli(['doctor', g.url, '--h2c', '--json']);
  assert.equal(cli.code, 0, cli.stderr);
  const json = JSON.parse(cli.stdout) as { probes: Array<{ httpVersion: string; sluiceHop: { buffered: boolean } | null }> };
  assert.equal(json.probes[0]?.httpVersion, '2');
  assert.equal(json.probes[0]?.sluiceHop?.buffered, false);
  const bad = await runCli(['doctor', g.url, '--cacert', '/nonexistent/ca.pem']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--cacert: cannot read/);
});

test('HTTP/2 over TLS with nginx buffering behind Sluice: the bursts are seen over h2 and put between Sluice and the engine', async (t) => {
  const cert = await testCert();
  const s = await sim(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-default'), s.url));
  const g = await gateway(t, { upstreams: [{ url: nginx.url, name: 'behind' }], tls: { cert_file: cert.certFile, key_file: cert.keyFile } });
  const report = await runDoctor({ url: g.url, ca: cert.cert });
  assert.equal(report.probes[0]?.recording.head.httpVersion, '2');
  const b = findCheck(report, 'buffering');
  assert.equal(b.status, 'fail');
  assert.match(b.hop ?? '', /^between Sluice and the engine \(upstream behind, Server: nginx/);
});
