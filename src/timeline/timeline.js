// @ts-check
/**
 * One stream's timeline as an SVG picture: the one way Sluice draws a stream. `sluice doctor --html` renders it to
 * markup in Node (`timelineMarkup`); the console draws it live in the browser (`timelineElement`), from the same
 * layout. Plain JavaScript with JSDoc types (timeline.d.ts declares them for TypeScript), so the gateway serves this
 * very file to browsers with no build step. Pure: no I/O, no globals; the browser renderer is handed `document`.
 *
 * Lanes, top to bottom: marks (dashed lines with labels: request sent, headers, first token, end or error),
 * `written` (a sender's own stamp of each token, joined to its arrival: a slanted line is a delay on the way),
 * `arrived` (a tick per chunk or token, its gap in the tooltip), heartbeats (dots under the ticks), reads (bars,
 * height by size), and the time axis.
 */

/**
 * @typedef {import('./timeline.d.ts').TimelineInput} TimelineInput
 * @typedef {import('./timeline.d.ts').TimelineNode} TimelineNode
 * @typedef {import('./timeline.d.ts').TimelineOptions} TimelineOptions
 */

const LEFT = 64;
const RIGHT = 12;
const WRITTEN_Y = 46;
const ARRIVED_Y = 104;
const READS_BASE = 174;
const H = 206;

/**
 * The timeline's style, scoped to `svg.sl-tl`. Colours are CSS variables with light defaults, so a page in dark mode
 * sets `--tl-fg` and friends once.
 */
export const TIMELINE_CSS =
  '.sl-tl text{font:11px system-ui,sans-serif;fill:var(--tl-fg,#444)}' +
  '.sl-tl .lane{stroke:var(--tl-lane,#ddd)}' +
  '.sl-tl .tick{stroke:var(--tl-tick,#1a7f37);stroke-width:1.5}' +
  '.sl-tl .w{fill:var(--tl-written,#0969da)}' +
  '.sl-tl .d{stroke:var(--tl-delay,#bf8700);stroke-opacity:.5}' +
  '.sl-tl .read{fill:var(--tl-read,#8250df);fill-opacity:.6}' +
  '.sl-tl .mark{stroke:var(--tl-mark,#999);stroke-dasharray:3 3}' +
  '.sl-tl .mark.error{stroke:var(--tl-error,#cf222e);stroke-dasharray:none;stroke-width:2}' +
  '.sl-tl text.error{fill:var(--tl-error,#cf222e);font-weight:600}' +
  '.sl-tl .hb{fill:var(--tl-hb,#cf222e)}';

