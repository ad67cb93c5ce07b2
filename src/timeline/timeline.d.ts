/**
 * Types of src/timeline/timeline.js: one stream's timeline, the one way Sluice draws a stream (`sluice doctor --html`
 * and the console). The module is plain JavaScript so that the gateway serves it to browsers as it is.
 * Times are milliseconds from the stream's start (the request leaving).
 */

/** A moment with a label: request sent, headers, first token, `[DONE]`, an error, a failover. */
export interface TimelineMark {
  at: number;
  label: string;
  /** A stable name for the mark (`headers`, `first-token`, `done`, `error`…), written as `data-mark`. */
  key?: string;
  /** `error` draws it red and solid: a stream that failed never looks like a complete one. */
  tone?: 'error';
  /** Label row, 0–2 (default: the mark's index modulo 3). */
  row?: number;
}

export interface TimelineInput {
  /** What the picture shows, for screen readers (`aria-label`). */
  label: string;
  /** The right edge in ms (the stream's end); default: the latest time in the input. */
  end?: number;
  /** A tick per chunk (or token) as it arrived; the title says which and its gap. */
  ticks: ReadonlyArray<{ at: number; title: string }>;
  /** When a sender stamped each token (doctor's probe mode), joined to its arrival. */
  written?: ReadonlyArray<{ at: number; arrived: number }>;
  /** Socket reads (or WebSocket messages): bars, height by size. */
  reads?: ReadonlyArray<{ at: number; bytes: number; title: string }>;
  /** SSE comment lines (`: keep-alive`). */
  heartbeats?: ReadonlyArray<{ at: number; title?: string }>;
  marks: readonly TimelineMark[];
}

export interface TimelineOptions {
  /** viewBox width in user units (default 960; at least 240). A narrow page asks for fewer units, larger text. */
  width?: number;
}

/** A laid-out SVG node: pure data, rendered to markup or to DOM elements. */
export interface TimelineNode {
  tag: string;
  attrs: Record<string, string | number>;
  text?: string;
  title?: string;
  children?: TimelineNode[];
}

/** The part of a DOM `Document` the browser renderer uses. */
export interface SvgDocument {
  createElementNS(ns: string, tag: string): unknown;
  createTextNode(text: string): unknown;
}

export const TIMELINE_CSS: string;
export function layoutTimeline(input: TimelineInput, options?: TimelineOptions): TimelineNode;
export function escapeXml(s: string): string;
export function timelineMarkup(input: TimelineInput, options?: TimelineOptions): string;
export function timelineElement(doc: SvgDocument, input: TimelineInput, options?: TimelineOptions): unknown;
