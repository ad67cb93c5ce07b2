import { dispatchRequest } from './upstream-body.ts';
import type { DialectDetection, Upstream } from './upstream.ts';

/** What model discovery already read from `GET /v1/models`. */
export interface ModelsAnswer {
  /** The `Server` response header. */
  server: string | undefined;
  body: unknown;
}

const PROBE_TIMEOUT_MS = 3_000;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Works out which engine an `auto` upstream is, from what it exposes (docs/engines.md, "Detection"):
 * 1. `Server: llama.cpp` (llama-server sets it on every response) → llama.cpp;
 * 2. `owned_by` in /v1/models: `vllm`, `sglang`, `llamacpp` (each engine's `ModelCard` default) → that engine; an
 *    Ollama-style `models` array beside `data` → llama.cpp; model cards without `owned_by` → `openai`, no probes;
 * 3. `GET /info` with `model_id` and `docker_label` (TGI's `Info`) → TGI;
 * 4. `GET /api/version` with `version` (Ollama's native API) → Ollama;
 * 5. `GET /version` with `version` (vLLM's `show_version`) → vLLM;
 * otherwise `openai`: an OpenAI-compatible server whose stream is relayed as it is.
 * The probes are a few small GETs, once per upstream.
 */
export async function detectDialect(u: Upstream, models: ModelsAnswer): Promise<DialectDetection> {
  if (models.server !== undefined && /llama\.cpp/i.test(models.server)) return { dialect: 'llamacpp', reason: `Server: ${models.server}` };
  const body = models.body;
  const data = isObject(body) && Array.isArray(body['data']) ? (body['data'] as unknown[]) : [];
  const first = data.find(isObject);
  const owner = first && typeof first['owned_by'] === 'string' ? first['owned_by'] : undefined;
  if (owner === 'vllm' || owner === 'sglang' || owner === 'llamacpp') return { dialect: owner, reason: `/v1/models owned_by "${owner}"` };
  if (isObject(body) && Array.isArray(body['models'])) return { dialect: 'llamacpp', reason: '/v1/models lists "models" beside "data"' };
  // Every engine's model card has owned_by; a server whose cards lack it is no engine we know, and is not probed
  // (its other routes may not be harmless to GET).
  if (data.length === 0 || !data.every((m) => isObject(m) && typeof m['owned_by'] === 'string')) {
    return { dialect: 'openai', reason: '/v1/models without owned_by; relayed as OpenAI' };
  }

  const info = await getJson(u, '/info');
  if (isObject(info) && typeof info['model_id'] === 'string' && 'docker_label' in info) {
    return { dialect: 'tgi', reason: `/info has model_id and docker_label${typeof info['version'] === 'string' ? ` (TGI ${info['version']})` : ''}` };
  }
  const ollama = await getJson(u, '/api/version');
  if (isObject(ollama) && typeof ollama['version'] === 'string') return { dialect: 'ollama', reason: `/api/version answers ${ollama['version']}` };
  const vllm = await getJson(u, '/version');
  if (isObject(vllm) && typeof vllm['version'] === 'string') return { dialect: 'vllm', reason: `/version answers ${vllm['version']}` };
  return { dialect: 'openai', reason: `no engine fingerprint (owned_by "${owner ?? ''}"); relayed as OpenAI` };
}

/** GET an engine endpoint; its JSON body on 200, else undefined. At most 64 KiB and PROBE_TIMEOUT_MS in all. */
async function getJson(u: Upstream, path: string): Promise<unknown> {
  const signal = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  try {
    const res = await dispatchRequest(
      u.pool,
      { method: 'GET', path: u.rootPath(path), headers: u.headers({ accept: 'application/json' }), headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS },
      signal,
    );
    if (res.statusCode !== 200 || !String(res.headers['content-type'] ?? '').includes('json')) {
      res.body.destroy();
      return undefined;
    }
    const { text, truncated, failure } = await res.body.text(64 * 1024);
    if (truncated || failure) return undefined;
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
