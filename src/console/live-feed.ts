import type { ServerResponse } from 'node:http';
import type { HttpRequest, HttpResponse } from '../http/http-types.ts';
import type { ConsoleMonitor } from './monitor.ts';

/** A change is pushed at most this late: the live view shows a stream's start and end within a second. */
const COALESCE_MS = 250;
/** Without changes, a snapshot this often anyway: ages, upstream health (its checks run on their own timer). */
const REFRESH_MS = 2_000;

interface Subscriber {
  res: HttpResponse;
  /** The socket is full: snapshots are skipped (each replaces the last) until it drains. */
  blocked: boolean;
}

/**
 * `GET /console/api/events`: the live view's Server-Sent Events feed. Every subscriber gets `event: snapshot` with the
 * whole state at once, then again when requests start or end (coalesced over COALESCE_MS) and every REFRESH_MS; a
 * `: keep-alive` comment keeps idle proxies from cutting it. One JSON text per push is shared by all subscribers;
 * the timers run only while someone listens. Bounded: at most `max` subscribers (more get 429), and a slow reader is
 * skipped rather than queued for (a snapshot replaces the previous one, so nothing is lost but staleness).
 */
export class LiveFeed {
  readonly #subs = new Set<Subscriber>();
  readonly #max: number;
  readonly #snapshot: () => string;
  readonly #monitor: ConsoleMonitor;
  readonly #heartbeatMs: number;
  #unsubscribe: (() => void) | undefined;
  #pending: NodeJS.Timeout | undefined;
  #refresh: NodeJS.Timeout | undefined;
  #lastPush = 0;

  constructor(monitor: ConsoleMonitor, snapshot: () => string, max: number, heartbeatMs: number) {
    this.#monitor = monitor;
    this.#snapshot = snapshot;
    this.#max = max;
    this.#heartbeatMs = heartbeatMs;
  }

  get size(): number {
    return this.#subs.size;
  }

  /** Whether another subscriber fits. */
  get full(): boolean {
    return this.#subs.size >= this.#max;
  }

  /** Starts streaming snapshots to `res` until the client leaves. The caller checked `full`. */
  open(req: HttpRequest, res: HttpResponse): void {
    (res as ServerResponse).writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    });
    const sub: Subscriber = { res, blocked: false };
    this.#subs.add(sub);
    res.on('drain', () => (sub.blocked = false));
    const gone = (): void => {
      this.#subs.delete(sub);
      if (this.#subs.size === 0) this.#stop();
    };
    res.on('close', gone);
    req.on('close', gone);
    this.#write(sub, `retry: 2000\n${frame(this.#snapshot())}`);
    this.#start();
  }

  /** Ends every feed (the gateway is closing). */
  close(): void {
    for (const s of this.#subs) s.res.end();
    this.#subs.clear();
    this.#stop();
  }

  #start(): void {
    if (this.#unsubscribe !== undefined) return;
    this.#unsubscribe = this.#monitor.onChange(() => this.#schedule());
    let sinceBeat = 0;
    this.#refresh = setInterval(() => {
      sinceBeat += REFRESH_MS;
      if (Date.now() - this.#lastPush >= REFRESH_MS - 50) this.#push();
      else if (sinceBeat >= this.#heartbeatMs) {
        sinceBeat = 0;
        for (const s of this.#subs) this.#write(s, ': keep-alive\n\n');
      }
    }, REFRESH_MS);
    this.#refresh.unref();
  }

  #stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#refresh) clearInterval(this.#refresh);
    if (this.#pending) clearTimeout(this.#pending);
    this.#refresh = this.#pending = undefined;
  }

  #schedule(): void {
    if (this.#pending !== undefined) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      this.#push();
    }, COALESCE_MS);
    this.#pending.unref();
  }

  #push(): void {
    if (this.#subs.size === 0) return;
    this.#lastPush = Date.now();
    const text = frame(this.#snapshot());
    for (const s of this.#subs) this.#write(s, text);
  }

  #write(s: Subscriber, text: string): void {
    if (s.blocked || s.res.destroyed || s.res.writableEnded) return;
    if (!(s.res as ServerResponse).write(text)) s.blocked = true;
  }
}

const frame = (json: string): string => `event: snapshot\ndata: ${json}\n\n`;
