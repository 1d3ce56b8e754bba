/**
 * PROTOCOL.md §7 over raw sockets: a message is never larger than half a window (WELCOME max_payload
 * is lowered to half the smallest initial window), so credit always comes back in time, a backend message over a client's limit closes that session with a code, and a DATA
 * that overruns both windows is a connection fault.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { decodeWelcome, encodeHello, encodeOpen, type Limits } from '../../src/protocol/messages.js';
import { RawClient, type HelloOptions } from '../helpers/raw-client.js';
import { type EchoFleet, type RunningProcess, useEchoFleet } from '../helpers/processes.js';
import { freePort } from '../helpers/free-port.js';

const fleet = useEchoFleet();
let token: string;
beforeAll(() => {
  token = fleet.token;
});

const proxyWith = (limits: Record<string, unknown>, routes?: Record<string, unknown>): ReturnType<EchoFleet['proxy']> => fleet.proxy({ limits }, routes);

/** Handshake and the limits WELCOME announced. */
async function welcomed(port: number, hello: HelloOptions = {}): Promise<[RawClient, Limits]> {
  const c = await RawClient.handshake(port, token, hello);
  return [c, decodeWelcome(c.received[0]!.payload).limits];
}

const open = (id: number, business = 'echo'): Buffer => encodeFrame(FrameType.OPEN, 0, id, encodeOpen({ business, metadata: {} }));
const data = (id: number, bytes: number | string): Buffer =>
  encodeFrame(FrameType.DATA, 1, id, typeof bytes === 'string' ? Buffer.from(bytes) : Buffer.alloc(bytes, 0x61));

describe('§7 every message fits every window', () => {
  let proxy: RunningProcess & { port: number };
  beforeAll(async () => {
    proxy = await proxyWith({ max_payload: 65_536, session_window: 16_384, connection_window: 1 << 20 });
  });

  it('WELCOME max_payload is lowered to half the smallest initial window, the server\'s or the client\'s', async () => {
    const [a, own] = await welcomed(proxy.port);
    expect(own).toMatchObject({ maxPayload: 8_192, sessionWindow: 16_384 });
    const [b, granted] = await welcomed(proxy.port, { sessionWindow: 5_001, connectionWindow: 9_000 });
    expect(granted.maxPayload).toBe(2_500);
    b.send(open(1));
    await b.next(FrameType.OPEN_OK, 1);
    b.send(data(1, 2_500));
    expect((await b.next(FrameType.DATA, 1)).payload.length).toBe(2_500);
    b.send(data(1, 2_501));
    expect(await b.errorCode()).toBe('FRAME_TOO_LARGE');
    a.destroy();
  });

  it('DATA held behind HELLO over the max_payload WELCOME then announces → ERROR FRAME_TOO_LARGE', async () => {
    const c = await RawClient.connect(proxy.port);
    c.send(Buffer.concat([encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token, sessionWindow: 1_000 })), open(1), data(1, 501)]));
    expect(await c.errorCode()).toBe('FRAME_TOO_LARGE');
    expect(c.received[0]!.name).toBe('WELCOME');
  });

  it('a backend message over one client\'s max_payload closes that session with MESSAGE_TOO_LARGE; others get it', async () => {
    const [small] = await welcomed(proxy.port, { sessionWindow: 1_024 });
    const [big] = await welcomed(proxy.port);
    for (const c of [small, big]) {
      c.send(Buffer.concat([open(1), data(1, '/sub t-large')]));
      await c.next(FrameType.OPEN_OK, 1);
    }
    const text = 'x'.repeat(2_000);
    // Both subscriptions are in place once a message published after them reaches the big client.
    big.send(data(1, '/pub t-large ping'));
    expect((await big.next(FrameType.DATA, 1)).payload.toString()).toBe('ping');
    await small.next(FrameType.DATA, 1);
    big.send(data(1, `/pub t-large ${text}`));
    expect((await big.next(FrameType.DATA, 1)).payload.toString()).toBe(text);
    expect(RawClient.codeOf(await small.next(FrameType.CLOSE, 1))).toBe('MESSAGE_TOO_LARGE');
    expect(small.received.filter((f) => f.type === FrameType.DATA).map((f) => f.payload.length)).toEqual([4]);
    small.destroy();
    big.destroy();
  });
});

