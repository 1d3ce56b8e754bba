import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Live objects of one kind in a V8 heap snapshot: how many, and their own (shallow) bytes. */
export interface HeapKind {
  /** `<node type>:<name>`, e.g. `object:Connection`, `closure:onData`, `array:(object elements)`. */
  kind: string;
  count: number;
  bytes: number;
}

/**
 * Reads a `.heapsnapshot` file (as written by `--heapsnapshot-signal` or `v8.writeHeapSnapshot`) and
 * totals its nodes by type and name. Shallow sizes add up to the heap without double counting, so the
 * difference of two snapshots, divided by what was added between them (e.g. connections), says what
 * each one costs, object by object.
 */
export function heapKinds(file: string): Map<string, HeapKind> {
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const kinds = new Map<string, HeapKind>();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]!]!;
    // Strings are named by their content: one kind for all of them, whatever they say.
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '' : strings[nodes[i + nameAt]!]!;
    const kind = `${type}:${name.length > 60 ? `${name.slice(0, 57)}...` : name}`;
    const entry = kinds.get(kind) ?? { kind, count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += nodes[i + sizeAt]!;
    kinds.set(kind, entry);
  }
  return kinds;
}

/** What `after` holds beyond `before`, kind by kind, largest growth first. */
export function heapGrowth(before: Map<string, HeapKind>, after: Map<string, HeapKind>): HeapKind[] {
  const growth: HeapKind[] = [];
  for (const [kind, a] of after) {
    const b = before.get(kind);
    growth.push({ kind, count: a.count - (b?.count ?? 0), bytes: a.bytes - (b?.bytes ?? 0) });
  }
  return growth.sort((x, y) => y.bytes - x.bytes);
}

/**
 * Makes process `pid` (started with `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=<dir>`) write a
 * heap snapshot, and resolves with its path once the file is complete. V8 collects garbage first.
 */
export async function takeHeapSnapshot(pid: number, dir: string, timeoutMs = 300_000): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  for (;;) {
    await sleep(500);
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (file) {
      const size = statSync(join(dir, file)).size;
      if (size > 0 && size === last) return join(dir, file);
      last = size;
    }
    if (Date.now() > deadline) throw new Error(`no heap snapshot from ${pid} within ${timeoutMs} ms`);
  }
}
