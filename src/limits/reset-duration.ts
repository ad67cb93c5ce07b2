/**
 * A duration as OpenAI writes its `x-ratelimit-reset-*` headers (Go's duration format): `20ms`, `1s`, `1.5s`,
 * `6m0s`. SDKs and dashboards that parse OpenAI's headers read these.
 */
export function resetDuration(ms: number): string {
  if (ms <= 0) return '0s';
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  const totalS = Math.ceil(ms) / 1000;
  if (totalS < 60) return `${trim(totalS)}s`;
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS % 3600) / 60);
  const s = totalS - h * 3600 - m * 60;
  return `${h > 0 ? `${h}h` : ''}${m}m${trim(s)}s`;
}

const trim = (s: number): string => String(Math.round(s * 1000) / 1000);
