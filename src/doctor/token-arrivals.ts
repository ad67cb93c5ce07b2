import type { Endpoint, StreamRecording } from './recording.ts';

/**
 * The events that carried generated text, with their arrival. Parses each data payload once; the doctor is not a hot
 * path. In probe mode each token's text is ` @<epoch ms>` written by the simulator when it sent the token.
 */

export interface TokenArrival {
  at: number;
  read: number;
  text: string;
  /** The simulator's write time (epoch ms) in probe mode, else null. */
  stamp: number | null;
}

const STAMP = /@(\d{12,}\.\d+)/;

/** Text carried by one parsed payload (its first choice), or '' when none. */
export function payloadText(endpoint: Endpoint, event: string | null, json: unknown): string {
  if (typeof json !== 'object' || json === null) return '';
  const obj = json as Record<string, unknown>;
  if (endpoint === 'responses') {
    const type = typeof obj['type'] === 'string' ? obj['type'] : event;
    if (type === 'response.output_text.delta' || type === 'response.reasoning_text.delta') {
      return typeof obj['delta'] === 'string' ? obj['delta'] : '';
    }
    return '';
  }
  const choices = obj['choices'];
  if (!Array.isArray(choices)) return '';
  let text = '';
  for (const c of choices) {
    if (typeof c !== 'object' || c === null) continue;
    const choice = c as Record<string, unknown>;
    // With n > 1 the engine writes one chunk per choice for the same step; timing follows the first choice only, so
    // that three chunks written together are not mistaken for three tokens held back and merged.
    if (typeof choice['index'] === 'number' && choice['index'] !== 0) continue;
    if (endpoint === 'completions') {
      if (typeof choice['text'] === 'string') text += choice['text'];
      continue;
    }
    const delta = choice['delta'];
    if (typeof delta !== 'object' || delta === null) continue;
    const d = delta as Record<string, unknown>;
    for (const key of ['content', 'reasoning_content', 'reasoning']) {
      const v = d[key];
      if (typeof v === 'string') text += v;
    }
    if (Array.isArray(d['tool_calls'])) {
      for (const call of d['tool_calls']) {
        const fn = typeof call === 'object' && call !== null ? (call as Record<string, unknown>)['function'] : undefined;
        const args = typeof fn === 'object' && fn !== null ? (fn as Record<string, unknown>)['arguments'] : undefined;
        if (typeof args === 'string') text += args;
      }
    }
  }
  return text;
}

/** Token-carrying events in arrival order. */
export function tokenArrivals(rec: StreamRecording): TokenArrival[] {
  const out: TokenArrival[] = [];
  for (const ev of rec.events) {
    if (ev.kind !== 'data' || ev.data === '[DONE]') continue;
    let json: unknown;
    try {
      json = JSON.parse(ev.data);
    } catch {
      continue;
    }
    const text = payloadText(rec.endpoint, ev.event, json);
    if (text === '') continue;
    const m = STAMP.exec(text);
    out.push({ at: ev.at, read: ev.read, text, stamp: m ? Number(m[1]) : null });
  }
  return out;
}
