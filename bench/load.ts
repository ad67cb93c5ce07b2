import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Samples } from './stats.ts';
import { cpuDelta, cpuSnapshot, rssKiB } from './proc.ts';
import { countSyscalls } from './syscalls.ts';
import type { ErrorCount, LoadCommand, LoadMessage, PhaseResult, PhaseSpec, SimKnobs } from './phase.ts';

/**
 * The load generator, run as its own process so that its CPU never counts against the process under test. It runs
 * one phase at a time on the orchestrator's command (IPC) and answers with the phase's measurements.
 *
 * Per-chunk delay: the simulator stamps each token with the epoch time it wrote it (`sim.probe`); this process, on
 * the same machine and clock, subtracts that stamp from the time the chunk reached it. `delayMid` keeps only the tokens
 * of a stream's middle (not its first or last two), where a proxy relays and runs no per-request work.
 */

/** Epoch ms with µs resolution: the same clock the simulator's probe stamps use. */
const now = (): number => performance.timeOrigin + performance.now();

const send = (m: LoadMessage): void => {
  process.send?.(m);
};

/** Measurements of one phase, filled by every stream. */
class Recorder {
  windowStart = Infinity;
  windowEnd = Infinity;
  started = 0;
  completed = 0;
  skipped = 0;
  chunks = 0;
  comments = 0;
  inFlight = 0;
  /** Streams that have received their first data event and are still open. */
  open = 0;
  readonly delay = new Samples(1 << 16);
  /** The same, leaving out each stream's first two and last two tokens (where its set-up and end run). */
  readonly delayMid = new Samples(1 << 16);
  readonly ttfb = new Samples(1 << 12);
  readonly total = new Samples(1 << 12);
  readonly errors: ErrorCount = { socket: 0, status: 0, frame: 0, truncated: 0, examples: [] };
  readonly clientCloses: [string, number][] = [];

  inWindow(t: number): boolean {
    return t >= this.windowStart && t < this.windowEnd;
  }

  error(kind: 'socket' | 'status' | 'frame' | 'truncated', detail: string): void {
    this.errors[kind]++;
    if (this.errors.examples.length < 5) this.errors.examples.push(`${kind}: ${detail.slice(0, 200)}`);
  }
}

interface StreamOptions {
  url: URL;
  /** The user message. */
  prompt: string;
  knobs: SimKnobs;
  agent: Agent;
  /** Sent as the OpenAI `user` field; the upstream reports the close time of aborted streams by it. */
  id?: string;
  /** Open a new connection and close it after the answer. */
  connectionClose?: boolean;
  /** Close the connection after this many tokens and record when (abort propagation). */
  abortAfterTokens?: number;
  /** Leave this stream's tokens out of the per-chunk delay (wave: only the streams already open are measured). */
  noDelay?: boolean;
}

/** Handles of streams the generator will close itself (idle profile). */
type Closer = () => void;

/**
 * Runs one streamed chat completion and checks it end to end: 200, every token, a finish chunk, `[DONE]`, no error
 * frame. Resolves when the stream is over, however it ended: true when it failed. `onOpen` receives a function that
 * closes the stream.
 */
