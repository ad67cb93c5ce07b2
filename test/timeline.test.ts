import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layoutTimeline, timelineMarkup, TIMELINE_CSS } from '../src/timeline/timeline.js';
import type { TimelineNode } from '../src/timeline/timeline.js';

// The one stream timeline (src/timeline/timeline.js) that `doctor --html` and the console draw with.

const flat = (n: TimelineNode): TimelineNode[] => [n, ...(n.children ?? []).flatMap(flat)];

test('a tick per chunk, marks with their names, heartbeats and reads; an error mark is solid red', () => {
  const svg = layoutTimeline({
    label: 'a stream',
    ticks: [10, 20, 35].map((at, i) => ({ at, title: `chunk ${i + 1}` })),
    heartbeats: [{ at: 5 }],
    reads: [{ at: 10, bytes: 100, title: 'r' }],
    marks: [
      { at: 0, label: 'sent', key: 'sent' },
      { at: 10, label: 'first token', key: 'first-token' },
      { at: 40, label: 'error', key: 'error', tone: 'error' },
    ],
  });
  const nodes = flat(svg);
  assert.equal(nodes.filter((n) => n.attrs['class'] === 'tick').length, 3);
  assert.equal(nodes.filter((n) => n.attrs['class'] === 'hb').length, 1);
  assert.equal(nodes.filter((n) => n.attrs['class'] === 'read').length, 1);
  assert.deepEqual(nodes.filter((n) => n.attrs['data-mark'] !== undefined).map((n) => [n.attrs['data-mark'], n.attrs['class']]), [
    ['sent', 'mark'],
    ['first-token', 'mark'],
    ['error', 'mark error'],
  ]);
  assert.equal(svg.attrs['aria-label'], 'a stream');
  assert.equal(svg.children?.[0]?.text, TIMELINE_CSS, 'its own style, so a static page needs nothing else');
});

test('markup escapes every text and attribute: labels and titles are hostile text', () => {
  const evil = `"><script>alert(1)</script><x a='`;
  const html = timelineMarkup({ label: evil, ticks: [{ at: 1, title: evil }], marks: [{ at: 1, label: evil }] });
  assert.doesNotMatch(html, /<script/);
  assert.doesNotMatch(html, /"><x/);
  // The aria-label, the tick's title, the mark's label and its title.
  assert.equal(html.match(/&lt;script&gt;/g)?.length, 4);
  assert.match(html, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" class="sl-tl" viewBox="0 0 960 206"/);
});

test('a narrow width is honoured (not below 240), and an empty stream still draws its axis', () => {
  assert.match(timelineMarkup({ label: 'x', ticks: [], marks: [] }, { width: 360 }), /viewBox="0 0 360 206"/);
  assert.match(timelineMarkup({ label: 'x', ticks: [], marks: [] }, { width: 10 }), /viewBox="0 0 240 206"/);
  assert.match(timelineMarkup({ label: 'x', ticks: [], marks: [] }), />0 ms</);
});
