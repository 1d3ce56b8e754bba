import { writeFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { clockMs } from './broadcast-protocol.js';

/**
 * A preload for tracing where a bench's pauses come from, in every process it starts:
 *   BENCH_NODE_FLAGS=--import=./dist/bench/stall-trace.js BENCH_TRACE_DIR=/tmp/trace BENCH_ONLY=push ...
 * Each process writes `<BENCH_TRACE_DIR>/<pid>.json` as it exits: its command line, its event-loop stalls
 * (a 2 ms timer that fired more than STALL_MS late: [start, ms]), its garbage collections ([start, ms,
 * kind]: 1 minor, 4 major, 8 incremental) and event-loop delay percentiles, all on CLOCK_MONOTONIC ms
 * like the bench's timestamps (the push section prints the window of its timed run), so a slow push
 * can be matched with the process that paused. Costs each process a 2 ms timer.
 */
const STALL_MS = 12;
const dir = process.env.BENCH_TRACE_DIR ?? '/tmp';
const offset = clockMs() - performance.now();
const stalls: [number, number][] = [];
const gcs: [number, number, number][] = [];
let last = clockMs();
setInterval(() => {
  const now = clockMs();
  if (now - last > STALL_MS) stalls.push([Math.round(last), Math.round(now - last)]);
  last = now;
}, 2).unref();
const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push([Math.round(e.startTime + offset), Number(e.duration.toFixed(2)), (e as { detail?: { kind?: number } }).detail?.kind ?? 0]);
}).observe({ entryTypes: ['gc'] });
process.on('exit', () => {
  const eld = { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 };
  writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ argv: process.argv.slice(1), stalls, gcs, eld }));
});