function runStream(rec: Recorder, o: StreamOptions, onOpen?: (close: Closer) => void): Promise<boolean> {
  const payload: Record<string, unknown> = {
    model: 'sluice-sim',
    messages: [{ role: 'user', content: o.prompt }],
    stream: true,
    sim: { probe: true, ...o.knobs },
  };
  if (o.id !== undefined) payload['user'] = o.id;
  const body = JSON.stringify(payload);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    accept: 'text/event-stream',
  };
  if (o.connectionClose) headers['connection'] = 'close';
  if (authorization !== undefined) headers['authorization'] = authorization;

  return new Promise<boolean>((resolve) => {
    const t0 = now();
    const counted = rec.inWindow(t0);
    if (counted) rec.started++;
    rec.inFlight++;
    let settled = false;
    let closedByUs = false;
    let opened = false;
    let tokens = 0;
    let finish = false;
    let done = false;
    let tail = '';

    const settle = (failed: boolean): void => {
      if (settled) return;
      settled = true;
      rec.inFlight--;
      if (opened) rec.open--;
      resolve(failed);
    };
    const fail = (kind: 'socket' | 'status' | 'frame' | 'truncated', detail: string): void => {
      if (settled || closedByUs) return;
      rec.error(kind, detail);
      req.destroy();
      settle(true);
    };
    const closeNow = (): void => {
      if (settled || closedByUs) return;
      closedByUs = true;
      if (o.id !== undefined) rec.clientCloses.push([o.id, now()]);
      req.destroy();
      settle(false);
    };

    const req = request(o.url, { method: 'POST', agent: o.agent, headers });
    req.on('error', (err) => fail('socket', err.message));
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 500) text += c;
        });
        res.on('end', () => fail('status', `${res.statusCode} ${text}`));
        res.on('error', () => fail('status', `${res.statusCode} ${text}`));
        return;
      }
      res.on('data', (b: Buffer) => {
        const t = now();
        const inWindow = rec.inWindow(t);
        const s = tail.length > 0 ? tail + b.toString('latin1') : b.toString('latin1');
        let pos = 0;
        for (;;) {
          const end = s.indexOf('\n\n', pos);
          if (end < 0) break;
          const ev = s.slice(pos, end);
          pos = end + 2;
          if (ev.charCodeAt(0) === 58 /* ':' */) {
            if (inWindow) rec.comments++;
            continue;
          }
          if (!ev.startsWith('data: ')) continue;
          if (ev === 'data: [DONE]') {
            done = true;
            continue;
          }
          if (inWindow) rec.chunks++;
          if (!opened) {
            opened = true;
            rec.open++;
            if (counted) rec.ttfb.push(t - t0);
            onOpen?.(closeNow);
          }
          const at = ev.indexOf('" @');
          if (at >= 0) {
            const stamp = Number(ev.slice(at + 3, ev.indexOf('"', at + 3)));
            tokens++;
            if (inWindow && o.noDelay !== true) {
              rec.delay.push(t - stamp);
              if (tokens > 2 && tokens <= o.knobs.tokens - 2 && o.abortAfterTokens === undefined) rec.delayMid.push(t - stamp);
            }
            if (o.abortAfterTokens !== undefined && tokens >= o.abortAfterTokens) {
              closeNow();
              return;
            }
          } else if (ev.includes('"error"')) {
            fail('frame', ev);
            return;
          } else if (ev.includes('"finish_reason":"')) {
            finish = true;
          }
        }
        tail = pos < s.length ? s.slice(pos) : '';
      });
      res.on('end', () => {
        if (settled || closedByUs) return;
        if (done && finish && tokens === o.knobs.tokens) {
          rec.completed++;
          if (counted) rec.total.push(now() - t0);
          settle(false);
        } else {
          fail('truncated', `tokens ${tokens}/${o.knobs.tokens}, finish ${finish}, [DONE] ${done}`);
        }
      });
      res.on('error', (err) => fail('truncated', `response error after ${tokens} tokens: ${err.message}`));
      res.on('close', () => {
        if (!res.complete) fail('truncated', `connection closed after ${tokens} tokens`);
      });
    });
    req.end(body);
  });
}

/** The measurement window's process accounting: CPU of every process under test, and optionally syscalls. */
function openWindow(spec: PhaseSpec): () => Promise<Pick<PhaseResult, 'cpuMs' | 'syscalls'>> {
  const pids = { proxy: spec.pids.proxy, upstream: spec.pids.upstream, load: process.pid };
  const counter = spec.syscalls && spec.pids.proxy !== undefined ? countSyscalls(spec.pids.proxy) : undefined;
  const before = cpuSnapshot(pids);
  return async () => {
    const after = cpuSnapshot(pids);
    return { cpuMs: cpuDelta(before, after), syscalls: (await counter?.stop()) ?? null };
  };
}

