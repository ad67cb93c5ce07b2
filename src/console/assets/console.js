// The Sluice console (docs/console.md): a playground that streams one request and draws its timeline, and a live
// view of the gateway fed by /console/api/events. Plain browser JavaScript, no framework, no build step. Every text
// that came from the network or the user (model names, prompts, answers, errors) is set with textContent or
// setAttribute, never parsed as HTML.
import { timelineElement } from '/console/assets/timeline.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Makes an element with text; attributes by setAttribute. */
function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

const state = {
  info: { client_keys: false, websocket: true, version: '' },
  /** The client key typed into the page: memory only. */
  key: '',
  /** The run in progress or last finished. */
  run: null,
  /** The last request, for "copy as". */
  last: null,
};

// ---- Views -----------------------------------------------------------------------------------------------------

function showView() {
  const live = location.hash === '#live';
  $('playground').hidden = live;
  $('live').hidden = !live;
  $('nav-playground').toggleAttribute('aria-current', !live);
  $('nav-live').toggleAttribute('aria-current', live);
  if (live) $('nav-live').setAttribute('aria-current', 'page');
  else $('nav-playground').setAttribute('aria-current', 'page');
  if (live) openFeed();
  else closeFeed();
}

// ---- Start -----------------------------------------------------------------------------------------------------

async function start() {
  window.addEventListener('hashchange', showView);
  showView();
  try {
    const r = await fetch('/console/api/info', { cache: 'no-store' });
    if (r.ok) state.info = await r.json();
  } catch {
    /* the models call below says what is wrong */
  }
  $('version').textContent = state.info.version ? `v${state.info.version}` : '';
  $('pg-key-field').hidden = !state.info.client_keys;
  if (!state.info.websocket) for (const i of document.querySelectorAll('input[name=transport][value=ws]')) i.disabled = true;
  let timer;
  $('pg-key').addEventListener('input', (e) => {
    state.key = /** @type {HTMLInputElement} */ (e.target).value.trim();
    clearTimeout(timer);
    timer = setTimeout(loadModels, 400);
  });
  $('pg-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void send();
  });
  $('pg-stop').addEventListener('click', () => state.run?.stop());
  for (const b of document.querySelectorAll('[data-copy]')) b.addEventListener('click', () => void copyAs(b.getAttribute('data-copy')));
  window.addEventListener('resize', () => state.run && drawTimeline(state.run));
  await loadModels();
  document.body.setAttribute('data-ready', '1');
}

function authHeaders() {
  return state.key ? { authorization: `Bearer ${state.key}` } : {};
}

async function loadModels() {
  const select = /** @type {HTMLSelectElement} */ ($('pg-model'));
  const previous = select.value;
  try {
    const r = await fetch('/v1/models', { headers: authHeaders(), cache: 'no-store' });
    if (r.status === 401) return status(state.info.client_keys ? 'Enter a client API key to list the models.' : 'The gateway refused the model list (401).', 'error');
    const body = await r.json();
    const ids = (body.data ?? []).map((m) => String(m.id));
    select.replaceChildren(...ids.map((id) => el('option', id, { value: id })));
    if (ids.includes(previous)) select.value = previous;
    if (ids.length === 0) status('No model is available: is an upstream up? See the Live view.', 'error');
    else if ($('pg-status').classList.contains('error')) status('');
  } catch (err) {
    status(`Cannot list models: ${err.message}`, 'error');
  }
}

function status(text, tone) {
  const s = $('pg-status');
  s.textContent = text;
  s.className = tone ?? '';
}

// ---- The request -----------------------------------------------------------------------------------------------

function radio(name) {
  return /** @type {HTMLInputElement} */ (document.querySelector(`input[name=${name}]:checked`)).value;
}

