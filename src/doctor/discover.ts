import { DoctorError } from './doctor-error.ts';
import { fetchSmall } from './fetch-small.ts';
import type { Transport } from './http-exchange.ts';
import { isSluiceTarget } from './hops.ts';
import type { ResponseHead } from './recording.ts';

/**
 * Before probing: the model list (to pick a model when none was given) and whether the target is Sluice or its
 * simulator (then the doctor can ask for probe stamps and a slow first token).
 */

export interface Target {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:8080/v1. */
  baseUrl: string;
  models: string[];
  /** The model the probes use. */
  model: string;
  kind: 'sluice' | 'simulator' | 'other';
  /** Status of GET /models, or null when it could not be read. */
  modelsStatus: number | null;
}

/** Normalizes the URL the user gave: a base URL like the SDKs' baseURL; a full endpoint URL is trimmed to it. */
export function normalizeBaseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DoctorError('SLUICE_DOCTOR_BAD_URL', `'${raw}' is not a URL; give the base URL ending in /v1, e.g. http://localhost:8000/v1`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DoctorError('SLUICE_DOCTOR_BAD_URL', `'${raw}': only http and https URLs can be probed`);
  }
  url.pathname = url.pathname.replace(/\/+$/, '').replace(/\/(chat\/completions|completions|responses|models)$/, '');
  url.hash = '';
  return url;
}

/** Joins the base URL and an endpoint path ("/chat/completions"). */
export function endpointUrl(base: URL, path: string): URL {
  const url = new URL(base.href);
  url.pathname = `${base.pathname.replace(/\/+$/, '')}${path}`;
  return url;
}

/** Reads /models and decides the model and target kind. */
export async function discoverTarget(base: URL, headers: Array<[string, string]>, model: string | null, timeoutMs: number, transport?: Transport): Promise<Target> {
  const url = endpointUrl(base, '/models');
  const res = await fetchSmall({ url, method: 'GET', headers, timeoutMs, transport });
  const status = res.head.status;
  if (status === 401 || status === 403) throw unauthorized(url, res.head, res.body);
  let models: string[] = [];
  if (status >= 200 && status < 300) {
    try {
      const json = JSON.parse(res.body.toString('utf8')) as { data?: Array<{ id?: unknown }> };
      models = (json.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
    } catch {
      models = [];
    }
  }
  const chosen = model ?? models[0] ?? null;
  if (chosen === null) {
    throw new DoctorError(
      'SLUICE_DOCTOR_NO_MODEL',
      `could not learn a model from ${url.href} (HTTP ${status}${models.length === 0 && status < 300 ? ', empty list' : ''}); pass one with --model`,
      { status },
    );
  }
  const h = res.head.headers;
  const kind = isSluiceTarget(h) ? (h.some(([k]) => k.toLowerCase() === 'x-sluice-gateway') ? 'sluice' : 'simulator') : 'other';
  return { baseUrl: base.href.replace(/\/+$/, ''), models, model: chosen, kind, modelsStatus: status };
}

/** The error for a 401/403, with the server's own message when it gave one. */
export function unauthorized(url: URL, head: ResponseHead, body: Buffer): DoctorError {
  const message = errorMessage(body);
  return new DoctorError(
    'SLUICE_DOCTOR_UNAUTHORIZED',
    `${url.href} answered ${head.status} ${head.statusText}${message ? ` (${message})` : ''}: pass the API key with --key, or the header your gateway expects with --header 'Name: value'`,
    { status: head.status },
  );
}

/** `error.message` (or a short text) from an error body. */
export function errorMessage(body: Buffer): string | null {
  const text = body.toString('utf8').trim();
  if (text === '') return null;
  try {
    const json = JSON.parse(text) as Record<string, unknown>;
    const err = json['error'];
    if (typeof err === 'string') return err;
    if (typeof err === 'object' && err !== null && typeof (err as Record<string, unknown>)['message'] === 'string') {
      return (err as Record<string, unknown>)['message'] as string;
    }
    if (typeof json['message'] === 'string') return json['message'];
    if (typeof json['detail'] === 'string') return json['detail'];
  } catch {
    // Not JSON: an HTML error page from a proxy, say.
  }
  const oneLine = text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
  return oneLine.length > 160 ? `${oneLine.slice(0, 160)}…` : oneLine;
}