const chatUrl = (base: string): URL => new URL(`${base.replace(/\/$/, '')}/chat/completions`);
const promptOf = (spec: PhaseSpec): string => 'Benchmark probe.'.padEnd(Math.max(16, spec.promptBytes), ' lorem');

async function upstreamInFlight(upstreamUrl: string): Promise<number> {
  const res = await fetch(new URL('/sim/stats', upstreamUrl));
  const stats = (await res.json()) as { inFlight: number };
  return stats.inFlight;
}

/** Waits until the simulator has no stream in flight (or the time is up); returns how many are left. */
async function waitUpstreamIdle(upstreamUrl: string, maxMs: number): Promise<number> {
  const until = Date.now() + maxMs;
  let left = await upstreamInFlight(upstreamUrl);
  while (left > 0 && Date.now() < until) {
    await sleep(100);
    left = await upstreamInFlight(upstreamUrl);
  }
  return left;
}

function progress(spec: PhaseSpec, rec: Recorder, phaseStart: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    const t = now();
    const state = t < rec.windowStart ? 'warm-up' : t < rec.windowEnd ? 'measuring' : 'draining';
    const elapsed = ((t - phaseStart) / 1000).toFixed(0);
    const errs = rec.errors.socket + rec.errors.status + rec.errors.frame + rec.errors.truncated;
    send({
      type: 'progress',
      text: `${spec.profile}/${spec.target}: ${state} ${elapsed}s, ${rec.inFlight} in flight, ${rec.chunks} chunks, ${errs} errors`,
    });
  }, 1000);
  timer.unref();
  return timer;
}

/** latency and throughput: `concurrency` closed-loop streams (each starts a new request when one ends). */
async function runClosedLoop(spec: PhaseSpec, rec: Recorder): Promise<Partial<PhaseResult>> {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const url = chatUrl(spec.url);
  const prompt = promptOf(spec);
  const start = now();
  rec.windowStart = start + spec.warmupMs;
  rec.windowEnd = rec.windowStart + spec.durationMs;
  const marks = (async () => {
    await sleep(rec.windowStart - now());
    const close = openWindow(spec);
    await sleep(rec.windowEnd - now());
    return close();
  })();

  const worker = async (): Promise<void> => {
    while (now() < rec.windowEnd) {
      const failed = await runStream(rec, { url, prompt, knobs: spec.sim, agent });
      // A failing target must not turn the workers into a busy loop of instant failures.
      if (failed) await sleep(100);
    }
  };
  const workers = Array.from({ length: spec.concurrency }, worker);

  const probes: Promise<boolean>[] = [];
  if (spec.abortEveryMs > 0) {
    const probeKnobs: SimKnobs = { ...spec.sim, tokens: 100_000 };
    await sleep(rec.windowStart - now());
    // A probe needs its first tokens before it can leave; the last one starts when there is time for that.
    const lead = spec.sim.ttft_ms + 4 * spec.sim.itl_ms + 200;
    for (let k = 0; now() < rec.windowEnd - lead; k++) {
      const id = `abort-${spec.target}-${k}`;
      probes.push(runStream(rec, { url, prompt, knobs: probeKnobs, agent, id, abortAfterTokens: 3 }));
      await sleep(spec.abortEveryMs);
    }
  }
  const [accounting] = await Promise.all([marks, ...workers, ...probes]);
  agent.destroy();
  return accounting;
}