function newId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return `console-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

/** The request as the form describes it: API, transport, body. Throws on bad extra JSON. */
function buildRequest() {
  const api = radio('api');
  const transport = radio('transport');
  const model = /** @type {HTMLSelectElement} */ ($('pg-model')).value;
  const prompt = /** @type {HTMLTextAreaElement} */ ($('pg-prompt')).value;
  const extraText = /** @type {HTMLTextAreaElement} */ ($('pg-extra')).value.trim();
  let extra = {};
  if (extraText !== '') {
    extra = JSON.parse(extraText);
    if (extra === null || typeof extra !== 'object' || Array.isArray(extra)) throw new Error('extra body fields must be a JSON object');
  }
  const body =
    api === 'chat'
      ? { model, messages: [{ role: 'user', content: prompt }], stream: true, stream_options: { include_usage: true }, ...extra }
      : { model, input: prompt, stream: true, ...extra };
  return { api, transport, body, path: api === 'chat' ? '/v1/chat/completions' : '/v1/responses', id: newId() };
}

/** One run: what arrived when. Times are ms since the request left (performance.now()). */
function newRun(req) {
  return {
    req,
    t0: performance.now(),
    headersAt: null,
    firstTokenAt: null,
    endAt: null,
    end: null, // 'done' | 'error' | 'stopped'
    error: null,
    ticks: [],
    reads: [],
    heartbeats: [],
    text: '',
    usage: null,
    status: null,
    events: [],
    drawPending: false,
    stop: () => {},
  };
}

async function send() {
  if (state.run && state.run.end === null) return;
  let req;
  try {
    req = buildRequest();
  } catch (err) {
    return status(`Extra body fields: ${err.message}`, 'error');
  }
  if (!req.body.model) return status('Pick a model first.', 'error');
  state.last = req;
  const run = newRun(req);
  state.run = run;
  showCode('curl');
  $('pg-answer').textContent = '';
  $('pg-answer').classList.remove('cut');
  $('pg-facts').replaceChildren();
  $('pg-send').setAttribute('disabled', '');
  $('pg-stop').removeAttribute('disabled');
  status(`Streaming over ${req.transport === 'ws' ? 'WebSocket' : 'SSE'}…`);
  drawTimeline(run);
  try {
    if (req.transport === 'ws') await viaWebSocket(run);
    else await viaSse(run);
  } catch (err) {
    if (run.end === null) fail(run, err.name === 'AbortError' ? 'stopped' : err.message, err.name === 'AbortError' ? 'stopped' : 'error');
  }
  if (run.end === null) fail(run, 'the stream ended without its end marker: the answer is incomplete');
  await finish(run).catch(() => facts(run, null, 'unknown (the console API did not answer)'));
}

const now = (run) => performance.now() - run.t0;

/** A chunk arrived (an SSE data event or a WebSocket message): a tick, and maybe text, usage, the end. */
function onChunk(run, obj) {
  if (run.end !== null) return;
  const at = now(run);
  if (run.req.api === 'chat') {
    if (obj && obj.error) return fail(run, errorText(obj.error));
    const prev = run.ticks.at(-1);
    run.ticks.push({ at, title: `chunk ${run.ticks.length + 1} at ${at.toFixed(1)} ms${prev ? ` (+${(at - prev.at).toFixed(1)} ms)` : ''}` });
    const delta = obj?.choices?.[0]?.delta;
    const text = typeof delta?.content === 'string' ? delta.content : '';
    if (text) addText(run, text, at);
    if (obj?.usage) run.usage = { in: obj.usage.prompt_tokens, out: obj.usage.completion_tokens };
  } else {
    const type = obj?.type;
    if (type === 'error') return fail(run, errorText(obj.error ?? obj));
    const prev = run.ticks.at(-1);
    run.ticks.push({ at, title: `${String(type)} at ${at.toFixed(1)} ms${prev ? ` (+${(at - prev.at).toFixed(1)} ms)` : ''}` });
    if (type === 'response.output_text.delta' && typeof obj.delta === 'string') addText(run, obj.delta, at);
    if (type === 'response.failed' || type === 'response.incomplete') return fail(run, errorText(obj.response?.error ?? { message: type }));
    if (type === 'response.completed') {
      const u = obj.response?.usage;
      if (u) run.usage = { in: u.input_tokens, out: u.output_tokens };
      end(run, 'done');
    }
  }
  scheduleDraw(run);
}

function addText(run, text, at) {
  if (run.firstTokenAt === null) run.firstTokenAt = at;
  run.text += text;
  $('pg-answer').append(document.createTextNode(text));
}

function end(run, how) {
  if (run.end !== null) return;
  run.end = how;
  run.endAt = now(run);
  scheduleDraw(run);
}

function fail(run, message, how = 'error') {
  if (run.end !== null) return;
  run.error = message;
  end(run, how);
}

function errorText(e) {
  if (typeof e === 'string') return e;
  const msg = typeof e?.message === 'string' ? e.message : JSON.stringify(e);
  return e?.code ? `${msg} (${e.code})` : msg;
}

// ---- SSE over fetch --------------------------------------------------------------------------------------------

async function viaSse(run) {
  const ac = new AbortController();
  run.stop = () => ac.abort();
  const res = await fetch(run.req.path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': run.req.id, ...authHeaders() },
    body: JSON.stringify(run.req.body),
    signal: ac.signal,
  });
  run.headersAt = now(run);
  run.status = res.status;
  scheduleDraw(run);
  if (!res.ok || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    let msg = `HTTP ${res.status}`;
    try {
      const body = await res.json();
      if (body?.error) msg = `HTTP ${res.status}: ${errorText(body.error)}`;
    } catch {
      /* not JSON */
    }
    return fail(run, msg);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parser = sseParser(run);
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    const at = now(run);
    run.reads.push({ at, bytes: r.value.byteLength, title: `read at ${at.toFixed(1)} ms: ${r.value.byteLength} bytes` });
    parser(decoder.decode(r.value, { stream: true }));
    scheduleDraw(run);
  }
  parser(decoder.decode(), true);
}

/** An SSE parser (the WHATWG rules the page needs): comments are heartbeats, a blank line ends an event. */
function sseParser(run) {
  let buf = '';
  let data = [];
  // `event:` lines are not needed: a Responses event names its type in its JSON too.
  const dispatch = () => {
    if (data.length === 0) return;
    const text = data.join('\n');
    data = [];
    if (text === '[DONE]') return end(run, 'done');
    let obj;
    try {
      obj = JSON.parse(text);
    } catch {
      return fail(run, `a data line that is not JSON: ${text.slice(0, 80)}`);
    }
    onChunk(run, obj);
  };
  return (text, last = false) => {
    buf += text;
    const lines = buf.split(/\r\n|\r|\n/);
    buf = last ? '' : (lines.pop() ?? '');
    for (const line of lines) {
      if (line === '') dispatch();
      else if (line.startsWith(':')) {
        const at = now(run);
        run.heartbeats.push({ at, title: `heartbeat at ${at.toFixed(0)} ms:${line.slice(1)}` });
      } else {
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
      }
    }
    if (last) dispatch();
  };
}

// ---- WebSocket -------------------------------------------------------------------------------------------------

function viaWebSocket(run) {
  return new Promise((resolve) => {
    const mux = run.req.api === 'chat';
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${mux ? '/v1/ws' : '/v1/responses'}`;
    const protocols = mux ? ['sluice.v1'] : [];
    if (state.key) protocols.push(`sluice-api-key.${state.key}`);
    const ws = new WebSocket(url, protocols);
    run.stop = () => {
      if (mux && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'cancel', id: 'run' }));
      else ws.close();
    };
    ws.onopen = () => {
      run.headersAt = now(run);
      const { stream: _s, ...rest } = run.req.body;
      ws.send(JSON.stringify(mux ? { type: 'create', id: 'run', request_id: run.req.id, endpoint: run.req.path, body: run.req.body } : { type: 'response.create', ...rest }));
      scheduleDraw(run);
    };
    ws.onmessage = (e) => {
      const text = typeof e.data === 'string' ? e.data : '';
      const at = now(run);
      run.reads.push({ at, bytes: text.length, title: `message at ${at.toFixed(1)} ms: ${text.length} characters` });
      let m;
      try {
        m = JSON.parse(text);
      } catch {
        return fail(run, 'a WebSocket message that is not JSON');
      }
      if (mux) {
        if (m.type === 'chunk') onChunk(run, m.data);
        else if (m.type === 'done') end(run, 'done');
        else if (m.type === 'error') fail(run, `${m.status ? `${m.status}: ` : ''}${errorText(m.error)}`);
        else if (m.type === 'cancelled') fail(run, 'stopped', 'stopped');
      } else if (m.type === 'error' && m.status) {
        fail(run, `${m.status}: ${errorText(m.error)}`);
      } else {
        onChunk(run, m);
      }
      scheduleDraw(run);
      if (run.end !== null) ws.close(1000);
    };
    ws.onerror = () => fail(run, 'the WebSocket failed (refused, or the connection dropped)');
    ws.onclose = (e) => {
      if (run.end === null) fail(run, `the WebSocket closed (code ${e.code}) before the end of the answer`);
      resolve();
    };
  });
}

