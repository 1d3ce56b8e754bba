/**
 * A connection's rate guards (OPEN/RESET, frames that earn a reply, REFRESH) are made on first use and
 * given back by the periodic check once full again, so an idle connection keeps none (issue 12's
 * footprint). A guard made again after that must limit exactly as before: these floods come after the
 * connection has idled through a periodic check (seen as the proxy's PING).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoFleet, useEchoFleet } from '../helpers/processes.js';

const fleet = useEchoFleet();
let proxy: Awaited<ReturnType<EchoFleet['proxy']>>;
beforeAll(async () => {
  // A short heartbeat: the periodic check that gives the guards back runs every 300 ms of silence.
  proxy = await fleet.proxy({ timeouts: { heartbeat_interval_ms: 300, heartbeat_misses: 100 }, limits: { open_reset_rate: 20, reply_rate: 20 } });
});

const ping = encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8));

/** Waits for the proxy's PING: the periodic check ran after the connection's last frame. */
async function idledThroughACheck(c: RawClient): Promise<void> {
  const pings = c.received.filter((f) => f.type === FrameType.PING).length;
  await c.next(FrameType.PING, 0, 5_000);
  expect(c.received.filter((f) => f.type === FrameType.PING).length).toBeGreaterThan(pings);
}

describe('rate guards given back while idle are made again on the next frame', () => {
  it('OPEN/RESET: a session opened, an idle check, then a flood → GOAWAY RATE_LIMITED', async () => {
    const c = await RawClient.handshake(proxy.port, fleet.token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    await idledThroughACheck(c);
    await idledThroughACheck(c);
    for (let id = 3; id <= 200; id += 2) {
      c.open(id);
      c.reset(id);
    }
    expect(RawClient.codeOf(await c.next(FrameType.GOAWAY))).toBe('RATE_LIMITED');
    // Within the guard's burst of 20, not one more frame: a fresh guard, not an unlimited one.
    expect(c.received.filter((f) => f.type === FrameType.OPEN_OK).length).toBeLessThanOrEqual(1 + 21);
    c.destroy();
  });

  it('PINGs: answered while within the rate, an idle check, then a flood → ERROR CONTROL_FLOOD', async () => {
    const c = await RawClient.handshake(proxy.port, fleet.token);
    c.send(ping);
    await c.next(FrameType.PONG);
    await idledThroughACheck(c);
    await idledThroughACheck(c);
    c.send(ping);
    await c.next(FrameType.PONG);
    for (let i = 0; i < 200; i++) c.send(ping);
    expect(await c.errorCode()).toBe('CONTROL_FLOOD');
    expect(c.received.filter((f) => f.type === FrameType.PONG).length).toBeLessThanOrEqual(2 + 21);
  });
});
