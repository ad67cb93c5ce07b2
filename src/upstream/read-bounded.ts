import type { Dispatcher } from 'undici';

/** Reads at most `max` bytes of an undici body as text; the rest is discarded and the request ended. */
export async function readBounded(body: Dispatcher.ResponseData['body'], max: number): Promise<{ text: string; truncated: boolean }> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (size + b.length > max) {
      parts.push(b.subarray(0, max - size));
      size = max;
      body.destroy();
      return { text: Buffer.concat(parts).toString('utf8'), truncated: true };
    }
    parts.push(b);
    size += b.length;
  }
  return { text: Buffer.concat(parts).toString('utf8'), truncated: false };
}
