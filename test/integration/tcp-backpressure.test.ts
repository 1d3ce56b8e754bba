import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type LivemuxClient, connect } from '../../src/client/index.js';
import { Code } from '../../src/protocol/codes.js';
import { FrameType } from '../../src/protocol/constants.js';
import { decodeStatus } from '../../src/protocol/messages.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/metrics.js';
import { startProxy, testToken } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

// Passthrough between a fast legacy service and a slow phone, in both directions, through the real
// proxy process. The outbound bound is small (256 KiB) so any byte the proxy piles up for a slow
// client shows as SLOW_CONSUMER; the service and the clients move tens of MiB.
const QUEUE_BYTES = 256 * 1024;
const HUGE = 0x7fff_0000;
const STREAM_BYTES = 48 * 1024 * 1024;

/**
 * A legacy service. `send N\n` makes it write N bytes (byte i is i % 251, so order shows) in 64 KiB
 * chunks as fast as its socket takes them, then end; `hold\n` makes it stop reading until `release()`.
 */
class StreamingService {
  readonly server: net.Server;
  readonly sockets: net.Socket[] = [];
  /** Per connection: bytes handed to the socket, and bytes read. */
  readonly written: number[] = [];
  readonly read: number[] = [];
  private readonly held: net.Socket[] = [];
  address = '';

