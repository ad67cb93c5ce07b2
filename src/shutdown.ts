import { SluiceError } from './errors.ts';
import type { LifecyclePhase } from './generation/context.ts';
import type { Generation } from './generation/generation.ts';
import type { Listener } from './http/listener.ts';
import type { WebSocketHub } from './ws/hub.ts';
import type { EventLog } from './logger.ts';

/** What a shutdown stops, in order. */
export interface ShutdownParts {
  listener: Listener;
  hub: WebSocketHub;
  /** Generations in flight (the gateway context's set). */
  generations: ReadonlySet<Generation>;
  /** Frees what outlives the connections: the ticker, the upstream pools, the built-in simulator. */
  release: () => Promise<void>;
  /** Operational events (the gateway's Logger): the end of the announce window, streams cut at the deadline. */
  notice: EventLog;
}

/** How often the drain looks whether everything in flight has ended. */
const POLL_MS = 50;

/**
 * A gateway's shutdown (issue 13: a deploy must not cut a stream):
 * 1. announce (`drain.announce_ms`): `/ready` answers 503 while every connection is still accepted and served, so load
 *    balancers deregister the instance before it stops listening; HTTP/1.1 responses carry `Connection: close` and
 *    HTTP/2 sessions get GOAWAY, so kept-alive clients reconnect — elsewhere, once the balancer has caught up;
 * 2. drain: the port is closed (new connections are refused), requests on connections still open get 503, WebSocket
 *    sockets take no new work and close with 1001 after their generations; everything in flight finishes;
 * 3. end, at `drain.timeout_ms` after the start at the latest: generations still running end with
 *    `SLUICE_SHUTTING_DOWN` (an error frame, never `[DONE]`), then every connection is closed.
 * The whole shutdown lasts at most `timeout_ms`; `now()` (a second signal) skips to the end.
 */
export class Shutdown {
  readonly #parts: ShutdownParts;
  #phase: LifecyclePhase = 'serving';
  #done: Promise<void> | undefined;
  #cutShort = false;
  /** Ends the wait under way, if any. */
  #wake: (() => void) | undefined;

  constructor(parts: ShutdownParts) {
    this.#parts = parts;
  }

  get phase(): LifecyclePhase {
    return this.#phase;
  }

  /**
   * Starts the shutdown (the first call wins; later ones return the same promise) and resolves once every
   * connection is closed. `announceMs` 0 skips the announce window.
   */
  begin(announceMs: number, timeoutMs: number): Promise<void> {
    return (this.#done ??= this.#run(announceMs, timeoutMs));
  }

  /** Ends everything in flight at once, whether or not a shutdown had begun. */
  now(): Promise<void> {
    this.#cutShort = true;
    this.#wake?.();
    return this.begin(0, 0);
  }

  async #run(announceMs: number, timeoutMs: number): Promise<void> {
    const { listener, hub, generations } = this.#parts;
    const deadline = Date.now() + timeoutMs;
    if (announceMs > 0 && !this.#cutShort) {
      this.#phase = 'announcing';
      listener.goAway();
      await this.#sleep(Math.min(announceMs, timeoutMs));
    }
    this.#phase = 'draining';
    listener.stop();
    hub.stop();
    if (announceMs > 0 && !this.#cutShort) this.#parts.notice(`no longer accepting connections; ${count(generations.size)} in flight`, 'info');
    // Bounded by the deadline; a second signal wakes it.
    while (!this.#cutShort && (generations.size > 0 || hub.size > 0) && Date.now() < deadline) {
      await this.#sleep(Math.min(POLL_MS, deadline - Date.now()));
    }
    if (generations.size > 0 && !this.#cutShort) this.#parts.notice(`drain.timeout_ms reached: ending ${count(generations.size)} with SLUICE_SHUTTING_DOWN`, 'warn');
    for (const gen of [...generations]) gen.fail(new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down'), 'shutdown');
    hub.closeAll();
    listener.destroyAll();
    await this.#parts.release();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

const count = (n: number): string => (n === 1 ? '1 generation' : `${n} generations`);
