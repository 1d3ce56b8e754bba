import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where a push section's late pushes come from: reads a trace directory (BENCH_NODE_FLAGS=
 * --import=./dist/bench/stall-trace.js BENCH_TRACE_DIR=DIR) and a window on CLOCK_MONOTONIC (the
 * `(b) at N calls/s ran from A to B ms` line of the bench's stderr), and prints
 *   - per process (push node, proxy, devices, load generator): how long its main thread ran and waited
 *     for a core in the window, its event-loop stalls (count, total, the longest with their time in the
 *     window and how much of each it ran / waited for a core) and its garbage collections;
 *   - the machine's busy time in it beside the traced processes' (the rest ran outside the bench) and
 *     the time the hypervisor stole;
 *   - the late pushes sent in it (from the devices' `<pid>.late.json`), per 100 ms of send time: how
 *     many took ≥ 50 ms and the slowest, so a bad p99 is placed in time beside the stalls that made it.
 * Usage: node dist/bench/push-trace.js DIR FROM TO
 */
interface Trace {
  argv: string[];
  /** [start, ms, ran ms, waited ms for a core]. */
  stalls: [number, number, number, number][];
  gcs: [number, number, number][];
  eld: { p50: number; p99: number; max: number };
  semiSpaceKb?: number;
  /** Cumulative [time, ran ms, waited ms] of the main thread, the process's CPU ms, the machine's busy and stolen ms. */
  sched: [number, number, number, number, number, number][];
}

const [dir, fromArg, toArg] = process.argv.slice(2);
if (dir === undefined || fromArg === undefined || toArg === undefined) {
  process.stderr.write('usage: push-trace DIR FROM_MS TO_MS\n');
  process.exit(2);
}
const from = Number(fromArg);
const to = Number(toArg);
const BUCKET_MS = 100;
const LATE_MS = 50;

const role = (argv: string[]): string => {
  const text = argv.join(' ');
  if (text.includes('push-backend')) return 'push node';
  if (/ start /.test(` ${text} `)) return 'proxy';
  if (text.includes('push-devices')) return 'devices';
  if (text.includes('push-load')) return 'load generator';
  return 'bench';
};
const at = (t: number): string => `+${((t - from) / 1000).toFixed(2)}s`;

const files = readdirSync(dir);
const lines: string[] = [];
let machine: { busy: number; stolen: number } | null = null;
let traced = 0;
for (const f of files.filter((n) => /^\d+\.json$/.test(n))) {
  const t = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Trace;
  const inWindow = <T extends [number, number, ...number[]]>(xs: T[]): T[] => xs.filter(([s]) => s >= from && s <= to);
  const stalls = inWindow(t.stalls);
  const gcs = inWindow(t.gcs);
  const sum = (xs: [number, number, ...number[]][]): number => xs.reduce((a, [, ms]) => a + ms, 0);
  const longest = [...stalls].sort((a, b) => b[1] - a[1]).slice(0, 5);
  const within = t.sched.filter(([s]) => s >= from && s <= to);
  const [first, end] = [within[0], within.at(-1)];
  const schedText = first === undefined || end === undefined ? '' : `ran ${(end[1] - first[1]).toFixed(0)} ms, waited ${(end[2] - first[2]).toFixed(0)} ms for a core; `;
  if (first !== undefined && end !== undefined) {
    traced += end[3] - first[3];
    machine ??= { busy: end[4] - first[4], stolen: end[5] - first[5] };
  }
  const majors = gcs.filter(([, , kind]) => kind !== 1);
  lines.push(
    `${role(t.argv).padEnd(14)} pid ${f.slice(0, -5).padEnd(7)} ${schedText}stalls ${stalls.length} (${sum(stalls).toFixed(0)} ms, longest ${longest.map(([s, ms, ran, waited]) => `${ms} ms at ${at(s)} (ran ${ran}, waited ${waited})`).join(', ') || '-'}); ` +
      `gc ${gcs.length} (${sum(gcs).toFixed(0)} ms, longest ${Math.max(0, ...gcs.map(([, ms]) => ms)).toFixed(1)} ms; not minor: ${majors.length}, ${sum(majors).toFixed(0)} ms; semi-space ${t.semiSpaceKb ?? '?'} KB at exit)`,
  );
}
const seconds = (to - from) / 1000;
lines.unshift(
  `window ${from}–${to} (${seconds.toFixed(1)} s)` +
    (machine === null ? '' : `: machine busy ${(machine.busy / 1000 / seconds).toFixed(2)} cores, the traced processes ${(traced / 1000 / seconds).toFixed(2)} (the rest ran outside the bench), stolen by the hypervisor ${machine.stolen} ms`),
);
const late = files.filter((n) => n.endsWith('.late.json')).flatMap((n) => JSON.parse(readFileSync(join(dir, n), 'utf8')) as [number, number][]);
const buckets = new Map<number, { n: number; max: number }>();
let total = 0;
for (const [sent, ms] of late) {
  if (sent < from || sent > to || ms < LATE_MS) continue;
  total++;
  const k = Math.floor((sent - from) / BUCKET_MS);
  const b = buckets.get(k) ?? { n: 0, max: 0 };
  b.n++;
  b.max = Math.max(b.max, ms);
  buckets.set(k, b);
}
lines.push(`pushes sent in the window taking ≥ ${LATE_MS} ms: ${total}; by send time (${BUCKET_MS} ms buckets: count, slowest ms):`);
lines.push(
  [...buckets]
    .sort(([a], [b]) => a - b)
    .map(([k, b]) => `${at(from + k * BUCKET_MS)} ${b.n}/${b.max.toFixed(0)}`)
    .join('  ') || '-',
);
process.stdout.write(`${lines.join('\n')}\n`);
