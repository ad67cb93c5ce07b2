import { constants, type Http2Session, type ServerHttp2Stream } from 'node:http2';

/** Bounds on each HTTP/2 connection a client opens (src/http/listener.ts applies them). */
export interface Http2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open at once (RFC 9113 §6.5.2). */
  maxConcurrentStreams: number;
  /** A new connection must send its SETTINGS frame (the second half of its preface) within this time. */
  handshakeTimeoutMs: number;
  /** A connection with no stream open for this long is closed with GOAWAY, as HTTP/1.1's keep-alive timeout does. */
  idleTimeoutMs: number;
  /** Streams that may end unanswered (reset by the client, mostly) in one burst… */
  resetBurst: number;
  /** …and the sustained rate of them, per second, past which the connection is closed. */
  resetsPerSecond: number;
}

/**
 * The defaults. 128 concurrent streams is what nginx, Go and h2o allow by default (100–128). An honest client resets
 * at most the streams it has open, so the burst allows more than one full set at once; the "rapid reset" attack
 * (CVE-2023-44487: HEADERS then RST_STREAM, thousands per connection, each starting a generation) is cut off after
 * 200. Node 24 has a guard of its own (nghttp2's, 1,000 resets then 33 per second), but it only sends GOAWAY and keeps
 * the connection open: measured, 3,000 HEADERS+RST_STREAM in one write reached the request handler 1,202 times. The
 * handshake timeout is 10 s: a peer that sends the h2c preface and then nothing would otherwise hold its connection
 * forever (Node's HTTP/2 server has no timeout by default).
 */
export const HTTP2_LIMITS: Readonly<Http2Limits> = {
  maxConcurrentStreams: 128,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 65_000,
  resetBurst: 200,
  resetsPerSecond: 20,
};

/**
 * Watches one server-side HTTP/2 session: closes it if the client's SETTINGS do not arrive within the handshake
 * timeout, when it stays without streams past the idle timeout (GOAWAY, then close), and when its streams end
 * unanswered faster than the reset budget allows (GOAWAY ENHANCE_YOUR_CALM, then every stream of it is closed).
 */
export function guardSession(session: Http2Session, limits: Http2Limits): void {
  const handshake = setTimeout(() => session.destroy(), limits.handshakeTimeoutMs);
  handshake.unref();
  session.once('remoteSettings', () => clearTimeout(handshake));

  let open = 0;
  const idle = setTimeout(() => {
    if (open === 0 && !session.closed) session.close();
  }, limits.idleTimeoutMs);
  idle.unref();

  // A token bucket: `resetBurst` tokens, refilled at `resetsPerSecond`; each unanswered stream takes one.
  let tokens = limits.resetBurst;
  let cut = false;
  let refilledAt = performance.now();
  const onStreamClose = (stream: ServerHttp2Stream): void => {
    if (--open === 0) idle.refresh();
    // `aborted`: the stream closed while the gateway had not finished its response: the client's RST_STREAM, mostly
    // (also the gateway's own resets, which are rare: a request body past the time bound, a failure after headers).
    if (!stream.aborted || cut) return;
    const now = performance.now();
    tokens = Math.min(limits.resetBurst, tokens + ((now - refilledAt) / 1000) * limits.resetsPerSecond);
    refilledAt = now;
    if (--tokens < 0) {
      cut = true;
      cutOff(session);
    }
  };
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++;
    stream.once('close', () => onStreamClose(stream));
  });
  session.once('close', () => {
    clearTimeout(handshake);
    clearTimeout(idle);
  });
}

/**
 * Ends a session that abuses the gateway: GOAWAY ENHANCE_YOUR_CALM at once (nghttp2 then ignores any new stream the
 * client sends), and the session destroyed, with every stream still open on it, once that frame is written (Node
 * writes session frames from a native immediate, which runs before this one).
 */
function cutOff(session: Http2Session): void {
  if (session.destroyed) return;
  session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  setImmediate(() => session.destroy());
}
