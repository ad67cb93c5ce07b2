import { check, type Check } from '../check.ts';
import { errorFrameShape, validateChunk, validateResponsesEvent } from '../chunk-schema.ts';
import type { StreamRecording } from '../recording.ts';
import type { FramingAudit } from '../sse-framing.ts';

/**
 * Will the OpenAI SDKs (Python, Node), the Vercel AI SDK and browsers read this stream? Framing details the SSE spec
 * allows but clients break on, how the stream ends, in-band errors, and the chunk schema.
 * Sources: openai-node `core/streaming.ts` (an event with no data is parsed as JSON '' and throws; a BOM hides the
 * first field), openai-python `_streaming.py` (reads to the end of the response after [DONE]; a comment after an
 * `id:` line crashes it), @ai-sdk/openai-compatible (validates every chunk against a schema).
 */

export function checkSdkCompat(rec: StreamRecording, audit: FramingAudit): Check[] {
  return [checkFraming(rec, audit), checkEnd(rec), ...checkErrorFrames(rec), checkSchema(rec)];
}

function checkFraming(rec: StreamRecording, a: FramingAudit): Check {
  const base = { id: 'sdk.framing', group: 'sdk', probe: rec.endpoint, title: 'SSE framing the SDKs accept' } as const;
  const fails: string[] = [];
  const warns: string[] = [];
  const ex = (k: string): string => (a.examples[k] ? ` (e.g. ${a.examples[k]})` : '');
  if (a.bom) fails.push('the stream starts with a UTF-8 BOM: both OpenAI SDKs then lose the first event');
  if (a.eventsWithoutData > 0) {
    fails.push(`${a.eventsWithoutData} event(s) with an \`event:\` line but no data${ex('event without data')}: openai-node and openai-python parse the empty data as JSON and throw`);
  }
  if (a.commentAfterId) fails.push(`a comment line follows an \`id:\` line${ex('comment after id')}: openai-python crashes on it`);
  if (a.multiLineBroken > 0) {
    fails.push(`${a.multiLineBroken} event(s) split JSON over several data lines so that the joined text is not JSON${ex('multi-line data')}`);
  }
  const isResponses = rec.endpoint === 'responses';
  if (a.lineEndings.crlf + a.lineEndings.cr > 0) {
    warns.push(`lines end with ${a.lineEndings.crlf > 0 ? 'CRLF' : 'CR'} (${a.lineEndings.crlf + a.lineEndings.cr} lines)${ex(a.lineEndings.crlf > 0 ? 'crlf' : 'cr')}: allowed by the spec and the SDKs, but hand-written clients that split on "\\n\\n" miss events`);
  }
  if (!isResponses && a.fields.event > 0 && a.eventsWithoutData === 0) {
    warns.push(`\`event:\` lines on a ${rec.endpoint} stream${ex('event')}: openai-node throws on \`event: error\` and routes \`thread.*\` names elsewhere; plain \`data:\` frames are the norm`);
  }
  if (isResponses && a.fields.data > 0 && a.fields.event === 0) warns.push('no `event:` lines on a Responses stream: OpenAI sends `event: <type>` before each data line');
  if (a.fields.id > 0 && !a.commentAfterId) warns.push(`\`id:\` lines${ex('id')}: openai-python crashes if a comment (a heartbeat) ever follows one`);
  if (a.fields.retry > 0) warns.push(`\`retry:\` lines${ex('retry')}: ignored by the SDKs; only EventSource uses them`);
  if (a.multiLineData > a.multiLineBroken) warns.push(`${a.multiLineData - a.multiLineBroken} event(s) with several data lines${ex('multi-line data')}: valid, but clients that read line by line break`);
  if (a.fields.other > 0) warns.push(`unknown field lines${ex('other')}: ignored by the spec, a sign of a rewriting hop`);
  if (a.trailingBytes > 0 && rec.end.reason === 'complete') warns.push(`the stream ends without a blank line after the last event${ex('unterminated')}`);
  const evidence = [
    `lines: ${a.lineEndings.lf} LF, ${a.lineEndings.crlf} CRLF, ${a.lineEndings.cr} CR; fields: ${a.fields.data} data, ${a.fields.event} event, ${a.fields.id} id, ${a.fields.retry} retry, ${a.fields.comment} comment`,
    ...fails,
    ...warns,
  ];
  if (rec.bodyCapped) evidence.push('the body was longer than the audit cap; only its start was audited');
  const fix = 'send `data: <one-line JSON>\\n\\n` frames only: LF line ends, no BOM, no `id:`/`event:`/`retry:` lines on chat and completions (Sluice normalizes this)';
  if (fails.length > 0) return check({ ...base, status: 'fail', summary: fails[0] as string, evidence, fix });
  if (warns.length > 0) return check({ ...base, status: 'warn', summary: warns[0] as string, evidence, fix });
  return check({ ...base, status: 'pass', summary: isResponses ? '`event:` + `data:` frames, LF line ends' : 'plain `data:` frames, LF line ends, no BOM', evidence });
}

