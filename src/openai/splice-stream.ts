import type { SluiceError } from '../errors.ts';
import type { SseEvent } from '../sse/parser.ts';
import type { EventVerdict, StreamProtocol, TokenSource, UpstreamStream } from '../relay/protocol.ts';
import type { StreamWriter } from '../relay/writer.ts';
import type { TokenUsage } from './usage.ts';

/** What the client has received of a spliced stream: what a continuation on another replica starts from. */
export interface AnswerSoFar {
  /** The answer's text (chat `delta.content`, completions `text`) as the client received it. */
  text: string;
  /** Completion tokens sent: reported by the engines when they reported usage on every chunk, else chunks of text. */
  tokens: number;
  /** Whether the role chunk went out (a continuation's is then dropped). */
  roleSent: boolean;
  /** Why a continuation would not be exact (a tool call under way, reasoning, several choices, a finish sent). */
  notExact: string | undefined;
}

/** The fields of the first chunk the client received, which every chunk of a continuation is given. */
interface Envelope {
  id: unknown;
  model: unknown;
  created: unknown;
  fingerprint: unknown;
}

type Json = Record<string, unknown>;

const LF_LF = Buffer.from('\n\n');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const INDEX = Buffer.from('"index":');
const FINISH = Buffer.from('"finish_reason":');
const CONTENT = Buffer.from('"content":');
const TEXT = Buffer.from('"text":');
/** Keys that make a chunk worth a parse: what may make a continuation inexact, or the role chunk. */
const ROLE = Buffer.from('"role":');
const REASONING = Buffer.from('"reasoning');
const TOOL_CALLS = Buffer.from('"tool_calls"');
const FUNCTION_CALL = Buffer.from('"function_call"');
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** Whether `buf` holds `what` at `at`. */
function holds(buf: Buffer, at: number, what: Buffer): boolean {
  if (at + what.length > buf.length) return false;
  for (let i = 0; i < what.length; i++) if (buf[at + i] !== what[i]) return false;
  return true;
}

function skipSpace(buf: Buffer, at: number): number {
  while (buf[at] === 0x20) at++;
  return at;
}

