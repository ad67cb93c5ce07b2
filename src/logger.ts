import type { LogFormat, LogLevel } from './config/schema.ts';

/**
 * What Sluice prints while it runs, one line per event, at a level (`log.level`) and in a format (`log.format`):
 * operational events here (stderr), the per-request line in src/generation/request-log.ts (stdout). Nothing here is
 * called per chunk: an event is a start-up finding, an upstream's change or a request's end.
 */

/** Receives one operational event: a sentence saying what happened, and its level. */
export type EventLog = (msg: string, level: LogLevel) => void;

/** Where lines go: process.stdout / process.stderr, or a test's collector. */
export interface LineSink {
  write(line: string): unknown;
}

const RANK: Readonly<Record<LogLevel, number>> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Whether a line at `level` is printed when the configured level is `configured`. */
export function levelEnabled(configured: LogLevel, level: LogLevel): boolean {
  return RANK[level] <= RANK[configured];
}

/**
 * A value as one token of a text line: bare when it is printable ASCII without spaces, quotes or `=`, else
 * JSON-quoted. Model names and error texts come from clients and upstreams; a newline in one must not forge a second
 * log line.
 */
export function textValue(value: string | number | boolean): string {
  const s = String(value);
  return /^[\x21-\x7e]+$/.test(s) && !/["=\\]/.test(s) ? s : JSON.stringify(s);
}

/** Filters operational events by level and writes each as one line in the configured format. */
export class Logger {
  readonly level: LogLevel;
  readonly format: LogFormat;
  readonly #sink: LineSink;
  readonly #hook: EventLog | undefined;

  /** `events` replaces the stderr line (embedders and tests); the level filter applies to it too. */
  constructor(config: { level: LogLevel; format: LogFormat }, options: { events?: EventLog | undefined; sink?: LineSink } = {}) {
    this.level = config.level;
    this.format = config.format;
    this.#hook = options.events;
    this.#sink = options.sink ?? process.stderr;
  }

  enabled(level: LogLevel): boolean {
    return levelEnabled(this.level, level);
  }

  /** Logs an operational event (a bound function, so that it can be handed on as an `EventLog`). */
  readonly event: EventLog = (msg, level) => {
    if (!this.enabled(level)) return;
    if (this.#hook) return this.#hook(msg, level);
    const ts = new Date().toISOString();
    // A message is one line whatever it quotes (an upstream's error text may hold newlines).
    const line = this.format === 'json' ? JSON.stringify({ ts, level, msg }) : `${ts} ${level} ${msg.replace(/[\r\n]+/g, ' ')}`;
    this.#sink.write(`${line}\n`);
  };
}