/** Did the stream end the way clients expect: a terminator, then the end of the response at once? */
function checkEnd(rec: StreamRecording): Check {
  const base = { id: 'sdk.end', group: 'sdk', probe: rec.endpoint, title: 'The stream ends cleanly' } as const;
  const isResponses = rec.endpoint === 'responses';
  const terminator = isResponses ? 'a `response.completed` event' : '`data: [DONE]`';
  const evidence: string[] = [`the response ${endText(rec)} at ${Math.round(rec.end.at)} ms`];
  if (rec.doneAt !== null) evidence.push(`${isResponses ? 'terminal event' : '[DONE]'} arrived at ${Math.round(rec.doneAt)} ms`);
  if (rec.parseError !== null) {
    return check({ ...base, status: 'fail', summary: `the stream could not be read: ${rec.parseError}`, evidence, fix: 'fix the framing at the hop that rewrites the body' });
  }
  if (rec.end.reason === 'open-after-done') {
    return check({
      ...base,
      status: 'fail',
      summary: `the response stayed open after ${isResponses ? 'the terminal event' : '[DONE]'}: openai-python reads to the end of the response and hangs`,
      evidence,
      fix: 'end the response right after the terminator (and make sure no hop holds the connection\'s last chunk)',
    });
  }
  if (rec.end.reason === 'timeout') {
    return check({ ...base, status: 'fail', summary: 'the stream did not end before the probe\'s deadline', evidence, fix: 'look for a hung engine or a hop that holds the last bytes' });
  }
  const finish = finishSeen(rec);
  if (rec.doneAt === null) {
    if (rec.end.reason !== 'complete' || !finish) {
      return check({
        ...base,
        status: 'fail',
        summary: `truncated: the stream stopped without ${finish ? terminator : `a finish_reason or ${terminator}`} (${endText(rec)})`,
        evidence,
        fix: 'find the hop that cuts the response (timeouts, body size limits); a gateway should send an error frame instead of ending silently',
      });
    }
    if (!isResponses) {
      return check({
        ...base,
        status: 'warn',
        summary: 'the stream ends without `data: [DONE]` (llama.cpp / Ollama style): clients cannot tell a complete answer from a cut one',
        evidence,
        fix: 'send `data: [DONE]\\n\\n` after the last chunk (Sluice synthesizes it)',
      });
    }
  }
  if (rec.end.reason !== 'complete') {
    return check({ ...base, status: 'warn', summary: `the connection ${endText(rec)} after ${terminator} instead of ending the response normally`, evidence, fix: 'end the chunked response with its last chunk' });
  }
  return check({ ...base, status: 'pass', summary: `${terminator}, then the response ended`, evidence });
}

function checkErrorFrames(rec: StreamRecording): Check[] {
  const frames: Array<{ at: number; json: unknown; raw: string }> = [];
  for (const ev of rec.events) {
    if (ev.kind !== 'data' || !ev.data.includes('"error"')) continue;
    let json: unknown;
    try {
      json = JSON.parse(ev.data);
    } catch {
      continue;
    }
    const isErr = typeof json === 'object' && json !== null && ('error' in json || (json as Record<string, unknown>)['type'] === 'error' || ev.event === 'error');
    if (isErr) frames.push({ at: ev.at, json, raw: ev.data });
  }
  if (frames.length === 0) return [];
  const first = frames[0] as { at: number; json: unknown; raw: string };
  const evidence = [`error frame at ${Math.round(first.at)} ms: ${first.raw.length > 200 ? `${first.raw.slice(0, 200)}…` : first.raw}`];
  const problem = rec.endpoint === 'responses' ? null : errorFrameShape(first.json);
  if (problem !== null) evidence.push(`shape: ${problem}`);
  else evidence.push('shape: OpenAI\'s `{"error":{"message",…}}`, which both SDKs raise as an APIError');
  if (rec.doneAt !== null && rec.doneAt >= first.at && rec.endpoint !== 'responses') {
    evidence.push('`[DONE]` followed the error frame (vLLM does this): clients that ignore error frames see a complete-looking answer');
  }
  const message = messageOf(first.json);
  return [
    check({
      id: 'sdk.error-frame',
      group: 'sdk',
      probe: rec.endpoint,
      title: 'No error mid-stream',
      status: 'fail',
      summary: `the endpoint reported an error mid-stream${message ? `: ${message}` : ''}`,
      evidence,
      fix: problem !== null ? 'send errors after headers as one `data: {"error":{"message","type","param","code"}}` frame, then close without [DONE]' : 'see the engine\'s logs for the error',
    }),
  ];
}

