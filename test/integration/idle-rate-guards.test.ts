/**
 * A connection's rate guards (OPEN/RESET, frames that earn a reply, REFRESH) are made on first use and
 * given back by the periodic check once full again, so an idle connection keeps none (issue 12's
 * footprint). A guard made again after that must limit exactly as before: these floods come after the
 * connection has idled through a periodic check (seen as the proxy's PING). A route's per-connection
 * limits count in a table of numbers, their OPEN rate guard made at the first OPEN the route limits.
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

describe("a route's per-connection limits (limits.max_sessions_per_connection, limits.open_rate)", () => {
  let limited: Awaited<ReturnType<EchoFleet['proxy']>>;
  beforeAll(async () => {
    limited = await fleet.proxy(
      {},
      {
        version: 1,
        routes: [
          { business: 'echo', pool: 'echo' },
          { business: 'few', pool: 'echo', limits: { max_sessions_per_connection: 2 } },
          { business: 'slow', pool: 'echo', limits: { open_rate: 1 } },
        ],
        pools: { echo: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${fleet.backend.port}` }], health_check: { interval_ms: 5_000, timeout_ms: 5_000 } } },
      },
    );
  });

  it('max_sessions_per_connection: the third OPEN → OPEN_FAIL TOO_MANY_SESSIONS; after a CLOSE, one more fits', async () => {
    const c = await RawClient.handshake(limited.port, fleet.token);
    c.open(1, 'few');
    c.open(3, 'few');
    c.open(5, 'echo'); // another business does not count
    for (const id of [1, 3, 5]) await c.next(FrameType.OPEN_OK, id);
    c.open(7, 'few');
    expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, 7))).toBe('TOO_MANY_SESSIONS');
    c.close(1);
    await c.next(FrameType.CLOSE, 1);
    c.open(9, 'few');
    await c.next(FrameType.OPEN_OK, 9);
    c.destroy();
  });

  it('open_rate: a burst of the rate, then OPEN_FAIL RATE_LIMITED; other businesses are not limited', async () => {
    const c = await RawClient.handshake(limited.port, fleet.token);
    for (let id = 1; id <= 9; id += 2) c.open(id, 'slow');
    c.open(11, 'echo');
    const answers = [];
    for (let id = 1; id <= 9; id += 2) {
      const f = await Promise.race([c.next(FrameType.OPEN_OK, id), c.next(FrameType.OPEN_FAIL, id)]);
      answers.push(f.type === FrameType.OPEN_OK ? 'OPEN_OK' : RawClient.codeOf(f));
    }
    // One token, refilled in a second: the four that follow at once are over the rate.
    expect(answers).toEqual(['OPEN_OK', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED']);
    await c.next(FrameType.OPEN_OK, 11);
    c.destroy();
  });
});
