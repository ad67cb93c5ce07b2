import { z } from 'zod';
import { SluiceError } from '../errors.ts';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from './json-depth.ts';

/**
 * Validates client requests just enough to route them and to fail early with an OpenAI-shaped 400 naming the field.
 * Unknown fields pass through untouched (engines have their own extensions, e.g. vLLM's sampling parameters).
 */

const nullableInt = (min: number) => z.number().int().min(min).nullable().optional();
const common = {
  model: z.string().min(1),
  stream: z.boolean().nullable().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullable().optional() }).nullable().optional(),
  n: nullableInt(1),
  max_tokens: nullableInt(1),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  stop: z.union([z.string(), z.array(z.string())]).nullable().optional(),
};

export const REQUEST_SCHEMAS = {
  chat: z.looseObject({
    ...common,
    messages: z.array(z.looseObject({ role: z.string().min(1) })).min(1),
    max_completion_tokens: nullableInt(1),
  }),
  completion: z.looseObject({
    ...common,
    prompt: z.union([z.string(), z.array(z.string()), z.array(z.number().int()), z.array(z.array(z.number().int()))]),
  }),
  responses: z.looseObject({
    model: z.string().min(1),
    input: z.union([z.string(), z.array(z.unknown())]),
    stream: z.boolean().nullable().optional(),
    max_output_tokens: nullableInt(1),
  }),
  embeddings: z.looseObject({
    model: z.string().min(1),
    input: z.union([z.string(), z.array(z.unknown()).min(1)]),
  }),
} as const;

export type RequestKind = keyof typeof REQUEST_SCHEMAS;

export interface ParsedRequest {
  kind: RequestKind;
  body: Record<string, unknown>;
  model: string;
  stream: boolean;
  /** The client asked for the usage chunk. */
  wantsUsage: boolean;
  /** The client asked for usage on every chunk too (`stream_options.continuous_usage_stats`, vLLM's and SGLang's). */
  wantsContinuousUsage: boolean;
  /** Number of choices (n), 1 by default. */
  choices: number;
  /** The body as the client sent it, when it came as text (lets `upstreamBody` avoid re-serializing it). */
  raw?: string;
}

/** Parses and validates a request body. Throws SluiceError (400) naming the field at fault. */
export function parseRequest(kind: RequestKind, raw: string): ParsedRequest {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new SluiceError('SLUICE_INVALID_JSON', `We could not parse the JSON body of your request: ${(err as Error).message}`);
  }
  // Parsing is safe at any depth; what comes after (re-serializing, the engine's own parser) is not. Each level takes
  // two characters of valid JSON (its brackets), so a shorter text cannot be too deep and needs no walk.
  if (raw.length >= 2 * (MAX_JSON_DEPTH + 1) && exceedsJsonDepth(json)) {
    throw new SluiceError('SLUICE_INVALID_JSON', `The JSON body of your request nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep.`);
  }
  const parsed = validateRequest(kind, json);
  parsed.raw = raw;
  return parsed;
}

/** Validates an already-parsed request body (a WebSocket message's). Throws SluiceError (400) naming the field. */
export function validateRequest(kind: RequestKind, json: unknown): ParsedRequest {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new SluiceError('SLUICE_INVALID_REQUEST', 'The request body must be a JSON object.');
  }
  // The common valid chat request is recognized by hand; zod runs for everything else and words every error.
  const result = kind === 'chat' && plainChat(json as Record<string, unknown>) ? { success: true as const } : REQUEST_SCHEMAS[kind].safeParse(json, { reportInput: true });
  if (!result.success) {
    const issue = result.error.issues[0] as z.core.$ZodIssue;
    const param = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
    const got = issue.code === 'invalid_type' && issue.input === undefined ? `Missing required parameter: '${param}'.` : `Invalid value for '${param}': ${issue.message}.`;
    throw new SluiceError('SLUICE_INVALID_REQUEST', got, { param, wireCode: issue.input === undefined ? 'missing_required_parameter' : 'invalid_value' });
  }
  const body = json as Record<string, unknown>;
  const stream = body['stream'] === true;
  const so = body['stream_options'];
  const wantsUsage = stream && so !== null && typeof so === 'object' && (so as Record<string, unknown>)['include_usage'] === true;
  const wantsContinuousUsage = wantsUsage && (so as Record<string, unknown>)['continuous_usage_stats'] === true;
  const n = body['n'];
  return { kind, body, model: body['model'] as string, stream, wantsUsage, wantsContinuousUsage, choices: typeof n === 'number' ? n : 1 };
}

