/**
 * The room whitelist lives in the ChatStore (docs/chat.md §5): a room's new owner, another Chat backend
 * on the same store, keeps it, and an owner's copy follows the store when a user joins. A room moves
 * when the proxy closes its sessions on one owner (which then releases the room's lease) and opens them
 * on the next.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Priority } from '../../src/protocol/constants.js';
import { createChatBackend, type ChatBackend } from '../../src/backends/chat/chat-backend.js';
import { ModerateAction, WireRole, type Reply } from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { MemoryChatStore } from '../../src/backends/chat/memory-store.js';
import { ChatHarness } from '../helpers/chat-harness.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';

const ROOM = 'room-w';
const backends: ChatBackend[] = [];
let sharedStore: MemoryChatStore | undefined;

afterEach(async () => {
  // The backends share one store: stop their timers, then close the store once.
  for (const chat of backends.splice(0)) for (const room of chat.rooms.values()) room.cancelIdle();
  await sharedStore?.close();
  sharedStore = undefined;
});

/** A Chat backend on the shared store: one owner of the room after another. */
function owner(): ChatHarness {
  sharedStore ??= new MemoryChatStore();
  const chat = createChatBackend({ store: sharedStore, userRate: 10_000, userBurst: 10_000 });
  backends.push(chat);
  return new ChatHarness(chat);
}

async function join(h: ChatHarness, p: FakeProxyStream, session: number, userId: string, role?: string): Promise<Reply> {
  h.open(p, session, userId, { room: ROOM, ...(role === undefined ? {} : { role }) });
  return h.call(p, session, { join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } });
}

const sendSystem = (h: ChatHarness, p: FakeProxyStream, session: number): Promise<Reply> =>
  h.call(p, session, { send: { body: Buffer.from('pinned'), clientMsgId: '' } }, Priority.SYSTEM);

const moderate = (h: ChatHarness, p: FakeProxyStream, session: number, action: number, target: string): Promise<Reply> =>
  h.call(p, session, { moderate: { action, targetUser: target, durationMs: 0, reason: '' } });

/** The proxy closes these sessions on `h` (the room moves away): its last leave releases the room's lease. */
async function moveAway(h: ChatHarness, p: FakeProxyStream, sessions: number[]): Promise<void> {
  for (const session of sessions) h.chat.handlers.onClose(p, session, 0, 'moved');
  await h.chat.settled();
}

const joinedRole = (h: ChatHarness, p: FakeProxyStream, session: number): number | undefined =>
  h.events(p, session).find((e) => e.joined)?.joined?.role;

describe('whitelist in the store', () => {
  it('survives a move to a new owner: the whitelisted user joins there as whitelisted and may send system', async () => {
    const first = owner();
    const p = new FakeProxyStream('proxy-1');
    expect((await join(first, p, 1, 'host', 'host')).ok).toBe(true);
    // A guest whitelisted before arriving.
    expect((await moderate(first, p, 1, ModerateAction.WHITELIST, 'guest')).ok).toBe(true);
    await moveAway(first, p, [1]);

    const next = owner();
    const q = new FakeProxyStream('proxy-2');
    expect((await join(next, q, 1, 'guest')).ok).toBe(true);
    expect(joinedRole(next, q, 1)).toBe(WireRole.WHITELISTED);
    expect((await sendSystem(next, q, 1)).ok).toBe(true);
  });

  it('an owner holding a stale copy follows the store on the next join', async () => {
    const first = owner();
    const p = new FakeProxyStream('proxy-1');
    await join(first, p, 1, 'host', 'host');
    await join(first, p, 2, 'bob');
    await moderate(first, p, 1, ModerateAction.WHITELIST, 'bob');
    expect((await sendSystem(first, p, 2)).ok).toBe(true);

    // Another owner withdraws it (the ring moved the room, then moved it back).
    await moveAway(first, p, [1, 2]);
    const other = owner();
    const q = new FakeProxyStream('proxy-2');
    await join(other, q, 1, 'admin', 'admin');
    expect((await moderate(other, q, 1, ModerateAction.UNWHITELIST, 'bob')).ok).toBe(true);
    await moveAway(other, q, [1]);

    expect((await join(first, p, 3, 'bob')).ok).toBe(true);
    expect(joinedRole(first, p, 3)).toBe(WireRole.MEMBER);
    expect((await sendSystem(first, p, 3)).errorCode).toBe(ChatErrorCode.PERMISSION_DENIED);
    expect(await sharedStore!.isWhitelisted(ROOM, 'bob')).toBe(false);
  });

  it('a silently moved session (reattach) gets its whitelisted privileges on the new owner', async () => {
    const first = owner();
    const p = new FakeProxyStream('proxy-1');
    await join(first, p, 1, 'host', 'host');
    await join(first, p, 2, 'bob');
    await moderate(first, p, 1, ModerateAction.WHITELIST, 'bob');
    await moveAway(first, p, [1, 2]);

    const next = owner();
    next.open(p, 2, 'bob', { room: ROOM, reattach: true });
    expect((await sendSystem(next, p, 2)).ok).toBe(true);
  });
});
