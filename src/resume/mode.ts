import { SluiceError } from '../errors.ts';

/** How a request asked to be resumable: `ids` adds `id:` lines to its frames (for EventSource-style clients). */
export interface ResumeMode {
  ids: boolean;
}

/**
 * The request's `X-Sluice-Resume` header against `resume.default`: `1` (or `true`) resumable with frames unchanged,
 * `ids` resumable with `id:` lines, `0` (or `false`) not resumable even when the default is on; absent, the default.
 * Anything else is refused, so a typo does not silently lose the resumability a client relies on.
 */
export function resumeMode(header: string | string[] | undefined, byDefault: boolean): ResumeMode | undefined {
  if (header === undefined) return byDefault ? { ids: false } : undefined;
  const v = (Array.isArray(header) ? header.join(',') : header).trim().toLowerCase();
  if (v === '1' || v === 'true') return { ids: false };
  if (v === 'ids') return { ids: true };
  if (v === '0' || v === 'false') return undefined;
  throw new SluiceError('SLUICE_INVALID_REQUEST', `X-Sluice-Resume must be 1, ids or 0, not '${v.slice(0, 40)}'`, { param: 'X-Sluice-Resume' });
}
