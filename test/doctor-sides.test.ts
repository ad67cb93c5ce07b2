import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runDoctor } from '../src/doctor/run-doctor.ts';
import { renderText } from '../src/doctor/render-text.ts';
import { gateway, sim } from './helpers/gateway.ts';
import { pointAt, recipe, startNginx } from './helpers/proxies.ts';
import { findCheck } from './helpers/doctor.ts';

/**
 * Issue 18: the doctor names hops on both sides of Sluice. Real nginx (Debian's) with its default proxy buffering,
 * once behind Sluice (Sluice → nginx → simulator) and once in front of it (nginx → Sluice → simulator, with
 * `proxy_ignore_headers X-Accel-Buffering` so that nginx buffers despite Sluice's header). The doctor reads Sluice's
 * hop report and blames the side the buffering is on; Sluice's own log and /ready report the buffered upstream.
 */

test('nginx buffering BEHIND Sluice: the doctor names the hop between Sluice and the engine, not Sluice; --compare too', async (t) => {
  const s = await sim(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-default'), s.url));
  const g = await gateway(t, { upstreams: [{ url: nginx.url, name: 'gpu-behind-nginx' }] });

  const report = await runDoctor({ url: g.url, compare: s.url });
  const p = report.probes[0];
  assert.ok(p?.sluiceHop, 'the doctor got Sluice\'s hop report');
  assert.equal(p.sluiceHop.buffered, true, JSON.stringify(p.sluiceHop));
  assert.match(p.sluiceHop.server ?? '', /^nginx/);

  const buffering = findCheck(report, 'buffering');
  assert.equal(buffering.status, 'fail');
  assert.match(buffering.hop ?? '', /^between Sluice and the engine \(upstream gpu-behind-nginx, Server: nginx/);
  assert.match(buffering.fix ?? '', /proxy_buffering off/);
  assert.match(buffering.fix ?? '', /between Sluice and its upstream/);

  const sides = findCheck(report, 'hops.sides');
  assert.equal(sides.status, 'fail');
  assert.match(sides.summary, /arrives at Sluice already buffered.*between Sluice and the engine, not Sluice/);

  // --compare with the engine itself: only the Sluice URL fails, and the blame goes behind Sluice.
  const cmp = findCheck(report, 'compare', 'compare');
  assert.equal(cmp.status, 'fail');
  assert.match(cmp.hop ?? '', /^between Sluice and the engine/);
  assert.match(cmp.summary, /Sluice is not the hop that buffers/);
  assert.match(renderText(report, { color: false }), /behind Sluice \(its hop report\): upstream gpu-behind-nginx \(Server: nginx.*buffered/);

  // Sluice's side: the log warning and /ready.
  assert.ok(g.notices.some((l) => /upstream gpu-behind-nginx streams in bursts/.test(l)), g.notices.join('\n'));
  const ready = (await (await fetch(`${g.url.replace(/\/v1$/, '')}/ready`)).json()) as { upstreams: Array<{ arrivals: { buffering: boolean } }> };
  assert.equal(ready.upstreams[0]?.arrivals.buffering, true);
});

test('nginx buffering IN FRONT of Sluice: named as before; Sluice received the stream event by event', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'engine' }] });
  // Default buffering, and Sluice's X-Accel-Buffering ignored: nginx buffers the stream Sluice sends it.
  const conf = `server {\n    listen 80;\n    location /v1/ {\n        proxy_pass http://127.0.0.1:8080;\n        proxy_ignore_headers X-Accel-Buffering;\n    }\n}\n`;
  const nginx = await startNginx(t, pointAt(conf, g.url));

  const report = await runDoctor({ url: nginx.url });
  const p = report.probes[0];
  assert.ok(p?.sluiceHop, 'the hop report passes nginx (a comment)');
  assert.equal(p.sluiceHop.buffered, false, JSON.stringify(p.sluiceHop));
  assert.ok((p.sluiceHop.eventsPerRead ?? 99) < 2, JSON.stringify(p.sluiceHop));

  const buffering = findCheck(report, 'buffering');
  assert.equal(buffering.status, 'fail');
  assert.match(buffering.hop ?? '', /nginx/);
  assert.doesNotMatch(buffering.hop ?? '', /between Sluice and the engine/);
  assert.match(buffering.evidence.join('\n'), /arrived event by event.*between the client and Sluice/);

  const sides = findCheck(report, 'hops.sides');
  assert.equal(sides.status, 'pass');
  assert.equal(sides.hop, 'between the client and Sluice');
  assert.match(sides.summary, /bursts come from between the client and Sluice/);
  assert.ok(!g.notices.some((l) => /streams in bursts/.test(l)), 'Sluice does not blame its upstream');
});