/** idle: open `concurrency` slow streams, hold them for the window, measure the proxy's RSS, then close them all. */
async function runIdle(spec: PhaseSpec, rec: Recorder): Promise<Partial<PhaseResult>> {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const url = chatUrl(spec.url);
  const prompt = promptOf(spec);
  const warm = Array.from({ length: 20 }, () =>
    runStream(rec, { url, prompt, knobs: { ttft_ms: 0, itl_ms: 5, tokens: 20, jitter_ms: 0 }, agent }),
  );
  await Promise.all(warm);
  await sleep(Math.min(spec.warmupMs, 1000));
  const proxy = spec.pids.proxy;
  const baseKiB = proxy === undefined ? NaN : rssKiB(proxy);

  // Enough tokens to outlast the ramp and the window, so no stream ends by itself.
  const horizon = spec.durationMs + (spec.concurrency / spec.openPerSecond) * 1000 + 30_000;
  const knobs: SimKnobs = { ...spec.sim, tokens: Math.ceil(horizon / Math.max(1, spec.sim.itl_ms)) + 10 };
  const closers: Closer[] = [];
  const streams: Promise<boolean>[] = [];
  const batch = Math.max(1, Math.round(spec.openPerSecond / 20));
  for (let k = 0; k < spec.concurrency; k++) {
    streams.push(runStream(rec, { url, prompt, knobs, agent, id: `idle-${spec.target}-${k}` }, (close) => closers.push(close)));
    if ((k + 1) % batch === 0) await sleep(50);
  }
  const openBy = now() + 30_000;
  while (rec.open < spec.concurrency && rec.inFlight > 0 && now() < openBy) await sleep(50);
  if (rec.open < spec.concurrency) rec.error('socket', `only ${rec.open} of ${spec.concurrency} streams opened`);

  rec.windowStart = now();
  rec.windowEnd = rec.windowStart + spec.durationMs;
  const close = openWindow(spec);
  let openKiB = NaN;
  while (now() < rec.windowEnd) {
    await sleep(Math.min(1000, Math.max(0, rec.windowEnd - now())));
    if (proxy !== undefined) openKiB = Number.isNaN(openKiB) ? rssKiB(proxy) : Math.max(openKiB, rssKiB(proxy));
  }
  const accounting = await close();
  const streamsOpen = rec.open;

  // Every client leaves at once: an abort storm the proxy must pass on to the upstream.
  for (const close of closers) close();
  await Promise.all(streams);
  agent.destroy();
  return { ...accounting, rss: proxy === undefined ? null : { baseKiB, openKiB, streams: streamsOpen } };
}

/**
 * wave: `background` streams at the profile's pace are opened first and kept open; during the window a wave of
 * `concurrency` new streams starts at once every `waveEveryMs`. The per-chunk delay is the background streams' alone
 * (what a wave's set-up does to streams already open); time to first byte is the waves' alone.
 */
async function runWave(spec: PhaseSpec, rec: Recorder): Promise<Partial<PhaseResult>> {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const url = chatUrl(spec.url);
  const prompt = promptOf(spec);
  const itl = Math.max(1, spec.sim.itl_ms);
  const horizon = spec.warmupMs + spec.durationMs + 30_000;
  const backgroundKnobs: SimKnobs = { ttft_ms: 0, itl_ms: itl, tokens: Math.ceil(horizon / itl) + 10, jitter_ms: 0 };
  const closers: Closer[] = [];
  const background: Promise<boolean>[] = [];
  for (let k = 0; k < spec.background; k++) {
    background.push(runStream(rec, { url, prompt, knobs: backgroundKnobs, agent }, (close) => closers.push(close)));
    if (k % 20 === 19) await sleep(10);
  }
  // One wave before the window warms the proxy's pools (its connections to the upstream) and JIT.
  const warm = Array.from({ length: spec.concurrency }, () => runStream(rec, { url, prompt, knobs: spec.sim, agent, noDelay: true }));
  await Promise.all(warm);
  const openBy = now() + 30_000;
  while (rec.open < spec.background && rec.inFlight > 0 && now() < openBy) await sleep(50);
  if (rec.open < spec.background) rec.error('socket', `only ${rec.open} of ${spec.background} background streams opened`);
  await sleep(Math.max(0, spec.warmupMs - 1000));

  rec.windowStart = now();
  rec.windowEnd = rec.windowStart + spec.durationMs;
  const close = openWindow(spec);
  const waves: Promise<boolean>[] = [];
  for (let w = 0; now() < rec.windowEnd - spec.waveEveryMs / 2; w++) {
    const at = rec.windowStart + 250 + w * spec.waveEveryMs;
    await sleep(Math.max(0, at - now()));
    for (let k = 0; k < spec.concurrency; k++) waves.push(runStream(rec, { url, prompt, knobs: spec.sim, agent, noDelay: true }));
  }
  await sleep(Math.max(0, rec.windowEnd - now()));
  const accounting = await close();
  await Promise.all(waves);
  for (const c of closers) c();
  await Promise.all(background);
  agent.destroy();
  return accounting;
}

