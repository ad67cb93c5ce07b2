import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CallFrame, CpuProfile, ProfileNode } from './cpuprofile.ts';

/**
 * What one request costs, phase by phase, from a V8 .cpuprofile of `sluice serve` (bench/run.ts --cpu-prof DIR, or
 * bench/micro/requests.ts --cpu-prof DIR). Each sample goes to the phase of the innermost frame a rule below names, so
 * a `writev` under the relay's chunk write counts as "write to the client" and the same `writev` under undici's
 * request write as "upstream request". Samples under module loading are start-up and left out of the per-request
 * figures. Time is V8's sampled busy time of the main thread: it includes the system calls made from it, and not the
 * GC helper threads (so it is below the /proc CPU figure; the harness reports both).
 *
 *   node bench/phases.ts FILE.cpuprofile [--requests N] [--unmatched K] [--detail K]
 *
 * With --requests (the requests the process served while profiled; the harness prints them), each phase is also
 * given in µs per request; --unmatched lists the commonest stacks no rule named, --detail each phase's top functions
 * by self time.
 */

/** A rule: a function name (exact) and where it lives (a substring of its URL, '' for native or any). */
type Rule = readonly [phase: string, name: string | RegExp, url: string];

export const PHASES = [
  'accept the connection',
  'request head (node:http parser)',
  'route: request id, Host, CORS, auth',
  'read the body',
  'validate the body',
  'admit and route',
  'generation set-up: log entry, relay, signals, writer',
  'upstream request (build, undici dispatch, write)',
  'upstream connect',
  'upstream response (undici read, parse headers)',
  'relay: SSE parse, usage, pass-through',
  'client response head',
  'client writes (chunks and last chunk)',
  'finish: metrics, log, ledger, console',
  'teardown: close and destroy sockets',
  'timers',
  'GC',
  'V8 (program)',
  'other',
] as const;

