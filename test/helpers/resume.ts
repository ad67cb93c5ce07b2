import { request } from 'node:http';

/** A streamed response read over a raw socket (so the test decides when to cut it). */
export interface RawStream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Complete SSE frames received (without their blank line). */
  frames: string[];
  /** The body as received. */
  text: string;
}

/**
 * Sends a request and reads its SSE body. With `cutAfter`, the client's socket is destroyed as soon as at least that
 * many complete `data:` events arrived (the frames kept are exactly those received in full: the client's cursor is
 * their count); without it, reads to the end.
 */
export function rawStream(url: string, o: { method?: string; body?: unknown; headers?: Record<string, string>; cutAfter?: number } = {}): Promise<RawStream> {
  return new Promise((resolve, reject) => {
    const body = o.body === undefined ? undefined : JSON.stringify(o.body);
    const req = request(url, { method: o.method ?? (body ? 'POST' : 'GET'), agent: false, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...o.headers } }, (res) => {
      let text = '';
      const out = (): RawStream => {
        const complete = text.slice(0, text.lastIndexOf('\n\n') + 2);
        return { status: res.statusCode ?? 0, headers: res.headers, frames: complete.split('\n\n').filter((f) => f !== ''), text: complete };
      };
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        if (o.cutAfter !== undefined && dataEvents(out().frames) >= o.cutAfter) {
          const r = out();
          req.destroy();
          resolve(r);
        }
      });
      res.on('end', () => resolve(out()));
      res.on('error', () => resolve(out()));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Frames that are events (`data:` lines), not heartbeats. */
export function dataEvents(frames: string[]): number {
  return frames.filter((f) => /(^|\n)data:/.test(f)).length;
}

/** The events of frames, without heartbeat lines or `id:` lines: what a resume must reproduce. */
export function events(frames: string[]): string[] {
  return frames
    .map((f) =>
      f
        .split('\n')
        .filter((l) => !l.startsWith(':') && !l.startsWith('id:'))
        .join('\n'),
    )
    .filter((f) => f.includes('data:'));
}

/** The text of a chat stream's events (content deltas joined). */
export function chatText(evs: string[]): string {
  let s = '';
  for (const e of evs) {
    const d = e.slice(e.indexOf('data: ') + 6);
    if (d === '[DONE]' || !d.startsWith('{')) continue;
    const o = JSON.parse(d) as { choices?: { delta?: { content?: string } }[] };
    s += o.choices?.[0]?.delta?.content ?? '';
  }
  return s;
}
