/**
 * An upstream request that failed because the engine broke HTTP/1.1 before its final answer, rather than because it
 * could not be reached. What undici 8.12 (lib/dispatcher/client-h1.js, `onHeadersComplete`/`onUpgrade`) does with
 * such answers on the dispatch API:
 * - `100 Continue` the request did not ask for: destroys the socket with `SocketError('bad response')`
 *   (UND_ERR_SOCKET), before any handler callback — although RFC 9110 §15.2 says a client must parse and may ignore
 *   it. Sluice cannot skip it, so it becomes this error;
 * - `101 Switching Protocols` with `Upgrade`: `SocketError('bad upgrade')`; without `Upgrade`: its parser fails an
 *   internal `assert(upgrade)` (an AssertionError, ERR_ASSERTION) and the request is failed with it;
 * - other 1xx (102, 103 Early Hints): passed to `onResponseStart`, then the final answer; skipped in
 *   src/upstream/upstream-body.ts;
 * - 3xx: a final answer like any other (undici follows redirects only with its redirect interceptor, which Sluice does
 *   not use); `upstreamFailure({ kind: 'answer' })` in src/openai/upstream-failure.ts makes it a 502.
 * True for those (the answer is `upstreamFailure({ kind: 'broken_http' })`, SLUICE_UPSTREAM_BAD_RESPONSE, 502; the
 * request may fail over like after a 5xx); false for any other failure (connect errors, resets: the caller's own
 * classification).
 */
export function isBrokenHttp(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  const badAnswer = code === 'UND_ERR_SOCKET' && (err.message === 'bad response' || err.message === 'bad upgrade');
  return badAnswer || code === 'ERR_ASSERTION';
}
