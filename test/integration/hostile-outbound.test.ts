import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { MiB, flood, repeatFrame, underAttack } from '../helpers/hostile.js';
import { metricValue } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';

/**
 * Issue 8, rows 1 and 2: a logged-in client that never reads and makes the proxy answer it. Every reply
 * counts against the connection's bound and the frames that earn one are rate-limited, so the attacker
 * is closed with CONTROL_FLOOD after a few dozen frames; before, every PONG and RESET was queued
 * without bound (4 GB heap, a dead process). The proxy runs with its default limits.
 */

/** What each attacker may send at most: far past the point where it must have been closed. */
const ATTACK_BYTES = 32 * MiB;

let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack();
});

afterAll(() => stack?.stop());

/**
 * A logged-in client that stops reading, runs `setup` first if given, then floods repeats of `frames`
 * up to ATTACK_BYTES; it must be closed well before. Resolves with the ERROR code it finds once it reads again.
 */
async function floodUnread(frames: Buffer, setup?: (c: RawClient) => Promise<void>): Promise<string> {
  const attacker = await RawClient.handshake(stack.proxy.port, stack.token);
  await setup?.(attacker);
  attacker.pause();
  const sent = await flood(attacker, repeatFrame(frames, MiB), ATTACK_BYTES);
  expect(sent).toBeLessThan(ATTACK_BYTES);
  attacker.resume();
  return attacker.errorCode(10_000);
}

describe('a client that never reads cannot make the proxy hold its replies', () => {
  it('row 1: empty PINGs → ERROR CONTROL_FLOOD', async () => {
    expect(await underAttack(stack.proxy, () => floodUnread(encodeFrame(FrameType.PING, 0, 0)))).toBe('CONTROL_FLOOD');
  }, 90_000);

  it('row 2: empty DATA to a session never opened → ERROR CONTROL_FLOOD', async () => {
    expect(await underAttack(stack.proxy, () => floodUnread(encodeFrame(FrameType.DATA, Priority.HIGH, 7)))).toBe('CONTROL_FLOOD');
  }, 90_000);

  it('DATA and CLOSE on a closed session earn RESETs from the same budget → ERROR CONTROL_FLOOD', async () => {
    const unit = Buffer.concat([encodeFrame(FrameType.DATA, Priority.HIGH, 1), encodeFrame(FrameType.CLOSE, 0, 1)]);
    const code = await underAttack(stack.proxy, () =>
      floodUnread(unit, async (c) => {
        c.open(1);
        await c.next(FrameType.OPEN_OK, 1);
        c.close(1);
        await c.next(FrameType.CLOSE, 1);
      }),
    );
    expect(code).toBe('CONTROL_FLOOD');
  }, 90_000);

  it('a few PINGs and stray frames within the rate are answered as always', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    for (let i = 0; i < 10; i++) c.send(encodeFrame(FrameType.PING, 0, 0, Buffer.from(`p${i}`)));
    for (let i = 0; i < 10; i++) expect((await c.next(FrameType.PONG)).payload.toString()).toBe(`p${i}`);
    c.data(99, 'stray');
    expect(RawClient.codeOf(await c.next(FrameType.RESET, 99))).toBe('UNKNOWN_SESSION');
    c.destroy();
  });

  it('every flood was counted by the limit it hit', async () => {
    expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="limits.reply_rate"')).toBeGreaterThanOrEqual(3);
    expect(await metricValue(stack.proxy.adminPort, 'livemux_connections_closed_total', 'code="CONTROL_FLOOD"')).toBeGreaterThanOrEqual(3);
  });
});
