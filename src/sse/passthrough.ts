/**
 * Recognizes an upstream read that can be forwarded byte for byte: whole `data: {"id":…}\n\n` events only (the
 * frames vLLM and OpenAI write), none of them carrying usage or an error and none being `[DONE]`. For such a read
 * the relay skips decoding, parsing and re-encoding (STYLE.md: find event boundaries in bytes, parse only what must
 * be read or rewritten). Anything else — a split event, CR line ends, another field, a usage chunk — returns -1 and
 * takes the full parser. Pure: no I/O.
 */

const PREFIX = Buffer.from('data: {"id":"');
const USAGE = Buffer.from('"usage"');
const FINISH = Buffer.from('"finish_reason":');
const LF = 0x0a;
const CR = 0x0d;

/**
 * Returns the number of non-null finish reasons in `buf` when every byte of it is a plain chunk event that can be
 * passed through unchanged, or -1 when it must go through the parser.
 */
export function passThroughFinishes(buf: Buffer): number {
  const len = buf.length;
  if (len < PREFIX.length + 2 || buf[len - 1] !== LF || buf[len - 2] !== LF) return -1;
  if (buf.indexOf(CR) !== -1 || buf.indexOf(USAGE) !== -1) return -1;
  let pos = 0;
  while (pos < len) {
    if (buf.compare(PREFIX, 0, PREFIX.length, pos, pos + PREFIX.length) !== 0) return -1;
    const end = buf.indexOf(LF, pos + PREFIX.length);
    if (end === -1 || buf[end + 1] !== LF) return -1;
    pos = end + 2;
  }
  let finishes = 0;
  let at = buf.indexOf(FINISH);
  while (at !== -1) {
    let p = at + FINISH.length;
    if (buf[p] === 0x20) p++;
    if (buf[p] === 0x22) finishes++;
    at = buf.indexOf(FINISH, p);
  }
  return finishes;
}
