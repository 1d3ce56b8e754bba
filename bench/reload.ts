import { renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { BenchConnection, type OpenResult } from './bench-connection.js';
import type { BenchProcess } from './processes.js';

/** A running proxy whose routes file the reload bench rewrites. */
export interface ReloadTarget {
  proxy: BenchProcess;
  port: number;
  adminPort: number;
  token: string;
  routesFile: string;
  /** The file's base content; each trial adds one business routed to the first route's pool. */
  routes: { version: number; routes: { business: string; pool: string }[]; pools: object };
}

/** Delays of every trial, and the sessions open on the proxy before the first and after the last. */
export interface ReloadResult {
  delaysMs: number[];
  triggers: string[];
  sessionsBefore: number;
  sessionsAfter: number;
}

/**
 * Times hot reloads of routes.yaml saved as an editor saves: the new content is written to a temporary
 * file in the same folder, then renamed over routes.yaml. Each trial swaps the previous trial's extra
 * business for a new one (one added, one removed). The delay runs from just before the rename to the
 * `time` of the proxy's 'routes reloaded' line, logged once the table is applied to open sessions (same
 * machine clock, millisecond resolution). Each trial is checked from a fresh connection: the new
 * business opens, the replaced one is refused.
 */
export async function benchReload(target: ReloadTarget, label: string, trials = 7): Promise<ReloadResult> {
  const { proxy, routesFile, routes } = target;
  const temp = join(dirname(routesFile), `.${basename(routesFile)}.tmp`);
  const sessionsBefore = await openSessions(target.adminPort);
  const delaysMs: number[] = [];
  const triggers = new Set<string>();
  let previous: string | null = null;
  for (let i = 1; i <= trials; i++) {
    const business = `reload-${label}-${i}`;
    writeFileSync(temp, stringify({ ...routes, routes: [...routes.routes, { business, pool: routes.routes[0]!.pool }] }));
    const reloaded = proxy.next((l) => l.msg === 'routes reloaded', 10_000);
    const before = Date.now();
    renameSync(temp, routesFile);
    const line = await reloaded;
    delaysMs.push(Date.parse(line.time as string) - before);
    triggers.add(line.trigger as string);
    await checkInEffect(target, business, previous);
    previous = business;
    // Past the reloader's follow-up read, so every trial starts from a quiet watcher.
    await new Promise((r) => setTimeout(r, 400));
  }
  return { delaysMs, triggers: [...triggers], sessionsBefore, sessionsAfter: await openSessions(target.adminPort) };
}

async function checkInEffect(target: ReloadTarget, added: string, removed: string | null): Promise<void> {
  const conn = await BenchConnection.connect(target.port);
  await conn.hello(target.token);
  const add = await conn.open(added, 1, 1);
  const gone = removed ? await conn.open(removed, 1, 2) : { opened: 0, refused: 1 };
  conn.close();
  if (add.opened !== 1 || gone.refused !== 1) {
    const answer = (r: OpenResult): string => (r.opened ? 'opened' : 'refused');
    throw new Error(`reload not in effect: OPEN ${added} ${answer(add)}, OPEN ${removed} ${answer(gone)}`);
  }
}

/** Sessions open on the proxy, per its admin /status page. */
export async function openSessions(adminPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/status`);
  return ((await res.json()) as { sessions: number }).sessions;
}
