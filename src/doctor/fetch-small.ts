import { startExchange, type Transport } from './http-exchange.ts';
import type { ResponseHead } from './recording.ts';

/**
 * A small request whose whole answer is read into memory (the model list, a CORS preflight), through the same
 * HTTP client as the probes so that the same headers reach the same hops.
 */

export interface SmallRequest {
  url: URL;
  method: 'GET' | 'OPTIONS' | 'POST';
  headers: Array<[string, string]>;
  body?: string;
  timeoutMs: number;
  /** Largest body kept; the rest is dropped. */
  maxBodyBytes?: number;
  transport?: Transport | undefined;
}

export interface SmallResponse {
  head: ResponseHead;
  body: Buffer;
}

/** Rejects with a DoctorError when no response head arrives. */
export async function fetchSmall(req: SmallRequest): Promise<SmallResponse> {
  const max = req.maxBodyBytes ?? 1024 * 1024;
  const parts: Buffer[] = [];
  let size = 0;
  let head: ResponseHead | null = null;
  const exchange = startExchange(
    { url: req.url, method: req.method, headers: req.headers, body: req.body ?? null, t0: performance.now(), connectTimeoutMs: req.timeoutMs, transport: req.transport },
    {
      onHead(h) {
        head = h;
      },
      onRead(_at, _wire, body) {
        for (const b of body) {
          if (size + b.length > max) {
            exchange.abort('body too large');
            return;
          }
          parts.push(Buffer.from(b));
          size += b.length;
        }
      },
    },
  );
  const timer = setTimeout(() => exchange.abort(`no complete answer after ${req.timeoutMs} ms`), req.timeoutMs);
  try {
    await exchange.done;
  } finally {
    clearTimeout(timer);
  }
  const h = head as ResponseHead | null;
  if (h === null) throw new Error('unreachable: exchange ended without a head');
  return { head: h, body: Buffer.concat(parts, size) };
}
