import type { HttpRequest, HttpResponse } from './http-types.ts';

/**
 * `Expect: 100-continue`: the client waits for `100 Continue` before it sends its body. Node's servers send the 100 as
 * soon as the request arrives unless a 'checkContinue' listener takes over; src/http/listener.ts takes over and parks
 * the response here, and src/http/body.ts sends the 100 only when it is about to read the body. So a request refused
 * before that point (a declared length over the limit, a missing key, an unknown route, a wrong Content-Type) is
 * answered with its final status and the body is never sent (RFC 9110 §10.1.1).
 */
const waiting = new WeakMap<HttpRequest, HttpResponse>();

/** Parks a request whose client waits for `100 Continue` (called by the listener's 'checkContinue' handler). */
export function deferContinue(req: HttpRequest, res: HttpResponse): void {
  waiting.set(req, res);
}

/** Sends the `100 Continue` a parked request waits for, once; does nothing for any other request. */
export function sendContinue(req: HttpRequest): void {
  const res = waiting.get(req);
  if (res === undefined) return;
  waiting.delete(req);
  if (!res.headersSent) res.writeContinue();
}
