import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates } from 'node:tls';
import { createDechunker, type Dechunker } from './dechunk.ts';
import { DoctorError } from './doctor-error.ts';
import { startH2Exchange } from './h2-exchange.ts';
import type { ResponseHead } from './recording.ts';

/**
 * One request over its own connection (HTTP/1.1, or HTTP/2 by ALPN or `--h2c`: src/doctor/h2-exchange.ts), reporting every socket read as it arrives. The doctor does not use
 * node:http or fetch here because both hide what it measures: node:http emits one 'data' per chunk of the chunked
 * coding (so ten events that arrived in one TCP read look like ten reads), and fetch hides the raw head.
 */

export interface ExchangeRequest {
  url: URL;
  method: 'GET' | 'POST' | 'OPTIONS';
  /** Request header fields; Host and Content-Length are added. */
  headers: Array<[string, string]>;
  body: string | null;
  /** performance.now() of the probe's time 0; all reported times are relative to it. */
  t0: number;
  connectTimeoutMs: number;
  transport?: Transport | undefined;
}

export interface ExchangeHooks {
  onConnect?(at: number): void;
  onHead?(head: ResponseHead): void;
  /** One call per socket read from the one that completes the head on: total bytes read, and the body bytes it
   * carried (dechunked, still content-encoded). */
  onRead?(at: number, wireBytes: number, body: Buffer[]): void;
}

export interface ExchangeEnd {
  at: number;
  reason: 'complete' | 'closed' | 'error' | 'aborted';
  detail: string | null;
}

export interface Exchange {
  /** Resolves when the body ends or the exchange is aborted; rejects with a DoctorError when no response head came. */
  readonly done: Promise<ExchangeEnd>;
  /** Closes the connection now. */
  abort(detail: string): void;
}

const MAX_HEAD_BYTES = 64 * 1024;

/** How to reach the target beyond its URL: cleartext HTTP/2 with prior knowledge, an extra CA to trust over TLS. */
export interface Transport {
  /** `http://` URLs: speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1. */
  h2c?: boolean | undefined;
  /** PEM certificates trusted for `https://` besides the system's (a private CA, a self-signed test gateway). */
  ca?: Buffer | undefined;
}

/**
 * Starts the request. `https://` offers ALPN `h2` and `http/1.1` and speaks what the server picks, as browsers and
 * the SDKs' HTTP stacks do; `http://` speaks HTTP/1.1, or HTTP/2 with prior knowledge when `transport.h2c` is set.
 */
export function startExchange(req: ExchangeRequest, hooks: ExchangeHooks = {}): Exchange {
  const { url } = req;
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (url.protocol !== 'https:') {
    const socket = netConnect({ host, port: url.port === '' ? 80 : Number(url.port) });
    return req.transport?.h2c === true ? startH2Exchange(req, hooks, socket, false) : startH1Exchange(req, hooks, socket, false);
  }
  const socket = tlsConnect({
    host,
    port: url.port === '' ? 443 : Number(url.port),
    ALPNProtocols: ['h2', 'http/1.1'],
    ...(isIp(host) ? {} : { servername: host }),
    ...(req.transport?.ca !== undefined ? { ca: [...rootCertificates, req.transport.ca.toString('utf8')] } : {}),
  });
  let inner: Exchange | null = null;
  let rejectEarly: ((err: DoctorError) => void) | null = null;
  const timer = setTimeout(() => early(new DoctorError('SLUICE_DOCTOR_UNREACHABLE', `${url.host}: no connection after ${req.connectTimeoutMs} ms`)), req.connectTimeoutMs);
  function early(err: DoctorError): void {
    if (inner !== null) return;
    clearTimeout(timer);
    socket.destroy();
    rejectEarly?.(err);
    rejectEarly = null;
  }
  const done = new Promise<ExchangeEnd>((resolve, reject) => {
    rejectEarly = reject;
    socket.once('secureConnect', () => {
      if (rejectEarly === null) return;
      clearTimeout(timer);
      rejectEarly = null;
      inner = socket.alpnProtocol === 'h2' ? startH2Exchange(req, hooks, socket, true) : startH1Exchange(req, hooks, socket, true);
      inner.done.then(resolve, reject);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'ERROR';
      early(new DoctorError('SLUICE_DOCTOR_UNREACHABLE', `cannot reach ${url.host}: ${code === 'ECONNREFUSED' ? 'connection refused' : err.message} (${code})`, { cause: err }));
    });
  });
  return {
    done,
    abort(detail: string) {
      if (inner !== null) inner.abort(detail);
      else early(new DoctorError('SLUICE_DOCTOR_TIMEOUT', `${url.host}: ${detail}`));
    },
  };
}

