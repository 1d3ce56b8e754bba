/**
 * The room write lease in the Chat backend (room-leases.ts), with two backends on one shared store as
 * two processes on one Redis would be: only the lease holder writes, the other answers NOT_OWNER
 * (retryable, nothing written, counted), a backend whose token went stale stops writing, and the room
 * moves on once the holder's sessions leave.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createChatBackend, type ChatBackend } from '../../src/backends/chat/chat-backend.js';
import { ModerateAction, WireRole, type Reply } from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import type { LeaseRefusal } from '../../src/backends/chat/room-leases.js';
import { MemoryChatStore } from '../../src/backends/chat/memory-store.js';
import { ChatHarness } from '../helpers/chat-harness.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';

const ROOM = 'room-l';
const backends: ChatBackend[] = [];
let sharedStore: MemoryChatStore;

afterEach(async () => {
  // The backends share one store: stop their timers, then close the store once.
  for (const chat of backends.splice(0)) for (const room of chat.rooms.values()) room.cancelIdle();
  await sharedStore?.close();
});

function backend(): ChatHarness {
  const chat = createChatBackend({ store: sharedStore, userRate: 10_000, userBurst: 10_000 });
  backends.push(chat);
  return new ChatHarness(chat);
}

async function join(h: ChatHarness, p: FakeProxyStream, session: number, userId: string, role?: string): Promise<void> {
  h.open(p, session, userId, { room: ROOM, ...(role === undefined ? {} : { role }) });
  expect((await h.call(p, session, { join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } })).ok).toBe(true);
}

const say = (h: ChatHarness, p: FakeProxyStream, session: number, text: string): Promise<Reply> =>
  h.call(p, session, { send: { body: Buffer.from(text), clientMsgId: '' } });

async function refusals(h: ChatHarness, reason: LeaseRefusal): Promise<number> {
  return (await h.chat.metrics.leaseRefusals.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('room write lease', () => {
  it('lets only the holder write; the other backend answers NOT_OWNER until the holder\'s sessions leave', async () => {
    sharedStore = new MemoryChatStore();
    const a = backend();
    const b = backend();
    const p = new FakeProxyStream('proxy-1');
    const q = new FakeProxyStream('proxy-2');
    await join(a, p, 1, 'host', 'host');
    await join(b, q, 1, 'cohost', 'host');
    expect(await say(a, p, 1, 'one')).toMatchObject({ ok: true, sent: { seq: 1 } });

    const refused = await say(b, q, 1, 'two');
    expect(refused).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_OWNER });
    expect(refused.retryAfterMs).toBeGreaterThanOrEqual(50);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(1000);
    const attrs = await b.call(q, 1, { setAttributes: { set: { k: 'v' }, delete: [] } });
    expect(attrs.errorCode).toBe(ChatErrorCode.NOT_OWNER);
    const mute = await b.call(q, 1, { moderate: { action: ModerateAction.MUTE, targetUser: 'host', durationMs: 0, reason: '' } });
    expect(mute.errorCode).toBe(ChatErrorCode.NOT_OWNER);
    expect(await refusals(b, 'held')).toBe(3);
    expect(await refusals(a, 'held')).toBe(0);
    // Nothing of the refused writes reached the store.
    expect((await sharedStore.latestHistory(ROOM, 10)).map((m) => m.seq)).toEqual([1]);
    expect(await sharedStore.attributes(ROOM)).toEqual({ values: {}, version: 0 });
    expect(await sharedStore.muteUntil(ROOM, 'host', Date.now())).toBe(0);

    // The room moves: its last session on `a` leaves, which releases the lease, and `b` continues.
    a.chat.handlers.onClose(p, 1, 0, 'moved');
    await a.chat.settled();
    expect(await say(b, q, 1, 'two')).toMatchObject({ ok: true, sent: { seq: 2 } });
  });

  it('a backend whose token went stale stops writing until the room is free again', async () => {
    sharedStore = new MemoryChatStore();
    const a = backend();
    const p = new FakeProxyStream('proxy-1');
    await join(a, p, 1, 'host', 'host');
    expect(await say(a, p, 1, 'one')).toMatchObject({ ok: true, sent: { seq: 1 } });

    // As if `a` paused past its lease's end: the lease (the store's first, token 1) lapses and another
    // holder takes the room. `a` still believes it holds token 1.
    await sharedStore.releaseLease(ROOM, 1);
    const intruder = await sharedStore.acquireLease(ROOM, 'intruder', 60_000);
    expect(intruder).toEqual({ acquired: true, token: 2 });
    expect(await say(a, p, 1, 'stale')).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_OWNER });
    expect(await refusals(a, 'stale')).toBe(1);
    // It forgot its lease: the next write asks the store again and is told who holds the room.
    expect(await say(a, p, 1, 'still not')).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_OWNER });
    expect(await refusals(a, 'held')).toBe(1);
    expect((await sharedStore.latestHistory(ROOM, 10)).map((m) => m.seq)).toEqual([1]);

    await sharedStore.releaseLease(ROOM, 2);
    expect(await say(a, p, 1, 'two')).toMatchObject({ ok: true, sent: { seq: 2 } });
  });
});
