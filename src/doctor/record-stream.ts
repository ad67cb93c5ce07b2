import type { Transform } from 'node:stream';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { constants as zc, createBrotliDecompress, createUnzip } from 'node:zlib';
import { createParser, type SseParser } from '../sse/parser.ts';
import { startExchange, type Transport } from './http-exchange.ts';
import { HOP_REPORT_PREFIX } from './sluice-hop.ts';
import { headerValue, type Endpoint, type EventRecord, type ReadRecord, type ResponseHead, type StreamRecording } from './recording.ts';

/**
 * Sends one streaming request and records what arrives: each socket read with its time and size, each SSE event with
 * its time and read, the decoded body, and how the response ended. Decompresses gzip/deflate/br bodies so that a
 * compressed stream can still be judged.
 */

export interface RecordStreamOptions {
  /** Full endpoint URL (base URL + /chat/completions etc.). */
  url: URL;
  endpoint: Endpoint;
  headers: Array<[string, string]>;
  body: Record<string, unknown>;
  /** The whole probe gives up after this long. */
  deadlineMs: number;
  /** After the stream's terminator, how long to wait for the response to end before calling it left open. */
  doneGraceMs: number;
  connectTimeoutMs: number;
  transport?: Transport | undefined;
  /** Decoded body bytes kept for analysis. */
  maxBodyBytes?: number;
}

const LAG_RESOLUTION_MS = 10;

/** The histogram records each timer's whole interval in ns; the lag is what exceeds the resolution. */
function lagMs(ns: number): number {
  return Number.isFinite(ns) ? Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS) : 0;
}

const TERMINAL_RESPONSES_EVENTS = new Set(['response.completed', 'response.failed', 'response.incomplete', 'error']);

/** Records one stream. Rejects with a DoctorError when no response head arrives. */
export async function recordStream(options: RecordStreamOptions): Promise<StreamRecording> {
  const maxBody = options.maxBodyBytes ?? 8 * 1024 * 1024;
  // A read that arrives while this process is busy is handled late and looks like a hop's delay; measure how late.
  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  lag.enable();
  const t0 = performance.now();
  const startedAt = performance.timeOrigin + t0;
  const reads: ReadRecord[] = [];
  const events: EventRecord[] = [];
  const bodyParts: Buffer[] = [];
  let bodyLength = 0;
  let bodyCapped = false;
  let connectedAt = -1;
  let head: ResponseHead | null = null;
  let doneAt: number | null = null;
  let parseError: string | null = null;
  let currentRead = -1;
  let decoder: Transform | null = null;
  let graceTimer: NodeJS.Timeout | undefined;

  const parser: SseParser = createParser({
    onEvent(ev) {
      const read = reads[currentRead];
      const at = read?.at ?? 0;
      events.push({ at, read: currentRead, kind: 'data', data: ev.data, event: ev.event ?? null, id: ev.id ?? null });
      if (doneAt === null && isTerminal(options.endpoint, ev.event ?? null, ev.data)) {
        doneAt = at;
        graceTimer = setTimeout(() => exchange.abort('open-after-done'), options.doneGraceMs);
      }
    },
    onComment(text) {
      const at = reads[currentRead]?.at ?? 0;
      events.push({ at, read: currentRead, kind: text.startsWith(HOP_REPORT_PREFIX) ? 'report' : 'comment', data: text, event: null, id: null });
    },
  });

  function decoded(chunk: Buffer): void {
    const read = reads[currentRead];
    if (read) read.bodyBytes += chunk.length;
    if (bodyLength + chunk.length <= maxBody) {
      bodyParts.push(Buffer.from(chunk));
      bodyLength += chunk.length;
    } else {
      bodyCapped = true;
    }
    if (parseError !== null || head === null || head.status < 200 || head.status >= 300) return;
    try {
      parser.feed(chunk);
    } catch (err) {
      parseError = (err as Error).message;
    }
  }

  const exchange = startExchange(
    { url: options.url, method: 'POST', headers: options.headers, body: JSON.stringify(options.body), t0, connectTimeoutMs: options.connectTimeoutMs, transport: options.transport },
    {
      onConnect(at) {
        connectedAt = at;
      },
      onHead(h) {
        head = h;
        const encoding = (headerValue(h.headers, 'content-encoding') ?? '').trim().toLowerCase();
        if (encoding === 'gzip' || encoding === 'x-gzip' || encoding === 'deflate') {
          decoder = createUnzip({ flush: zc.Z_SYNC_FLUSH, finishFlush: zc.Z_SYNC_FLUSH });
        } else if (encoding === 'br') {
          decoder = createBrotliDecompress({ flush: zc.BROTLI_OPERATION_FLUSH, finishFlush: zc.BROTLI_OPERATION_FLUSH });
        } else if (encoding !== '' && encoding !== 'identity') {
          parseError = `cannot decode Content-Encoding '${encoding}'`;
        }
        if (decoder !== null) {
          decoder.on('data', (c: Buffer) => decoded(c));
          decoder.on('error', (err: Error) => {
            parseError ??= `decompression failed: ${err.message}`;
          });
        }
      },
      onRead(at, wireBytes, body) {
        reads.push({ at, wireBytes, bodyBytes: 0 });
        currentRead = reads.length - 1;
        for (const part of body) {
          if (decoder !== null) decoder.write(part);
          else if (parseError === null) decoded(part);
        }
      },
    },
  );
  const deadline = setTimeout(() => exchange.abort('deadline'), options.deadlineMs);
  try {
    const end = await exchange.done;
    if (decoder !== null) await drain(decoder);
    const h = head as ResponseHead | null;
    if (h === null) throw new Error('unreachable: exchange ended without a head');
    const reason =
      end.reason === 'aborted' ? (end.detail === 'open-after-done' ? 'open-after-done' : 'timeout') : end.reason;
    return {
      url: options.url.href,
      endpoint: options.endpoint,
      requestBody: options.body,
      startedAt,
      connectedAt: Math.max(0, connectedAt),
      head: h,
      reads,
      events,
      body: Buffer.concat(bodyParts, bodyLength),
      bodyCapped,
      end: { at: end.at, reason, detail: end.reason === 'aborted' ? null : end.detail },
      doneAt,
      parseError,
      loopLag: {
        p50: lagMs(lag.percentile(50)),
        p99: lagMs(lag.percentile(99)),
        max: lagMs(lag.max),
      },
    };
  } finally {
    lag.disable();
    clearTimeout(deadline);
    clearTimeout(graceTimer);
  }
}

function isTerminal(endpoint: Endpoint, event: string | null, data: string): boolean {
  if (endpoint !== 'responses') return data === '[DONE]';
  if (event !== null) return TERMINAL_RESPONSES_EVENTS.has(event);
  const m = /"type"\s*:\s*"([^"]+)"/.exec(data);
  return m !== null && TERMINAL_RESPONSES_EVENTS.has(m[1] ?? '');
}

/** Ends the decompressor and waits until everything it holds was emitted. */
function drain(decoder: Transform): Promise<void> {
  return new Promise((resolve) => {
    decoder.once('end', () => resolve());
    decoder.once('error', () => resolve());
    decoder.end();
    decoder.resume();
  });
}
