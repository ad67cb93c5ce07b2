import { readFileSync } from 'node:fs';

/**
 * Live objects in a V8 heap snapshot (`v8.writeHeapSnapshot`), counted by constructor name: how many and their
 * shallow size. Enough to see whether the objects of one stream (StreamRelay, Generation, sockets, …) outlive it, and
 * which constructors grow from one snapshot to the next. Reads the whole file; snapshots of a few tens of MB are fine.
 */

export interface ObjectCount {
  count: number;
  /** Sum of the objects' shallow (self) sizes, bytes. */
  bytes: number;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Objects (node type `object`, i.e. JS objects, keyed by constructor name) and native nodes, by name. */
export function countObjects(file: string): Map<string, ObjectCount> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const types = snap.snapshot.meta.node_types[0];
  const counted = new Set(['object', 'native', 'closure']);
  const out = new Map<string, ObjectCount>();
  const { nodes, strings } = snap;
  for (let i = 0; i + width <= nodes.length; i += width) {
    const type = types[nodes[i + typeAt] as number] ?? '';
    if (!counted.has(type)) continue;
    const base = strings[nodes[i + nameAt] as number] ?? '';
    const name = type === 'closure' ? `(closure) ${base}` : base;
    const c = out.get(name);
    const size = nodes[i + sizeAt] as number;
    if (c) {
      c.count++;
      c.bytes += size;
    } else {
      out.set(name, { count: 1, bytes: size });
    }
  }
  return out;
}

/** The names whose count changed most between two counts, largest growth first. */
export function growth(before: Map<string, ObjectCount>, after: Map<string, ObjectCount>, top: number): { name: string; before: number; after: number; bytes: number }[] {
  const rows: { name: string; before: number; after: number; bytes: number }[] = [];
  for (const [name, a] of after) {
    const b = before.get(name);
    rows.push({ name, before: b?.count ?? 0, after: a.count, bytes: a.bytes - (b?.bytes ?? 0) });
  }
  for (const [name, b] of before) if (!after.has(name)) rows.push({ name, before: b.count, after: 0, bytes: -b.bytes });
  rows.sort((x, y) => Math.abs(y.after - y.before) - Math.abs(x.after - x.before) || Math.abs(y.bytes) - Math.abs(x.bytes));
  return rows.slice(0, top);
}
