import type { HttpRequest } from './http-types.ts';
import { SluiceError } from '../errors.ts';

/** Reads a request body up to `max` bytes; larger bodies are refused with 413 without reading them whole. */
export async function readBody(req: HttpRequest, max: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    throw new SluiceError('SLUICE_BODY_TOO_LARGE', `Request body of ${declared} bytes exceeds the limit of ${max} bytes.`);
  }
  // Events rather than an async iterator: cheaper per request, and this runs for every request.
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (err: SluiceError): void => {
      if (failed) return;
      failed = true;
      req.off('data', onData);
      req.resume();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > max) return fail(new SluiceError('SLUICE_BODY_TOO_LARGE', `Request body exceeds the limit of ${max} bytes.`));
      parts.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      // These listeners would otherwise stay for as long as the request (a whole stream), keeping the body's chunks
      // and this promise's result, the body text, alive. IncomingMessage emits 'error' only when it has listeners.
      req.off('data', onData);
      req.off('error', aborted);
      req.off('close', onClose);
      if (!failed) resolve(parts.length === 1 ? (parts[0] as Buffer).toString('utf8') : Buffer.concat(parts, size).toString('utf8'));
    });
    // The connection (HTTP/1.1) or stream (HTTP/2: reset, or past the request time bound) ended mid-body.
    const aborted = (err?: unknown): void =>
      fail(new SluiceError('SLUICE_CLIENT_ABORTED', 'the client stopped before sending the whole request body', { cause: err }));
    const onClose = (): void => {
      if (!req.complete) aborted();
    };
    req.once('error', aborted);
    req.once('close', onClose);
  });
}
