import type { Readable } from 'node:stream';

/** Receives an upstream body's bytes. */
export interface UpstreamSink {
  data(chunk: Buffer): void;
  end(): void;
  error(err: Error): void;
}

/**
 * What the relay reads from: an upstream response body with flow control. The gateway's is undici's dispatch
 * callbacks (src/upstream/upstream-body.ts); `fromReadable` adapts any Node stream (tests, future transports).
 */
export interface UpstreamSource {
  consume(sink: UpstreamSink): void;
  pause(): void;
  resume(): void;
  /** Stops reading and closes the upstream request. */
  destroy(): void;
  /** After the end: discard what is left so the connection can be reused; destroy it if it lingers past `ms`. */
  drain(ms: number): void;
  /** True once ended, failed or destroyed. */
  readonly done: boolean;
}

/** Adapts a Node Readable. */
export function fromReadable(stream: Readable): UpstreamSource {
  return {
    consume(sink) {
      stream.on('data', (c: Buffer) => sink.data(c));
      stream.on('end', () => sink.end());
      stream.on('error', (e) => sink.error(e));
    },
    pause: () => void stream.pause(),
    resume: () => void stream.resume(),
    destroy: () => void stream.destroy(),
    drain(ms) {
      if (stream.readableEnded || stream.destroyed) return;
      stream.removeAllListeners('data');
      stream.on('error', () => {});
      const timer = setTimeout(() => stream.destroy(), ms);
      timer.unref();
      stream.once('close', () => clearTimeout(timer));
      stream.resume();
    },
    get done() {
      return stream.readableEnded || stream.destroyed;
    },
  };
}
