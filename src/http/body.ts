import type { IncomingMessage } from 'node:http';
import { SluiceError } from '../errors.ts';

/** Reads a request body up to `max` bytes; larger bodies are refused with 413 without reading them whole. */
export async function readBody(req: IncomingMessage, max: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    throw new SluiceError('SLUICE_BODY_TOO_LARGE', `Request body of ${declared} bytes exceeds the limit of ${max} bytes.`);
  }
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > max) throw new SluiceError('SLUICE_BODY_TOO_LARGE', `Request body exceeds the limit of ${max} bytes.`);
    parts.push(b);
  }
  return Buffer.concat(parts, size).toString('utf8');
}
