import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startSimulator, type Simulator } from '../src/sim/server.ts';
import { DEFAULT_SLUICE_BIN, startSluice, type Running } from './processes.ts';
import { summarize, type Summary } from './stats.ts';

/**
 * `npm run bench -- --profile routing` (issue 17, docs/routing.md): four simulator replicas with a batch limit, a
 * prefix cache and prefill per uncached token (docs/simulator.md), and the same load through `sluice serve` with each
 * routing strategy, side by side in one run. Workloads: multi-turn chat (conversations resending their growing
 * history), no shared prefix (every prompt unique), and the chat again with one replica made slow. Each run gets
 * fresh simulators (cold caches) and a fresh gateway process; the simulators and the load share this process.
 */

export const STRATEGIES = ['round-robin', 'least-loaded', 'engine-aware', 'prefix-aware'] as const;
export const WORKLOADS = ['multi-turn', 'no-prefix', 'slow-replica'] as const;
type Strategy = (typeof STRATEGIES)[number];
type Workload = (typeof WORKLOADS)[number];

const HELP = `Usage: npm run bench -- --profile routing [options]

Four simulator replicas; the same load through each routing strategy; one table per workload.

Options:
  --concurrency N     conversations (or request loops) at once (default 16)
  --conversations N   multi-turn: conversations per run (default 48); no-prefix: requests = conversations × turns
  --turns N           turns per conversation (default 5)
  --prefix-cache-tokens N  each replica's prefix cache (default 16384: about a third of the conversations)
  --strategies LIST   comma list of ${STRATEGIES.join(', ')} (default all)
  --workloads LIST    comma list of ${WORKLOADS.join(', ')} (default all)
  --json FILE         also write the results as JSON
  --sluice-bin FILE   another checkout's bin/sluice.mjs (default this checkout's)
  -h, --help          this help`;

/**
 * The replicas: vLLM-like, a batch of 8, 100 µs of prefill per uncached token, and a prefix cache of 16k tokens by
 * default (`--prefix-cache-tokens`): about a third of the multi-turn workload's conversations (48 documents of about
 * 1,000 tokens each, growing with each turn), as on a busy engine whose KV cache holds fewer conversations than its
 * users keep open. With a cache that holds every conversation on every replica (64k tokens here), any strategy finds
 * most prefixes everywhere after a while, and affinity has little left to win (measured 2026-12-03: TTFT p50 −5%).
 */
const ENGINE = { maxBatch: 8, prefixCacheTokens: 16_384 };
const TIMING = { ttftMs: 20, prefillUsPerToken: 100, itlMs: 15, tokens: 24 };
/** The slow replica of the slow-replica workload: four times the prefill, twice the time per token. */
const SLOW_TIMING = { ...TIMING, prefillUsPerToken: 400, itlMs: 30 };

interface RunResult {
  strategy: Strategy;
  workload: Workload;
  requests: number;
  errors: number;
  errorExamples: string[];
  ttft: Summary;
  e2e: Summary;
  tokensPerSecond: number;
  /** Prefix cache hits over queries, in tokens, summed over the replicas (their `/metrics`). */
  cacheHitRate: number;
  /** Requests each replica received. */
  perReplica: number[];
  wallSeconds: number;
}

interface Options {
  concurrency: number;
  conversations: number;
  turns: number;
  bin: string;
}