/** churn: `rate` new connections per second, each with one short stream, open loop. */
async function runChurn(spec: PhaseSpec, rec: Recorder): Promise<Partial<PhaseResult>> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const url = chatUrl(spec.url);
  const prompt = promptOf(spec);
  const start = now();
  rec.windowStart = start + spec.warmupMs;
  rec.windowEnd = rec.windowStart + spec.durationMs;
  let close: ReturnType<typeof openWindow> | undefined;
  const streams = new Set<Promise<boolean>>();
  let launched = 0;
  while (now() < rec.windowEnd) {
    const t = now();
    if (close === undefined && t >= rec.windowStart) close = openWindow(spec);
    const due = Math.floor(((t - start) / 1000) * spec.rate);
    for (; launched < due; launched++) {
      if (rec.inFlight >= spec.concurrency) {
        if (rec.inWindow(t)) rec.skipped++;
        continue;
      }
      const p = runStream(rec, { url, prompt, knobs: spec.sim, agent, connectionClose: true });
      streams.add(p);
      void p.then(() => streams.delete(p));
    }
    await sleep(5);
  }
  const accounting = await (close ?? openWindow(spec))();
  await Promise.all(streams);
  agent.destroy();
  return accounting;
}

/** The current phase's `Authorization` header (a stored key), for every request it sends. */
let authorization: string | undefined;

async function runPhase(spec: PhaseSpec): Promise<PhaseResult> {
  authorization = spec.authorization;
  const rec = new Recorder();
  const timer = progress(spec, rec, now());
  let part: Partial<PhaseResult>;
  try {
    if (spec.profile === 'idle') part = await runIdle(spec, rec);
    else if (spec.profile === 'churn') part = await runChurn(spec, rec);
    else if (spec.profile === 'wave') part = await runWave(spec, rec);
    else part = await runClosedLoop(spec, rec);
  } finally {
    clearInterval(timer);
  }
  // Every stream this phase opened has ended at the client; the upstream should see all of them gone.
  const upstreamLeft = await waitUpstreamIdle(spec.upstreamUrl, 10_000);
  return {
    profile: spec.profile,
    target: spec.target,
    windowMs: rec.windowEnd - rec.windowStart,
    started: rec.started,
    completed: rec.completed,
    errors: rec.errors,
    skipped: rec.skipped,
    chunks: rec.chunks,
    comments: rec.comments,
    delay: rec.delay.summary(),
    delayMid: rec.delayMid.summary(),
    ttfb: rec.ttfb.summary(),
    total: rec.total.summary(),
    cpuMs: part.cpuMs ?? {},
    syscalls: part.syscalls ?? null,
    rss: part.rss ?? null,
    clientCloses: rec.clientCloses,
    upstreamLeft,
  };
}

process.on('message', (raw) => {
  const cmd = raw as LoadCommand;
  if (cmd.type !== 'run') return;
  runPhase(cmd.spec).then(
    (result) => send({ type: 'result', seq: cmd.seq, result }),
    (err: unknown) => send({ type: 'failed', seq: cmd.seq, message: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.once('disconnect', () => process.exit(0));
send({ type: 'ready' });
