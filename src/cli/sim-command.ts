import { parseArgs } from 'node:util';
import { startSimulator } from '../sim/server.ts';
import { DEFAULT_TIMING, FAIL_MODES, type FailMode } from '../sim/options.ts';
import { DEFAULT_ENGINE } from '../sim/engine.ts';
import { isSimDialectName, SIM_DIALECT_NAMES } from '../sim/dialects/sim-dialects.ts';
import { intOption, UsageError } from './args.ts';

export const SIM_HELP = `Usage: sluice sim [options]

Runs the simulator alone: an OpenAI-compatible engine stand-in (no GPU, no model) that streams
generated text byte-faithfully to vLLM (or another engine, --dialect), with realistic timing and
injectable failures.

Options:
  --dialect ENGINE     engine to imitate: ${SIM_DIALECT_NAMES.join(', ')} (default vllm; env SLUICE_SIM_DIALECT)
  --host HOST          address to bind (default 127.0.0.1; env SLUICE_SIM_HOST)
  --port N             port (default 8000; env SLUICE_SIM_PORT)
  --model ID           model id to serve, repeatable (default sluice-sim)
  --ttft-ms N          time to first token (default ${DEFAULT_TIMING.ttftMs})
  --itl-ms N           inter-token latency (default ${DEFAULT_TIMING.itlMs})
  --jitter-ms N        ± uniform jitter on each delay (default 0)
  --tokens N           tokens per answer when max_tokens is not set (default ${DEFAULT_TIMING.tokens})
  --headers-delay-ms N delay before response headers (default 0)
  --fail MODE          inject a failure: ${FAIL_MODES.join(', ')} (default none)
  --fail-after N       tokens sent before the failure (default 0)
  --fail-status N      HTTP status for --fail status (default 500)
  --fail-rate P        probability in [0,1] that a request fails (default 1)
  --prefill-us-per-token N  prefill time per prompt token not in the prefix cache, µs (default 0)
  --max-batch N        requests running at once; more wait in the engine's queue (default 0: no limit)
  --prefix-cache-tokens N  prefix cache capacity in tokens, LRU (default 0: no prefix cache)
  --kv-cache-tokens N  KV-cache capacity for vllm:kv_cache_usage_perc (default ${DEFAULT_ENGINE.kvCacheTokens})

Each request may override these with a "sim" object in its JSON body, e.g.
  {"model":"sluice-sim","messages":[...],"stream":true,"sim":{"ttft_ms":2000,"fail":"drop","fail_after":5}}
and ask for reasoning tokens or a tool call with {"sim":{"reasoning":8}} or {"sim":{"tools":true}}.
See docs/simulator.md and docs/engines.md.`;

/** `sluice sim`: runs until SIGINT/SIGTERM. */
export async function simCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      dialect: { type: 'string' },
      model: { type: 'string', multiple: true },
      'ttft-ms': { type: 'string' },
      'itl-ms': { type: 'string' },
      'jitter-ms': { type: 'string' },
      tokens: { type: 'string' },
      'headers-delay-ms': { type: 'string' },
      fail: { type: 'string' },
      'fail-after': { type: 'string' },
      'fail-status': { type: 'string' },
      'fail-rate': { type: 'string' },
      'prefill-us-per-token': { type: 'string' },
      'max-batch': { type: 'string' },
      'prefix-cache-tokens': { type: 'string' },
      'kv-cache-tokens': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(SIM_HELP);
    return 0;
  }
  const fail = values.fail ?? 'none';
  if (!(FAIL_MODES as readonly string[]).includes(fail)) {
    throw new UsageError(`--fail: '${fail}' is not one of ${FAIL_MODES.join(', ')}`);
  }
  const dialect = values.dialect ?? (process.env['SLUICE_SIM_DIALECT'] || 'vllm');
  if (!isSimDialectName(dialect)) throw new UsageError(`--dialect: '${dialect}' is not one of ${SIM_DIALECT_NAMES.join(', ')}`);
  const failRate = values['fail-rate'] === undefined ? 1 : Number(values['fail-rate']);
  if (!(failRate >= 0 && failRate <= 1)) throw new UsageError(`--fail-rate: '${values['fail-rate']}' is not a number in [0,1]`);
  const sim = await startSimulator({
    host: values.host ?? process.env['SLUICE_SIM_HOST'] ?? '127.0.0.1',
    port: intOption('--port', values.port ?? process.env['SLUICE_SIM_PORT'], 8000, 0, 65535),
    ...(values.model ? { models: values.model } : {}),
    dialect,
    engine: {
      maxBatch: intOption('--max-batch', values['max-batch'], 0),
      prefixCacheTokens: intOption('--prefix-cache-tokens', values['prefix-cache-tokens'], 0),
      kvCacheTokens: intOption('--kv-cache-tokens', values['kv-cache-tokens'], DEFAULT_ENGINE.kvCacheTokens, 1),
    },
    timing: {
      prefillUsPerToken: intOption('--prefill-us-per-token', values['prefill-us-per-token'], 0),
      ttftMs: intOption('--ttft-ms', values['ttft-ms'], DEFAULT_TIMING.ttftMs),
      itlMs: intOption('--itl-ms', values['itl-ms'], DEFAULT_TIMING.itlMs),
      jitterMs: intOption('--jitter-ms', values['jitter-ms'], 0),
      tokens: intOption('--tokens', values.tokens, DEFAULT_TIMING.tokens, 1),
      headersDelayMs: intOption('--headers-delay-ms', values['headers-delay-ms'], 0),
      fail: fail as FailMode,
      failAfter: intOption('--fail-after', values['fail-after'], 0),
      failStatus: intOption('--fail-status', values['fail-status'], 500, 100, 599),
      failRate,
    },
  });
  console.log(`sluice sim: simulator (no model, generated text) listening on ${sim.url}, speaking ${dialect}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.close();
  return 0;
}
