/**
 * What the queue-wait histogram costs on the fan-out path, side by side in one run: N outbound queues
 * (one per member of a room) each take one entry per turn and are flushed, with the wait timing on
 * (as the proxy runs) and off, alternated over several rounds. Sockets are stubs that accept every
 * write, so the figure is the queue's own work, where the timing's share is largest; on real sockets
 * each write adds microseconds of syscall and the share shrinks further.
 *
 *   npm run build && node dist/bench/queue-timing.js [members=10000] [turns=200]
 *
 * Wall-clock ratios are noisy on a shared 2-core machine; instruction counts are not. With a third
 * argument, `on` or `off`, one variant runs once, for `valgrind --tool=callgrind node ...` on each:
 * the difference of the totals over members x turns is the instructions the timing adds per member.
 */
import type { Socket } from 'node:net';
import { FrameStats } from '../src/observability/metrics.js';
import { HistogramSeries } from '../src/observability/histogram.js';
import { OutboundQueue, flushQueuedWrites } from '../src/proxy/outbound-queue.js';
import { Priority } from '../src/protocol/constants.js';

const members = Number(process.argv[2] ?? 10_000);
const turns = Number(process.argv[3] ?? 200);
const ROUNDS = 7;

function stubSocket(): Socket {
  return { destroyed: false, writableNeedDrain: false, on: () => undefined, write: () => true, end: () => undefined } as unknown as Socket;
}

const owner = { discarded: false, onDequeued: () => undefined };
const frame = Buffer.alloc(64);

/** ns per member per turn: queue one entry in every queue, then flush them all. */
function run(timed: boolean): number {
  const waits = timed ? [0, 1, 2, 3].map(() => new HistogramSeries([0.0001, 0.001, 0.01, 0.1, 1])) : undefined;
  const stats = new FrameStats();
  const queues = Array.from({ length: members }, () => new OutboundQueue(stubSocket(), 1 << 22, { onDrop: () => undefined, onOverflow: () => undefined }, stats, waits));
  const started = process.hrtime.bigint();
  for (let t = 0; t < turns; t++) {
    for (const q of queues) q.data(owner, frame, null, Priority.HIGH);
    // The scheduler flushes in slices (SLICE_MS); drain them all, as the turns that follow would.
    for (let i = 0; i < 1_000 && queues.some((q) => q.bytes > 0); i++) flushQueuedWrites();
  }
  return Number(process.hrtime.bigint() - started) / (members * turns);
}

const only = process.argv[4];
if (only === 'on' || only === 'off') {
  run(only === 'on');
  process.exit(0);
}

const results: Record<'off' | 'on', number[]> = { off: [], on: [] };
run(false);
run(true); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const timed of r % 2 === 0 ? [false, true] : [true, false]) results[timed ? 'on' : 'off'].push(run(timed));
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const off = median(results.off);
const on = median(results.on);
console.log(`queue: ${members} members x ${turns} turns, median of ${ROUNDS} rounds each, alternated`);
console.log(`  timing off  ${off.toFixed(1)} ns per member per turn`);
console.log(`  timing on   ${on.toFixed(1)} ns per member per turn  (+${(on - off).toFixed(1)} ns, ${(((on - off) / off) * 100).toFixed(1)}%)`);
