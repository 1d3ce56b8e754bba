/**
 * PROTOCOL.md §9 timers, over raw sockets: the heartbeat counts silence from the last frame, the idle
 * clock from the last session's end, and both fire within the stated tolerance (§9.5).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { decodeGoAway, encodeOpen, encodeStatus } from '../../src/protocol/messages.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoFleet, useEchoFleet } from '../helpers/processes.js';

const fleet = useEchoFleet();
let token: string;
beforeAll(() => {
  token = fleet.token;
});

const proxyWith = (config: Record<string, unknown>): ReturnType<EchoFleet['proxy']> => fleet.proxy(config);

const open = (id: number): Buffer => encodeFrame(FrameType.OPEN, 0, id, encodeOpen({ business: 'echo', metadata: {} }));
const close = (id: number): Buffer => encodeFrame(FrameType.CLOSE, 0, id, encodeStatus({ code: 0, reason: '' }));

/** Arrival time (client clock) of the next frame of `type`. */
async function arrival(c: RawClient, type: FrameType, timeoutMs: number): Promise<number> {
  await c.next(type, undefined, timeoutMs);
  return c.received.filter((f) => f.type === type).at(-1)!.at;
}

// PROTOCOL.md §9: a timer fires no earlier than its time and at most TOLERANCE_MS after it.
const TOLERANCE_MS = 1_000;
// Time for a frame to cross loopback and be decoded, both ways, on a busy machine.
const TRANSIT_MS = 150;

describe('§9.1 heartbeat timing is counted from the last frame received', () => {
  it('PING after one interval of silence, another after two, ERROR HEARTBEAT_TIMEOUT after three', async () => {
    const interval = 2_000;
    const proxy = await proxyWith({ timeouts: { heartbeat_interval_ms: interval, heartbeat_misses: 2 } });
    const c = await RawClient.handshake(proxy.port, token);
    // Off the server's WELCOME-aligned tick on purpose: the clock must start at the last frame.
    await new Promise((r) => setTimeout(r, 300));
    const silentFrom = performance.now();
    c.send(encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 0, 1])));
    const firstPing = (await arrival(c, FrameType.PING, 5_000)) - silentFrom;
    const secondPing = (await arrival(c, FrameType.PING, 5_000)) - silentFrom;
    const error = (await arrival(c, FrameType.ERROR, 5_000)) - silentFrom;
    expect(RawClient.codeOf(c.received.at(-1)!)).toBe('HEARTBEAT_TIMEOUT');
    for (const [what, at, due] of [['first PING', firstPing, interval], ['second PING', secondPing, 2 * interval], ['ERROR', error, 3 * interval]] as const) {
      expect(at, what).toBeGreaterThanOrEqual(due);
      expect(at, what).toBeLessThanOrEqual(due + TOLERANCE_MS + TRANSIT_MS);
    }
  });
});

describe('§9.2 idle timing', () => {
  it('GOAWAY IDLE_TIMEOUT idle_ms after the last session ended', async () => {
    const idle = 2_500;
    const proxy = await proxyWith({ timeouts: { idle_ms: idle } });
    const c = await RawClient.handshake(proxy.port, token);
    c.send(open(1));
    await c.next(FrameType.OPEN_OK, 1);
    await new Promise((r) => setTimeout(r, 300));
    c.send(close(1));
    const ended = await arrival(c, FrameType.CLOSE, 5_000);
    const goAway = (await arrival(c, FrameType.GOAWAY, 2 * idle)) - ended;
    expect(decodeGoAway(c.received.at(-1)!.payload).code).toBe(402);
    expect(goAway).toBeGreaterThanOrEqual(idle - TRANSIT_MS);
    expect(goAway).toBeLessThanOrEqual(idle + TOLERANCE_MS + TRANSIT_MS);
  });
});

describe('§9.2 when the idle clock starts', () => {
  it('at WELCOME, and again at every OPEN, even a refused one', async () => {
    const idle = 2_500;
    const proxy = await proxyWith({ timeouts: { idle_ms: idle } });
    const c = await RawClient.handshake(proxy.port, token);
    const welcomed = c.received[0]!.at;
    await new Promise((r) => setTimeout(r, 800));
    const asked = performance.now();
    c.send(encodeFrame(FrameType.OPEN, 0, 1, encodeOpen({ business: 'no-such-business', metadata: {} })));
    expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, 1))).toBe('UNKNOWN_BUSINESS');
    const goAway = await arrival(c, FrameType.GOAWAY, 2 * idle);
    expect(goAway - welcomed).toBeGreaterThanOrEqual(idle);
    expect(goAway - asked).toBeGreaterThanOrEqual(idle);
    expect(goAway - asked).toBeLessThanOrEqual(idle + TOLERANCE_MS + TRANSIT_MS);
  });
});
