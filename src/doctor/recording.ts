/**
 * What one probe saw on the wire: the response head, every socket read (time and size) and every SSE event (time and
 * the read that completed it). All times are milliseconds since the probe started (before connecting); `startedAt`
 * anchors them to the epoch on this machine's clock (performance.timeOrigin + performance.now()), the clock the
 * simulator's probe stamps use.
 */

export type Endpoint = 'chat' | 'completions' | 'responses';

export const ENDPOINT_PATHS: Readonly<Record<Endpoint, string>> = {
  chat: '/chat/completions',
  completions: '/completions',
  responses: '/responses',
};

export interface ResponseHead {
  status: number;
  statusText: string;
  /** "1.1" or "1.0", from the status line. */
  httpVersion: string;
  /** Header fields in arrival order, names as sent. */
  headers: Array<[string, string]>;
  /** When the first byte of the response arrived (time to first byte). */
  firstByteAt: number;
  /** When the end of the head arrived. */
  at: number;
}

export interface ReadRecord {
  at: number;
  /** Bytes read from the socket (head, chunk framing and compressed bytes included). */
  wireBytes: number;
  /** Decoded body bytes this read completed (after dechunking and decompression). */
  bodyBytes: number;
}

export interface EventRecord {
  at: number;
  /** Index in `reads` of the read that completed this event. */
  read: number;
  /** `report`: Sluice's hop report comment (`: sluice-hop {…}`), kept apart from heartbeats. */
  kind: 'data' | 'comment' | 'report';
  /** Data lines joined with "\n", or the comment text. */
  data: string;
  event: string | null;
  id: string | null;
}

export type EndReason =
  /** The body ended as framed (last chunk, Content-Length reached, or close for a close-delimited body). */
  | 'complete'
  /** The server closed the connection before the body's framing ended. */
  | 'closed'
  /** The connection was reset or failed mid-body. */
  | 'error'
  /** The response was still open when the probe's deadline passed. */
  | 'timeout'
  /** The response was still open after the stream's terminator and a grace period; the doctor closed it. */
  | 'open-after-done';

export interface StreamRecording {
  url: string;
  endpoint: Endpoint;
  /** The JSON body sent. */
  requestBody: Record<string, unknown>;
  /** Epoch ms (this machine's clock) of time 0. */
  startedAt: number;
  /** When the TCP (and TLS) connection was ready. */
  connectedAt: number;
  head: ResponseHead;
  reads: ReadRecord[];
  events: EventRecord[];
  /** The decoded body (up to a cap). */
  body: Buffer;
  bodyCapped: boolean;
  end: { at: number; reason: EndReason; detail: string | null };
  /** Arrival of `data: [DONE]` (or the terminal event of a Responses stream), if any. */
  doneAt: number | null;
  /** A framing error that stopped parsing (bad chunking, decompression, an oversize SSE line). */
  parseError: string | null;
  /** How late the doctor's own event loop ran during the probe (a busy machine delays reads too), ms. */
  loopLag: { p50: number; p99: number; max: number };
}

/** Case-insensitive header lookup; several fields with the same name are joined with ", ". */
export function headerValue(headers: ReadonlyArray<readonly [string, string]>, name: string): string | null {
  const lower = name.toLowerCase();
  const values = headers.filter(([k]) => k.toLowerCase() === lower).map(([, v]) => v);
  return values.length === 0 ? null : values.join(', ');
}

/** All values of a header, one per field. */
export function headerValues(headers: ReadonlyArray<readonly [string, string]>, name: string): string[] {
  const lower = name.toLowerCase();
  return headers.filter(([k]) => k.toLowerCase() === lower).map(([, v]) => v);
}