// ---- After the end ---------------------------------------------------------------------------------------------

async function finish(run) {
  $('pg-send').removeAttribute('disabled');
  $('pg-stop').setAttribute('disabled', '');
  drawTimeline(run);
  const a = $('pg-answer');
  if (run.end === 'done') status(`Complete: ${run.ticks.length} chunks in ${run.endAt.toFixed(0)} ms.`, 'ok');
  else if (run.end === 'stopped') status('Stopped.', '');
  else {
    a.classList.add('cut');
    status(`Error: ${run.error} — this answer is not complete.`, 'error');
  }
  facts(run, null);
  // The upstream that served it, and the gateway's own figures, from the console's record of the request (a header
  // could not say it: over SSE the headers may leave before an upstream is chosen, and WebSocket has none).
  if (run.req.transport === 'ws' && run.req.api !== 'chat') return facts(run, null, 'not known over the Responses WebSocket (see Live)');
  for (let i = 0; i < 10; i++) {
    const r = await fetch(`/console/api/requests/${encodeURIComponent(run.req.id)}`, { cache: 'no-store' });
    if (r.ok) {
      const rec = await r.json();
      if (rec.outcome !== 'in_flight') {
        // Failover and resume events, when the gateway records them (docs/console.md, "Engine figures and events").
        if (Array.isArray(rec.events)) {
          run.events = rec.events.filter((e) => e && typeof e.at_ms === 'number');
          drawTimeline(run);
        }
        return facts(run, rec);
      }
    }
    await new Promise((res) => setTimeout(res, 150));
  }
  facts(run, null, 'unknown (no record of this request)');
}

