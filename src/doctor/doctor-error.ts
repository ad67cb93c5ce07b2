/**
 * Errors that stop a diagnosis before any check can run: the endpoint cannot be reached, refuses the key, or does not
 * answer with a stream at all. Each has a stable code and a message that says what to do next.
 */

export const DOCTOR_ERROR_CODES = [
  'SLUICE_DOCTOR_BAD_URL',
  'SLUICE_DOCTOR_UNREACHABLE',
  'SLUICE_DOCTOR_TIMEOUT',
  'SLUICE_DOCTOR_UNAUTHORIZED',
  'SLUICE_DOCTOR_NO_MODEL',
  'SLUICE_DOCTOR_HTTP_ERROR',
  'SLUICE_DOCTOR_NOT_SSE',
  'SLUICE_DOCTOR_BAD_RESPONSE',
] as const;

export type DoctorErrorCode = (typeof DOCTOR_ERROR_CODES)[number];

export class DoctorError extends Error {
  readonly code: DoctorErrorCode;
  /** HTTP status of the answer that caused it, when there was one. */
  readonly status: number | null;

  constructor(code: DoctorErrorCode, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DoctorError';
    this.code = code;
    this.status = options.status ?? null;
  }

  toJSON(): { code: DoctorErrorCode; message: string; status: number | null } {
    return { code: this.code, message: this.message, status: this.status };
  }
}
