import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gateway, sim } from './helpers/gateway.ts';
import { head, RawClient } from './helpers/hostile.ts';

/**
 * DNS rebinding over WebSocket: a page on a rebound name opens a socket to the gateway as its own origin (so the
 * Origin check passes: the origin is the attacker's own name, same as the Host). The Host check refuses the upgrade.
 * Needs `hostRefusal` (src/http/host-check.ts) called from WebSocketHub.handleUpgrade (src/ws/hub.ts).
 */

const upgrade = (path: string, host: string): string =>
  head('GET', path, { host, upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-version': 13, 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', origin: `http://${host}` });

test('a WebSocket upgrade with a rebound Host gets 403 host_not_allowed on both endpoints; localhost upgrades', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], cors: { origins: ['*'] } });
  for (const path of ['/v1/ws', '/v1/responses']) {
    const c = new RawClient(g.port);
    t.after(() => c.socket.destroy());
    c.socket.write(upgrade(path, 'attacker.example:8080'));
    const text = await c.until((x) => x.includes('\r\n\r\n') && x.endsWith('}'));
    assert.match(text, /^HTTP\/1\.1 403 /, path);
    assert.match(text, /"code":"host_not_allowed"/);
  }
  const ok = new RawClient(g.port);
  t.after(() => ok.socket.destroy());
  ok.socket.write(upgrade('/v1/ws', `localhost:${g.port}`));
  assert.match(await ok.until((x) => x.includes('\r\n\r\n')), /^HTTP\/1\.1 101 /);
});
