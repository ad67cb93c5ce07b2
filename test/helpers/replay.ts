import type { TestContext } from 'node:test';
import { readFileSync, readdirSync } from 'node:fs';
import { httpServer } from './gateway.ts';

const DIR = new URL('../fixtures/dialects/', import.meta.url);

export type Engine = 'vllm' | 'sglang' | 'llamacpp' | 'ollama' | 'tgi';
export const ENGINES: readonly Engine[] = ['vllm', 'sglang', 'llamacpp', 'ollama', 'tgi'];

/** One recorded exchange: test/fixtures/dialects/<engine>/<name>.txt and its .meta.json. */
export interface Fixture {
  engine: Engine;
  name: string;
  endpoint: '/v1/chat/completions' | '/v1/completions' | '/v1/responses';
  request: Record<string, unknown>;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export function loadFixture(engine: Engine, name: string): Fixture {
  const meta = JSON.parse(readFileSync(new URL(`${engine}/${name}.meta.json`, DIR), 'utf8')) as Omit<Fixture, 'body' | 'name'>;
  return { ...meta, engine, name, body: readFileSync(new URL(`${engine}/${name}.txt`, DIR)) };
}

/** A recorded Responses stream: test/fixtures/responses/<name>.txt and its .meta.json (engine in the meta). */
export function loadResponsesFixture(name: string): Fixture {
  const dir = new URL('../fixtures/responses/', import.meta.url);
  const meta = JSON.parse(readFileSync(new URL(`${name}.meta.json`, dir), 'utf8')) as Omit<Fixture, 'body' | 'name'>;
  return { ...meta, name, body: readFileSync(new URL(`${name}.txt`, dir)) };
}

export function fixtureNames(engine: Engine): string[] {
  return readdirSync(new URL(`${engine}/`, DIR))
    .filter((f) => f.endsWith('.txt') && !f.endsWith('.sluice.txt'))
    .map((f) => f.slice(0, -4))
    .sort();
}

/** The model the fixture's engine reports, for /v1/models. */
function modelOf(f: Fixture): string {
  return typeof f.request['model'] === 'string' ? f.request['model'] : 'm';
}

/** `GET /v1/models` as each engine answers it (docs/engines.md "Models / detection"), for `auto` detection. */
function modelsAnswer(f: Fixture): { headers: Record<string, string>; body: string } {
  const id = modelOf(f);
  switch (f.engine) {
    case 'vllm':
      return { headers: { 'content-type': 'application/json', server: 'uvicorn' }, body: JSON.stringify({ object: 'list', data: [{ id, object: 'model', created: 1761234567, owned_by: 'vllm', root: id, parent: null, max_model_len: 8192, permission: [] }] }) };
    case 'sglang':
      return { headers: { 'content-type': 'application/json', server: 'uvicorn' }, body: JSON.stringify({ object: 'list', data: [{ id, object: 'model', created: 1761234567, owned_by: 'sglang', root: id, parent: null, max_model_len: 8192 }] }) };
    case 'llamacpp':
      return { headers: { 'content-type': 'application/json; charset=utf-8', server: 'llama.cpp' }, body: JSON.stringify({ models: [{ name: id, model: id }], object: 'list', data: [{ id, object: 'model', created: 1761234567, owned_by: 'llamacpp', meta: {} }] }) };
    case 'ollama':
      return { headers: { 'content-type': 'application/json; charset=utf-8' }, body: `${JSON.stringify({ object: 'list', data: [{ id, object: 'model', created: 1761234567, owned_by: 'library' }] })}\n` };
    case 'tgi':
      return { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ object: 'list', data: [{ id, object: 'model', created: 0, owned_by: id }] }) };
  }
}

/** The engine's own fingerprint endpoints. */
function engineAnswer(f: Fixture, path: string): string | undefined {
  if (f.engine === 'tgi' && path === '/info') return JSON.stringify({ model_id: modelOf(f), model_sha: null, version: '2.3.1', sha: 'a094729', docker_label: 'sha-a094729' });
  if (f.engine === 'ollama' && path === '/api/version') return '{"version":"0.12.6"}';
  if (f.engine === 'vllm' && path === '/version') return '{"version":"0.11.0"}';
  return undefined;
}

export interface ReplayOptions {
  /** Bytes per write (default: the whole transcript in one write per frame). Small values split multibyte text. */
  sliceBytes?: number;
}

/**
 * A real HTTP upstream that plays one fixture's recorded bytes, with its recorded status and headers, to every POST;
 * `GET /v1/models` and the engine's fingerprint endpoints answer as that engine does. Requests are recorded.
 */
export async function replayUpstream(t: TestContext, f: Fixture, options: ReplayOptions = {}): Promise<{ url: string; requests: Array<Record<string, unknown>> }> {
  const requests: Array<Record<string, unknown>> = [];
  const model = modelsAnswer(f);
  const { url } = await httpServer(t, (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET') {
      if (path === '/v1/models') {
        res.writeHead(200, model.headers);
        res.end(model.body);
        return;
      }
      const answer = engineAnswer(f, path);
      res.writeHead(answer === undefined ? 404 : 200, { 'content-type': 'application/json' });
      res.end(answer ?? '{"detail":"Not Found"}');
      return;
    }
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
    req.on('end', () => {
      requests.push(JSON.parse(raw) as Record<string, unknown>);
      res.writeHead(f.status, Object.fromEntries(Object.entries(f.headers).filter(([k]) => !/^(transfer-encoding|date|content-length)$/i.test(k))));
      const size = options.sliceBytes ?? 0;
      const parts: Buffer[] = [];
      if (size > 0) for (let i = 0; i < f.body.length; i += size) parts.push(f.body.subarray(i, i + size));
      else parts.push(f.body);
      const pump = (): void => {
        const p = parts.shift();
        if (p === undefined) return void res.end();
        res.write(p);
        setImmediate(pump);
      };
      pump();
    });
  });
  return { url, requests };
}
