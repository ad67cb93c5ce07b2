import type { HttpRequest } from './http-types.ts';
import { SluiceError } from '../errors.ts';

/** Reads a request body up to `max` bytes; larger bodies are refused with 413 without reading them whole. */
export async function readBody(req: HttpRequest, max: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    throw new SluiceError('SLUICE_BODY_TOO_LARGE', `Request body of ${declared} bytes exceeds the limit of ${max} bytes.`);
  }
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      const b = chunk as Buffer;
      size += b.length;
      if (size > max) throw new SluiceError('SLUICE_BODY_TOO_LARGE', `Request body exceeds the limit of ${max} bytes.`);
      parts.push(b);
    }
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    // The connection (HTTP/1.1) or stream (HTTP/2: reset, or past the request time bound) ended mid-body.
    throw new SluiceError('SLUICE_CLIENT_ABORTED', 'the client stopped before sending the whole request body', { cause: err });
  }
  return Buffer.concat(parts, size).toString('utf8');
}
