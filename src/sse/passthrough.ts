/**
 * Recognizes an upstream read that can be forwarded as bytes: whole `data: {"id":…}\n\n` events only (the frames
 * vLLM and OpenAI write), none of them carrying an error and none being `[DONE]`. For such a read the relay skips
 * decoding, parsing and re-encoding (STYLE.md: find event boundaries in bytes, parse only what must be read or
 * rewritten). Anything else — a split event, CR line ends, another field, a key or value `"error"`, and a usage
 * object unless the caller takes usage here — takes the full parser. Pure: no I/O.
 */

const PREFIX = Buffer.from('data: {"id":"');
const USAGE = Buffer.from('"usage"');
const USAGE_OBJECT = Buffer.from('"usage":{');
const ERROR = Buffer.from('"error"');
const FINISH = Buffer.from('"finish_reason":');
const CHOICES_EMPTY = Buffer.from('"choices":[]');
const PROMPT_TOKENS = Buffer.from('"prompt_tokens":');
const COMPLETION_TOKENS = Buffer.from('"completion_tokens":');
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const SPACE = 0x20;
const COMMA = 0x2c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const BACKSLASH = 0x5c;

/** What to cut from the usage objects of a read whose chunks carry usage (vLLM's continuous usage stats). */
export type UsageCut =
  /** Nothing: the client asked for usage on every chunk itself. */
  | 'none'
  /** The usage of chunks that carry choices; the usage-only chunk at the end stays (the client asked for it). */
  | 'chunks'
  /** Every usage object, and usage-only chunks (`"choices":[]`) entirely: the client asked for no usage. */
  | 'all';

/**
 * Running figures of a stream's reads passed through: finish reasons, chunk events that carry choices, and the last
 * usage seen (-1: none yet).
 */
export interface ReadTally {
  finishes: number;
  events: number;
  promptTokens: number;
  completionTokens: number;
}

/** A fresh tally. */
export const newTally = (): ReadTally => ({ finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 });

/** Whether `buf` holds `what` at `at`. */
function holds(buf: Buffer, at: number, what: Buffer): boolean {
  if (at + what.length > buf.length) return false;
  for (let i = 0; i < what.length; i++) if (buf[at + i] !== what[i]) return false;
  return true;
}

/** Where the last `readCount` stopped (a module variable rather than an object per call: it runs per chunk). */
let countEnd = 0;

/**
 * Byte ranges of the current read to leave out, as [from, to) pairs in order: `dropCount` numbers of `drops` are in
 * use. Reused from read to read (an array per read was a fifth of the relay's garbage with continuous usage on).
 */
let drops = new Int32Array(32);
let dropCount = 0;

function drop(from: number, to: number): void {
  if (dropCount + 2 > drops.length) {
    const grown = new Int32Array(drops.length * 2);
    grown.set(drops);
    drops = grown;
  }
  drops[dropCount++] = from;
  drops[dropCount++] = to;
}

/** A non-negative integer at `at` (after optional spaces), or -1 if none; `countEnd` is the index after it. */
function readCount(buf: Buffer, at: number): number {
  let p = at;
  while (buf[p] === SPACE) p++;
  let value = -1;
  for (let c = buf[p]; c !== undefined && c >= 0x30 && c <= 0x39; c = buf[++p]) value = (value === -1 ? 0 : value * 10) + (c - 0x30);
  countEnd = p;
  return value;
}

/**
 * Returns the number of non-null finish reasons in `buf` when every byte of it is a plain chunk event that can be
 * passed through unchanged, or -1 when it must go through the parser (`passThroughRead` without usage, for one read).
 */
export function passThroughFinishes(buf: Buffer): number {
  const tally = newTally();
  return passThroughRead(buf, undefined, tally) === null ? -1 : tally.finishes;
}

