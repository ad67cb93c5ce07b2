/**
 * JSON as Python's `json.dumps` writes it with default arguments: `", "` and `": "` separators and non-ASCII
 * characters escaped as `\uXXXX` (ensure_ascii). vLLM and SGLang write their in-band error frames this way
 * (`create_streaming_error_response`), and tool parsers their arguments.
 */
export function pyDumps(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return asciiString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pyDumps).join(', ')}]`;
  const entries = Object.entries(value as Record<string, unknown>).map(([k, v]) => `${asciiString(k)}: ${pyDumps(v)}`);
  return `{${entries.join(', ')}}`;
}

function asciiString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A string as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped (Ollama). */
export function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
