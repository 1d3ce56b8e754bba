import net from 'node:net';
import { parseArgs } from 'node:util';
import { FrameType, Priority } from '../src/protocol/constants.js';
import { encodeData, encodeFrame, encodeWindowUpdate } from '../src/protocol/encoder.js';
import { ReceiveCredit } from '../src/protocol/flow-control.js';
import { encodeHello } from '../src/protocol/messages.js';
import { slabReads } from '../src/protocol/slab-reads.js';
import { BenchConnection } from './bench-connection.js';
import { roundTripLine } from './timed.js';

/**
 * One passthrough bench run against `--port`, `--via`:
 * - direct or haproxy: plain TCP to the service (straight, or through haproxy `mode tcp`);
 *   every path reads the same way (slabReads: 1 MiB slabs, reads of at least 64 KiB);
 * - livemux: HELLO with 16 MiB windows (credit returned as bytes arrive), one session of business
 *   `legacy` (a tcp pool), the same bytes as DATA.
 * `--test stream`: the service streams 64 KiB chunks; prints bytes/s received over `--seconds`, and
 *   this process's CPU time per GiB received over the same seconds (`clientCpuMsPerGiB`).
 * `--test pingpong`: 64 B out, wait for the 64 B back, again; prints round trips/s and latency.
 * One warm-up second first. Prints one JSON line.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    via: { type: 'string' },
    test: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    token: { type: 'string', default: '' },
  },
});
const port = Number(values.port);
const WINDOW = 16 * 1024 * 1024;
const PING = Buffer.alloc(64, 0x70);

/** Sends bytes to the service and hands what comes back to `onBytes`, whatever carries them. */
interface Pipe {
  send(bytes: Buffer): void;
}

async function pipe(onBytes: (bytes: Buffer) => void): Promise<Pipe> {
  if (values.via !== 'livemux') {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', onread: slabReads(onBytes) }, () => resolve(s));
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    return { send: (bytes) => socket.write(bytes) };
  }
  const credit = new ReceiveCredit(WINDOW);
  const onData = (_id: number, payload: Buffer): void => {
    credit.receive(payload.length);
    const increment = credit.release(payload.length);
    if (increment > 0) conn.socket.write(Buffer.concat([encodeWindowUpdate(1, increment), encodeWindowUpdate(0, increment)]));
    onBytes(payload);
  };
  const conn = await BenchConnection.connect(port, onData, undefined, true);
  conn.socket.write(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token: values.token!, sessionWindow: WINDOW, connectionWindow: WINDOW })));
  if ((await conn.open('legacy', 1)).refused > 0) throw new Error('passthrough-client: OPEN refused');
  return { send: (bytes) => conn.socket.write(encodeData(1, Priority.HIGH, bytes)) };
}

const seconds = Number(values.seconds);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

if (values.test === 'stream') {
  let bytes = 0;
  const p = await pipe((chunk) => (bytes += chunk.length));
  p.send(Buffer.from('s'));
  await sleep(1000);
  const from = bytes;
  const start = performance.now();
  const cpuFrom = process.cpuUsage();
  await sleep(seconds * 1000);
  const cpu = process.cpuUsage(cpuFrom);
  const elapsed = (performance.now() - start) / 1000;
  const received = bytes - from;
  console.log(JSON.stringify({ bytesPerSecond: received / elapsed, clientCpuMsPerGiB: (cpu.user + cpu.system) / 1000 / (received / 2 ** 30) }));
} else {
  let got = 0;
  let sentAt = 0;
  let measuring = false;
  let trips = 0;
  const latencies: number[] = [];
  const p = await pipe((chunk) => {
    got += chunk.length;
    if (got < PING.length) return;
    got -= PING.length;
    if (measuring) {
      trips++;
      latencies.push(performance.now() - sentAt);
    }
    sentAt = performance.now();
    p.send(PING);
  });
  sentAt = performance.now();
  p.send(PING);
  await sleep(1000);
  measuring = true;
  const start = performance.now();
  await sleep(seconds * 1000);
  measuring = false;
  console.log(roundTripLine(trips, (performance.now() - start) / 1000, latencies));
}
process.exit(0);
