import { afterAll, beforeAll, expect, it } from 'vitest';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';
import { metricValue } from '../helpers/metrics.js';

const HUGE = 0x7fff_0000;
const QUEUE_BYTES = 256 * 1024;

let stack: EchoStack;

beforeAll(async () => {
  // Big client→proxy windows so the publisher never waits for credit; a small outbound bound.
  stack = await startEchoStack({
    limits: { outbound_queue_bytes: QUEUE_BYTES, max_payload: 65536, session_window: HUGE, connection_window: HUGE, low_priority_rate: 0 },
  });
});

afterAll(() => stack?.stop());

async function subscriber(topic: string): Promise<RawClient> {
  const c = await RawClient.handshake(stack.proxy.port, stack.token, { sessionWindow: HUGE, connectionWindow: HUGE });
  c.open(1);
  await c.next(FrameType.OPEN_OK, 1);
  c.data(1, `/sub ${topic}`);
  c.data(1, 'subscribed?'); // the backend handles a session's events in order
  await c.next(FrameType.DATA, 1);
  c.keepData = false;
  c.dataCount = 0;
  return c;
}

async function metric(name: string, labels: string): Promise<number> {
  return metricValue(stack.proxy.adminPort, name, labels);
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('a slow reader loses low-priority DATA first, then is closed SLOW_CONSUMER; a fast reader gets everything', async () => {
  const fast = await subscriber('room');
  const slow = await subscriber('room');
  slow.pause();
  const publisher = await RawClient.handshake(stack.proxy.port, stack.token);
  publisher.open(1);
  await publisher.next(FrameType.OPEN_OK, 1);

  const text = 'x'.repeat(1000);
  const ROUND = 1000;
  let sent = 0;
  // Low priority: ~20 MB, far beyond the kernel buffers of the paused reader plus the queue bound.
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < ROUND; i++) publisher.data(1, `/pub room ${text}`, Priority.LOW);
    sent += ROUND;
    await until(() => fast.dataCount === sent, 10_000, `fast reader to get ${sent} low messages`);
  }
  const lowDrops = await metric('livemux_dropped_frames_total', 'priority="low"');
  expect(lowDrops).toBeGreaterThan(0);
  expect(await metric('livemux_protocol_errors_total', 'code="SLOW_CONSUMER"')).toBe(0);

  // High priority is never dropped: once the bound is exceeded, the slow reader is closed instead.
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 100; i++) publisher.data(1, `/pub room ${text}`, Priority.HIGH);
    sent += 100;
    await until(() => fast.dataCount === sent, 10_000, `fast reader to get ${sent} messages`);
  }
  await until(async () => (await metric('livemux_protocol_errors_total', 'code="SLOW_CONSUMER"')) === 1, 5_000, 'SLOW_CONSUMER');
  expect(await metric('livemux_dropped_frames_total', 'priority="high"')).toBe(0);
  slow.resume();
  expect(await slow.errorCode()).toBe('SLOW_CONSUMER');
  expect(fast.dataCount).toBe(sent);
  fast.destroy();
  publisher.destroy();
}, 60_000);

it('the ERROR SLOW_CONSUMER reaches a client that reads late, ahead of nothing it could not read', async () => {
  // PROTOCOL.md §8: the client needs the code to apply SLOW_CONSUMER's 2,000 ms backoff. A client
  // paused for a while (an app sent to the background) must still find the ERROR once it reads on.
  const slow = await subscriber('late');
  slow.pause();
  const publisher = await RawClient.handshake(stack.proxy.port, stack.token);
  publisher.open(1);
  await publisher.next(FrameType.OPEN_OK, 1);
  const before = await metric('livemux_protocol_errors_total', 'code="SLOW_CONSUMER"');
  const text = 'y'.repeat(1000);
  for (let round = 0; round < 100 && (await metric('livemux_protocol_errors_total', 'code="SLOW_CONSUMER"')) === before; round++) {
    for (let i = 0; i < 200; i++) publisher.data(1, `/pub late ${text}`, Priority.HIGH);
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(await metric('livemux_protocol_errors_total', 'code="SLOW_CONSUMER"')).toBe(before + 1);
  // The client stays away for longer than the 2 s a closing socket used to get before it was destroyed.
  await new Promise((r) => setTimeout(r, 3_000));
  slow.resume();
  expect(await slow.errorCode(10_000)).toBe('SLOW_CONSUMER');
  publisher.destroy();
}, 60_000);
