import { parseArgs } from 'node:util';
import { FrameType, Priority } from '../src/protocol/constants.js';
import { encodeData, encodeFrame, encodeWindowUpdate } from '../src/protocol/encoder.js';
import { ReceiveCredit } from '../src/protocol/flow-control.js';
import { encodeHello } from '../src/protocol/messages.js';
import { BenchConnection } from './bench-connection.js';
import { Kind, LatencyHistogram, clockMs, connectSocketIo, fields, lagGrowth } from './broadcast-protocol.js';

/**
 * `count` receivers of the broadcast room, all in this process, speaking `mode`:
 * - plain: livemux frames straight from the baseline server (no handshake);
 * - socketio: socket.io-client, websocket transport only;
 * - livemux: one connection and one session each, HELLO with large windows, credit returned, and
 *   `/sub room` sent to the echo backend.
 *
 * Prints `{"event":"connected"}` once every receiver is connected (and, on livemux, has sent `/sub`),
 * `{"event":"ready"}` once every receiver has had a first message (a probe), then one
 * `{"event":"phase"}` line per phase, once every receiver still connected has had that phase's end
 * message: room messages missing, receivers closed, this process's CPU time since the previous line,
 * and for every `sample`-th receiver the latency histogram and how long each took from its first
 * message of the phase to the end message, and how much its latency grew over the phase.
 * Runs until SIGTERM.
 */
const { values } = parseArgs({
  options: {
    mode: { type: 'string' },
    port: { type: 'string' },
    count: { type: 'string', default: '2500' },
    sample: { type: 'string', default: '50' },
    token: { type: 'string', default: '' },
    /** Source address (127.0.0.x): one address has ~28,000 ports towards one server port. */
    local: { type: 'string' },
  },
});
const port = Number(values.port);
const count = Number(values.count);
const sample = Number(values.sample);
/** Receivers connecting at once: a storm of 2,500 SYNs would overflow the server's accept backlog. */
const CONNECT_BATCH = 100;
/** Receive windows (session and connection) offered in HELLO: credit never limits a bounded run. */
const WINDOW = 1 << 30;

interface Receiver {
  /** Room messages received since the start (corrected to the published total at each end message). */
  received: number;
  ready: boolean;
  readonly sampled: boolean;
  /** When a sampled receiver got its first room message of the current phase; 0 before. */
  phaseStart: number;
  /** A sampled receiver's room messages of the current phase: when each was sent, and its latency. */
  sentAt: number[];
  lagMs: number[];
}

interface PhaseTally {
  done: number;
  missing: number;
  /** Sampled receivers' times from their first room message of the phase to its end message. */
  receiveMs: number[];
  /** Sampled receivers' lag growth over the phase (see lagGrowth). */
  lagGrowthMs: number[];
}

let live = count;
let closed = 0;
let readyCount = 0;
const phases = new Map<number, PhaseTally>();
let histogram = new LatencyHistogram();
let cpuAtReport = 0;

function onMessage(r: Receiver, message: Buffer | string): void {
  const kind = typeof message === 'string' ? message.charCodeAt(0) : message[0];
  if (!r.ready) {
    r.ready = true;
    if (++readyCount === count) console.log(JSON.stringify({ event: 'ready' }));
  }
  if (kind === Kind.MESSAGE) {
    r.received++;
    if (r.sampled) {
      const now = clockMs();
      const sentAt = fields(message.toString())[1];
      histogram.add(now - sentAt);
      r.sentAt.push(sentAt);
      r.lagMs.push(now - sentAt);
      if (r.phaseStart === 0) r.phaseStart = now;
    }
  } else if (kind === Kind.END) {
    const [phase, total, endSentAt] = fields(message.toString());
    let tally = phases.get(phase);
    if (tally === undefined) phases.set(phase, (tally = { done: 0, missing: 0, receiveMs: [], lagGrowthMs: [] }));
    tally.done++;
    tally.missing += total - r.received;
    r.received = total;
    if (r.sampled && r.phaseStart > 0) {
      tally.receiveMs.push(clockMs() - r.phaseStart);
      const growth = lagGrowth(r.sentAt, r.lagMs, endSentAt);
      if (!Number.isNaN(growth)) tally.lagGrowthMs.push(growth);
    }
    r.phaseStart = 0;
    r.sentAt = [];
    r.lagMs = [];
    report(phase, tally);
  }
}

/** Prints the phase's line once every receiver still connected has seen its end. */
function report(phase: number, tally: PhaseTally): void {
  if (tally.done < live) return;
  phases.delete(phase);
  const { user, system } = process.cpuUsage();
  const cpuUs = user + system - cpuAtReport;
  cpuAtReport += cpuUs;
  const { missing, receiveMs, lagGrowthMs } = tally;
  console.log(JSON.stringify({ event: 'phase', phase, missing, closed, cpuUs, receiveMs, lagGrowthMs, histogram: histogram.counts }));
  histogram = new LatencyHistogram();
}

function onClose(): void {
  closed++;
  live--;
  for (const [phase, tally] of phases) report(phase, tally);
}

async function plainReceiver(r: Receiver): Promise<void> {
  const conn = await BenchConnection.connect(port, (_id, payload) => onMessage(r, payload), values.local);
  conn.socket.once('close', onClose);
}

async function livemuxReceiver(r: Receiver): Promise<void> {
  // One session per connection: both windows see the same bytes, so one tally returns credit for both.
  const credit = new ReceiveCredit(WINDOW);
  const conn = await BenchConnection.connect(port, (_id, payload) => {
    credit.receive(payload.length);
    const increment = credit.release(payload.length);
    if (increment > 0) conn.socket.write(Buffer.concat([encodeWindowUpdate(1, increment), encodeWindowUpdate(0, increment)]));
    onMessage(r, payload);
  }, values.local);
  // BenchConnection.hello() offers the default windows; OPEN may follow HELLO before WELCOME.
  const hello = encodeHello({ versions: [1], token: values.token!, sessionWindow: WINDOW, connectionWindow: WINDOW });
  conn.socket.write(encodeFrame(FrameType.HELLO, 0, 0, hello));
  const { refused } = await conn.open('echo', 1);
  if (refused > 0) throw new Error('broadcast-clients: OPEN refused');
  conn.socket.write(encodeData(1, Priority.HIGH, Buffer.from('/sub room')));
  conn.socket.once('close', onClose);
}

async function socketIoReceiver(r: Receiver): Promise<void> {
  const socket = await connectSocketIo(port);
  socket.on('m', (text: string) => onMessage(r, text));
  socket.once('disconnect', onClose);
}

process.on('SIGTERM', () => process.exit(0));
const connect = { plain: plainReceiver, livemux: livemuxReceiver, socketio: socketIoReceiver }[values.mode as string];
if (connect === undefined) throw new Error(`broadcast-clients: --mode must be plain, livemux or socketio, got ${values.mode}`);
for (let first = 0; first < count; first += CONNECT_BATCH) {
  const batch = Array.from({ length: Math.min(CONNECT_BATCH, count - first) }, (_, i) => first + i);
  await Promise.all(batch.map((i) => connect({ received: 0, ready: false, sampled: i % sample === 0, phaseStart: 0, sentAt: [], lagMs: [] })));
}
console.log(JSON.stringify({ event: 'connected' }));
