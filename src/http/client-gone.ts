import type { Socket } from 'node:net';
import { Http2ServerRequest } from 'node:http2';
import type { HttpRequest, HttpResponse } from './http-types.ts';

/** Per HTTP/1.1 connection: what to call when its client leaves, one entry per request in flight on it. */
const watchers = new WeakMap<Socket, Set<() => void>>();

/**
 * Calls `gone` once the client of this request leaves, from the moment the request arrives (while its body is read,
 * admitted, routed, queued behind other pipelined requests or streamed); returns the function that stops watching.
 *
 * HTTP/1.1: the connection, not the response, is watched: a pipelined request's response has no socket until its
 * turn, so only the connection can say that its client left (issue 12: 200 pipelined generations ran on after their
 * client was gone). Its FIN counts: the FIN is seen in the read that brings it, while the 'close' waits for the end of
 * the event loop's poll phase, after every other ready read (a burst of hundreds of chunks under load), and Node's
 * server treats a FIN as the end of the request anyway (httpAllowHalfOpen is off). One pair of listeners per
 * connection, however many requests it carries.
 * HTTP/2: the stream is watched; a client leaves a stream by resetting it (RST_STREAM), which closes the response.
 */
export function watchClientGone(req: HttpRequest, res: HttpResponse, gone: () => void): () => void {
  if (req instanceof Http2ServerRequest) {
    if (res.destroyed) {
      gone();
      return () => {};
    }
    res.once('close', gone);
    return () => res.off('close', gone);
  }
  const socket = req.socket;
  if (socket.destroyed || socket.readableEnded) {
    gone();
    return () => {};
  }
  let set = watchers.get(socket);
  if (set === undefined) {
    const entries = new Set<() => void>();
    set = entries;
    watchers.set(socket, entries);
    const fire = (): void => {
      for (const cb of [...entries]) cb();
      entries.clear();
    };
    socket.once('end', fire);
    socket.once('close', fire);
  }
  const entries = set;
  entries.add(gone);
  return () => void entries.delete(gone);
}