/** The index of the quote that closes the string opening at `at`, or -1 before `to`. */
function stringEnd(buf: Buffer, at: number, to: number): number {
  for (let p = at + 1; p < to; p++) {
    const c = buf[p];
    if (c === BACKSLASH) p++;
    else if (c === QUOTE) return p;
  }
  return -1;
}
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * A chat/completions stream that may be continued on another upstream (mid-stream failover, docs/failover.md): one
 * protocol object per upstream attached (a `ChatStream`, so each one's finish reasons and usage are its own), and one
 * client stream that stays exact across them.
 *
 * It watches what the client receives (the text, the tokens, whatever would make a continuation inexact) and rewrites
 * every chunk of a continuation as a chunk of the first answer: the same `id`, `model`, `created` and
 * `system_fingerprint`, no second role chunk, and usage that adds up (the prompt's tokens once, the completion's
 * summed over the upstreams). Reads of the first upstream may still pass through as bytes; a continuation's are
 * always parsed, since they are rewritten.
 *
 * Cost while on: a JSON parse of every chunk the client receives (to keep the answer so far), none when off: the
 * gateway uses a plain `ChatStream` then.
 */
export class SpliceStream implements StreamProtocol {
  readonly #kind: 'chat' | 'completion';
  readonly #make: () => StreamProtocol;
  #current: StreamProtocol;
  /** Usage of the upstreams before the current one, when there were any. */
  #base: TokenUsage | undefined;
  #baseSource: TokenSource | undefined;
  #attaches = 0;
  #envelope: Envelope | undefined;
  #text = '';
  #chunks = 0;
  #roleSent = false;
  #notExact: string | undefined;
  #wrapped: StreamWriter | undefined;
  #target: StreamWriter | undefined;

  /** `make` creates the protocol object of one upstream's part of the stream (a `ChatStream`). */
  constructor(kind: 'chat' | 'completion', make: () => StreamProtocol) {
    this.#kind = kind;
    this.#make = make;
    this.#current = make();
  }

  /** What the client has received so far. */
  get answer(): AnswerSoFar {
    const reported = this.tokenSource === 'reported';
    return { text: this.#text, tokens: reported ? (this.usage?.completionTokens ?? 0) : this.#chunks, roleSent: this.#roleSent, notExact: this.#notExact };
  }

  attach(source: UpstreamStream): boolean {
    if (++this.#attaches > 1) {
      // A continuation: the finished part's usage becomes the base the continuation's usage is added to.
      const u = this.usage;
      this.#baseSource = this.tokenSource;
      // Counted (the engine reported no usage): the text chunks the client received, not the role chunk too.
      this.#base = u !== undefined && this.#baseSource === 'counted' ? { ...u, completionTokens: this.#chunks, totalTokens: u.promptTokens + this.#chunks } : u;
      this.#current = this.#make();
    }
    const raw = this.#current.attach(source);
    return raw && this.#attaches === 1;
  }

  /** Events in the last read the current upstream's protocol passed through raw (its arrival statistics). */
  get rawEvents(): number {
    return this.#current.rawEvents;
  }

  passRaw(read: Buffer): Buffer | null {
    const out = this.#current.passRaw(read);
    if (out !== null) this.#observeFrames(out);
    return out;
  }

  onEvent(ev: SseEvent, writer: StreamWriter): EventVerdict {
    return this.#current.onEvent(ev, this.#writer(writer));
  }

  onUpstreamEnd(writer: StreamWriter): 'end' | SluiceError {
    return this.#current.onUpstreamEnd(this.#writer(writer));
  }

  writeError(writer: StreamWriter, err: SluiceError): void {
    this.#current.writeError(writer, err);
  }

  get usage(): TokenUsage | undefined {
    const cur = this.#current.usage;
    const base = this.#base;
    if (base === undefined || cur === undefined) return base ?? cur;
    const prompt = this.#prompt(cur.promptTokens);
    const completion = base.completionTokens + cur.completionTokens;
    return { promptTokens: prompt, completionTokens: completion, totalTokens: prompt + completion };
  }

  get tokenSource(): TokenSource | undefined {
    const cur = this.#current.tokenSource;
    const base = this.#baseSource;
    if (base === undefined || cur === undefined) return base ?? cur;
    return base === 'reported' && cur === 'reported' ? 'reported' : 'counted';
  }

  /**
   * The prompt's tokens, counted once: the first upstream's. A continuation's prompt holds the answer so far too; when
   * the first upstream reported no prompt count, it is the continuation's less the tokens that answer had.
   */
  #prompt(continuationPrompt: number): number {
    const base = this.#base;
    if (base === undefined) return continuationPrompt;
    return base.promptTokens > 0 ? base.promptTokens : Math.max(0, continuationPrompt - base.completionTokens);
  }

  /** The writer the current upstream's protocol writes through: continuation chunks rewritten, every chunk watched. */
  #writer(w: StreamWriter): StreamWriter {
    if (this.#target === w && this.#wrapped !== undefined) return this.#wrapped;
    this.#target = w;
    const data = (json: string): void => {
      const out = this.#take(json);
      if (out !== null) w.data(out);
    };
    this.#wrapped = {
      get opened() {
        return w.opened;
      },
      get closed() {
        return w.closed;
      },
      open: () => w.open(),
      data,
      named: (event, json) => w.named(event, json),
      heartbeat: () => w.heartbeat(),
      done: () => w.done(),
      flush: () => w.flush(),
      onDrain: (cb) => w.onDrain(cb),
      end: () => w.end(),
      fail: (err, inBand) => w.fail(err, inBand),
      destroy: () => w.destroy(),
    };
    return this.#wrapped;
  }

  /** A chunk on its way to the client: watched, and rewritten when it comes from a continuation; null to drop it. */
  #take(json: string): string | null {
    let o: unknown;
    try {
      o = JSON.parse(json);
    } catch {
      return json;
    }
    if (!isObject(o) || 'error' in o) return json;
    if (this.#attaches <= 1) {
      this.#observe(o);
      return json;
    }
    if (!this.#rewrite(o)) return null;
    this.#observe(o);
    return JSON.stringify(o);
  }

  /** Makes a continuation's chunk one of the first answer's; false when nothing of it is left to send. */
  #rewrite(o: Json): boolean {
    const e = this.#envelope;
    if (e !== undefined) {
      if (e.id !== undefined) o['id'] = e.id;
      if (e.model !== undefined) o['model'] = e.model;
      if (e.created !== undefined && 'created' in o) o['created'] = e.created;
      if ('system_fingerprint' in o) o['system_fingerprint'] = e.fingerprint ?? null;
    }
    const choices = o['choices'];
    if (this.#kind === 'chat' && this.#roleSent && Array.isArray(choices)) {
      for (const c of choices) {
        const d = isObject(c) ? c['delta'] : undefined;
        if (!isObject(d) || !('role' in d)) continue;
        delete d['role'];
        // The continuation's own role chunk: the client has had one. Usage on it (on every chunk) says nothing new.
        const empty = Object.values(d).every((v) => v === null || v === '') && (c as Json)['finish_reason'] == null && (c as Json)['logprobs'] == null;
        if (empty && choices.length === 1) return false;
      }
    }
    const u = o['usage'];
    const base = this.#base;
    if (isObject(u) && base !== undefined) {
      const completion = base.completionTokens + (typeof u['completion_tokens'] === 'number' ? u['completion_tokens'] : 0);
      const prompt = this.#prompt(typeof u['prompt_tokens'] === 'number' ? u['prompt_tokens'] : 0);
      u['prompt_tokens'] = prompt;
      u['completion_tokens'] = completion;
      u['total_tokens'] = prompt + completion;
    }
    return true;
  }

  /** Reads what a chunk the client receives adds to the answer. */
  #observe(o: Json): void {
    this.#envelope ??= { id: o['id'], model: o['model'], created: o['created'], fingerprint: o['system_fingerprint'] };
    const choices = o['choices'];
    if (!Array.isArray(choices)) return;
    for (const c of choices) {
      if (!isObject(c)) continue;
      if (c['index'] !== 0 && c['index'] !== undefined) this.#inexact('the request streams several choices');
      if (typeof c['finish_reason'] === 'string') this.#inexact('a choice has finished');
      if (this.#kind === 'completion') {
        if (typeof c['text'] === 'string' && c['text'] !== '') this.#add(c['text']);
        continue;
      }
      const d = c['delta'];
      if (!isObject(d)) continue;
      if (d['role'] !== undefined && d['role'] !== null) this.#roleSent = true;
      if ((Array.isArray(d['tool_calls']) && d['tool_calls'].length > 0) || isObject(d['function_call'])) this.#inexact('a tool call is under way');
      if ((typeof d['reasoning_content'] === 'string' && d['reasoning_content'] !== '') || (typeof d['reasoning'] === 'string' && d['reasoning'] !== '')) {
        this.#inexact('the answer has reasoning text, which a prefilled message does not carry');
      }
      if (typeof d['content'] === 'string' && d['content'] !== '') this.#add(d['content']);
    }
  }

  #add(text: string): void {
    this.#text += text;
    this.#chunks++;
  }

  #inexact(why: string): void {
    this.#notExact ??= why;
  }

  /** Watches the frames of a read passed through as bytes (whole `data: {…}` events, src/sse/passthrough.ts). */
  #observeFrames(buf: Buffer): void {
    let at = 0;
    const len = buf.length;
    while (at < len) {
      const end = buf.indexOf(LF_LF, at);
      if (end === -1) break;
      if (!this.#observePlain(buf, at + 6, end)) {
        try {
          const o: unknown = JSON.parse(buf.toString('utf8', at + 6, end));
          if (isObject(o)) this.#observe(o);
        } catch {
          // passRaw passes only JSON objects; nothing else to watch
        }
      }
      at = end + 2;
    }
  }

  /**
   * The common chunk read in one pass over its bytes, without a parse (the hot path of a stream that may fail over):
   * one choice, index 0, no role, finish, tool call or reasoning, and its text (if any) as `"content":"…"` (chat) or
   * `"text":"…"` (completions). Strings are skipped whole, so a key is only ever found where a key is. False when the
   * chunk is not that plain (it is parsed then), or when no chunk has been parsed yet (the envelope is read from one).
   */
  #observePlain(buf: Buffer, from: number, to: number): boolean {
    if (this.#envelope === undefined) return false;
    const textKey = this.#kind === 'chat' ? CONTENT : TEXT;
    let indexes = 0;
    let p = from;
    while (p < to) {
      if (buf[p] !== QUOTE) {
        p++;
        continue;
      }
      const n = buf[p + 1];
      if (n === 0x69 /* i */ && holds(buf, p, INDEX)) {
        p = skipSpace(buf, p + INDEX.length);
        if (buf[p] !== 0x30 || isDigit(buf[p + 1] ?? 0) || ++indexes > 1) return false;
        continue;
      }
      if (n === 0x66 /* f */ && holds(buf, p, FINISH)) {
        p = skipSpace(buf, p + FINISH.length);
        if (buf[p] !== 0x6e /* null */) return false;
        continue;
      }
      if ((n === 0x72 /* r */ && (holds(buf, p, ROLE) || holds(buf, p, REASONING))) || (n === 0x74 /* t */ && holds(buf, p, TOOL_CALLS)) || (n === 0x66 && holds(buf, p, FUNCTION_CALL))) {
        return false;
      }
      if (n === textKey[1] && holds(buf, p, textKey)) {
        const start = skipSpace(buf, p + textKey.length);
        if (buf[start] !== QUOTE) {
          p = start; // null: no text
          continue;
        }
        const end = stringEnd(buf, start, to);
        if (end === -1) return false;
        if (end > start + 1) {
          const escaped = buf.indexOf(BACKSLASH, start) !== -1 && buf.indexOf(BACKSLASH, start) < end;
          this.#add(escaped ? (JSON.parse(buf.toString('utf8', start, end + 1)) as string) : buf.toString('utf8', start + 1, end));
        }
        p = end + 1;
        continue;
      }
      const end = stringEnd(buf, p, to);
      if (end === -1) return false;
      p = end + 1;
    }
    return indexes === 1;
  }
}
