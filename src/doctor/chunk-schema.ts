import type { Endpoint } from './recording.ts';

/**
 * Validates stream payloads against what OpenAI's chunk schema promises and what the SDKs rely on. `errors` break a
 * client (the Vercel AI SDK validates every chunk with a schema and rejects it; openai-node's stream helpers index
 * `choices[i].index`); `warnings` are deviations clients tolerate. Error frames (`{"error":…}`) are checked by
 * `errorFrameShape`, not here.
 */

export interface SchemaFindings {
  errors: string[];
  warnings: string[];
}

const OBJECT: Partial<Record<Endpoint, string>> = { chat: 'chat.completion.chunk', completions: 'text_completion' };
const ROLES = new Set(['assistant', '']);

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const nullish = (v: unknown): boolean => v === null || v === undefined;

/** Checks one chat or completions chunk. */
export function validateChunk(endpoint: 'chat' | 'completions', json: unknown): SchemaFindings {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (!isObj(json)) return { errors: ['the chunk is not a JSON object'], warnings };
  if (typeof json['id'] !== 'string') warnings.push('`id` is not a string');
  else if (json['id'] === '') warnings.push('`id` is empty');
  if (json['object'] !== OBJECT[endpoint]) warnings.push(`\`object\` is ${JSON.stringify(json['object'])}, expected "${OBJECT[endpoint]}"`);
  if (!nullish(json['created']) && typeof json['created'] !== 'number') errors.push('`created` is not a number');
  else if (nullish(json['created'])) warnings.push('`created` is missing');
  if (!nullish(json['model']) && typeof json['model'] !== 'string') errors.push('`model` is not a string');
  else if (nullish(json['model'])) warnings.push('`model` is missing');
  const choices = json['choices'];
  if (!Array.isArray(choices)) {
    errors.push('`choices` is missing or not an array');
    return { errors, warnings };
  }
  for (const c of choices) {
    if (!isObj(c)) {
      errors.push('a choice is not an object');
      continue;
    }
    if (typeof c['index'] !== 'number') errors.push('a choice has no numeric `index`');
    if (!nullish(c['finish_reason']) && typeof c['finish_reason'] !== 'string') errors.push('`finish_reason` is not a string or null');
    if (endpoint === 'completions') {
      if (typeof c['text'] !== 'string') errors.push('a completions choice has no string `text`');
      continue;
    }
    const delta = c['delta'];
    if (nullish(delta)) {
      warnings.push('a choice has no `delta`');
      continue;
    }
    if (!isObj(delta)) {
      errors.push('`delta` is not an object');
      continue;
    }
    if (!nullish(delta['role']) && !ROLES.has(String(delta['role']))) errors.push(`\`delta.role\` is ${JSON.stringify(delta['role'])}, not "assistant"`);
    const content = delta['content'];
    if (!nullish(content) && typeof content !== 'string' && !Array.isArray(content)) errors.push('`delta.content` is not a string or null');
    const calls = delta['tool_calls'];
    if (!nullish(calls)) {
      if (!Array.isArray(calls)) errors.push('`delta.tool_calls` is not an array');
      else
        for (const call of calls) {
          if (!isObj(call) || !isObj(call['function'])) errors.push('a tool call delta has no `function` object');
          else if (typeof call['index'] !== 'number') warnings.push('a tool call delta has no `index`');
        }
    }
  }
  const usage = json['usage'];
  if (!nullish(usage)) {
    if (!isObj(usage)) errors.push('`usage` is not an object');
    else for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) if (!nullish(usage[k]) && typeof usage[k] !== 'number') errors.push(`\`usage.${k}\` is not a number`);
  }
  return { errors, warnings };
}

const RESPONSE_OBJECT = new Set(['response.created', 'response.in_progress', 'response.completed', 'response.incomplete', 'response.failed']);
const ITEM_EVENT = /^response\.(output_item\.(added|done)|content_part\.(added|done)|output_text\.(delta|done)|function_call_arguments\.(delta|done))$/;
const PART_EVENT = /^response\.(content_part\.(added|done)|output_text\.(delta|done))$/;

/** Checks one Responses API event (`event:` line and data). */
export function validateResponsesEvent(event: string | null, json: unknown): SchemaFindings {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (!isObj(json)) return { errors: ['the event data is not a JSON object'], warnings };
  const type = json['type'];
  if (typeof type !== 'string') errors.push('the event has no string `type`');
  else if (event !== null && event !== type) warnings.push(`\`event: ${event}\` does not match \`type: ${type}\``);
  if (typeof type === 'string' && type.endsWith('.delta') && typeof json['delta'] !== 'string' && type.includes('text')) {
    errors.push(`${type} has no string \`delta\``);
  }
  if (typeof json['sequence_number'] !== 'number') warnings.push('`sequence_number` is missing');
  if (typeof type !== 'string') return { errors, warnings };
  // What the SDKs' `responses.stream()` accumulate the answer with (openai-python appends to the first response's
  // `output`; openai-node indexes its snapshot by `output_index` and `content_index`), as llama-server 80fb11a left out.
  if (RESPONSE_OBJECT.has(type)) {
    const r = json['response'];
    if (!isObj(r)) errors.push(`${type} has no \`response\` object`);
    else {
      if (type !== 'response.failed' && !Array.isArray(r['output'])) errors.push(`${type} has no \`response.output\` array: openai-python's responses.stream() fails on it`);
      if (typeof r['model'] !== 'string') warnings.push(`${type} has no \`response.model\``);
    }
  } else if (ITEM_EVENT.test(type) && typeof json['output_index'] !== 'number') {
    errors.push(`${type} has no \`output_index\`: the SDKs' responses.stream() cannot place it`);
  }
  if (PART_EVENT.test(type) && typeof json['content_index'] !== 'number') errors.push(`${type} has no \`content_index\`: the SDKs' responses.stream() cannot place it`);
  return { errors, warnings };
}

/** For an in-band error frame: null when it has OpenAI's shape `{"error":{"message": string, …}}`, else the problem. */
export function errorFrameShape(json: unknown): string | null {
  if (!isObj(json)) return 'not a JSON object';
  const err = json['error'];
  if (typeof err === 'string') return '`error` is a string, not an object with `message` (TGI style): the Vercel AI SDK rejects it and other clients show a generic message';
  if (!isObj(err)) return '`error` is not an object';
  if (typeof err['message'] !== 'string') return '`error.message` is not a string';
  return null;
}
