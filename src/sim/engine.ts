/**
 * What makes one engine replica faster or slower than another (issue 17): a maximum batch (requests beyond it wait in
 * the engine's queue, as vLLM's scheduler does), a prefix cache (prefill costs time per prompt token that is not
 * already cached; blocks are kept in LRU order up to a capacity), and the KV-cache pressure of the running batch. The
 * simulator's server asks it for a slot before prefill and reports progress; `/metrics` reads its counters under the
 * engine's own names (`prometheusText`).
 */

/** Prompt tokens per cache block (vLLM's default block size). */
export const SIM_BLOCK_TOKENS = 16;
/** Characters per simulated token (`countPromptTokens` in text.ts counts one token per 4 characters). */
const CHARS_PER_TOKEN = 4;
const BLOCK_CHARS = SIM_BLOCK_TOKENS * CHARS_PER_TOKEN;

export interface SimEngineOptions {
  /** Requests running at once; more wait in the queue (0 = no limit). */
  maxBatch: number;
  /** Capacity of the prefix cache in tokens (0 = no prefix cache: every prompt token is prefilled). */
  prefixCacheTokens: number;
  /** KV-cache capacity in tokens: `kv_cache_usage_perc` is the running requests' tokens over it. */
  kvCacheTokens: number;
}

export const DEFAULT_ENGINE: SimEngineOptions = { maxBatch: 0, prefixCacheTokens: 0, kvCacheTokens: 262_144 };

/** One admitted request: its share of the batch until `release`. */
export interface SimSlot {
  promptTokens: number;
  /** Prompt tokens found in the prefix cache (whole blocks). */
  cachedTokens: number;
  /** Completion tokens produced so far (counts towards KV usage). */
  generated: number;
  /** Prefill is done: the prompt's blocks enter the prefix cache. */
  prefilled(): void;
  release(): void;
}

/**
 * Chained hashes of a text's whole blocks: each block's hash covers everything before it too, so equal hashes mean an
 * equal prefix (two 32-bit FNV-1a lanes, 53 bits kept).
 */
export function blockHashes(text: string, blockChars: number): number[] {
  const out: number[] = [];
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  const whole = text.length - (text.length % blockChars);
  for (let i = 0; i < whole; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193 + 2) >>> 0;
    if ((i + 1) % blockChars === 0) out.push((a & 0x1fffff) * 0x100000000 + b);
  }
  return out;
}

export class SimEngine {
  readonly #opts: SimEngineOptions;
  /** Block hash → present, in LRU order (oldest first). */
  readonly #cache = new Map<number, true>();
  readonly #capacityBlocks: number;
  readonly #running = new Set<SimSlot>();
  readonly #waiting: Array<() => void> = [];
  /** Queued requests let in whose `admit` has not resumed yet: they hold their place in the batch. */
  #reserved = 0;
  /** Prompt tokens looked up in the prefix cache, and those found (vLLM's `prefix_cache_queries` / `_hits`). */
  queries = 0;
  hits = 0;

  constructor(options: Partial<SimEngineOptions> = {}) {
    this.#opts = { ...DEFAULT_ENGINE, ...options };
    this.#capacityBlocks = Math.floor(this.#opts.prefixCacheTokens / SIM_BLOCK_TOKENS);
  }

