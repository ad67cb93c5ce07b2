import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

/** A request as the handlers see it: HTTP/1.1, or HTTP/2 through Node's compatibility API. */
export type HttpRequest = IncomingMessage | Http2ServerRequest;

/** A response as the handlers see it: HTTP/1.1, or HTTP/2 through Node's compatibility API. */
export type HttpResponse = ServerResponse | Http2ServerResponse;
