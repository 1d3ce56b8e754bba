import { openSync, readSync, writeFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { clockMs } from './broadcast-protocol.js';

/**
 * A preload for tracing where a bench's pauses come from, in every process it starts:
 *   BENCH_NODE_FLAGS=--import=./dist/bench/stall-trace.js BENCH_TRACE_DIR=/tmp/trace BENCH_ONLY=push ...
 * Each process writes `<BENCH_TRACE_DIR>/<pid>.json` as it exits: its command line, its event-loop stalls
 * (a 2 ms timer that fired more than STALL_MS late: [start, ms, ran ms, waited ms]), its garbage collections ([start, ms,
 * kind]: 1 minor, 4 major, 8 incremental) and event-loop delay percentiles, all on CLOCK_MONOTONIC ms
 * like the bench's timestamps (the push section prints the window of its timed run), so a slow push
 * can be matched with the process that paused, and the young generation's size as it exits (a
 * scavenge runs each time its allocations fill one semi-space: scavenges × semi-space ≈ bytes allocated).
 * Each stall also says how much of it the main thread ran (JS, or a collection on it) and how much it
 * waited, runnable, for a core held by another process (/proc/self/schedstat): a process starved by its
 * neighbours stalls as long as one busy with its own work, and only this tells them apart. `sched` is
 * that thread's cumulative [time, ran ms, waited ms] every 100 ms, to total them over a window, with
 * the process's CPU ms (all its threads) and the machine's cumulative busy and stolen ms (/proc/stat: all cores; stolen = the hypervisor ran
 * something else), which set beside the bench processes' own time say what else ran on the machine.
 * Costs each process a 2 ms timer and a 64-byte read on each tick.
 */
const STALL_MS = 12;
const dir = process.env.BENCH_TRACE_DIR ?? '/tmp';
const offset = clockMs() - performance.now();
const stalls: [number, number, number, number][] = [];
const gcs: [number, number, number][] = [];
const sched: [number, number, number, number, number, number][] = [];
const SCHED_EVERY_MS = 100;
const schedFd = openSync('/proc/self/schedstat', 'r');
const schedBuf = Buffer.alloc(64);
/** [ran, waited] ms of this process's main thread since it started. */
const schedMs = (): [number, number] => {
  const text = schedBuf.toString('latin1', 0, readSync(schedFd, schedBuf, 0, 64, 0));
  const [ran, waited] = text.split(' ');
  return [Number(ran) / 1e6, Number(waited) / 1e6];
};
const statFd = openSync('/proc/stat', 'r');
const statBuf = Buffer.alloc(256);
/** [busy, stolen] ms of the whole machine since boot (USER_HZ ticks of 10 ms). */
const machineMs = (): [number, number] => {
  const fields = statBuf.toString('latin1', 0, readSync(statFd, statBuf, 0, 256, 0)).split('\n', 1)[0]!.trim().split(/ +/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return [(user + nice + system + irq + softirq) * 10, steal * 10];
};
let last = clockMs();
let lastSched = schedMs();
let nextSample = 0;
setInterval(() => {
  const now = clockMs();
  const at = schedMs();
  if (now - last > STALL_MS) stalls.push([Math.round(last), Math.round(now - last), Math.round(at[0] - lastSched[0]), Math.round(at[1] - lastSched[1])]);
  if (now >= nextSample) {
    const cpu = process.cpuUsage();
    sched.push([Math.round(now), Math.round(at[0]), Math.round(at[1]), Math.round((cpu.user + cpu.system) / 1000), ...machineMs()]);
    nextSample = now + SCHED_EVERY_MS;
  }
  last = now;
  lastSched = at;
}, 2).unref();
const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push([Math.round(e.startTime + offset), Number(e.duration.toFixed(2)), (e as { detail?: { kind?: number } }).detail?.kind ?? 0]);
}).observe({ entryTypes: ['gc'] });
process.on('exit', () => {
  const eld = { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 };
  const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  const semiSpaceKb = Math.round((newSpace?.space_size ?? 0) / 2 / 1024);
  writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ argv: process.argv.slice(1), stalls, gcs, eld, semiSpaceKb, sched }));
});
