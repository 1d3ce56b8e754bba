import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '../src/client/client.js';
import { openPush } from '../src/client/push-client.js';
import { mintToken } from '../src/proxy/auth.js';
import { LatencyHistogram, clockMs } from './broadcast-protocol.js';

/**
 * `count` push devices in this process, users `bench-u<first>` … (one device each), each on its own
 * connection with the SDK's push client, which acknowledges every push. A push whose data is a number
 * is timed: the sender's CLOCK_MONOTONIC reading (ms), shared by every process on the machine.
 *
 * Prints `{"event":"ready"}` once every device is connected and synced; on each SIGUSR2 prints
 * `{"event":"report","received":N,"repeats":R,"counts":[…]}` (distinct pushes, pushes a device had
 * already received, and the latency histogram of the distinct ones, since the previous
 * report) and starts counting afresh. Runs until SIGTERM. The JWT secret is LIVEMUX_JWT_SECRET.
 * With BENCH_TRACE_DIR (see stall-trace.ts) it also writes `<dir>/<pid>.late.json` as it exits: every
 * timed push that took LATE_MS or more, as [sent, ms] on CLOCK_MONOTONIC, to be set beside the
 * processes' stalls (push-trace.ts).
 */
const { values } = parseArgs({ options: { port: { type: 'string' }, first: { type: 'string', default: '0' }, count: { type: 'string', default: '2500' } } });
const port = Number(values.port);
const first = Number(values.first);
const count = Number(values.count);
/** Devices connecting at once: a storm of SYNs would overflow the proxy's accept backlog. */
const CONNECT_BATCH = 100;
const secret = process.env.LIVEMUX_JWT_SECRET!;

let received = 0;
let repeats = 0;
let histogram = new LatencyHistogram();
/**
 * Every (device, push id) this process received: a repeat is not counted as received (the SDK drops
 * repeats, but the bench does not take that on trust), so the bench's count of pushes still owed
 * cannot reach zero while some are still on their way.
 */
const deliveries = new Set<string>();
const TRACE_DIR = process.env.BENCH_TRACE_DIR;
const LATE_MS = 10;
const late: [number, number][] = [];

async function open(i: number): Promise<void> {
  const token = await mintToken({ secret, sub: `bench-u${first + i}` });
  const client = await connect({ host: '127.0.0.1', port, token, reconnect: false });
  // A device that loses its connection or its session is lost to the bench (no reconnect): said, so a
  // push that never reaches 100 % acknowledged can be explained.
  client.on('close', (err?: Error) => process.stderr.write(`push device bench-u${first + i}: connection closed (${err?.message ?? 'no error'})\n`));
  const push = await openPush(client, { deviceId: 'd' });
  push.on('close', (code: number, reason: string) => process.stderr.write(`push device bench-u${first + i}: session closed (${code} ${reason})\n`));
  const synced = new Promise<void>((resolve) => push.once('synced', () => resolve()));
  push.on('push', (p) => {
    const delivery = `${i} ${p.id}`;
    if (deliveries.has(delivery)) {
      repeats++;
      return;
    }
    deliveries.add(delivery);
    received++;
    const stamp = Number(p.data.toString('latin1'));
    if (stamp > 0) {
      const ms = clockMs() - stamp;
      histogram.add(ms);
      if (TRACE_DIR !== undefined && ms >= LATE_MS) late.push([stamp, Math.round(ms * 10) / 10]);
    }
  });
  await synced;
}

for (let i = 0; i < count; i += CONNECT_BATCH) {
  await Promise.all(Array.from({ length: Math.min(CONNECT_BATCH, count - i) }, (_, k) => open(i + k)));
}
process.on('SIGUSR2', () => {
  process.stdout.write(`${JSON.stringify({ event: 'report', received, repeats, counts: histogram.counts })}\n`);
  received = 0;
  repeats = 0;
  histogram = new LatencyHistogram();
});
process.on('SIGTERM', () => process.exit(0));
if (TRACE_DIR !== undefined) process.on('exit', () => writeFileSync(join(TRACE_DIR, `${process.pid}.late.json`), JSON.stringify(late)));
process.stdout.write(`${JSON.stringify({ event: 'ready', devices: count })}\n`);