/**
 * The body sent upstream: usage always requested on streams (so every token is metered), with `continuous` also on
 * every chunk (for engines that support `continuous_usage_stats`: a cut stream is metered exactly), and no
 * `stream_options` when not streaming (vLLM answers 400 to that). `model` is the resolved id when the client used an
 * alias.
 */
export function upstreamBody(req: ParsedRequest, model: string, continuous = false): string {
  const spliced = spliceBody(req, model, continuous);
  if (spliced !== undefined) return spliced;
  const body: Record<string, unknown> = { ...req.body, model };
  if (req.kind === 'chat' || req.kind === 'completion') {
    if (req.stream) {
      const so = req.body['stream_options'];
      body['stream_options'] = { ...(so !== null && typeof so === 'object' ? so : {}), include_usage: true, ...(continuous ? { continuous_usage_stats: true } : {}) };
    } else {
      delete body['stream_options'];
    }
  }
  return JSON.stringify(body);
}

const isNil = (v: unknown): boolean => v === undefined || v === null;
const optInt = (v: unknown): boolean => isNil(v) || (Number.isSafeInteger(v) && (v as number) >= 1);
const optRange = (v: unknown, max: number): boolean => isNil(v) || (typeof v === 'number' && v >= 0 && v <= max);

/** A chat body every field of which REQUEST_SCHEMAS.chat certainly accepts (false: ask zod, which may still accept it). */
export function plainChat(b: Record<string, unknown>): boolean {
  const model = b['model'];
  const messages = b['messages'];
  if (typeof model !== 'string' || model.length === 0 || !Array.isArray(messages) || messages.length === 0) return false;
  for (const m of messages) {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return false;
    const role = (m as Record<string, unknown>)['role'];
    if (typeof role !== 'string' || role.length === 0) return false;
  }
  const stream = b['stream'];
  if (!isNil(stream) && typeof stream !== 'boolean') return false;
  const so = b['stream_options'];
  if (!isNil(so)) {
    if (typeof so !== 'object' || Array.isArray(so)) return false;
    const iu = (so as Record<string, unknown>)['include_usage'];
    if (!isNil(iu) && typeof iu !== 'boolean') return false;
  }
  const stop = b['stop'];
  if (!isNil(stop) && typeof stop !== 'string' && !(Array.isArray(stop) && stop.every((x) => typeof x === 'string'))) return false;
  return optInt(b['n']) && optInt(b['max_tokens']) && optInt(b['max_completion_tokens']) && optRange(b['temperature'], 2) && optRange(b['top_p'], 1);
}

/**
 * The upstream body without re-serializing the client's: the raw text as sent, with `stream_options` spliced in
 * front when a stream needs usage requested. Undefined when the body must be rebuilt (an alias to rewrite, or
 * `stream_options` to change or drop).
 */
function spliceBody(req: ParsedRequest, model: string, continuous: boolean): string | undefined {
  const raw = req.raw;
  if (raw === undefined || model !== req.body['model']) return undefined;
  if (req.kind !== 'chat' && req.kind !== 'completion') return raw;
  if (req.body['stream_options'] !== undefined) return undefined;
  if (!req.stream) return raw;
  const open = raw.indexOf('{');
  if (open === -1) return undefined;
  const so = continuous ? '{"include_usage":true,"continuous_usage_stats":true}' : '{"include_usage":true}';
  return `${raw.slice(0, open)}{"stream_options":${so},${raw.slice(open + 1)}`;
}
