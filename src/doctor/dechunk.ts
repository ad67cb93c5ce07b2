/**
 * A pure decoder for HTTP/1.1 chunked transfer coding (RFC 9112 §7.1). The doctor owns its HTTP client so that it sees
 * every socket read as it arrives; this turns those reads into body bytes without copying them.
 * No sockets or timers here.
 */

export class DechunkError extends Error {
  readonly code = 'SLUICE_DOCTOR_BAD_CHUNKING';
}

export interface Dechunker {
  /** Feeds raw bytes after the response head. Returns the body bytes they carry (views into `chunk`). */
  feed(chunk: Buffer): Buffer[];
  /** True once the last chunk (size 0) and its trailer section were read. */
  readonly done: boolean;
}

/** A size line or trailer line longer than this is malformed (real ones are a few bytes). */
const MAX_LINE = 4096;

// Decoder states (plain constants: enums are not erasable syntax).
const SIZE = 0;
const DATA = 1;
const DATA_END = 2;
const TRAILER = 3;
const DONE = 4;

/** Creates a decoder for one response body. Throws `DechunkError` on malformed framing. */
export function createDechunker(): Dechunker {
  let state: number = SIZE;
  let line = ''; // current size or trailer line (ASCII), without its terminator
  let remaining = 0; // bytes left in the current chunk
  let endBytes = 0; // CRLF bytes after chunk data already seen (0..2)

  function endOfLine(): void {
    if (state === SIZE) {
      const hex = (line.split(';')[0] ?? '').trim();
      if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new DechunkError(`bad chunk size line '${line.slice(0, 40)}'`);
      remaining = parseInt(hex, 16);
      state = remaining === 0 ? TRAILER : DATA;
    } else if (state === TRAILER && line === '') {
      state = DONE;
    }
    line = '';
  }

  function feed(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let i = 0;
    while (i < chunk.length && state !== DONE) {
      if (state === DATA) {
        const n = Math.min(remaining, chunk.length - i);
        out.push(chunk.subarray(i, i + n));
        remaining -= n;
        i += n;
        if (remaining === 0) {
          state = DATA_END;
          endBytes = 0;
        }
        continue;
      }
      const byte = chunk[i] as number;
      i++;
      if (state === DATA_END) {
        // Tolerate a bare LF after chunk data, as Node and nginx do.
        if (byte === 0x0d && endBytes === 0) {
          endBytes = 1;
        } else if (byte === 0x0a) {
          state = SIZE;
        } else {
          throw new DechunkError('chunk data not followed by CRLF');
        }
        continue;
      }
      // Size or trailer line.
      if (byte === 0x0a) {
        if (line.endsWith('\r')) line = line.slice(0, -1);
        endOfLine();
      } else {
        line += String.fromCharCode(byte);
        if (line.length > MAX_LINE) throw new DechunkError('chunk size or trailer line too long');
      }
    }
    return out;
  }

  return {
    feed,
    get done() {
      return state === DONE;
    },
  };
}
