import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';

/**
 * Content codings of upstream answers. Sluice asks every upstream for `accept-encoding: identity`
 * (src/upstream/upstream.ts), and engines honour it; an answer that comes encoded anyway was encoded by a hop in
 * between that ignores it. The policy (issue 12), decided per kind of answer:
 * - a whole answer (JSON, or an error body) is decoded: it has no timing to keep, decoding it costs one pass, and the
 *   output is bounded by the same limit as an unencoded body, so a gzip bomb stops at the limit;
 * - a stream is refused with a 502 (`streamCoding`): the relay finds SSE event boundaries in the bytes as they
 *   arrive, heartbeats and timeouts count upstream bytes, and a compressed stream arrives in whatever bursts the
 *   compressor flushes, so the token-by-token promise cannot be kept through such a hop. A clear error naming the
 *   hop is worth more than a stream that quietly arrives in one piece.
 */
export type ContentCoding = 'identity' | 'gzip' | 'deflate' | 'br';

/** The coding of an answer, from its `Content-Encoding`; a string naming anything else Sluice cannot decode. */
export function contentCoding(headers: IncomingHttpHeaders): ContentCoding | { unsupported: string } {
  const raw = headers['content-encoding'];
  if (raw === undefined) return 'identity';
  const codings = String(raw)
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return 'identity';
  // Stacked codings (`gzip, br`) are legal but nobody sends them to a client that asked for identity; one layer is
  // what a misconfigured proxy adds.
  if (codings.length > 1) return { unsupported: codings.join(', ') };
  const c = codings[0];
  if (c === 'gzip' || c === 'x-gzip') return 'gzip';
  if (c === 'deflate') return 'deflate';
  if (c === 'br') return 'br';
  return { unsupported: c ?? '' };
}

/**
 * A streaming decoder for one coding. `deflate` is the zlib format (RFC 9110 §8.4.1.2), but some servers send raw
 * deflate: like undici's fetch, look at the first byte (a zlib header's low nibble is 8, for the deflate method).
 */
export function createDecoder(coding: Exclude<ContentCoding, 'identity'>, firstByte: number | undefined): Transform {
  // zlib's default end of input is strict: a compressed body without its trailer fails ("unexpected end of file")
  // rather than passing for a whole answer.
  if (coding === 'gzip') return createGunzip();
  if (coding === 'br') return createBrotliDecompress();
  return firstByte !== undefined && (firstByte & 0x0f) === 0x08 ? createInflate() : createInflateRaw();
}

/**
 * The content coding of a stream's answer when it is not identity (see the policy above: the stream is refused, as
 * `upstreamFailure({ kind: 'encoded_stream' })`), or undefined for a plain stream. Call it before attaching an
 * upstream stream to the relay.
 */
export function streamCoding(headers: IncomingHttpHeaders): string | undefined {
  const coding = contentCoding(headers);
  if (coding === 'identity') return undefined;
  return typeof coding === 'string' ? coding : coding.unsupported;
}
