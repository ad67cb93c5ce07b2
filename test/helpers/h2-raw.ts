import { connect, type Socket } from 'node:net';

/**
 * A hand-written HTTP/2 client that sends raw frames (RFC 9113 §4) over a plain TCP socket: what a hostile peer does,
 * without the flow control, SETTINGS limits and stream bookkeeping of `node:http2`, whose client would refuse to
 * break the rules the tests need broken (it holds HEADERS beyond the server's MAX_CONCURRENT_STREAMS, for one).
 */

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** One frame's bytes. */
export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK string literal without Huffman coding (RFC 7541 §5.2); values here stay under 127 bytes. */
function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  if (b.length >= 127) throw new Error('hpackString: value too long for this encoder');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

/** A literal header field without indexing whose name is static-table entry `index` (RFC 7541 §6.2.2). */
function literal(index: number, value: string): Buffer {
  const prefix = index < 15 ? Buffer.from([index]) : Buffer.from([0x0f, index - 15]);
  return Buffer.concat([prefix, hpackString(value)]);
}

/**
 * The HPACK block of a POST request: `:method POST` and `:scheme http` from the static table (indexes 3 and 6),
 * `:path` (4), `:authority` (1), `content-type` (31) and `content-length` (28) as literals. Nothing is added to the
 * dynamic table, so every block stands alone and the same bytes can be sent on any stream.
 */
export function postHeaders(path: string, authority: string, contentLength: number): Buffer {
  return Buffer.concat([
    Buffer.from([0x80 | 3, 0x80 | 6]),
    literal(4, path),
    literal(1, authority),
    literal(31, 'application/json'),
    literal(28, String(contentLength)),
  ]);
}

export function rstStream(stream: number, code: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code, 0);
  return frame(FRAME.RST_STREAM, 0, stream, p);
}

/**
 * A raw HTTP/2 connection: frames received are parsed and kept; SETTINGS are acknowledged, as any client must, unless
 * `ackSettings` is false (a peer that stalls after the magic string must send nothing at all).
 */
export class RawH2 {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  #buf: Buffer = Buffer.alloc(0);
  #closedAt: number | undefined;

  constructor(port: number, options: { host?: string; ackSettings?: boolean } = {}) {
    const { host = '127.0.0.1', ackSettings = true } = options;
    this.socket = connect(port, host);
    this.socket.on('error', () => {});
    this.closed = new Promise((resolve) => this.socket.once('close', () => {
      this.#closedAt = performance.now();
      resolve();
    }));
    this.socket.on('data', (chunk: Buffer) => {
      this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        const f: Frame = { type: this.#buf[3] as number, flags: this.#buf[4] as number, stream: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: this.#buf.subarray(9, 9 + len) };
        this.#buf = this.#buf.subarray(9 + len);
        this.frames.push(f);
        if (ackSettings && f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && !this.socket.destroyed) this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      }
    });
  }

  get connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.readyState === 'open') return resolve();
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
  }

  /** When the socket closed (performance.now()), if it did. */
  get closedAt(): number | undefined {
    return this.#closedAt;
  }

  /** The client preface (the magic string and an empty SETTINGS frame), as RFC 9113 §3.4 requires. */
  preface(): void {
    this.socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
  }

  write(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  /** The GOAWAY frame received, if any: its last stream id and error code. */
  goaway(): { lastStream: number; code: number } | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    return f === undefined ? undefined : { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
  }

  destroy(): void {
    this.socket.destroy();
  }
}