/** Runs the routing benchmark with the command line's arguments; returns the exit code. */
export async function runRoutingBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      profile: { type: 'string' },
      concurrency: { type: 'string' },
      conversations: { type: 'string' },
      turns: { type: 'string' },
      'prefix-cache-tokens': { type: 'string' },
      strategies: { type: 'string' },
      workloads: { type: 'string' },
      json: { type: 'string' },
      'sluice-bin': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const int = (name: string, raw: string | undefined, def: number): number => {
    if (raw === undefined) return def;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: '${raw}' is not a positive whole number`);
    return n;
  };
  const list = <T extends string>(name: string, raw: string | undefined, all: readonly T[]): T[] => {
    if (raw === undefined) return [...all];
    return raw.split(',').map((s) => {
      if (!(all as readonly string[]).includes(s)) throw new Error(`--${name}: '${s}' is not one of ${all.join(', ')}`);
      return s as T;
    });
  };
  const opts: Options = {
    concurrency: int('concurrency', values.concurrency, 16),
    conversations: int('conversations', values.conversations, 48),
    turns: int('turns', values.turns, 5),
    bin: resolve(values['sluice-bin'] ?? DEFAULT_SLUICE_BIN),
  };
  ENGINE.prefixCacheTokens = int('prefix-cache-tokens', values['prefix-cache-tokens'], ENGINE.prefixCacheTokens);
  const strategies = list('strategies', values.strategies, STRATEGIES);
  const workloads = list('workloads', values.workloads, WORKLOADS);
  const scratch = mkdtempSync(join(tmpdir(), 'sluice-bench-routing-'));
  const results: RunResult[] = [];
  console.log(
    `Sluice routing benchmark, ${new Date().toISOString().slice(0, 10)}: 4 simulator replicas (batch ${ENGINE.maxBatch}, prefix cache ${ENGINE.prefixCacheTokens} tokens, ` +
      `${TIMING.ttftMs} ms + ${TIMING.prefillUsPerToken} µs per uncached prompt token to first token, ${TIMING.itlMs} ms per token, ${TIMING.tokens} tokens); ` +
      `${opts.concurrency} at once, ${opts.conversations} conversations × ${opts.turns} turns per run`,
  );
  try {
    for (const workload of workloads) {
      // Rotate the order per workload, so that a drift of the machine favours no strategy.
      const shift = workloads.indexOf(workload) % strategies.length;
      const order = strategies.map((_, i) => strategies[(i + shift) % strategies.length] as Strategy);
      for (const strategy of order) {
        process.stderr.write(`routing: ${workload} / ${strategy}…\n`);
        results.push(await runOne(workload, strategy, opts, join(scratch, `${workload}-${strategy}.log`)));
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log('');
  console.log(formatRouting(results, workloads, strategies));
  if (values.json !== undefined) {
    writeFileSync(resolve(values.json), `${JSON.stringify({ schema: 'sluice-bench-routing/1', date: new Date().toISOString(), options: opts, results }, null, 2)}\n`);
    console.log(`results written to ${resolve(values.json)}`);
  }
  return results.some((r) => r.errors > 0) ? 1 : 0;
}

async function runOne(workload: Workload, strategy: Strategy, opts: Options, logFile: string): Promise<RunResult> {
  const sims: Simulator[] = [];
  let gateway: Running | undefined;
  try {
    for (let i = 0; i < 4; i++) {
      const slow = workload === 'slow-replica' && i === 3;
      sims.push(await startSimulator({ port: 0, engine: ENGINE, timing: slow ? SLOW_TIMING : TIMING }));
    }
    const extra = sims.slice(1).flatMap((s) => ['--upstream', s.url]);
    gateway = await startSluice(opts.bin, (sims[0] as Simulator).url, logFile, [], [...extra, '--routing', strategy]);
    const url = gateway.url;
    // The gateway discovers the replicas' models and starts scraping before the load starts.
    await waitReady(url);
    const ttft: number[] = [];
    const e2e: number[] = [];
    const errors: string[] = [];
    let tokens = 0;
    const started = performance.now();
    const one = async (messages: Message[]): Promise<string> => {
      const r = await streamOnce(url, messages);
      if (r.error !== undefined) {
        errors.push(r.error);
        return '';
      }
      ttft.push(r.ttftMs);
      e2e.push(r.totalMs);
      tokens += r.tokens;
      return r.text;
    };
    if (workload === 'no-prefix') {
      let next = 0;
      const total = opts.conversations * opts.turns;
      await Promise.all(
        Array.from({ length: opts.concurrency }, async () => {
          while (next < total) {
            const i = next++;
            await one([{ role: 'user', content: uniqueText(i) }]);
          }
        }),
      );
    } else {
      // Every conversation is open at once and its turns wait in one queue: a finished turn puts the conversation's
      // next one at the back, as a user who reads the answer before asking again. So other conversations' turns take
      // the slot a turn frees on its replica; a closed loop (each worker running one conversation's turns back to
      // back) would hand every next turn the replica it just left, and least-loaded would look prefix-aware.
      const queue: Array<{ messages: Message[]; turn: number }> = [];
      for (let c = 0; c < opts.conversations; c++) {
        queue.push({ messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: `${documentFor(c)}\n\nQuestion 1: what is this about?` }], turn: 1 });
      }
      let pending = opts.conversations;
      await Promise.all(
        Array.from({ length: opts.concurrency }, async () => {
          while (pending > 0) {
            const conv = queue.shift();
            if (conv === undefined) {
              await new Promise((r) => setTimeout(r, 2));
              continue;
            }
            const answer = await one(conv.messages);
            if (conv.turn >= opts.turns) {
              pending--;
              continue;
            }
            conv.messages.push({ role: 'assistant', content: answer || '(no answer)' }, { role: 'user', content: `Question ${conv.turn + 1}: ${QUESTION}` });
            conv.turn++;
            queue.push(conv);
          }
        }),
      );
    }
    const wallSeconds = (performance.now() - started) / 1000;
    let hits = 0;
    let queries = 0;
    for (const s of sims) {
      const m = await engineCounters(s.url);
      hits += m.hits;
      queries += m.queries;
    }
    return {
      strategy,
      workload,
      requests: ttft.length + errors.length,
      errors: errors.length,
      errorExamples: [...new Set(errors)].slice(0, 3),
      ttft: summarize(ttft),
      e2e: summarize(e2e),
      tokensPerSecond: tokens / wallSeconds,
      cacheHitRate: queries > 0 ? hits / queries : 0,
      perReplica: sims.map((s) => s.stats.started),
      wallSeconds,
    };
  } finally {
    await gateway?.stop();
    await Promise.all(sims.map((s) => s.close()));
  }
}

interface Message {
  role: string;
  content: string;
}

const SYSTEM = 'You are a helpful assistant for the Sluice routing benchmark. Answer briefly and cite the document.';
const QUESTION = 'and what follows from that? Please explain the reasoning step by step, with an example.';
const WORDS = 'alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu'.split(' ');

/** A conversation's own document (about 1,000 tokens): what makes its prefix worth keeping. */
function documentFor(c: number): string {
  let out = `Document ${c}:`;
  let x = (c + 1) * 2654435761;
  for (let i = 0; i < 700; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out += ` ${WORDS[x % WORDS.length]}`;
  }
  return out;
}

/** A prompt shared with no other request, as long as a conversation's first turn. */
function uniqueText(i: number): string {
  return `${i} ${Math.random()} ${documentFor(1_000_000 + i)}`;
}

async function waitReady(url: string): Promise<void> {
  const root = url.replace(/\/v1$/, '');
  for (let i = 0; i < 200; i++) {
    const r = await fetch(`${root}/ready`).catch(() => undefined);
    if (r?.status === 200) {
      // Let the scrapers read every replica once.
      await new Promise((res) => setTimeout(res, 600));
      return;
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`${url}: not ready`);
}

/** One streamed chat request: time to the first `data:` event, to the end, the tokens and the text. */
async function streamOnce(url: string, messages: Message[]): Promise<{ ttftMs: number; totalMs: number; tokens: number; text: string; error?: string }> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sluice-sim', messages, stream: true, stream_options: { include_usage: true } }),
    });
    if (res.status !== 200 || !res.body) return { ttftMs: 0, totalMs: 0, tokens: 0, text: '', error: `HTTP ${res.status}: ${(await res.text()).slice(0, 120)}` };
    const decoder = new TextDecoder();
    let buf = '';
    let first: number | undefined;
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk as Uint8Array, { stream: true });
      if (first === undefined && buf.includes('data: ')) first = performance.now();
    }
    const total = performance.now();
    if (!buf.endsWith('data: [DONE]\n\n')) return { ttftMs: 0, totalMs: 0, tokens: 0, text: '', error: `cut stream: ${buf.slice(-120)}` };
    let text = '';
    let tokens = 0;
    for (const frame of buf.split('\n\n')) {
      if (!frame.startsWith('data: {')) continue;
      const ev = JSON.parse(frame.slice(6)) as { choices?: Array<{ delta?: { content?: string } }>; usage?: { completion_tokens?: number } };
      text += ev.choices?.[0]?.delta?.content ?? '';
      if (ev.usage?.completion_tokens !== undefined) tokens = ev.usage.completion_tokens;
    }
    return { ttftMs: (first ?? total) - t0, totalMs: total - t0, tokens, text };
  } catch (err) {
    return { ttftMs: 0, totalMs: 0, tokens: 0, text: '', error: (err as Error).message };
  }
}

/** A replica's prefix cache counters, read from its `/metrics` as any Prometheus would. */
async function engineCounters(url: string): Promise<{ hits: number; queries: number }> {
  const text = await (await fetch(`${url.replace(/\/v1$/, '')}/metrics`)).text();
  const read = (name: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  return { hits: read('vllm:prefix_cache_hits_total'), queries: read('vllm:prefix_cache_queries_total') };
}

/** One table per workload; each strategy's TTFT p50 also as a change against least-loaded's. */
export function formatRouting(results: readonly RunResult[], workloads: readonly Workload[], strategies: readonly Strategy[]): string {
  const out: string[] = [];
  const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(0) : '—');
  for (const w of workloads) {
    const rows = strategies.map((s) => results.find((r) => r.workload === w && r.strategy === s)).filter((r): r is RunResult => r !== undefined);
    const base = rows.find((r) => r.strategy === 'least-loaded');
    out.push(`${w}${w === 'slow-replica' ? ' (replica 4 is slow)' : ''}:`);
    out.push('| strategy | requests | errors | TTFT p50 ms | vs least-loaded | TTFT p99 ms | e2e p50 ms | e2e p99 ms | tokens/s | cache hit | requests per replica |');
    out.push('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      const vs = base && r !== base && base.ttft.p50 > 0 ? `${(((r.ttft.p50 - base.ttft.p50) / base.ttft.p50) * 100).toFixed(0)}%` : '—';
      out.push(
        `| ${r.strategy} | ${r.requests} | ${r.errors} | ${ms(r.ttft.p50)} | ${vs} | ${ms(r.ttft.p99)} | ${ms(r.e2e.p50)} | ${ms(r.e2e.p99)} | ${r.tokensPerSecond.toFixed(0)} | ${(r.cacheHitRate * 100).toFixed(0)}% | ${r.perReplica.join(' / ')} |`,
      );
      for (const e of r.errorExamples) out.push(`  ${r.strategy} error: ${e}`);
    }
    out.push('');
  }
  return out.join('\n');
}