const RULES: readonly Rule[] = [
  ['accept the connection', 'onconnection', 'node:net'],
  ['accept the connection', 'connectionListenerInternal', 'node:_http_server'],
  ['request head (node:http parser)', 'parserOnHeadersComplete', 'node:_http_common'],
  ['request head (node:http parser)', 'parserOnIncoming', 'node:_http_server'],
  ['request head (node:http parser)', 'parserOnMessageComplete', 'node:_http_common'],
  ['request head (node:http parser)', 'socketOnData', 'node:_http_server'],
  ['request head (node:http parser)', 'onStreamRead', 'node:internal/stream_base_commons'],
  ['route: request id, Host, CORS, auth', 'route', '/src/http/server.ts'],
  ['route: request id, Host, CORS, auth', /./, '/src/auth/'],
  ['read the body', 'readBody', '/src/http/body.ts'],
  ['read the body', /./, '/src/http/body.ts'],
  ['read the body', 'endReadableNT', 'node:internal/streams/readable'],
  ['validate the body', 'parseRequest', '/src/openai/request.ts'],
  ['validate the body', /./, '/node_modules/zod/'],
  ['admit and route', /./, '/src/routing/'],
  ['admit and route', /./, '/src/limits/'],
  ['admit and route', '#admit', '/src/generation/generation.ts'],
  ['generation set-up: log entry, relay, signals, writer', 'stream', '/src/generation/generation.ts'],
  ['generation set-up: log entry, relay, signals, writer', 'handleGenerate', '/src/http/generate.ts'],
  ['generation set-up: log entry, relay, signals, writer', /./, '/src/upstream/arrival-stats.ts'],
  ['upstream request (build, undici dispatch, write)', /./, '/src/generation/forward.ts'],
  ['upstream request (build, undici dispatch, write)', 'upstreamBody', '/src/openai/request.ts'],
  ['upstream request (build, undici dispatch, write)', 'dispatchRequest', '/src/upstream/upstream-body.ts'],
  ['upstream request (build, undici dispatch, write)', '_resume', '/node_modules/undici/'],
  ['upstream request (build, undici dispatch, write)', 'dispatch', '/node_modules/undici/'],
  ['upstream connect', 'internalConnect', 'node:net'],
  ['upstream connect', 'afterConnect', 'node:net'],
  ['upstream connect', 'connect', '/node_modules/undici/lib/core/connect.js'],
  ['upstream response (undici read, parse headers)', 'onHttpSocketReadable', '/node_modules/undici/'],
  ['upstream response (undici read, parse headers)', 'onResponseStart', '/src/upstream/upstream-body.ts'],
  ['relay: SSE parse, usage, pass-through', '#onData', '/src/relay/stream-relay.ts'],
  ['relay: SSE parse, usage, pass-through', 'attachStreamAnswer', '/src/generation/attach.ts'],
  ['client response head', 'open', '/src/http/sse-writer.ts'],
  ['client response head', 'flushHeaders', 'node:_http_outgoing'],
  ['client response head', 'writeHead', 'node:_http_server'],
  ['client response head', 'setHeader', 'node:_http_outgoing'],
  ['client writes (chunks and last chunk)', 'writeRaw', '/src/http/sse-writer-h1.ts'],
  ['client writes (chunks and last chunk)', 'end', '/src/http/sse-writer-h1.ts'],
  ['client writes (chunks and last chunk)', 'connectionCorkNT', 'node:_http_outgoing'],
  ['finish: metrics, log, ledger, console', '#end', '/src/generation/generation.ts'],
  ['finish: metrics, log, ledger, console', 'onFinish', '/src/generation/generation.ts'],
  ['finish: metrics, log, ledger, console', '#finish', '/src/relay/stream-relay.ts'],
  ['finish: metrics, log, ledger, console', /./, '/src/metrics/'],
  ['finish: metrics, log, ledger, console', /./, '/src/console/'],
  ['finish: metrics, log, ledger, console', /./, '/src/ledger/'],
  ['finish: metrics, log, ledger, console', /./, '/node_modules/prom-client/'],
  ['teardown: close and destroy sockets', 'destroy', 'node:internal/streams/destroy'],
  ['teardown: close and destroy sockets', 'resOnFinish', 'node:_http_server'],
  ['teardown: close and destroy sockets', 'socketOnClose', 'node:_http_server'],
  ['teardown: close and destroy sockets', 'afterWrite', 'node:internal/streams/writable'],
  ['teardown: close and destroy sockets', 'emitCloseNT', 'node:net'],
  ['teardown: close and destroy sockets', 'onReadableStreamEnd', 'node:net'],
  ['timers', 'processTimers', 'node:internal/timers'],
  ['GC', '(garbage collector)', ''],
  ['V8 (program)', '(program)', ''],
];

const START_UP = new Set(['getModuleJobForImport', 'compileSourceTextModule', '#link', 'compileForInternalLoader', 'wrapModuleLoad', 'requireBuiltin', 'evaluate', 'executeUserEntryPoint']);

const WRITES = new Set(['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String', 'writevGeneric']);

function phaseOf(cf: CallFrame): string | undefined {
  for (const [phase, name, url] of RULES) {
    if (url !== '' && !cf.url.includes(url)) continue;
    if (typeof name === 'string' ? cf.functionName === name : name.test(cf.functionName)) return phase;
  }
  return undefined;
}

export interface PhaseTimes {
  /** ms of busy (not idle) samples per phase, start-up excluded. */
  phases: Map<string, number>;
  startupMs: number;
  busyMs: number;
  /** Per phase, ms of self time per function (name and URL's last part). */
  detail: Map<string, Map<string, number>>;
  /** The commonest stacks no rule named, with their ms. */
  unmatched: Array<[string, number]>;
}

