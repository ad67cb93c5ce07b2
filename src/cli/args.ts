/** A command-line mistake: printed as one line with the usage hint, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses an integer flag or env value within [min, max]; `undefined` gives the default. */
export function intOption(name: string, raw: string | undefined, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${name}: '${raw}' is not a whole number from ${min} to ${max}`);
  }
  return n;
}
