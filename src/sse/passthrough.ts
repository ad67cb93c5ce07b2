/**
 * Recognizes an upstream read that can be forwarded byte for byte: whole `data: {"id":…}\n\n` events only (the
 * frames vLLM and OpenAI write), none of them carrying usage or an error and none being `[DONE]`. For such a read
 * the relay skips decoding, parsing and re-encoding (STYLE.md: find event boundaries in bytes, parse only what must
 * be read or rewritten). Anything else — a split event, CR line ends, another field, a usage chunk, a key or value
 * `"error"` — returns -1 and
 * takes the full parser. Pure: no I/O.
 */

const PREFIX = Buffer.from('data: {"id":"');
const USAGE = Buffer.from('"usage"');
const ERROR = Buffer.from('"error"');
const FINISH = Buffer.from('"finish_reason":');
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const SPACE = 0x20;

/** Whether `buf` holds `what` at `at`. */
function holds(buf: Buffer, at: number, what: Buffer): boolean {
  if (at + what.length > buf.length) return false;
  for (let i = 0; i < what.length; i++) if (buf[at + i] !== what[i]) return false;
  return true;
}

/**
 * Returns the number of non-null finish reasons in `buf` when every byte of it is a plain chunk event that can be
 * passed through unchanged, or -1 when it must go through the parser. One pass over the bytes, in JavaScript: for
 * reads of a few hundred bytes that is cheaper than a handful of native `indexOf` calls.
 */
export function passThroughFinishes(buf: Buffer): number {
  const len = buf.length;
  if (len < PREFIX.length + 2 || buf[len - 1] !== LF || buf[len - 2] !== LF) return -1;
  let finishes = 0;
  let p = 0;
  while (p < len) {
    if (!holds(buf, p, PREFIX)) return -1;
    p += PREFIX.length;
    for (;;) {
      if (p >= len) return -1;
      const c = buf[p];
      if (c === LF) break;
      if (c === CR) return -1;
      if (c === QUOTE) {
        const next = buf[p + 1];
        if (next === 0x75 /* u */ && holds(buf, p, USAGE)) return -1;
        // An error object behind an `id` (`{"id":…,"object":"error"}`): the parser's in-band check must see it.
        if (next === 0x65 /* e */ && holds(buf, p, ERROR)) return -1;
        if (next === 0x66 /* f */ && holds(buf, p, FINISH)) {
          p += FINISH.length;
          if (buf[p] === SPACE) p++;
          if (buf[p] === QUOTE) finishes++;
          continue;
        }
      }
      p++;
    }
    if (buf[p + 1] !== LF) return -1; // one data line per event
    p += 2;
  }
  return finishes;
}
