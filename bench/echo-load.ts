import { parseArgs } from 'node:util';
import { Priority } from '../src/protocol/constants.js';
import { encodeData, encodeWindowUpdate } from '../src/protocol/encoder.js';
import { ReceiveCredit } from '../src/protocol/flow-control.js';
import { BenchConnection } from './bench-connection.js';
import { roundTripLine } from './timed.js';

/**
 * Closed-loop echo load: `conns` connections × `sessions` sessions, each session keeping exactly one
 * 64-byte message in flight. Against the proxy it does the real handshake, opens sessions and returns
 * flow-control credit; against the plain echo server it sends the same DATA frames straight away.
 * Prints one JSON line: round trips per second and latency percentiles.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    mode: { type: 'string', default: 'proxy' },
    conns: { type: 'string', default: '64' },
    sessions: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '5' },
    size: { type: 'string', default: '64' },
    token: { type: 'string', default: '' },
  },
});
const port = Number(values.port);
const proxied = values.mode === 'proxy';
const conns = Number(values.conns);
const sessionsPerConn = Number(values.sessions);
const payload = Buffer.alloc(Number(values.size), 0x62);

let roundTrips = 0;
let measuring = false;
const latencies: number[] = [];

async function runConnection(): Promise<void> {
  const sentAt = new Float64Array(sessionsPerConn + 1);
  const connCredit = new ReceiveCredit(1 << 20);
  const sessionCredit = Array.from({ length: sessionsPerConn + 1 }, () => new ReceiveCredit(256 * 1024));
  const send = (id: number): void => {
    sentAt[id] = performance.now();
    conn.socket.write(encodeData(id, Priority.HIGH, payload));
  };
  const conn = await BenchConnection.connect(port, (id, p) => {
    if (measuring) {
      roundTrips++;
      if ((roundTrips & 63) === 0) latencies.push(performance.now() - sentAt[id]!);
    }
    if (proxied) {
      sessionCredit[id]!.receive(p.length);
      connCredit.receive(p.length);
      const s = sessionCredit[id]!.release(p.length);
      const c = connCredit.release(p.length);
      if (s > 0) conn.socket.write(encodeWindowUpdate(id, s));
      if (c > 0) conn.socket.write(encodeWindowUpdate(0, c));
    }
    send(id);
  });
  if (proxied) {
    await conn.hello(values.token!);
    const { refused } = await conn.open('echo', sessionsPerConn);
    if (refused > 0) throw new Error(`${refused} OPENs refused`);
  }
  for (let id = 1; id <= sessionsPerConn; id++) send(id);
}

await Promise.all(Array.from({ length: conns }, runConnection));
await new Promise((r) => setTimeout(r, 1000)); // warm-up
measuring = true;
// Said when measuring starts, so a caller can read the servers' CPU time over the same window.
console.log(JSON.stringify({ measuring: true }));
const start = performance.now();
const cpuBefore = process.cpuUsage();
await new Promise((r) => setTimeout(r, Number(values.seconds) * 1000));
measuring = false;
const elapsed = (performance.now() - start) / 1000;
const cpu = process.cpuUsage(cpuBefore);
// The generator's own CPU per round trip: it shares the cores with what it measures.
const generatorCpuUs = Math.round((cpu.user + cpu.system) / Math.max(1, roundTrips));
console.log(roundTripLine(roundTrips, elapsed, latencies, { generatorCpuUs }));
process.exit(0);