/** @param {number} span */
function niceStep(span) {
  const raw = span / 8;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

/** @param {number} n */
const f = (n) => n.toFixed(1);

/**
 * Lays a timeline out as SVG nodes (pure data: element name, attributes, text, tooltip, children).
 * @param {TimelineInput} input
 * @param {TimelineOptions} [options]
 * @returns {TimelineNode}
 */
export function layoutTimeline(input, options = {}) {
  const W = Math.max(240, Math.round(options.width ?? 960));
  const ticks = input.ticks;
  const written = input.written ?? [];
  const reads = input.reads ?? [];
  const heartbeats = input.heartbeats ?? [];
  const marks = input.marks;
  const times = [input.end ?? 0, ...ticks.map((t) => t.at), ...written.map((w) => w.at), ...marks.map((m) => m.at), ...heartbeats.map((h) => h.at)];
  const span = Math.max(1, ...times);
  /** @param {number} t */
  const x = (t) => LEFT + (Math.max(0, t) / span) * (W - LEFT - RIGHT);
  /** @type {TimelineNode[]} */
  const nodes = [];
  const step = niceStep(span);
  for (let t = 0; t <= span; t += step) {
    nodes.push({ tag: 'line', attrs: { class: 'lane', x1: f(x(t)), y1: 16, x2: f(x(t)), y2: READS_BASE } });
    const label = t >= 1000 ? `${(t / 1000).toFixed(step >= 1000 ? 0 : 1)} s` : `${Math.round(t)} ms`;
    nodes.push({ tag: 'text', attrs: { x: f(x(t)), y: H - 14, 'text-anchor': 'middle' }, text: label });
  }
  if (written.length > 0) nodes.push({ tag: 'text', attrs: { x: 4, y: WRITTEN_Y + 4 }, text: 'written' });
  nodes.push({ tag: 'text', attrs: { x: 4, y: ARRIVED_Y + 4 }, text: 'arrived' });
  if (reads.length > 0) nodes.push({ tag: 'text', attrs: { x: 4, y: READS_BASE - 4 }, text: 'reads' });
  for (const w of written) {
    nodes.push({ tag: 'line', attrs: { class: 'd', x1: f(x(w.at)), y1: WRITTEN_Y, x2: f(x(w.arrived)), y2: ARRIVED_Y - 8 } });
    nodes.push({ tag: 'circle', attrs: { class: 'w', cx: f(x(w.at)), cy: WRITTEN_Y, r: 2.5 } });
  }
  for (const t of ticks) {
    nodes.push({ tag: 'line', attrs: { class: 'tick', x1: f(x(t.at)), y1: ARRIVED_Y - 8, x2: f(x(t.at)), y2: ARRIVED_Y + 8 }, title: t.title });
  }
  const maxBytes = Math.max(1, ...reads.map((r) => r.bytes));
  for (const r of reads) {
    const h = 4 + 40 * Math.sqrt(r.bytes / maxBytes);
    nodes.push({ tag: 'rect', attrs: { class: 'read', x: f(x(r.at) - 1.5), y: f(READS_BASE - h), width: 3, height: f(h) }, title: r.title });
  }
  for (const hb of heartbeats) {
    nodes.push({ tag: 'circle', attrs: { class: 'hb', cx: f(x(hb.at)), cy: ARRIVED_Y + 16, r: 2.5 }, title: hb.title ?? `heartbeat at ${hb.at.toFixed(0)} ms` });
  }
  marks.forEach((m, i) => {
    const error = m.tone === 'error';
    const cls = error ? 'mark error' : 'mark';
    const attrs = { class: cls, x1: f(x(m.at)), y1: 12, x2: f(x(m.at)), y2: READS_BASE };
    nodes.push({ tag: 'line', attrs: m.key ? { ...attrs, 'data-mark': m.key } : attrs, title: `${m.label} at ${m.at.toFixed(1)} ms` });
    const nearEnd = x(m.at) > W - RIGHT - 90;
    const row = m.row ?? i % 3;
    /** @type {Record<string, string | number>} */
    const text = { x: f(nearEnd ? x(m.at) - 3 : x(m.at) + 3), y: 11 + row * 11 };
    if (nearEnd) text['text-anchor'] = 'end';
    if (error) text['class'] = 'error';
    nodes.push({ tag: 'text', attrs: text, text: m.label });
  });
  return {
    tag: 'svg',
    attrs: { xmlns: 'http://www.w3.org/2000/svg', class: 'sl-tl', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': input.label },
    children: [{ tag: 'style', attrs: {}, text: TIMELINE_CSS }, ...nodes],
  };
}

/**
 * Escapes text for XML and HTML, content and double-quoted attribute values alike.
 * @param {string} s
 * @returns {string}
 */
export function escapeXml(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** @param {TimelineNode} node @returns {string} */
function markup(node) {
  let attrs = '';
  for (const [k, v] of Object.entries(node.attrs)) attrs += ` ${k}="${escapeXml(String(v))}"`;
  const inner = (node.title === undefined ? '' : `<title>${escapeXml(node.title)}</title>`) + (node.text === undefined ? '' : escapeXml(node.text)) + (node.children ?? []).map(markup).join('');
  return inner === '' ? `<${node.tag}${attrs}/>` : `<${node.tag}${attrs}>${inner}</${node.tag}>`;
}

/**
 * The timeline as SVG markup, every text escaped (for a static page: `sluice doctor --html`).
 * @param {TimelineInput} input
 * @param {TimelineOptions} [options]
 * @returns {string}
 */
export function timelineMarkup(input, options) {
  return markup(layoutTimeline(input, options));
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * The timeline as an SVG element of `doc` (the browser's `document`): built with createElementNS, setAttribute and
 * textContent only, so no text in the input is ever parsed as markup.
 * @param {Document} doc
 * @param {TimelineInput} input
 * @param {TimelineOptions} [options]
 * @returns {SVGSVGElement}
 */
export function timelineElement(doc, input, options) {
  /** @param {TimelineNode} node @returns {Element} */
  const build = (node) => {
    const el = doc.createElementNS(SVG_NS, node.tag);
    for (const [k, v] of Object.entries(node.attrs)) if (k !== 'xmlns') el.setAttribute(k, String(v));
    if (node.title !== undefined) {
      const title = doc.createElementNS(SVG_NS, 'title');
      title.textContent = node.title;
      el.append(title);
    }
    if (node.text !== undefined) el.append(doc.createTextNode(node.text));
    for (const c of node.children ?? []) el.append(build(c));
    return el;
  };
  return /** @type {SVGSVGElement} */ (build(layoutTimeline(input, options)));
}