/** HTTP/1.1 on `socket`, connected already (TLS that chose `http/1.1`) or connecting. */
function startH1Exchange(req: ExchangeRequest, hooks: ExchangeHooks, socket: Socket, connected: boolean): Exchange {
  const now = (): number => performance.now() - req.t0;
  const { url } = req;

  let settle: { resolve(end: ExchangeEnd): void; reject(err: DoctorError): void } | null = null;
  const done = new Promise<ExchangeEnd>((resolve, reject) => {
    settle = { resolve, reject };
  });
  let finished = false;
  let head: ResponseHead | null = null;
  let headBuf: Buffer[] = [];
  let headBytes = 0;
  let firstByteAt = -1;
  let dechunker: Dechunker | null = null;
  let lengthLeft = -1; // Content-Length body: bytes still expected; -1 when not length-delimited
  let closeDelimited = false;

  socket.setNoDelay(true);

  const connectTimer = connected
    ? undefined
    : setTimeout(() => {
        fail(new DoctorError('SLUICE_DOCTOR_UNREACHABLE', `${url.host}: no connection after ${req.connectTimeoutMs} ms`));
      }, req.connectTimeoutMs);

  function finish(reason: ExchangeEnd['reason'], detail: string | null): void {
    if (finished) return;
    finished = true;
    clearTimeout(connectTimer);
    socket.destroy();
    settle?.resolve({ at: now(), reason, detail });
  }

  function fail(err: DoctorError): void {
    if (finished) return;
    finished = true;
    clearTimeout(connectTimer);
    socket.destroy();
    settle?.reject(err);
  }

  const send = (): void => {
    clearTimeout(connectTimer);
    hooks.onConnect?.(now());
    const body = req.body === null ? null : Buffer.from(req.body, 'utf8');
    let text = `${req.method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
    for (const [k, v] of req.headers) text += `${k}: ${v}\r\n`;
    if (body !== null) text += `Content-Length: ${body.length}\r\n`;
    text += '\r\n';
    socket.write(body === null ? text : Buffer.concat([Buffer.from(text, 'latin1'), body]));
  };
  if (connected) send();
  else socket.once('connect', send);

  socket.on('data', (chunk: Buffer) => {
    const at = now();
    if (finished) return;
    if (firstByteAt < 0) firstByteAt = at;
    if (head === null) {
      headBuf.push(chunk);
      headBytes += chunk.length;
      const all = headBuf.length === 1 ? chunk : Buffer.concat(headBuf, headBytes);
      const parsed = parseHead(all);
      if (parsed === null) {
        headBuf = [all];
        if (headBytes > MAX_HEAD_BYTES) {
          fail(new DoctorError('SLUICE_DOCTOR_BAD_RESPONSE', `${url.host}: response head larger than ${MAX_HEAD_BYTES} bytes`));
        }
        return;
      }
      if (parsed === 'bad') {
        fail(new DoctorError('SLUICE_DOCTOR_BAD_RESPONSE', `${url.host} did not answer with HTTP/1.x (first bytes: ${JSON.stringify(all.subarray(0, 40).toString('latin1'))})`));
        return;
      }
      if (parsed.status >= 100 && parsed.status < 200) {
        // An interim response (100 Continue, 103 Early Hints): the real head follows.
        headBuf = [all.subarray(parsed.length)];
        headBytes = headBuf[0]?.length ?? 0;
        return;
      }
      head = { status: parsed.status, statusText: parsed.statusText, httpVersion: parsed.httpVersion, headers: parsed.headers, firstByteAt, at };
      headBuf = [];
      const te = valueOf(parsed.headers, 'transfer-encoding');
      const cl = valueOf(parsed.headers, 'content-length');
      if (req.method === 'OPTIONS' && parsed.status === 204) lengthLeft = 0;
      else if (parsed.status === 204 || parsed.status === 304) lengthLeft = 0;
      else if (te !== null && /chunked/i.test(te)) dechunker = createDechunker();
      else if (cl !== null && /^\d+$/.test(cl.trim())) lengthLeft = Number(cl.trim());
      else closeDelimited = true;
      hooks.onHead?.(head);
      consumeBody(at, chunk.length, all.subarray(parsed.length));
      return;
    }
    consumeBody(at, chunk.length, chunk);
  });

  function consumeBody(at: number, wireBytes: number, bytes: Buffer): void {
    let body: Buffer[];
    if (dechunker !== null) {
      try {
        body = dechunker.feed(bytes);
      } catch (err) {
        hooks.onRead?.(at, wireBytes, []);
        finish('error', (err as Error).message);
        return;
      }
    } else if (lengthLeft >= 0) {
      const n = Math.min(lengthLeft, bytes.length);
      body = n > 0 ? [bytes.subarray(0, n)] : [];
      lengthLeft -= n;
    } else {
      body = bytes.length > 0 ? [bytes] : [];
    }
    hooks.onRead?.(at, wireBytes, body);
    if ((dechunker !== null && dechunker.done) || lengthLeft === 0) finish('complete', null);
  }

  socket.on('end', () => {
    if (head === null) {
      fail(new DoctorError('SLUICE_DOCTOR_BAD_RESPONSE', `${url.host} closed the connection without answering`));
    } else {
      finish(closeDelimited ? 'complete' : 'closed', closeDelimited ? null : 'connection closed before the end of the body');
    }
  });
  socket.on('close', () => {
    if (head === null) fail(new DoctorError('SLUICE_DOCTOR_BAD_RESPONSE', `${url.host} closed the connection without answering`));
    else finish(closeDelimited ? 'complete' : 'closed', closeDelimited ? null : 'connection closed before the end of the body');
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (head === null) {
      const code = err.code ?? 'ERROR';
      fail(
        new DoctorError('SLUICE_DOCTOR_UNREACHABLE', `cannot reach ${url.host}: ${code === 'ECONNREFUSED' ? 'connection refused' : err.message} (${code})`, {
          cause: err,
        }),
      );
    } else {
      finish('error', `${err.code ?? 'error'}: ${err.message}`);
    }
  });

  return {
    done,
    abort(detail: string) {
      if (head === null) fail(new DoctorError('SLUICE_DOCTOR_TIMEOUT', `${url.host}: ${detail}`));
      else finish('aborted', detail);
    },
  };
}

interface ParsedHead {
  status: number;
  statusText: string;
  httpVersion: string;
  headers: Array<[string, string]>;
  /** Bytes the head occupies, terminator included. */
  length: number;
}

/** Parses a response head at the start of buf; null when incomplete, 'bad' when not HTTP/1.x. */
export function parseHead(buf: Buffer): ParsedHead | null | 'bad' {
  if (buf.length >= 5 && buf.toString('latin1', 0, 5) !== 'HTTP/') return 'bad';
  let end = buf.indexOf('\r\n\r\n', 0, 'latin1');
  let sep = 4;
  const lfEnd = buf.indexOf('\n\n', 0, 'latin1');
  if (lfEnd !== -1 && (end === -1 || lfEnd < end)) {
    end = lfEnd;
    sep = 2;
  }
  if (end === -1) return null;
  const lines = buf.toString('latin1', 0, end).split(/\r?\n/);
  const m = /^HTTP\/(\d\.\d)\s+(\d{3})\s*(.*)$/.exec(lines[0] ?? '');
  if (!m) return 'bad';
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return { status: Number(m[2]), statusText: m[3] ?? '', httpVersion: m[1] ?? '1.1', headers, length: end + sep };
}

function valueOf(headers: Array<[string, string]>, name: string): string | null {
  for (const [k, v] of headers) if (k.toLowerCase() === name) return v;
  return null;
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