/**
 * One pass over the bytes of a read, in JavaScript (for reads of a few hundred bytes, cheaper than a handful of native
 * `indexOf` calls): returns the bytes to send, or null when the read must go through the parser. Finish reasons and
 * chunk events are added to `tally`.
 *
 * With `cut` undefined, a read holding a `usage` key takes the parser, and a read that passes is returned as it is.
 * With `cut` set (an engine asked for usage on every chunk, so that a stream cut short is still metered exactly),
 * each usage object written where vLLM writes it (after another key) is read into `tally` and cut from the bytes as
 * `cut` says: the same Buffer comes back when nothing was cut, an empty one when everything was.
 */
export function passThroughRead(buf: Buffer, cut: UsageCut | undefined, tally: ReadTally): Buffer | null {
  const len = buf.length;
  if (len < PREFIX.length + 2 || buf[len - 1] !== LF || buf[len - 2] !== LF) return null;
  let finishes = 0;
  let events = 0;
  let prompt = -1;
  let completion = -1;
  dropCount = 0;
  let p = 0;
  while (p < len) {
    const eventStart = p;
    if (!holds(buf, p, PREFIX)) return null;
    p += PREFIX.length;
    let usageFrom = -1;
    let usageTo = -1;
    let noChoices = false;
    for (;;) {
      if (p >= len) return null;
      const c = buf[p];
      if (c === LF) break;
      if (c === CR) return null;
      if (c === QUOTE) {
        const next = buf[p + 1];
        if (next === 0x75 /* u */ && holds(buf, p, USAGE)) {
          // `"usage":null` (vLLM completions without continuous stats) and a usage not after a comma: the parser.
          if (cut === undefined || !holds(buf, p, USAGE_OBJECT) || buf[p - 1] !== COMMA) return null;
          usageFrom = p - 1;
          let q = p + USAGE_OBJECT.length;
          let depth = 1;
          while (depth > 0) {
            if (q >= len) return null;
            const d = buf[q];
            if (d === OPEN) depth++;
            else if (d === CLOSE) depth--;
            else if (d === LF) return null;
            else if (d === QUOTE) {
              if (depth === 1 && holds(buf, q, PROMPT_TOKENS)) {
                prompt = readCount(buf, q + PROMPT_TOKENS.length);
                q = countEnd;
                continue;
              }
              if (depth === 1 && holds(buf, q, COMPLETION_TOKENS)) {
                completion = readCount(buf, q + COMPLETION_TOKENS.length);
                q = countEnd;
                continue;
              }
              for (q++; q < len && buf[q] !== QUOTE; q++) if (buf[q] === BACKSLASH) q++;
            }
            q++;
          }
          usageTo = q;
          p = q;
          continue;
        }
        // An error object behind an `id` (`{"id":…,"object":"error"}`): the parser's in-band check must see it.
        if (next === 0x65 /* e */ && holds(buf, p, ERROR)) return null;
        if (next === 0x63 /* c */ && holds(buf, p, CHOICES_EMPTY)) noChoices = true;
        if (next === 0x66 /* f */ && holds(buf, p, FINISH)) {
          p += FINISH.length;
          if (buf[p] === SPACE) p++;
          if (buf[p] === QUOTE) finishes++;
          continue;
        }
      }
      p++;
    }
    if (buf[p + 1] !== LF) return null; // one data line per event
    p += 2;
    if (!noChoices) events++; // a usage-only chunk carries no answer
    if (usageFrom !== -1 && cut !== 'none') {
      if (!noChoices) drop(usageFrom, usageTo);
      else if (cut === 'all') drop(eventStart, p);
    }
  }
  tally.finishes += finishes;
  tally.events += events;
  if (completion !== -1) tally.completionTokens = completion;
  if (prompt !== -1) tally.promptTokens = prompt;
  if (dropCount === 0) return buf;
  let size = len;
  for (let i = 0; i < dropCount; i += 2) size -= (drops[i + 1] as number) - (drops[i] as number);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  let from = 0;
  for (let i = 0; i < dropCount; i += 2) {
    at += buf.copy(out, at, from, drops[i] as number);
    from = drops[i + 1] as number;
  }
  buf.copy(out, at, from, len);
  return out;
}
