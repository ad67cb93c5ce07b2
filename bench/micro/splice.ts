/**
 * Per-chunk CPU of keeping a stream ready for mid-stream failover (docs/failover.md), in process, no servers: the
 * protocol object's work on vLLM reads passed through as bytes (one chunk per read, with usage on every chunk, as the
 * gateway asks vLLM for it), for a plain `ChatStream` (failover off) and a `SpliceStream` (on). The relay, the socket
 * writes and undici are left out: this is the added cost alone.
 *
 *   node bench/micro/splice.ts [--chunks 200000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { ChatStream } from '../../src/openai/chat-stream.ts';
import { SpliceStream } from '../../src/openai/splice-stream.ts';
import type { StreamProtocol } from '../../src/relay/protocol.ts';

const { values } = parseArgs({ options: { chunks: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '5' } } });
const chunks = Number(values.chunks);
const rounds = Number(values.rounds);
const PER_STREAM = 256;

const read = (i: number): Buffer =>
  Buffer.from(
    `data: {"id":"chatcmpl-b7dd0c3e5f6a4b1e9d2c8f7a6b5c4d3e","object":"chat.completion.chunk","created":1774934432,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"content":" word${i % 100}"},"logprobs":null,"finish_reason":null,"token_ids":null}],"usage":{"prompt_tokens":12,"total_tokens":${13 + i},"completion_tokens":${i + 1}}}\n\n`,
  );
const reads = Array.from({ length: PER_STREAM }, (_, i) => read(i));
const chat = (): ChatStream => new ChatStream({ usage: { final: false, continuous: false }, choices: 1 });

function run(make: () => StreamProtocol): number {
  const started = process.cpuUsage();
  let out = 0;
  for (let n = 0; n < chunks; ) {
    const p = make();
    p.attach({ continuousUsage: true });
    for (let i = 0; i < PER_STREAM && n < chunks; i++, n++) out += p.passRaw(reads[i] as Buffer)?.length ?? 0;
  }
  const used = process.cpuUsage(started);
  if (out === 0) throw new Error('nothing passed');
  return ((used.user + used.system) * 1000) / chunks; // ns per chunk
}

const results: Record<string, number[]> = { off: [], on: [] };
for (let r = 0; r < rounds; r++) {
  results['off']!.push(run(chat));
  results['on']!.push(run(() => new SpliceStream('chat', chat)));
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const off = median(results['off']!);
const on = median(results['on']!);
console.log(`chunks ${chunks} × ${rounds} rounds, CPU per chunk (median): failover off ${off.toFixed(0)} ns, on ${on.toFixed(0)} ns, added ${(on - off).toFixed(0)} ns`);
