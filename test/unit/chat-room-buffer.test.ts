/**
 * The room buffer between a send's acceptance and its seq (src/backends/chat/room-buffer.ts): its
 * policy on its own (bounds, drop order, take order), then through the Chat backend over a real
 * MemoryChatStore whose history appends are held back, as a lagging Redis would: what is dropped or
 * refused, what every sender is told, what is counted, and that what gets through keeps its order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Priority } from '../../src/protocol/constants.js';
import { createChatBackend, type ChatBackend, type ChatBackendOptions } from '../../src/backends/chat/chat-backend.js';
import { WireRole, encodeChatRequest } from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { MemoryChatStore } from '../../src/backends/chat/memory-store.js';
import { RoomBuffer } from '../../src/backends/chat/room-buffer.js';
import type { HistoryLimits, StoredMessage } from '../../src/backends/chat/store.js';
import { ChatHarness } from '../helpers/chat-harness.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';

/** A real memory store whose history appends wait while it is held: a store slower than the room's traffic. */
class HeldChatStore extends MemoryChatStore {
  private held: Promise<void> | null = null;
  private release: () => void = () => undefined;

  hold(): void {
    this.held = new Promise((resolve) => (this.release = resolve));
  }

  resume(): void {
    this.held = null;
    this.release();
  }

  override async appendHistory(room: string, token: number, message: StoredMessage, limits: HistoryLimits, nowMs: number): Promise<number> {
    while (this.held !== null) await this.held;
    return super.appendHistory(room, token, message, limits, nowMs);
  }
}

describe('RoomBuffer', () => {
  it('takes system, then high, then low, each in arrival order', () => {
    const buffer = new RoomBuffer<string>({ system: 5, high: 5, low: 5 });
    for (const [item, priority] of [['l1', Priority.LOW], ['h1', Priority.HIGH], ['s1', Priority.SYSTEM], ['l2', Priority.LOW], ['s2', Priority.SYSTEM], ['h2', Priority.HIGH]] as const) {
      expect(buffer.offer(item, priority)).toEqual({ kind: 'queued' });
    }
    expect(buffer.length).toBe(6);
    expect(Array.from({ length: 7 }, () => buffer.take())).toEqual(['s1', 's2', 'h1', 'h2', 'l1', 'l2', undefined]);
    expect(buffer.length).toBe(0);
  });

  it('a full low buffer drops its oldest message; full high and system buffers refuse the new one', () => {
    const buffer = new RoomBuffer<string>({ system: 2, high: 2, low: 2 });
    expect(['l1', 'l2'].map((x) => buffer.offer(x, Priority.LOW).kind)).toEqual(['queued', 'queued']);
    expect(buffer.offer('l3', Priority.LOW)).toEqual({ kind: 'queued_dropping', dropped: 'l1' });
    expect(buffer.offer('l4', Priority.LOW)).toEqual({ kind: 'queued_dropping', dropped: 'l2' });
    for (const priority of [Priority.HIGH, Priority.SYSTEM]) {
      expect(['a', 'b', 'c'].map((x) => buffer.offer(x, priority).kind)).toEqual(['queued', 'queued', 'refused']);
      expect(buffer.waiting(priority)).toBe(2);
    }
    expect(buffer.waiting(Priority.LOW)).toBe(2);
    expect(buffer.length).toBe(6);
    expect(Array.from({ length: 6 }, () => buffer.take())).toEqual(['a', 'b', 'a', 'b', 'l3', 'l4']);
  });
});

