/**
 * Byte-level edits of one chunk's compact JSON, for the common rewrites that do not need a parse.
 *
 * Why these are safe on JSON text: inside a JSON string every `"` is escaped, so a literal such as `"role":null`
 * (an unescaped quote right before the colon) can only be an object key and its value, never string content. The one
 * exception, a key that itself ends in an escaped quote, is checked by looking at the byte before the match.
 * All edits cut at ASCII boundaries, so a multibyte character is never split.
 */

/** Index of the key literal `"key":` at or after `from`, skipping matches preceded by a backslash; -1 if none. */
export function keyAt(data: string, literal: string, from = 0): number {
  let at = data.indexOf(literal, from);
  while (at > 0 && data.charCodeAt(at - 1) === 0x5c /* \ */) at = data.indexOf(literal, at + 1);
  return at;
}

/** Renames every key `from` to `to` (`"reasoning":` → `"reasoning_content":`). */
export function renameKey(data: string, from: string, to: string): string {
  const a = `"${from}":`;
  let at = keyAt(data, a);
  if (at === -1) return data;
  const b = `"${to}":`;
  let out = '';
  let last = 0;
  while (at !== -1) {
    out += data.slice(last, at) + b;
    last = at + a.length;
    at = keyAt(data, a, last);
  }
  return out + data.slice(last);
}

/** Removes every `"key":null` member, with its comma (`{"role":null,"content":"x"}` → `{"content":"x"}`). */
export function dropNullKey(data: string, key: string): string {
  const lit = `"${key}":null`;
  let at = keyAt(data, lit);
  while (at !== -1) {
    const end = at + lit.length;
    if (data.charCodeAt(end) === 0x2c /* , */) data = data.slice(0, at) + data.slice(end + 1);
    else if (data.charCodeAt(at - 1) === 0x2c) data = data.slice(0, at - 1) + data.slice(end);
    else data = data.slice(0, at) + data.slice(end);
    at = keyAt(data, lit, at > 0 ? at - 1 : 0);
  }
  return data;
}

/** Replaces the first occurrence of `find` with `replace`; the input when absent. */
export function replaceOnce(data: string, find: string, replace: string): string {
  const at = data.indexOf(find);
  return at === -1 ? data : data.slice(0, at) + replace + data.slice(at + find.length);
}

/** Cuts a trailing member such as `,"usage":null` before the chunk's closing brace. */
export function cutTail(data: string, member: string): string {
  return data.endsWith(`${member}}`) ? `${data.slice(0, data.length - member.length - 1)}}` : data;
}

/**
 * Replaces the string value of the chunk's leading `"id"` member (`{"id":"chatcmpl-487",…`). Returns the input
 * when the chunk does not start with it.
 */
export function replaceLeadingId(data: string, id: string): string {
  if (!data.startsWith('{"id":"')) return data;
  const end = data.indexOf('"', 7);
  return end === -1 ? data : `{"id":"${id}${data.slice(end)}`;
}

/** The value of the first `"finish_reason":"…"` in the chunk, or undefined when every finish_reason is null. */
export function finishReasonOf(data: string): string | undefined {
  const lit = '"finish_reason":"';
  const at = keyAt(data, lit);
  if (at === -1) return undefined;
  const start = at + lit.length;
  const end = data.indexOf('"', start);
  return end === -1 ? undefined : data.slice(start, end);
}

/** Rewrites every `"finish_reason":"from"` to `"finish_reason":to` (`to` is JSON: `"stop"` or `null`). */
export function replaceFinishReason(data: string, from: string, to: string): string {
  const find = `"finish_reason":"${from}"`;
  const repl = `"finish_reason":${to}`;
  let at = data.indexOf(find);
  while (at !== -1) {
    data = data.slice(0, at) + repl + data.slice(at + find.length);
    at = data.indexOf(find, at + repl.length);
  }
  return data;
}
