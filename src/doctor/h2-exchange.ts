import { connect as h2Connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { DoctorError } from './doctor-error.ts';
import type { Exchange, ExchangeEnd, ExchangeHooks, ExchangeRequest } from './http-exchange.ts';
import type { ResponseHead } from './recording.ts';

/**
 * One HTTP/2 request on a connected socket: TLS that chose `h2` by ALPN, or cleartext with prior knowledge (`--h2c`).
 * Load balancers and CDNs speak HTTP/2 to clients, and a stream can be buffered there as on HTTP/1.1.
 *
 * What a "read" is here: node:http2 hands over one DATA frame at a time, and every frame nghttp2 took from one socket
 * read is handed over within the same turn of the event loop. So DATA frames that arrive before the next `setImmediate`
 * are one read, stamped with the arrival of the first: the same grouping the HTTP/1.1 client gets from socket reads.
 * `wireBytes` is the payload plus 9 bytes of frame header per DATA frame (HPACK and padding are not visible here).
 */

/** Request header fields HTTP/2 forbids (RFC 9113 §8.2.2) or carries as pseudo-headers. */
const DROPPED = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te']);

const FRAME_HEADER_BYTES = 9;

/** HTTP/2 on `socket`, connected already (TLS that chose `h2`) or connecting (h2c with prior knowledge). */
export function startH2Exchange(req: ExchangeRequest, hooks: ExchangeHooks, socket: Socket, connected: boolean): Exchange {
  const now = (): number => performance.now() - req.t0;
  const { url } = req;
  let settle: { resolve(end: ExchangeEnd): void; reject(err: DoctorError): void } | null = null;
  const done = new Promise<ExchangeEnd>((resolve, reject) => {
    settle = { resolve, reject };
  });
  let finished = false;
  let head: ResponseHead | null = null;
  let session: ClientHttp2Session | null = null;
  let stream: ClientHttp2Stream | null = null;
  /** DATA frames of the read being gathered, and its arrival. */
  let group: Buffer[] = [];
  let groupAt = 0;
  let groupWire = 0;
  let groupTimer: NodeJS.Immediate | undefined;
  const connectTimer = connected
    ? undefined
    : setTimeout(() => fail(new DoctorError('SLUICE_DOCTOR_UNREACHABLE', `${url.host}: no connection after ${req.connectTimeoutMs} ms`)), req.connectTimeoutMs);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (session !== null) return; // the session reports it
    const code = err.code ?? 'ERROR';
    fail(new DoctorError('SLUICE_DOCTOR_UNREACHABLE', `cannot reach ${url.host}: ${code === 'ECONNREFUSED' ? 'connection refused' : err.message} (${code})`, { cause: err }));
  });

  function cleanup(): void {
    clearTimeout(connectTimer);
    if (groupTimer !== undefined) clearImmediate(groupTimer);
    stream?.close(constants.NGHTTP2_CANCEL);
    session?.destroy();
    socket.destroy();
  }

  function finish(reason: ExchangeEnd['reason'], detail: string | null): void {
    if (finished) return;
    flushGroup();
    finished = true;
    cleanup();
    settle?.resolve({ at: now(), reason, detail });
  }

  function fail(err: DoctorError): void {
    if (finished) return;
    finished = true;
    cleanup();
    settle?.reject(err);
  }

  function flushGroup(): void {
    if (groupTimer !== undefined) {
      clearImmediate(groupTimer);
      groupTimer = undefined;
    }
    if (group.length === 0 || finished) return;
    const body = group;
    group = [];
    hooks.onRead?.(groupAt, groupWire, body);
    groupWire = 0;
  }

  function start(): void {
    clearTimeout(connectTimer);
    hooks.onConnect?.(now());
    const s = (session = h2Connect(url.origin, { createConnection: () => socket }));
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (head === null) fail(new DoctorError('SLUICE_DOCTOR_BAD_RESPONSE', `${url.host}: HTTP/2 failed: ${err.message}`, { cause: err }));
      else finish('error', `${err.code ?? 'error'}: ${err.message}`);
    });
    s.on('goaway', (code: number) => {
      if (head === null && code !== constants.NGHTTP2_NO_ERROR) fail(new DoctorError('SLUICE_DOCTOR_BAD_RESPONSE', `${url.host}: HTTP/2 GOAWAY (error ${code}) before an answer`));
    });
    const headers: Record<string, string> = { ':method': req.method, ':path': `${url.pathname}${url.search}`, ':scheme': url.protocol.slice(0, -1), ':authority': url.host };
    for (const [k, v] of req.headers) {
      const name = k.toLowerCase();
      if (!DROPPED.has(name)) headers[name] = v;
    }
    const body = req.body === null ? null : Buffer.from(req.body, 'utf8');
    if (body !== null) headers['content-length'] = String(body.length);
    const st = (stream = s.request(headers, { endStream: body === null }));
    st.on('response', (h: IncomingHttpHeaders) => {
      const at = now();
      const status = Number(h[':status']);
      if (status >= 100 && status < 200) return;
      head = { status, statusText: '', httpVersion: '2', headers: headerList(h), firstByteAt: at, at };
      hooks.onHead?.(head);
    });
    st.on('data', (chunk: Buffer) => {
      if (finished) return;
      if (group.length === 0) {
        groupAt = now();
        groupTimer = setImmediate(flushGroup);
      }
      group.push(chunk);
      groupWire += chunk.length + FRAME_HEADER_BYTES;
    });
    st.on('end', () => finish('complete', null));
    st.on('close', () => {
      if (head === null) fail(new DoctorError('SLUICE_DOCTOR_BAD_RESPONSE', `${url.host} closed the HTTP/2 stream without answering (RST_STREAM ${st.rstCode ?? '?'})`));
      else finish(st.rstCode !== undefined && st.rstCode !== constants.NGHTTP2_NO_ERROR ? 'closed' : 'complete', st.rstCode ? `stream reset (RST_STREAM ${st.rstCode})` : null);
    });
    st.on('error', () => {
      // 'close' reports it with the reset code.
    });
    if (body !== null) st.end(body);
  }

  if (connected) start();
  else socket.once('connect', start);

  return {
    done,
    abort(detail: string) {
      if (head === null) fail(new DoctorError('SLUICE_DOCTOR_TIMEOUT', `${url.host}: ${detail}`));
      else finish('aborted', detail);
    },
  };
}

/** Response header fields as [name, value] pairs, pseudo-headers left out; repeated fields one pair each. */
function headerList(h: IncomingHttpHeaders): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push([k, x]);
    else out.push([k, String(v)]);
  }
  return out;
}