function checkSchema(rec: StreamRecording): Check {
  const base = { id: 'sdk.schema', group: 'sdk', probe: rec.endpoint, title: 'Chunks match the OpenAI schema' } as const;
  const errors = new Map<string, number>();
  const warnings = new Map<string, number>();
  let checked = 0;
  let badJson = 0;
  let firstBad = '';
  for (const ev of rec.events) {
    if (ev.kind !== 'data' || ev.data === '[DONE]') continue;
    let json: unknown;
    try {
      json = JSON.parse(ev.data);
    } catch {
      badJson++;
      if (firstBad === '') firstBad = ev.data.slice(0, 120);
      continue;
    }
    if (typeof json === 'object' && json !== null && 'error' in json) continue;
    checked++;
    const f = rec.endpoint === 'responses' ? validateResponsesEvent(ev.event, json) : validateChunk(rec.endpoint, json);
    for (const e of f.errors) errors.set(e, (errors.get(e) ?? 0) + 1);
    for (const w of f.warnings) warnings.set(w, (warnings.get(w) ?? 0) + 1);
  }
  const evidence = [`${checked} chunk${checked === 1 ? '' : 's'} checked`];
  for (const [e, n] of errors) evidence.push(`error ×${n}: ${e}`);
  for (const [w, n] of warnings) evidence.push(`warning ×${n}: ${w}`);
  if (badJson > 0) {
    evidence.unshift(`${badJson} data payload(s) are not JSON, e.g. ${JSON.stringify(firstBad)}`);
    return check({ ...base, status: 'fail', summary: 'data that is not JSON: both OpenAI SDKs throw on it', evidence, fix: 'every data line must be one JSON object (or [DONE])' });
  }
  const fix = rec.endpoint === 'responses' ? RESPONSES_SCHEMA_FIX : CHUNK_SCHEMA_FIX;
  if (errors.size > 0) {
    return check({ ...base, status: 'fail', summary: `chunks break the schema clients validate: ${[...errors.keys()][0]}`, evidence, fix });
  }
  if (warnings.size > 0) {
    return check({ ...base, status: 'warn', summary: `chunks deviate from OpenAI's schema: ${[...warnings.keys()][0]}`, evidence, fix });
  }
  return check({ ...base, status: 'pass', summary: checked > 0 ? 'every chunk matches' : 'no chunks to check', evidence });
}

/** What Sluice normalizes (docs/engines.md, "What Sluice normalizes"): the chunks of the five engine dialects. */
const CHUNK_SCHEMA_FIX = 'normalize chunks to OpenAI\'s shape (Sluice does this for SGLang, llama.cpp, Ollama and TGI streams put behind it; vLLM\'s are OpenAI\'s already)';
/** Responses events: Sluice fills in what llama.cpp, SGLang and Ollama leave out; other engines' events pass as they are. */
const RESPONSES_SCHEMA_FIX =
  'send OpenAI\'s Responses events: `sequence_number` on each, `response.created` with `output: []` and `model`, `output_index`/`content_index` on item and text events (Sluice fills these in for llama.cpp, SGLang and Ollama upstreams)';

function finishSeen(rec: StreamRecording): boolean {
  return rec.events.some((e) => e.kind === 'data' && /"finish_reason"\s*:\s*"/.test(e.data));
}

function endText(rec: StreamRecording): string {
  switch (rec.end.reason) {
    case 'complete':
      return 'ended normally';
    case 'closed':
      return 'was closed by the server mid-body';
    case 'error':
      return `failed (${rec.end.detail ?? 'connection error'})`;
    case 'timeout':
      return 'was still open at the deadline';
    case 'open-after-done':
      return 'was still open after the terminator';
  }
}

function messageOf(json: unknown): string | null {
  if (typeof json !== 'object' || json === null) return null;
  const err = (json as Record<string, unknown>)['error'];
  if (typeof err === 'string') return err;
  if (typeof err === 'object' && err !== null && typeof (err as Record<string, unknown>)['message'] === 'string') {
    return (err as Record<string, unknown>)['message'] as string;
  }
  const msg = (json as Record<string, unknown>)['message'];
  return typeof msg === 'string' ? msg : null;
}
