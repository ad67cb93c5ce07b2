import type { HttpRequest } from './http-types.ts';
import { SluiceError } from '../errors.ts';

/**
 * The refusal (415 SLUICE_UNSUPPORTED_MEDIA_TYPE) of a POST body not declared as `application/json`, or undefined.
 * Browsers send `text/plain`, form and multipart bodies across sites without a CORS preflight, so any web page could
 * otherwise run generations on a gateway without keys (the default on loopback); `application/json` makes the browser
 * ask first, and CORS answers. The clients send it: openai-node (its FallbackEncoder), the AI SDK (`postJsonToApi`),
 * openai-python (`default_headers`), LangChain through them, and curl with `-H 'Content-Type: application/json'`.
 * Parameters (`; charset=utf-8`) and any letter case are accepted.
 */
export function contentTypeRefusal(req: HttpRequest): SluiceError | undefined {
  const type = req.headers['content-type'];
  if (type === 'application/json' || (type !== undefined && isJson(type))) return undefined;
  const got = type === undefined ? 'no Content-Type' : `'${type.length > 100 ? `${type.slice(0, 100)}…` : type}'`;
  return new SluiceError('SLUICE_UNSUPPORTED_MEDIA_TYPE', `Request bodies must be sent with 'Content-Type: application/json'; this request has ${got}.`);
}

function isJson(type: string): boolean {
  const semi = type.indexOf(';');
  return (semi === -1 ? type : type.slice(0, semi)).trim().toLowerCase() === 'application/json';
}
