import { afterAll, beforeAll, expect, it } from 'vitest';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { encodeData, encodeFrame } from '../../src/protocol/encoder.js';
import { metricValue } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';

/**
 * Topic fan-out holds a turn's Publishes and hands each member all of a topic's messages as one run
 * (src/session/topic-fanout.ts). These tests send many commands in ONE client write, so the echo
 * backend answers them in one batch and the proxy fans them out in one turn: exactly where runs form,
 * and where order across Deliver, Publish and topics could break.
 */
let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack({ limits: { low_priority_rate: 0 } });
});

afterAll(() => stack?.stop());

/** A connection with one echo session per id, each subscribed to `topics`; resolves once they are. */
async function member(ids: number[], topics: string[], sessionWindow?: number, connectionWindow?: number): Promise<RawClient> {
  const c = await RawClient.handshake(stack.proxy.port, stack.token, { ...(sessionWindow ? { sessionWindow } : {}), ...(connectionWindow ? { connectionWindow } : {}) });
  for (const id of ids) {
    c.open(id);
    await c.next(FrameType.OPEN_OK, id);
    for (const t of topics) c.data(id, `/sub ${t}`);
    c.data(id, 'subscribed?'); // the backend handles a session's events in order
    expect((await c.next(FrameType.DATA, id)).payload.toString()).toBe('subscribed?');
  }
  return c;
}

/** Sends `payloads` on session `id` as DATA frames in one socket write. */
function sendAtOnce(c: RawClient, id: number, payloads: string[], priority: number = Priority.HIGH): void {
  c.send(Buffer.concat(payloads.map((p) => encodeData(id, priority, Buffer.from(p)))));
}

/** The next `n` DATA payloads of session `id`, in arrival order. */
async function received(c: RawClient, id: number, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await c.next(FrameType.DATA, id)).payload.toString());
  return out;
}

it('every member gets a burst of one turn in order, framed for its own session ids, and each frame counts', async () => {
  const members = [await member([1], ['burst']), await member([3], ['burst']), await member([5, 7], ['burst'])];
  const publisher = await RawClient.handshake(stack.proxy.port, stack.token);
  publisher.open(1);
  await publisher.next(FrameType.OPEN_OK, 1);
  const framesBefore = await metricValue(stack.proxy.adminPort, 'livemux_frames_sent_total', 'type="DATA"');

  const texts = Array.from({ length: 300 }, (_, i) => `m${i}`);
  sendAtOnce(publisher, 1, texts.map((t) => `/pub burst ${t}`));

  for (const [c, ids] of [[members[0]!, [1]], [members[1]!, [3]], [members[2]!, [5, 7]]] as const) {
    for (const id of ids) expect(await received(c, id, texts.length)).toEqual(texts);
    expect(c.frames.filter((f) => f.type === FrameType.DATA)).toEqual([]);
  }
  expect(await metricValue(stack.proxy.adminPort, 'livemux_frames_sent_total', 'type="DATA"')).toBe(framesBefore + 4 * texts.length);
  for (const c of [...members, publisher]) c.destroy();
});

it("a Deliver between Publishes of one batch reaches its session in the backend's order", async () => {
  const self = await member([1], ['mixed']);
  const other = await member([1], ['mixed']);
  sendAtOnce(self, 1, ['/pub mixed a', 'echo 1', '/pub mixed b', 'echo 2', '/pub mixed c']);
  expect(await received(self, 1, 5)).toEqual(['a', 'echo 1', 'b', 'echo 2', 'c']);
  expect(await received(other, 1, 3)).toEqual(['a', 'b', 'c']);
  self.destroy();
  other.destroy();
});

it('a member of several topics gets their messages interleaved as published', async () => {
  const both = await member([1], ['left', 'right']);
  const leftOnly = await member([1], ['left']);
  const publisher = await member([9], []);
  sendAtOnce(publisher, 9, ['/pub left 1', '/pub right 2', '/pub left 3', '/pub right 4', '/pub left 5']);
  expect(await received(both, 1, 5)).toEqual(['1', '2', '3', '4', '5']);
  expect(await received(leftOnly, 1, 3)).toEqual(['1', '3', '5']);
  for (const c of [both, leftOnly, publisher]) c.destroy();
});

it('a member without credit for the whole burst gets what its window allows, then the rest in order', async () => {
  const WINDOW = 4096;
  const narrow = await member([1], ['credit'], WINDOW);
  const publisher = await member([9], []);
  const body = 'x'.repeat(1000);
  const texts = Array.from({ length: 10 }, (_, i) => `${i}${body}`);
  sendAtOnce(publisher, 9, texts.map((t) => `/pub credit ${t}`));

  // 1001-byte messages: at most four fit the 4096-byte window; the rest wait for credit.
  const first = await received(narrow, 1, 1);
  await new Promise((r) => setTimeout(r, 200));
  const withinWindow = 1 + narrow.frames.filter((f) => f.type === FrameType.DATA).length;
  expect(withinWindow).toBeGreaterThanOrEqual(3);
  expect(withinWindow).toBeLessThanOrEqual(4);
  narrow.windowUpdate(1, 1 << 20);
  narrow.windowUpdate(0, 1 << 20);
  const rest = await received(narrow, 1, texts.length - first.length);
  expect([...first, ...rest]).toEqual(texts);
  for (const c of [narrow, publisher]) c.destroy();
});

it("sessions of one connection share its window: together they get what it allows, then the rest in order", async () => {
  // Each session keeps its connection's credit as its own field (the walk reads it there): it must be
  // the connection's one object, the one WELCOME set from the client's HELLO, not a copy or the default.
  const WINDOW = 4096;
  const shared = await member([1, 2], ['shared-window'], undefined, WINDOW);
  const publisher = await member([9], []);
  const body = 'x'.repeat(1000);
  const texts = Array.from({ length: 10 }, (_, i) => `${i}${body}`);
  sendAtOnce(publisher, 9, texts.map((t) => `/pub shared-window ${t}`));

  await shared.next(FrameType.DATA);
  // Whatever credit allowed was written in the walk that wrote the first; a PONG comes after it.
  shared.send(encodeFrame(FrameType.PING, 0, 0, Buffer.from('after')));
  await shared.next(FrameType.PONG);
  const bySession = (id: number): string[] => shared.received.filter((f) => f.type === FrameType.DATA && f.sessionId === id).map((f) => f.payload.toString());
  const data = (): number => bySession(1).length + bySession(2).length;
  // 1001-byte messages: four fit the 4096-byte connection window (less the two 11-byte replies above), for both sessions together.
  expect(data() - 2).toBeGreaterThanOrEqual(1);
  expect(data() - 2).toBeLessThanOrEqual(4);
  shared.windowUpdate(0, 1 << 20);
  while (data() < 2 * (1 + texts.length)) await shared.next(FrameType.DATA);
  for (const id of [1, 2]) expect(bySession(id).slice(1)).toEqual(texts);
  for (const c of [shared, publisher]) c.destroy();
});