describe('§4.9 a BATCH frame is one message as far as limits go', () => {
  it('never exceeds max_payload: the newest messages that fit are merged, the older excess dropped', async () => {
    const proxy = await proxyWith({ low_priority_rate: 1, low_priority_merge: 16 });
    const [viewer, limits] = await welcomed(proxy.port, { sessionWindow: 100, acceptsBatch: true });
    expect(limits.maxPayload).toBe(50);
    viewer.send(Buffer.concat([open(1), data(1, '/sub t-batch')]));
    const [poster] = await welcomed(proxy.port);
    poster.send(open(1));
    await poster.next(FrameType.OPEN_OK, 1);
    // Low priority (flags 2): the first leaves at once, the rest wait for the next token and are merged.
    const messages = Array.from({ length: 12 }, (_, i) => encodeFrame(FrameType.DATA, 2, 1, Buffer.from(`/pub t-batch message-${String(i).padStart(2, '0')}-${'z'.repeat(10)}`)));
    poster.send(Buffer.concat(messages));
    await viewer.next(FrameType.DATA, 1);
    const merged = await viewer.next(FrameType.DATA, 1, 5_000);
    expect(merged.flags & 0x04).toBe(0x04);
    expect(merged.payload.length).toBeLessThanOrEqual(100);
    // max_payload is half the 100-byte window; each message is 4 + 21 bytes: two fit, the newest two.
    expect(merged.payload.length).toBe(2 * 25);
    expect(merged.payload.subarray(4, 25).toString()).toBe(`message-10-${'z'.repeat(10)}`);
    viewer.destroy();
    poster.destroy();
  });
});

describe('§7 a DATA exceeding both windows', () => {
  let proxy: RunningProcess & { port: number };
  beforeAll(async () => {
    // A tcp route whose only endpoint refuses connections, retried far in the future: its sessions hold
    // the client's DATA without returning credit, so windows fill up.
    const dead = `127.0.0.1:${await freePort()}`;
    proxy = await proxyWith(
      { session_window: 4_096, connection_window: 8_192 },
      {
        version: 1,
        routes: [{ business: 'stuck', pool: 'dead', retry: { attempts: 1, backoff_ms: 60_000 } }],
        pools: { dead: { protocol: 'tcp', endpoints: [{ address: dead }], health_check: { interval_ms: 0 }, outlier_detection: { consecutive_failures: 1000 } } },
      },
    );
  });

  /** Two sessions on the stuck route, their connects refused so they hold what they get. */
  async function stuck(): Promise<RawClient> {
    const c = await RawClient.handshake(proxy.port, token);
    c.send(Buffer.concat([open(1, 'stuck'), open(2, 'stuck')]));
    await c.next(FrameType.OPEN_OK, 1);
    await c.next(FrameType.OPEN_OK, 2);
    // The refused connects take a loopback round trip; then the sessions wait a minute for their retry.
    await new Promise((r) => setTimeout(r, 500));
    return c;
  }

  it('over the session window only → RESET SESSION_FLOW_CONTROL; the connection goes on', async () => {
    const c = await stuck();
    c.send(Buffer.concat([data(1, 2_000), data(1, 2_000), data(1, 100)]));
    expect(RawClient.codeOf(await c.next(FrameType.RESET, 1))).toBe('SESSION_FLOW_CONTROL');
    c.send(encodeFrame(FrameType.PING, 0, 0, Buffer.from('alive')));
    await c.next(FrameType.PONG);
    c.destroy();
  });

  it('over the session and the connection window → ERROR FLOW_CONTROL_ERROR, not RESET', async () => {
    const c = await stuck();
    c.send(Buffer.concat([data(1, 2_000), data(1, 2_000), data(2, 2_000), data(2, 2_000), data(1, 300)]));
    expect(await c.errorCode()).toBe('FLOW_CONTROL_ERROR');
    expect(c.received.filter((f) => f.type === FrameType.RESET)).toEqual([]);
  });
});
