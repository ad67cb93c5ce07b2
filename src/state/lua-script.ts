import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A Lua script run with EVALSHA: one round trip, with only its digest on the wire. A Redis that does not know the
 * script (it restarted, or SCRIPT FLUSH) answers NOSCRIPT, and the script is sent once with EVAL, which caches it
 * again.
 */
export class LuaScript {
  readonly #lua: string;
  readonly sha: string;

  constructor(lua: string) {
    this.#lua = lua;
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return this.eval(redis, keys, args);
    }
  }

  /** The script sent whole (after a NOSCRIPT). */
  eval(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return redis.eval(this.#lua, keys.length, ...keys, ...args);
  }
}

const isNoScript = (err: unknown): boolean => err instanceof Error && err.message.startsWith('NOSCRIPT');

interface Call {
  script: LuaScript;
  keys: readonly string[];
  args: readonly (string | number)[];
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Script calls made during one turn of the event loop, sent to Redis together at its end (`setImmediate`): one write
 * to the socket and, usually, one read of the replies, instead of one of each per call. On this kind of machine a
 * write to a loopback socket costs tens of µs of the gateway's CPU (the kernel delivers the bytes and wakes Redis
 * within the call): the Redis limiter's per-request cost was mostly these writes (docs/performance.md, round 3).
 *
 * Calls run in Redis in the order they were made, each as its own script as before, and nothing waits longer than
 * the turn it was made in, so a settlement made as a response ends still reaches Redis before any request that
 * arrives later is admitted. Each call's promise gets its own answer or error; a NOSCRIPT is retried with EVAL.
 */
export class ScriptBatch {
  readonly #redis: Redis;
  #queue: Call[] = [];
  #scheduled = false;

  constructor(redis: Redis) {
    this.#redis = redis;
  }

  run(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ script, keys, args, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    });
  }

  readonly #flush = (): void => {
    const calls = this.#queue;
    this.#queue = [];
    this.#scheduled = false;
    const redis = this.#redis;
    if (calls.length === 1) {
      const c = calls[0] as Call;
      c.script.run(redis, c.keys, c.args).then(c.resolve, c.reject);
      return;
    }
    const p = redis.pipeline();
    for (const c of calls) p.evalsha(c.script.sha, c.keys.length, ...c.keys, ...c.args);
    p.exec().then(
      (results) => {
        for (let i = 0; i < calls.length; i++) {
          const c = calls[i] as Call;
          const [err, value] = results?.[i] ?? [new Error('no answer in the pipeline'), undefined];
          if (err === null) c.resolve(value);
          else if (isNoScript(err)) c.script.eval(redis, c.keys, c.args).then(c.resolve, c.reject);
          else c.reject(err);
        }
      },
      (err: unknown) => {
        for (const c of calls) c.reject(err);
      },
    );
  };
}
