import { z } from 'zod';
import { SluiceError } from '../errors.ts';

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

const SCHEMAS = {
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

export type RequestKind = keyof typeof SCHEMAS;

export interface ParsedRequest {
  kind: RequestKind;
  body: Record<string, unknown>;
  model: string;
  stream: boolean;
  /** The client asked for the usage chunk. */
  wantsUsage: boolean;
  /** Number of choices (n), 1 by default. */
  choices: number;
}

/** Parses and validates a request body. Throws SluiceError (400) naming the field at fault. */
export function parseRequest(kind: RequestKind, raw: string): ParsedRequest {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new SluiceError('SLUICE_INVALID_JSON', `We could not parse the JSON body of your request: ${(err as Error).message}`);
  }
  return validateRequest(kind, json);
}

/** Validates an already-parsed request body (a WebSocket message's). Throws SluiceError (400) naming the field. */
export function validateRequest(kind: RequestKind, json: unknown): ParsedRequest {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new SluiceError('SLUICE_INVALID_REQUEST', 'The request body must be a JSON object.');
  }
  const result = SCHEMAS[kind].safeParse(json, { reportInput: true });
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
  const n = body['n'];
  return { kind, body, model: body['model'] as string, stream, wantsUsage, choices: typeof n === 'number' ? n : 1 };
}

/**
 * The body sent upstream: usage always requested on streams (so every token is metered), and no `stream_options`
 * when not streaming (vLLM answers 400 to that). `model` is the resolved id when the client used an alias.
 */
export function upstreamBody(req: ParsedRequest, model: string): string {
  const body: Record<string, unknown> = { ...req.body, model };
  if (req.kind === 'chat' || req.kind === 'completion') {
    if (req.stream) {
      const so = req.body['stream_options'];
      body['stream_options'] = { ...(so !== null && typeof so === 'object' ? so : {}), include_usage: true };
    } else {
      delete body['stream_options'];
    }
  }
  return JSON.stringify(body);
}