describe('the Chat backend over a store that lags', () => {
  const ROOM = 'room-b';
  let chat: ChatBackend;
  let harness: ChatHarness;
  let store: HeldChatStore;
  let p: FakeProxyStream;

  afterEach(async () => {
    store.resume();
    await chat.close();
  });

  async function start(options: ChatBackendOptions): Promise<void> {
    store = new HeldChatStore();
    p = new FakeProxyStream();
    chat = createChatBackend({ store, userRate: 10_000, userBurst: 10_000, roomRate: 10_000, ...options });
    harness = new ChatHarness(chat);
    for (const [session, user, role] of [[1, 'host', 'host'], [2, 'fan', undefined], [3, 'watcher', undefined]] as const) {
      harness.open(p, session, user, { room: ROOM, ...(role === undefined ? {} : { role }) });
      expect((await harness.call(p, session, { join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } })).ok).toBe(true);
    }
  }

  const send = (session: number, text: string, priority: Priority): number => harness.request(p, session, { send: { body: Buffer.from(text), clientMsgId: '' } }, priority);
  /** A send with request_id 0: the sender wants no reply, success or failure. */
  const fireAndForget = (session: number, text: string, priority: Priority): void =>
    chat.handlers.onData(p, session, encodeChatRequest({ requestId: 0, send: { body: Buffer.from(text), clientMsgId: '' } }), priority);
  const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 10));
  const gauge = async (priority: string): Promise<number> =>
    (await chat.metrics.registry.getSingleMetric('livemux_chat_messages_buffered')!.get()).values.find((v) => v.labels.priority === priority)?.value ?? 0;

  it('drops the oldest low, refuses high and system beyond their bounds, tells every sender and counts every drop', async () => {
    await start({ buffer: { system: 3, high: 2, low: 2 } });
    store.hold();
    const low = Array.from({ length: 5 }, (_, i) => send(2, `low${i}`, Priority.LOW));
    fireAndForget(2, 'low5', Priority.LOW);
    const high = Array.from({ length: 4 }, (_, i) => send(2, `high${i}`, Priority.HIGH));
    const system = Array.from({ length: 5 }, (_, i) => send(1, `sys${i}`, Priority.SYSTEM));
    const from = (id: number): number => (system.includes(id) ? 1 : 2);
    // Beyond their bounds, high and system senders are told at once, while the store is still held,
    // and so are the senders of the four oldest low messages, dropped for the newer ones.
    for (const id of [...high.slice(2), ...system.slice(3), ...low.slice(0, 4)]) {
      expect(harness.replyTo(p, from(id), id)).toMatchObject({ ok: false, errorCode: ChatErrorCode.OVERLOADED, retryAfterMs: 1000 });
    }
    await tick();
    // sys0 is being sequenced (its append held); the rest waits within the bounds.
    expect([await gauge('system'), await gauge('high'), await gauge('low')]).toEqual([2, 2, 2]);

    store.resume();
    await chat.settled();
    expect(harness.messages(p, 3)).toEqual(['1:sys0', '2:sys1', '3:sys2', '4:high0', '5:high1', '6:low4', '7:low5']);
    expect([...system.slice(0, 3), ...high.slice(0, 2), low[4]!].map((id) => harness.replyTo(p, from(id), id).sent?.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(chat.stats.dropped.buffer_full).toEqual({ system: 2, high: 2, low: 4 });
    expect(chat.stats.accepted).toEqual({ system: 3, high: 2, low: 2 });
    // The drops counted are exactly what the watcher did not get.
    const sent = { system: 5, high: 4, low: 6 };
    for (const priority of ['system', 'high', 'low'] as const) {
      const dropped = Object.values(chat.stats.dropped).reduce((sum, byPriority) => sum + byPriority[priority], 0);
      expect(dropped).toBe(sent[priority] - chat.stats.accepted[priority]);
    }
  });

  it('counts a fire-and-forget low message dropped from the buffer, without a reply', async () => {
    await start({ buffer: { low: 1 } });
    const replies = (): number[] => harness.events(p, 2).flatMap((e) => (e.reply === undefined ? [] : [e.reply.requestId]));
    const joinReplies = replies();
    fireAndForget(2, 'dropped', Priority.LOW);
    const kept = send(2, 'kept', Priority.LOW);
    await chat.settled();
    expect(harness.messages(p, 3)).toEqual(['1:kept']);
    expect(replies()).toEqual([...joinReplies, kept]);
    expect(chat.stats.dropped.buffer_full.low).toBe(1);
  });

  it('keeps each sender\'s order and one seq order while system messages overtake waiting low ones', async () => {
    await start({});
    store.hold();
    for (let i = 0; i < 20; i++) {
      send(2, `fan-${i}`, Priority.LOW);
      send(3, `watcher-${i}`, Priority.LOW);
    }
    await tick(); // fan-0 is being sequenced, the rest waits
    for (let i = 0; i < 4; i++) send(1, `sys-${i}`, Priority.SYSTEM);
    store.resume();
    await chat.settled();
    const seen = harness.messages(p, 1);
    expect(seen.map((m) => Number(m.split(':')[0]))).toEqual(Array.from({ length: 44 }, (_, i) => i + 1));
    const bodies = seen.map((m) => m.split(':')[1]!);
    for (const sender of ['fan', 'watcher', 'sys']) {
      const mine = bodies.filter((b) => b.startsWith(`${sender}-`)).map((b) => Number(b.split('-')[1]));
      expect(mine).toEqual([...mine].sort((a, b) => a - b));
    }
    // The system messages overtook the 39 low ones waiting, and those kept their arrival order.
    expect(bodies.slice(0, 7)).toEqual(['fan-0', 'sys-0', 'sys-1', 'sys-2', 'sys-3', 'watcher-0', 'fan-1']);
    expect(Object.values(chat.stats.dropped).every((byPriority) => byPriority.low + byPriority.high + byPriority.system === 0)).toBe(true);
  });

  it('checks sends pipelined behind their session\'s Join in order, and sequences what a leaving sender sent', async () => {
    await start({});
    harness.open(p, 4, 'late', { room: ROOM });
    const join = harness.request(p, 4, { join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } });
    const first = send(4, 'one', Priority.HIGH);
    const second = send(4, 'two', Priority.HIGH);
    await chat.settled();
    expect([join, first, second].map((id) => harness.replyTo(p, 4, id).ok)).toEqual([true, true, true]);
    expect(harness.messages(p, 3)).toEqual(['1:one', '2:two']);

    // The Leave runs while "bye" still waits behind a message held in the store: it goes out anyway.
    store.hold();
    send(2, 'busy', Priority.HIGH);
    await tick();
    const bye = send(4, 'bye', Priority.HIGH);
    const left = harness.request(p, 4, { leave: {} });
    await tick();
    expect(harness.events(p, 4).some((e) => e.reply?.requestId === left)).toBe(false); // queued behind the held message
    store.resume();
    await chat.settled();
    expect(harness.replyTo(p, 4, left).ok).toBe(true);
    expect(harness.replyTo(p, 4, bye).sent?.seq).toBe(4);
    expect(harness.messages(p, 3)).toEqual(['1:one', '2:two', '3:busy', '4:bye']);
    const leftAt = harness.events(p, 3).findIndex((e) => e.memberLeft?.userId === 'late');
    const byeAt = harness.events(p, 3).findIndex((e) => e.message?.seq === 4);
    expect(leftAt).toBeGreaterThan(-1);
    expect(leftAt).toBeLessThan(byeAt);
  });

  it('sequences buffered messages under the write lease: once another backend took the room, they are refused NOT_OWNER and counted', async () => {
    await start({});
    const before = send(2, 'before', Priority.HIGH);
    await chat.settled();
    expect(harness.replyTo(p, 2, before).sent?.seq).toBe(1);
    store.hold();
    const held = send(2, 'held', Priority.HIGH);
    await tick(); // "held" took its seq; its append waits in the store
    const waiting = [send(2, 'w1', Priority.HIGH), send(3, 'w2', Priority.LOW)];
    // Another backend takes the room over meanwhile (this one's lease, the store's first, lapsed).
    await store.releaseLease(ROOM, 1);
    expect((await store.acquireLease(ROOM, 'other-backend', 60_000)).acquired).toBe(true);
    store.resume();
    await chat.settled();
    for (const [session, id] of [[2, held], [2, waiting[0]!], [3, waiting[1]!]] as const) {
      expect(harness.replyTo(p, session, id)).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_OWNER });
    }
    expect((await store.latestHistory(ROOM, 10)).map((m) => m.seq)).toEqual([1]);
    expect(harness.messages(p, 3)).toEqual(['1:before']);
    expect(chat.stats.dropped.not_owner).toEqual({ system: 0, high: 2, low: 1 });
  });

  it('counts sends refused for their size, for system priority, and for a session not joined', async () => {
    await start({ maxBodyBytes: 8 });
    const big = send(2, 'x'.repeat(9), Priority.LOW);
    const system = send(2, 'pin', Priority.SYSTEM);
    harness.open(p, 5, 'stranger', { room: ROOM });
    const stranger = send(5, 'hi', Priority.HIGH);
    await chat.settled();
    expect(harness.replyTo(p, 2, big).errorCode).toBe(ChatErrorCode.BAD_REQUEST);
    expect(harness.replyTo(p, 2, system).errorCode).toBe(ChatErrorCode.PERMISSION_DENIED);
    expect(harness.replyTo(p, 5, stranger).errorCode).toBe(ChatErrorCode.NOT_JOINED);
    expect(chat.stats.dropped.too_large.low).toBe(1);
    expect(chat.stats.dropped.system_denied.system).toBe(1);
    expect(chat.stats.dropped.not_joined.high).toBe(1);
    const metric = await chat.metrics.registry.getSingleMetric('livemux_chat_messages_dropped_total')!.get();
    const sample = (reason: string, priority: string): number | undefined => metric.values.find((v) => v.labels.reason === reason && v.labels.priority === priority)?.value;
    expect([sample('too_large', 'low'), sample('system_denied', 'system'), sample('not_joined', 'high')]).toEqual([1, 1, 1]);
  });

  it('refuses buffer bounds that are not positive integers', () => {
    expect(() => createChatBackend({ buffer: { low: 0 } })).toThrow('buffer.low: expected a positive integer, got 0');
    expect(() => createChatBackend({ buffer: { system: 1.5 } })).toThrow('buffer.system: expected a positive integer, got 1.5');
  });
});
