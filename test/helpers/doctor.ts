import assert from 'node:assert/strict';
import type { ProbeResult } from '../../src/doctor/probe-result.ts';
import type { DoctorReport } from '../../src/doctor/run-doctor.ts';

/** What the probe measured, for assertion messages: enough to tell a slow machine from a slow hop. */
export function probeInfo(p: ProbeResult | undefined): string {
  const m = p?.metrics;
  return JSON.stringify({ probeMode: p?.probeMode, rejected: m?.probeRejected, delay: m?.probe?.delay, lag: p?.recording.loopLag, perRead: m?.tokensPerDelivery });
}

/** The check `id` of probe `probe` in a report; fails the test, listing what exists, when it is missing. */
export function findCheck(report: DoctorReport, id: string, probe = 'chat'): DoctorReport['checks'][number] {
  const c = report.checks.find((x) => x.id === id && x.probe === probe);
  assert.ok(c, `no check ${id} for ${probe} in ${report.checks.map((x) => `${x.probe}/${x.id}`).join(', ')}`);
  return c;
}
