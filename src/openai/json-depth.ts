/**
 * The deepest nesting of arrays and objects accepted in a request body or WebSocket message. V8's `JSON.parse` is
 * iterative and parses any depth, but `JSON.stringify` and `structuredClone` recurse and throw a RangeError near 5,000
 * levels on Node's default stack (measured with Node 24.9); the gateway re-serializes bodies (an alias to rewrite,
 * `stream_options` to set), and Python engines (vLLM, SGLang) stop near Python's recursion limit of 1,000. Real
 * requests, JSON schemas of tools and structured outputs included, stay far below 512.
 */
export const MAX_JSON_DEPTH = 512;

/**
 * Whether a parsed JSON value nests arrays and objects more than `max` levels deep (the value itself is level 1).
 * Walks the parsed value with an explicit stack, so any depth is safe to check. Measured against a pre-scan of the
 * text for brackets outside strings: 0.8 µs instead of 3.4 µs for a 2 KB chat body, 1 µs instead of 36 ms for a 20 MB
 * one (a walk visits values, not characters), 1.6 ms instead of 3.5 ms for 200,000 token ids.
 */
export function exceedsJsonDepth(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  if (value === null || typeof value !== 'object') return false;
  const nodes: object[] = [value];
  const depths: number[] = [1];
  for (;;) {
    const node = nodes.pop();
    if (node === undefined) return false;
    const depth = depths.pop() as number;
    if (depth > max) return true;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v: unknown = node[i];
        if (v !== null && typeof v === 'object') {
          nodes.push(v);
          depths.push(depth + 1);
        }
      }
    } else {
      for (const k in node) {
        const v: unknown = (node as Record<string, unknown>)[k];
        if (v !== null && typeof v === 'object') {
          nodes.push(v);
          depths.push(depth + 1);
        }
      }
    }
  }
}
