import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import { decodeBatch } from '../../src/protocol/batch.js';
import { FLAG_BATCH, FrameType, Priority } from '../../src/protocol/constants.js';
import { type HelloOptions, RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';
import { metricValue } from '../helpers/metrics.js';
import { until } from '../helpers/until.js';

// A connection gets at most RATE low-priority frames per second; the excess is merged (clients that
// accept batches) or dropped (clients that do not), always counted. System/high are never capped.
const RATE = 10;
const MERGE = 8;
let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack({ limits: { low_priority_rate: RATE, low_priority_merge: MERGE } });
});

afterAll(() => stack?.stop());

async function subscriber(topic: string, hello: HelloOptions): Promise<RawClient> {
  const c = await RawClient.handshake(stack.proxy.port, stack.token, hello);
  c.open(1);
  await c.next(FrameType.OPEN_OK, 1);
  c.data(1, `/sub ${topic}`);
  c.data(1, 'fence'); // the backend handles one session's events in order
  await c.next(FrameType.DATA, 1);
  return c;
}

async function publisher(): Promise<RawClient> {
  const p = await RawClient.handshake(stack.proxy.port, stack.token);
  p.open(1);
  await p.next(FrameType.OPEN_OK, 1);
  return p;
}

async function metric(labels: string): Promise<number> {
  return metricValue(stack.proxy.adminPort, 'livemux_dropped_frames_total', labels);
}

/** Messages carried by a client's DATA frames so far, batches unpacked, in arrival order. */
function messages(c: RawClient): string[] {
  const out: string[] = [];
  for (const f of c.frames) {
    if (f.type !== FrameType.DATA) continue;
    if (f.flags & FLAG_BATCH) decodeBatch(f.payload, (m) => out.push(m.toString()));
    else out.push(f.payload.toString());
  }
  return out;
}

it('a burst of low messages becomes at most RATE frames a second, merged in order, excess counted', async () => {
  const sub = await subscriber('burst', { acceptsBatch: true });
  const pub = await publisher();
  const sent = Array.from({ length: 40 }, (_, i) => `m${String(i).padStart(2, '0')}`);
  const started = Date.now();
  for (const m of sent) pub.data(1, `/pub burst ${m}`, Priority.LOW);
  pub.data(1, 'fence');
  await pub.next(FrameType.DATA, 1);
  // Nothing lost silently: every message is delivered or counted as dropped, once the pacer has let
  // the merged frames out (a few turns; later on a busy machine).
  const dropped = (): Promise<number> => metric('reason="merge_overflow",priority="low"');
  await until(async () => messages(sub).length + (await dropped()) === sent.length, 'every message delivered or counted');
  const got = messages(sub);
  const dataFrames = sub.frames.filter((f) => f.type === FrameType.DATA);
  const seconds = (Date.now() - started) / 1000;
  // In order, none twice: a subsequence of what was sent.
  expect(got).toEqual(sent.filter((m) => got.includes(m)));
  expect(dataFrames.length).toBeLessThanOrEqual(RATE + Math.ceil(seconds * RATE));
  expect(dataFrames.some((f) => f.flags & FLAG_BATCH)).toBe(true);
  expect(dataFrames.every((f) => (f.flags & 3) === Priority.LOW)).toBe(true);
  expect(got.length + (await dropped())).toBe(sent.length);
  sub.destroy();
  pub.destroy();
});

it('the cap is a bucket of RATE frames refilled at RATE a second: RATE leave at once, then one per 1/RATE s (PROTOCOL.md §8)', async () => {
  const sub = await subscriber('bucket', { acceptsBatch: true });
  const pub = await publisher();
  const sentAt = performance.now();
  for (let i = 0; i < 3 * RATE; i++) pub.data(1, `/pub bucket b${i}`, Priority.LOW);
  const isBatch = (f: { type: number; flags: number }): boolean => f.type === FrameType.DATA && (f.flags & FLAG_BATCH) !== 0;
  await until(() => sub.received.some(isBatch), 'a BATCH frame');
  const firstBatch = sub.received.findIndex(isBatch);
  const data = sub.received.filter((f) => f.type === FrameType.DATA);
  const plain = data.slice(data.findIndex((f) => f.payload.toString() === 'b0'), data.findIndex((f) => (f.flags & FLAG_BATCH) !== 0));
  // RATE leave at once, in order. More only if the publishes reached the proxy spread over time (a busy
  // machine): the bucket refills one token per 1/RATE s of that spread, never faster.
  const spreadS = (sub.received[firstBatch]!.at - sentAt) / 1000;
  expect(plain.length).toBeGreaterThanOrEqual(RATE);
  expect(plain.length).toBeLessThanOrEqual(RATE + Math.floor(spreadS * RATE));
  expect(plain.map((f) => f.payload.toString())).toEqual(Array.from({ length: plain.length }, (_, i) => `b${i}`));
  // The next frame needs a refilled token: 1/RATE s after the burst emptied the bucket, which happened
  // after the publishes were sent (arrival gaps between frames are no measure: transit varies under load).
  expect(spreadS * 1000).toBeGreaterThanOrEqual(1_000 / RATE);
  sub.destroy();
  pub.destroy();
});

it('a client that cannot unpack batches loses the excess, counted as rate_capped; high is never capped', async () => {
  const sub = await subscriber('plain', {});
  const pub = await publisher();
  for (let i = 0; i < 30; i++) pub.data(1, `/pub plain low-${i}`, Priority.LOW);
  for (let i = 0; i < 30; i++) pub.data(1, `/pub plain high-${i}`, Priority.HIGH);
  pub.data(1, 'fence');
  await pub.next(FrameType.DATA, 1);
  const capped = (): Promise<number> => metric('reason="rate_capped",priority="low"');
  await until(async () => messages(sub).length + (await capped()) === 60, 'every message delivered or counted');
  const got = messages(sub);
  expect(sub.frames.some((f) => f.flags & FLAG_BATCH)).toBe(false);
  expect(got.filter((m) => m.startsWith('high-'))).toHaveLength(30);
  const low = got.filter((m) => m.startsWith('low-')).length;
  expect(low).toBeLessThan(30);
  expect(low + (await capped())).toBe(30);
  sub.destroy();
  pub.destroy();
});

it('the SDK hands merged messages to the application one by one', async () => {
  const client = await connect({ host: '127.0.0.1', port: stack.proxy.port, token: stack.token, reconnect: false });
  const session = await client.open('echo');
  await session.send('/sub sdk');
  await session.send('fence');
  const received: string[] = [];
  const iterator = session[Symbol.asyncIterator]();
  expect((await iterator.next()).value.payload.toString()).toBe('fence');
  const pub = await publisher();
  for (let i = 0; i < 20; i++) pub.data(1, `/pub sdk n${i}`, Priority.LOW);
  const deadline = Date.now() + 3_000;
  while (Date.now() < deadline) {
    const next = await Promise.race([iterator.next(), new Promise<null>((r) => setTimeout(() => r(null), 400))]);
    if (!next || next.done) break;
    received.push(next.value.payload.toString());
  }
  expect(received.length).toBeGreaterThan(RATE); // more messages than frames: batches were unpacked
  expect(received).toEqual([...received].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
  pub.destroy();
  await client.close();
});