export function phaseTimes(profile: CpuProfile): PhaseTimes {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const memo = new Map<number, { phase: string | undefined; startup: boolean }>();
  const classify = (id: number): { phase: string | undefined; startup: boolean } => {
    const hit = memo.get(id);
    if (hit) return hit;
    const node = byId.get(id);
    if (!node) return { phase: undefined, startup: false };
    const up = parent.has(id) ? classify(parent.get(id) as number) : { phase: undefined, startup: false };
    const own = phaseOf(node.callFrame);
    const out = { phase: own ?? up.phase, startup: up.startup || START_UP.has(node.callFrame.functionName) };
    memo.set(id, out);
    return out;
  };
  const phases = new Map<string, number>(PHASES.map((p) => [p, 0]));
  const unmatched = new Map<string, number>();
  const detail = new Map<string, Map<string, number>>();
  let startupMs = 0;
  let busyMs = 0;
  profile.samples.forEach((id, i) => {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') return;
    const c = classify(id);
    if (c.startup) {
      startupMs += dt;
      return;
    }
    busyMs += dt;
    // The response's last write runs inside the generation's finish (`res.end()`); it is a client write all the same.
    const phase = WRITES.has(node.callFrame.functionName) && (c.phase === undefined || c.phase.startsWith('finish')) ? 'client writes (chunks and last chunk)' : (c.phase ?? 'other');
    phases.set(phase, (phases.get(phase) ?? 0) + dt);
    let fns = detail.get(phase);
    if (fns === undefined) detail.set(phase, (fns = new Map()));
    const fn = `${node.callFrame.functionName || '(anonymous)'} ${node.callFrame.url.split('/').slice(-2).join('/')}`;
    fns.set(fn, (fns.get(fn) ?? 0) + dt);
    if (c.phase === undefined) {
      const names: string[] = [];
      for (let cur: ProfileNode | undefined = node; cur && names.length < 8; cur = byId.get(parent.get(cur.id) ?? -1)) names.push(cur.callFrame.functionName || '(anonymous)');
      const key = names.reverse().join(';');
      unmatched.set(key, (unmatched.get(key) ?? 0) + dt);
    }
  });
  return { phases, startupMs, busyMs, detail, unmatched: [...unmatched].sort((a, b) => b[1] - a[1]) };
}

export function formatPhases(t: PhaseTimes, requests: number | undefined, unmatched: number, detail = 0): string {
  const out = [`busy ${t.busyMs.toFixed(0)} ms after start-up (start-up ${t.startupMs.toFixed(0)} ms left out)${requests ? `, ${requests} requests` : ''}`];
  out.push(`| phase | share of busy time |${requests ? ' µs per request |' : ''}`);
  out.push(`|---|---|${requests ? '---|' : ''}`);
  for (const [phase, ms] of [...t.phases].sort((a, b) => b[1] - a[1])) {
    if (ms === 0) continue;
    out.push(`| ${phase} | ${((ms / t.busyMs) * 100).toFixed(1)}% |${requests ? ` ${((ms * 1000) / requests).toFixed(1)} |` : ''}`);
  }
  if (detail > 0) {
    for (const [phase, ms] of [...t.phases].sort((a, b) => b[1] - a[1])) {
      if (ms === 0) continue;
      const top = [...(t.detail.get(phase) ?? [])].sort((a, b) => b[1] - a[1]).slice(0, detail);
      out.push(`${phase}: ${top.map(([fn, v]) => `${fn} ${((v / ms) * 100).toFixed(0)}%`).join(', ')}`);
    }
  }
  if (unmatched > 0) {
    out.push(`commonest stacks in "other" (innermost 8 frames):`);
    for (const [stack, ms] of t.unmatched.slice(0, unmatched)) out.push(`  ${ms.toFixed(1).padStart(7)} ms  ${stack}`);
  }
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const file = args[0];
  if (file === undefined || file.startsWith('-')) {
    console.error('Usage: node bench/phases.ts FILE.cpuprofile [--requests N] [--unmatched K]');
    process.exit(2);
  }
  const flag = (name: string): number | undefined => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args[at + 1]) : undefined;
  };
  const t = phaseTimes(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
  console.log(formatPhases(t, flag('--requests'), flag('--unmatched') ?? 0, flag('--detail') ?? 0));
}