function facts(run, rec, upstreamNote) {
  const rows = [
    ['request id', run.req.id],
    ['transport', `${run.req.api === 'chat' ? 'chat completions' : 'Responses'} over ${run.req.transport === 'ws' ? 'WebSocket' : 'SSE'}`],
    ['outcome', run.end === 'done' ? 'complete' : run.end === 'stopped' ? 'stopped' : 'error', 'outcome'],
    ['chunks', String(run.ticks.length), 'chunks'],
    [run.req.transport === 'ws' ? 'socket open' : 'headers', run.headersAt === null ? '—' : `${run.headersAt.toFixed(1)} ms`],
    ['first token', run.firstTokenAt === null ? '—' : `${run.firstTokenAt.toFixed(1)} ms`, 'first-token'],
    ['end', run.endAt === null ? '—' : `${run.endAt.toFixed(1)} ms`],
    ['heartbeats', String(run.heartbeats.length), 'heartbeats'],
    ['usage (in / out)', run.usage ? `${run.usage.in ?? '—'} / ${run.usage.out ?? '—'}` : '—', 'usage'],
    ['upstream', rec ? (rec.upstream ?? '—') : (upstreamNote ?? '…'), 'upstream'],
  ];
  if (rec) rows.push(['gateway saw', `${rec.outcome}${rec.error_code ? ` (${rec.error_code})` : ''}, TTFT ${rec.ttft_ms ?? '—'} ms, ${rec.duration_ms ?? '—'} ms`, 'gateway']);
  if (run.error) rows.push(['error', run.error, 'error']);
  const dl = $('pg-facts');
  dl.replaceChildren();
  for (const [k, v, key] of rows) {
    dl.append(el('dt', k), el('dd', v, key ? { 'data-fact': key } : undefined));
  }
}

// ---- The timeline (the shared component, src/timeline/timeline.js) ---------------------------------------------

function scheduleDraw(run) {
  if (run.drawPending) return;
  run.drawPending = true;
  requestAnimationFrame(() => {
    run.drawPending = false;
    drawTimeline(run);
  });
}

function drawTimeline(run) {
  const marks = [{ at: 0, label: 'sent', key: 'sent', row: 0 }];
  if (run.headersAt !== null) marks.push({ at: run.headersAt, label: run.req.transport === 'ws' ? 'open' : 'headers', key: 'headers', row: 1 });
  if (run.firstTokenAt !== null) marks.push({ at: run.firstTokenAt, label: 'first token', key: 'first-token', row: 2 });
  if (run.endAt !== null) {
    if (run.end === 'done') marks.push({ at: run.endAt, label: 'end', key: 'done', row: 0 });
    else marks.push({ at: run.endAt, label: run.end === 'stopped' ? 'stopped' : 'error', key: run.end === 'stopped' ? 'stopped' : 'error', tone: 'error', row: 0 });
  }
  for (const e of run.events ?? []) marks.push({ at: e.at_ms, label: `${String(e.type)}${e.to ? ` → ${String(e.to)}` : ''}`, key: String(e.type), row: 1 });
  const box = $('pg-timeline');
  const width = Math.min(960, Math.max(320, box.clientWidth || 960));
  const svg = timelineElement(document, { label: `timeline of request ${run.req.id}`, end: run.endAt ?? now(run), ticks: run.ticks, reads: run.reads, heartbeats: run.heartbeats, marks }, { width });
  box.replaceChildren(svg);
  box.setAttribute('data-chunks', String(run.ticks.length));
}