  get running(): number {
    return this.#running.size;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** The running batch's tokens over the KV capacity, at most 1. */
  get kvUsage(): number {
    let tokens = 0;
    for (const s of this.#running) tokens += s.promptTokens + s.generated;
    return Math.min(1, tokens / Math.max(1, this.#opts.kvCacheTokens));
  }

  /**
   * Waits for a place in the batch (FIFO), then looks the prompt up in the prefix cache. Resolves undefined when
   * `gone` fires first (the client left while queued).
   */
  async admit(promptText: string, promptTokens: number, gone: AbortSignal): Promise<SimSlot | undefined> {
    // A client that left before it asked (while its body or headers were delayed) must not take a place it never frees.
    if (gone.aborted) return undefined;
    const max = this.#opts.maxBatch;
    if (max > 0 && (this.#running.size + this.#reserved >= max || this.#waiting.length > 0)) {
      const admitted = await new Promise<boolean>((resolve) => {
        const go = (): void => {
          gone.removeEventListener('abort', leave);
          resolve(true);
        };
        const leave = (): void => {
          const i = this.#waiting.indexOf(go);
          if (i >= 0) this.#waiting.splice(i, 1);
          resolve(false);
        };
        this.#waiting.push(go);
        gone.addEventListener('abort', leave, { once: true });
      });
      if (!admitted) return undefined;
      this.#reserved--;
      if (gone.aborted) {
        this.#next();
        return undefined;
      }
    }
    const hashes = this.#capacityBlocks > 0 ? blockHashes(promptText, BLOCK_CHARS) : [];
    let matched = 0;
    while (matched < hashes.length && this.#cache.has(hashes[matched] as number)) matched++;
    const cachedTokens = Math.min(promptTokens, matched * SIM_BLOCK_TOKENS);
    this.queries += promptTokens;
    this.hits += cachedTokens;
    let released = false;
    const slot: SimSlot = {
      promptTokens,
      cachedTokens,
      generated: 0,
      prefilled: () => this.#insert(hashes),
      release: () => {
        if (released) return;
        released = true;
        this.#running.delete(slot);
        this.#next();
      },
    };
    this.#running.add(slot);
    return slot;
  }

  /** Lets the next queued request in when the batch has room. */
  #next(): void {
    const max = this.#opts.maxBatch;
    while (this.#waiting.length > 0 && (max === 0 || this.#running.size + this.#reserved < max)) {
      const go = this.#waiting.shift() as () => void;
      this.#reserved++;
      go();
    }
  }

  #insert(hashes: number[]): void {
    if (this.#capacityBlocks === 0) return;
    for (const h of hashes) {
      this.#cache.delete(h);
      this.#cache.set(h, true);
    }
    while (this.#cache.size > this.#capacityBlocks) {
      const oldest = this.#cache.keys().next().value as number;
      this.#cache.delete(oldest);
    }
  }

  /**
   * `/metrics` in the engine's Prometheus text: vLLM v1's names (`vllm/v1/metrics/loggers.py`: gauges with `.0`
   * floats, counters with `_total`), or SGLang's (`sglang/srt/metrics/collector.py`).
   */
  prometheusText(engine: 'vllm' | 'sglang', model: string): string {
    const m = JSON.stringify(model);
    const f = (v: number): string => (Number.isInteger(v) ? v.toFixed(1) : String(v));
    if (engine === 'sglang') {
      const labels = `{model_name=${m}}`;
      const rate = this.queries > 0 ? this.hits / this.queries : 0;
      return [
        '# HELP sglang:num_running_reqs The number of running requests.',
        '# TYPE sglang:num_running_reqs gauge',
        `sglang:num_running_reqs${labels} ${f(this.running)}`,
        '# HELP sglang:num_queue_reqs The number of requests in the waiting queue.',
        '# TYPE sglang:num_queue_reqs gauge',
        `sglang:num_queue_reqs${labels} ${f(this.waiting)}`,
        '# HELP sglang:token_usage The token usage.',
        '# TYPE sglang:token_usage gauge',
        `sglang:token_usage${labels} ${f(this.kvUsage)}`,
        '# HELP sglang:cache_hit_rate The prefix cache hit rate.',
        '# TYPE sglang:cache_hit_rate gauge',
        `sglang:cache_hit_rate${labels} ${f(rate)}`,
        '',
      ].join('\n');
    }
    const labels = `{engine="0",model_name=${m}}`;
    return [
      '# HELP vllm:num_requests_running Number of requests in model execution batches.',
      '# TYPE vllm:num_requests_running gauge',
      `vllm:num_requests_running${labels} ${f(this.running)}`,
      '# HELP vllm:num_requests_waiting Number of requests waiting to be processed.',
      '# TYPE vllm:num_requests_waiting gauge',
      `vllm:num_requests_waiting${labels} ${f(this.waiting)}`,
      '# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.',
      '# TYPE vllm:kv_cache_usage_perc gauge',
      `vllm:kv_cache_usage_perc${labels} ${f(this.kvUsage)}`,
      '# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.',
      '# TYPE vllm:prefix_cache_queries_total counter',
      `vllm:prefix_cache_queries_total${labels} ${f(this.queries)}`,
      '# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.',
      '# TYPE vllm:prefix_cache_hits_total counter',
      `vllm:prefix_cache_hits_total${labels} ${f(this.hits)}`,
      '',
    ].join('\n');
  }
}