  constructor() {
    this.server = net.createServer((socket) => {
      const i = this.sockets.push(socket) - 1;
      this.written[i] = 0;
      this.read[i] = 0;
      socket.on('error', () => {});
      let command = '';
      const onCommand = (chunk: Buffer): void => {
        command += chunk.toString('latin1');
        const nl = command.indexOf('\n');
        if (nl < 0) return;
        socket.off('data', onCommand);
        const [verb, arg] = command.slice(0, nl).split(' ');
        // What followed the command line in the same read counts as read.
        this.read[i] = Buffer.byteLength(command, 'latin1') - nl - 1;
        if (verb === 'send') this.stream(socket, i, Number(arg));
        if (verb === 'hold') {
          socket.pause();
          this.held.push(socket);
          socket.on('data', (d: Buffer) => (this.read[i]! += d.length));
        }
      };
      socket.on('data', onCommand);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.address = `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  release(): void {
    for (const s of this.held) s.resume();
  }

  private stream(socket: net.Socket, i: number, total: number): void {
    const pump = (): void => {
      while (this.written[i]! < total) {
        const n = Math.min(64 * 1024, total - this.written[i]!);
        const chunk = pattern(this.written[i]!, n);
        this.written[i]! += n;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  }
}

/** Bytes `offset … offset + n - 1` of the stream: byte i is i % 251. */
function pattern(offset: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let j = 0; j < n; j++) b[j] = (offset + j) % 251;
  return b;
}

/** Index of the first byte of `chunk` (at `offset` of the stream) that breaks the pattern, or -1. */
function patternBreak(chunk: Buffer, offset: number): number {
  for (let j = 0; j < chunk.length; j++) if (chunk[j] !== (offset + j) % 251) return offset + j;
  return -1;
}

let service: StreamingService;
let proxy: Awaited<ReturnType<typeof startProxy>>;
let token: string;
const clients: LivemuxClient[] = [];
const raws: RawClient[] = [];

beforeAll(async () => {
  service = new StreamingService();
  await service.listen();
  proxy = await startProxy({
    backends: [],
    config: { limits: { outbound_queue_bytes: QUEUE_BYTES, max_payload: 65536 } },
    routes: {
      version: 1,
      routes: [{ business: 'legacy', pool: 'legacy' }],
      pools: { legacy: { protocol: 'tcp', endpoints: [{ address: service.address }], health_check: { interval_ms: 0 } } },
    },
  });
  token = await testToken();
});

afterAll(async () => {
  for (const c of clients) await c.close();
  for (const r of raws) r.destroy();
  await proxy?.stop();
  await new Promise((r) => service?.server.close(r));
});

/** Waits until the service's writes to connection `i` have stopped: its socket is backed up and `written` holds still. */
async function serviceBlocked(i: number): Promise<number> {
  let last = -1;
  await until(async () => {
    const now = service.written[i]!;
    const still = now === last && service.sockets[i]!.writableNeedDrain;
    last = now;
    if (!still) await new Promise((r) => setTimeout(r, 100));
    return still;
  }, `the service's writes to stop (connection ${i})`);
  return last;
}

const slowConsumers = (): Promise<number> => metricValue(proxy.adminPort, 'livemux_protocol_errors_total', 'code="SLOW_CONSUMER"');

it('an app that does not read stops a fast service, without SLOW_CONSUMER, and then gets every byte in order', async () => {
  const client = await connect({ host: '127.0.0.1', port: proxy.port, token, reconnect: false });
  clients.push(client);
  const upstream = service.sockets.length;
  const s = await client.open('legacy');
  await s.send(`send ${STREAM_BYTES}\n`);
  await until(() => service.sockets.length > upstream, 'the upstream connection');
  // The app reads nothing: the SDK holds the credit, so the proxy soon has none to send with.
  const written = await serviceBlocked(upstream);
  expect(written).toBeLessThan(STREAM_BYTES / 2);
  expect(await slowConsumers()).toBe(0);

  let received = 0;
  let broken = -1;
  for await (const { payload } of s) {
    if (broken < 0) broken = patternBreak(payload, received);
    received += payload.length;
    if (received >= STREAM_BYTES) break;
  }
  expect(broken).toBe(-1);
  expect(received).toBe(STREAM_BYTES);
  expect(await slowConsumers()).toBe(0);
});

it('a phone whose socket does not read (windows wide open) stops a fast service too, then gets every byte', async () => {
  const raw = await RawClient.handshake(proxy.port, token, { sessionWindow: HUGE, connectionWindow: HUGE });
  raws.push(raw);
  const upstream = service.sockets.length;
  raw.open(1, 'legacy');
  await raw.next(FrameType.OPEN_OK, 1);
  raw.pause();
  raw.data(1, `send ${STREAM_BYTES}\n`);
  await until(() => service.sockets.length > upstream, 'the upstream connection');
  const written = await serviceBlocked(upstream);
  expect(written).toBeLessThan(STREAM_BYTES / 2);
  expect(await slowConsumers()).toBe(0);

  raw.resume();
  let received = 0;
  let broken = -1;
  while (received < STREAM_BYTES) {
    const f = await raw.next(FrameType.DATA, 1);
    if (broken < 0) broken = patternBreak(f.payload, received);
    received += f.payload.length;
  }
  expect(broken).toBe(-1);
  expect(received).toBe(STREAM_BYTES);
  expect(await slowConsumers()).toBe(0);
});

it('a client with small windows (max_payload below a 64 KiB read) gets a fast stream intact, in DATA no larger than its max_payload', async () => {
  const raw = await RawClient.handshake(proxy.port, token, { sessionWindow: 32 * 1024, connectionWindow: 64 * 1024 });
  raws.push(raw);
  const maxPayload = raw.welcome!.limits.maxPayload;
  expect(maxPayload).toBe(16 * 1024);
  const upstream = service.sockets.length;
  raw.open(1, 'legacy');
  await raw.next(FrameType.OPEN_OK, 1);
  const TOTAL = 4 * 1024 * 1024;
  raw.data(1, `send ${TOTAL}\n`);
  await until(() => service.sockets.length > upstream, 'the upstream connection');
  let received = 0;
  let broken = -1;
  let largest = 0;
  while (received < TOTAL) {
    const f = await raw.next(FrameType.DATA, 1);
    if (broken < 0) broken = patternBreak(f.payload, received);
    received += f.payload.length;
    largest = Math.max(largest, f.payload.length);
    // Credit back as the bytes are taken, as an app reading along would.
    raw.windowUpdate(1, f.payload.length);
    raw.windowUpdate(0, f.payload.length);
  }
  expect(broken).toBe(-1);
  expect(received).toBe(TOTAL);
  expect(largest).toBeLessThanOrEqual(maxPayload);
  // The service ends after its last byte: the session closes NORMAL, after every byte.
  const close = await raw.next(FrameType.CLOSE, 1);
  expect(decodeStatus('CLOSE', close.payload).code).toBe(Code.NORMAL);
});

it('a service that does not read stops the client\'s sends at one window; once it reads, every byte arrives', async () => {
  const client = await connect({ host: '127.0.0.1', port: proxy.port, token, reconnect: false });
  clients.push(client);
  const upstream = service.sockets.length;
  const s = await client.open('legacy');
  await s.send('hold\n');
  await until(() => service.sockets.length > upstream, 'the upstream connection');
  const chunk = Buffer.alloc(60 * 1024, 0x63);
  const TOTAL_SENDS = 400; // ~23 MiB, far more than the kernel buffers and one window
  let sent = 0;
  const sends = Array.from({ length: TOTAL_SENDS }, () => s.send(chunk).then(() => sent++));
  // Credit comes back only while the service's socket is writable: the sends stall.
  let last = -1;
  await until(async () => {
    const still = sent === last;
    last = sent;
    await new Promise((r) => setTimeout(r, 200));
    return still && sent === last;
  }, 'the client\'s sends to stall');
  expect(sent).toBeLessThan(TOTAL_SENDS / 2);

  service.release();
  await Promise.all(sends);
  await until(() => service.read[upstream] === TOTAL_SENDS * chunk.length, 'every byte at the service');
});