// ---- Copy as ---------------------------------------------------------------------------------------------------

const CHAT_PARAMS = new Set(['model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'stop', 'seed', 'tools', 'tool_choice', 'response_format', 'presence_penalty', 'frequency_penalty', 'logprobs', 'top_logprobs', 'user', 'metadata', 'reasoning_effort', 'parallel_tool_calls']);
const RESPONSES_PARAMS = new Set(['model', 'input', 'instructions', 'stream', 'max_output_tokens', 'temperature', 'top_p', 'tools', 'tool_choice', 'text', 'reasoning', 'previous_response_id', 'store', 'metadata', 'user', 'parallel_tool_calls', 'truncation']);

/** `'…'` for a POSIX shell. */
const shq = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A JSON value as a Python literal (a JSON string literal is a valid Python one). */
function py(v, indent = '') {
  if (v === null) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'string' || typeof v === 'number') return JSON.stringify(v);
  const inner = `${indent}    `;
  if (Array.isArray(v)) return v.length === 0 ? '[]' : `[\n${v.map((x) => inner + py(x, inner)).join(',\n')},\n${indent}]`;
  const entries = Object.entries(v);
  return entries.length === 0 ? '{}' : `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${py(x, inner)}`).join(',\n')},\n${indent}}`;
}

function code(kind, req) {
  const base = `${location.origin}/v1`;
  const body = req.body;
  const json = JSON.stringify(body);
  const auth = state.info.client_keys;
  if (kind === 'curl') {
    return [
      req.transport === 'ws' ? '# curl speaks SSE; the same request over SSE (WebSocket: docs/websocket.md)' : null,
      `curl -N ${shq(location.origin + req.path)} \\`,
      `  -H 'content-type: application/json' \\`,
      auth ? `  -H "authorization: Bearer $SLUICE_API_KEY" \\` : null,
      `  -d ${shq(json)}`,
    ]
      .filter((l) => l !== null)
      .join('\n');
  }
  if (kind === 'python') {
    const known = req.api === 'chat' ? CHAT_PARAMS : RESPONSES_PARAMS;
    const args = [];
    const extra = {};
    for (const [k, v] of Object.entries(body)) {
      if (known.has(k)) args.push(`    ${k}=${py(v, '    ')},`);
      else extra[k] = v;
    }
    if (Object.keys(extra).length > 0) args.push(`    extra_body=${py(extra, '    ')},`);
    const call = req.api === 'chat' ? 'client.chat.completions.create' : 'client.responses.create';
    const loop =
      req.api === 'chat'
        ? ['for chunk in stream:', '    if chunk.choices and chunk.choices[0].delta.content:', '        print(chunk.choices[0].delta.content, end="", flush=True)']
        : ['for event in stream:', '    if event.type == "response.output_text.delta":', '        print(event.delta, end="", flush=True)'];
    return [
      'import os',
      'from openai import OpenAI',
      '',
      `client = OpenAI(base_url=${JSON.stringify(base)}, api_key=${auth ? 'os.environ["SLUICE_API_KEY"]' : 'os.environ.get("SLUICE_API_KEY", "none")'})`,
      `stream = ${call}(`,
      ...args,
      ')',
      ...loop,
      'print()',
    ].join('\n');
  }
  const call = req.api === 'chat' ? 'client.chat.completions.create' : 'client.responses.create';
  // An assertion, not an annotation: fields the SDK does not type (an engine's extras) are sent as they are.
  const type = req.api === 'chat' ? 'OpenAI.Chat.ChatCompletionCreateParamsStreaming' : 'OpenAI.Responses.ResponseCreateParamsStreaming';
  const loop =
    req.api === 'chat'
      ? "for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');"
      : "for await (const event of stream) if (event.type === 'response.output_text.delta') process.stdout.write(event.delta);";
  return [
    "import OpenAI from 'openai';",
    '',
    `const client = new OpenAI({ baseURL: ${JSON.stringify(base)}, apiKey: process.env.SLUICE_API_KEY${auth ? '' : " ?? 'none'"} });`,
    `const stream = await ${call}(${JSON.stringify(body, null, 2)} as ${type});`,
    loop,
  ].join('\n');
}

function showCode(kind) {
  const req = state.last ?? safeRequest();
  if (!req) return '';
  const text = code(kind, req);
  $('pg-code').textContent = text;
  $('pg-code').setAttribute('data-kind', kind);
  return text;
}

function safeRequest() {
  try {
    return buildRequest();
  } catch {
    return null;
  }
}

async function copyAs(kind) {
  state.last = safeRequest() ?? state.last;
  const text = showCode(kind);
  try {
    await navigator.clipboard.writeText(text);
    status(`Copied as ${kind}.`, 'ok');
  } catch {
    // No clipboard (an insecure context, or permission refused): the code is selected for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents($('pg-code'));
    const sel = getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    status(`The ${kind} code is shown and selected: press Ctrl+C (or ⌘C) to copy.`, '');
  }
}

// ---- Live view -------------------------------------------------------------------------------------------------

let feed = null;

function openFeed() {
  if (feed) return;
  feed = new EventSource('/console/api/events');
  feed.addEventListener('snapshot', (e) => {
    try {
      renderLive(JSON.parse(e.data));
    } catch (err) {
      $('live-status').textContent = `bad snapshot: ${err.message}`;
    }
  });
  feed.onerror = () => {
    $('live-status').textContent = 'disconnected; reconnecting…';
  };
}

function closeFeed() {
  feed?.close();
  feed = null;
}

const ms = (v) => (v === null || v === undefined ? '—' : `${Math.round(v)} ms`);
const age = (snapshotNow, started) => {
  const s = Math.max(0, (snapshotNow - started) / 1000);
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
};

function badge(text, cls) {
  return el('span', text, { class: `badge ${cls}` });
}

function row(cells, attrs) {
  const tr = el('tr', undefined, attrs);
  for (const c of cells) {
    const td = el('td');
    if (c instanceof Node) td.append(c);
    else td.textContent = c;
    tr.append(td);
  }
  return tr;
}

function fill(tableId, rows, columns, emptyText) {
  const tbody = /** @type {HTMLTableElement} */ ($(tableId)).tBodies[0];
  if (rows.length === 0) {
    const td = el('td', emptyText, { colspan: columns, class: 'empty' });
    const tr = el('tr');
    tr.append(td);
    tbody.replaceChildren(tr);
  } else tbody.replaceChildren(...rows);
}

function renderLive(s) {
  $('live-status').textContent = `live · ${s.phase} · updated ${new Date(s.now).toLocaleTimeString()} · TTFT over the last ${Math.round(s.window_s / 60)} min`;
  fill(
    'live-upstreams',
    s.upstreams.map((u) =>
      row(
        [
          u.name,
          badge(u.state, u.state),
          String(u.in_flight),
          u.ttft_ms ? `${ms(u.ttft_ms.p50)} / ${ms(u.ttft_ms.p99)} (${u.ttft_ms.count})` : '—',
          String(u.models),
          u.queue === undefined ? '—' : String(u.queue),
          u.kv_cache === undefined ? '—' : `${Math.round(u.kv_cache * 100)} %`,
          u.last_error ?? '',
        ],
        { 'data-upstream': u.name },
      ),
    ),
    8,
    'no upstream',
  );
  $('live-inflight-count').textContent = `(${s.in_flight.count})`;
  fill(
    'live-inflight',
    s.in_flight.requests.map((r) =>
      row([r.id, r.model ?? '—', r.upstream ?? '…', `${r.method} ${r.path}`, r.key ?? '—', age(s.now, r.started_at)], { 'data-request': r.id, 'data-outcome': 'in_flight' }),
    ),
    6,
    'nothing in flight',
  );
  fill(
    'live-recent',
    s.recent.map((r) =>
      row(
        [
          new Date(r.started_at).toLocaleTimeString(),
          r.id,
          r.model ?? '—',
          r.upstream ?? '—',
          badge(r.error_code ? `${r.outcome} (${r.error_code})` : r.outcome, r.outcome === 'completed' ? 'completed' : r.outcome === 'client_aborted' ? 'client_aborted' : 'bad'),
          ms(r.ttft_ms),
          `${r.tokens_in ?? '—'} / ${r.tokens_out ?? '—'}${r.tokens_source === 'counted' ? ' (counted)' : ''}`,
          ms(r.duration_ms),
        ],
        { 'data-request': r.id, 'data-outcome': r.outcome },
      ),
    ),
    8,
    'no request yet',
  );
  fill(
    'live-keys',
    s.keys.map((k) => row([k.key, String(k.requests), String(k.tokens_in), String(k.tokens_out)])),
    4,
    'no stored key used in the window',
  );
}

void start();
