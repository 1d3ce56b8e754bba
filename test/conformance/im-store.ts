import { afterEach, describe, expect, it } from 'vitest';
import { decodeInboxPayload, encodeMessageFields } from '../../src/backends/im/im-codec.js';
import type { RetentionLimits } from '../../src/backends/kit/inbox/inbox-store.js';
import { conversationId, type ConversationLimits, type ImStore, type NewMessage, type StoreOutcome, type StoredMessage } from '../../src/backends/im/store.js';

/**
 * The ImStore contract (src/backends/im/store.ts), run against every implementation: memory from
 * test/unit, Redis from test/integration.
 */

export interface ImStoreFixture {
  readonly store: ImStore;
  /** Another store on the same data (Redis: a second connection; memory: the same instance). */
  peer(): Promise<ImStore>;
  /** Another store (closed by cleanup) whose inboxes keep `retention`. */
  retaining(retention: RetentionLimits): Promise<ImStore>;
  cleanup(): Promise<void>;
}

const T0 = 1_700_000_000_000;
const LIMITS: ConversationLimits = { maxMessages: 1000, maxAgeMs: Number.POSITIVE_INFINITY, dedupeTtlMs: 60_000 };
const COUNT_SLACK = 100;
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

let nextId = 0;
function msg(sender: string, recipient: string, text: string, fields: Partial<NewMessage> = {}): NewMessage {
  nextId++;
  return { serverId: `srv-${nextId}`, sender, recipient, body: Buffer.from(text), sentAtMs: T0 + nextId, clientMsgId: `c-${nextId}`, senderDevice: 'phone', ...fields };
}

const texts = (messages: readonly StoredMessage[]): string[] => messages.map((m) => m.body.toString());

/** `store.storeMessage` with the message's encoded fields, as the IM backend calls it. */
function put(store: ImStore, m: NewMessage, limits: ConversationLimits, nowMs: number): Promise<StoreOutcome> {
  return store.storeMessage(m, encodeMessageFields(m), limits, nowMs);
}

export function describeImStore(name: string, factory: () => Promise<ImStoreFixture>): void {
  describe(`ImStore conformance: ${name}`, () => {
    let fixture: ImStoreFixture | null = null;
    const open = async (): Promise<ImStoreFixture> => (fixture = await factory());
    afterEach(async () => {
      await fixture?.cleanup();
      fixture = null;
    });

    it('names a conversation the same from either side, and no two pairs alike', () => {
      expect(conversationId('ann', 'bob')).toBe(conversationId('bob', 'ann'));
      expect(conversationId('a|b', 'c')).not.toBe(conversationId('a', 'b|c'));
      expect(conversationId('1:a', 'b')).not.toBe(conversationId('1', 'a|b'));
    });

    describe('storeMessage', () => {
      it('numbers a conversation\'s messages from 1 whoever sends, and each conversation on its own', async () => {
        const { store } = await open();
        const a = await put(store, msg('ann', 'bob', 'hi'), LIMITS, T0);
        const b = await put(store, msg('bob', 'ann', 'hello'), LIMITS, T0);
        const c = await put(store, msg('ann', 'cat', 'yo'), LIMITS, T0);
        expect(a).toMatchObject({ kind: 'stored', message: { convSeq: 1, sender: 'ann', recipient: 'bob', recalledAtMs: 0 } });
        expect(b).toMatchObject({ kind: 'stored', message: { convSeq: 2 } });
        expect(c).toMatchObject({ kind: 'stored', message: { convSeq: 1 } });
        const input = msg('bob', 'ann', 'full', { senderDevice: 'laptop', body: Buffer.from([0, 1, 255]) });
        const d = await put(store, input, LIMITS, T0);
        expect(d).toMatchObject({ kind: 'stored', message: { ...input, convSeq: 3, recalledAtMs: 0 } });
      });

      it('appends the message to the recipient\'s and the sender\'s inbox in the same step, with its conv_seq', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const seen: number[] = [];
        const watch = other.inbox.watch('bob', (n) => n.kind === 'entry' && seen.push(n.entry.seq));
        await watch.ready;
        await put(store, msg('cat', 'bob', 'first'), LIMITS, T0);
        const sent = await put(store, msg('ann', 'bob', 'hello', { clientMsgId: 'c-hello' }), LIMITS, T0 + 5);
        if (sent.kind !== 'stored') throw new Error('not stored');
        const inBob = (await other.inbox.read('bob', 0, 10, T0)).entries;
        const inAnn = (await other.inbox.read('ann', 0, 10, T0)).entries;
        expect(inBob.map((e) => e.seq)).toEqual([1, 2]);
        expect(inAnn.map((e) => e.seq)).toEqual([1]);
        expect(sent.inboxSeqs).toEqual({ recipient: 2, sender: 1 });
        // The sender's copy names the sending device, which has the message already (its feeds pass over it).
        expect([inBob[1]!.origin, inAnn[0]!.origin]).toEqual(['', 'phone']);
        expect(inAnn[0]!.body.equals(inBob[1]!.body)).toBe(true);
        expect(inAnn[0]!.createdAtMs).toBe(T0 + 5);
        const { serverId, sender, recipient, convSeq, sentAtMs, clientMsgId, senderDevice } = sent.message;
        expect(decodeInboxPayload(inBob[1]!.body).message).toEqual({ serverId, sender, recipient, convSeq, sentAtMs, clientMsgId, senderDevice, body: Buffer.from('hello'), recalled: false });
        // A resend and a refusal append nothing.
        await put(store, msg('ann', 'bob', 'hello', { clientMsgId: 'c-hello' }), LIMITS, T0);
        await store.setBlocked('bob', 'eve', true, 10);
        expect((await put(store, msg('eve', 'bob', 'spam'), LIMITS, T0)).kind).toBe('blocked');
        expect(await other.inbox.lastSeq('bob')).toBe(2);
        expect(await other.inbox.lastSeq('eve')).toBe(0);
        const deadline = Date.now() + 5_000;
        while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        expect(seen).toEqual([1, 2]);
        watch.close();
      });

      it('appends under the inboxes\' retention: at least maxEntries, nothing older than maxAgeMs, the rest a gap', async () => {
        const { retaining } = await open();
        const counted = await retaining({ maxEntries: 5, maxAgeMs: Number.POSITIVE_INFINITY });
        for (const i of range(1, 150)) await put(counted, msg('ann', 'bob', `m${i}`), LIMITS, T0);
        for (const user of ['bob', 'ann']) {
          const page = await counted.inbox.read(user, 0, 200, T0);
          const oldest = page.entries[0]!.seq;
          expect(page.gap, user).toEqual({ fromSeq: 1, toSeq: oldest - 1 });
          expect(150 - oldest + 1).toBeGreaterThanOrEqual(5);
          expect(150 - oldest + 1).toBeLessThanOrEqual(5 + COUNT_SLACK);
        }
        // The age bound is the inbox's, not the conversation's (LIMITS keeps every message).
        const aged = await retaining({ maxEntries: 1000, maxAgeMs: 1000 });
        await put(aged, msg('cat', 'dan', 'old1', { sentAtMs: T0 }), LIMITS, T0);
        await put(aged, msg('cat', 'dan', 'old2', { sentAtMs: T0 + 10 }), LIMITS, T0 + 10);
        await put(aged, msg('cat', 'dan', 'new', { sentAtMs: T0 + 1005 }), LIMITS, T0 + 1005);
        for (const user of ['dan', 'cat']) {
          const page = await aged.inbox.read(user, 0, 10, T0 + 1005);
          expect(page.entries.map((e) => [e.seq, e.createdAtMs]), user).toEqual([[2, T0 + 10], [3, T0 + 1005]]);
          expect(page.gap, user).toEqual({ fromSeq: 1, toSeq: 1 });
        }
        expect(texts((await aged.history('cat', 'dan', 0, 10)).messages)).toEqual(['old1', 'old2', 'new']);
      });

      it('stores a resent (sender, clientMsgId) once, on any process, and answers the first send', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const first = await put(store, msg('ann', 'bob', 'once', { clientMsgId: 'uuid-1' }), LIMITS, T0);
        const again = await put(other, msg('ann', 'bob', 'once', { clientMsgId: 'uuid-1', serverId: 'srv-other', sentAtMs: T0 + 99 }), LIMITS, T0);
        expect(first.kind).toBe('stored');
        expect(again.kind).toBe('duplicate');
        if (first.kind !== 'stored' || again.kind !== 'duplicate') return;
        expect(again.message).toMatchObject({ serverId: first.message.serverId, convSeq: 1, sentAtMs: first.message.sentAtMs });
        // The same client id from the other user, or to another user, is another message.
        expect((await put(store, msg('bob', 'ann', 'x', { clientMsgId: 'uuid-1' }), LIMITS, T0)).kind).toBe('stored');
        expect((await put(store, msg('ann', 'cat', 'x', { clientMsgId: 'uuid-1' }), LIMITS, T0)).kind).toBe('stored');
        expect((await store.history('ann', 'bob', 0, 10)).messages.map((m) => m.convSeq)).toEqual([1, 2]);
      });

      it('gives concurrent sends of one conversation, from both processes, one seq each', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const outcomes = await Promise.all(range(1, 50).map((i) => put(i % 2 ? store : other, msg(i % 3 ? 'ann' : 'bob', i % 3 ? 'bob' : 'ann', `m${i}`), LIMITS, T0)));
        const seqs = outcomes.map((o) => (o.kind === 'stored' ? o.message.convSeq : 0)).sort((x, y) => x - y);
        expect(seqs).toEqual(range(1, 50));
      });

      it('answers sends issued together each on its own: stored, a resend of one of them, blocked', async () => {
        const { store } = await open();
        await store.setBlocked('dan', 'ann', true, 10);
        const [first, resend, blocked, other] = await Promise.all([
          put(store, msg('ann', 'bob', 'one', { clientMsgId: 'together' }), LIMITS, T0),
          put(store, msg('ann', 'bob', 'one again', { clientMsgId: 'together' }), LIMITS, T0),
          put(store, msg('ann', 'dan', 'no'), LIMITS, T0),
          put(store, msg('bob', 'ann', 'two'), LIMITS, T0),
        ]);
        expect([first!.kind, resend!.kind, blocked!.kind, other!.kind]).toEqual(['stored', 'duplicate', 'blocked', 'stored']);
        if (first!.kind !== 'stored' || resend!.kind !== 'duplicate') return;
        expect(resend!.message.serverId).toBe(first!.message.serverId);
        expect(texts((await store.history('ann', 'bob', 0, 10)).messages)).toEqual(['one', 'two']);
      });

      it('refuses a message to a user who blocked the sender, and only that direction', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const before = await put(store, msg('ann', 'bob', 'before', { clientMsgId: 'early' }), LIMITS, T0);
        expect(await store.setBlocked('bob', 'ann', true, 10)).toBe(true);
        expect(await store.setBlocked('bob', 'ann', true, 10)).toBe(true);
        expect(await put(other, msg('ann', 'bob', 'spam'), LIMITS, T0)).toEqual({ kind: 'blocked' });
        expect((await put(other, msg('bob', 'ann', 'still talking'), LIMITS, T0)).kind).toBe('stored');
        // A resend of what was stored before the block still answers it.
        expect((await put(other, msg('ann', 'bob', 'before', { clientMsgId: 'early' }), LIMITS, T0)).kind).toBe('duplicate');
        expect(before.kind).toBe('stored');
        expect(await other.blocked('bob')).toEqual(['ann']);
        expect(await other.blocked('ann')).toEqual([]);
        expect([await other.isBlocked('bob', 'ann'), await other.isBlocked('ann', 'bob')]).toEqual([true, false]);
        expect(await store.setBlocked('bob', 'ann', false, 10)).toBe(true);
        expect((await put(other, msg('ann', 'bob', 'again'), LIMITS, T0)).kind).toBe('stored');
        expect(await store.blocked('bob')).toEqual([]);
        expect(await store.isBlocked('bob', 'ann')).toBe(false);
        expect(await store.setBlocked('eve', 'zed', false, 10)).toBe(true); // unblocking a stranger is a no-op
      });

      it('keeps a block list within its bound, sorted, and lets a full one block again whom it holds', async () => {
        const { store, peer } = await open();
        const other = await peer();
        for (const u of ['dan', 'bob', 'cat']) expect(await store.setBlocked('ann', u, true, 3)).toBe(true);
        expect(await other.setBlocked('ann', 'eve', true, 3)).toBe(false);
        expect(await put(store, msg('eve', 'ann', 'not blocked'), LIMITS, T0)).toMatchObject({ kind: 'stored' });
        expect(await other.setBlocked('ann', 'bob', true, 3)).toBe(true);
        expect(await other.blocked('ann')).toEqual(['bob', 'cat', 'dan']);
        expect(await store.setBlocked('ann', 'cat', false, 3)).toBe(true);
        expect(await other.setBlocked('ann', 'eve', true, 3)).toBe(true);
        expect(await store.blocked('ann')).toEqual(['bob', 'dan', 'eve']);
      });
    });

    describe('history', () => {
      it('pages backwards, ascending within a page, and says when there is more', async () => {
        const { store } = await open();
        for (const i of range(1, 25)) await put(store, msg(i % 2 ? 'ann' : 'bob', i % 2 ? 'bob' : 'ann', `m${i}`), LIMITS, T0);
        const latest = await store.history('bob', 'ann', 0, 10);
        expect(latest.messages.map((m) => m.convSeq)).toEqual(range(16, 25));
        expect(latest).toMatchObject({ hasMore: true, oldestRetainedSeq: 1 });
        expect(texts(latest.messages).at(-1)).toBe('m25');
        const older = await store.history('ann', 'bob', 16, 10);
        expect(older.messages.map((m) => m.convSeq)).toEqual(range(6, 15));
        const oldest = await store.history('ann', 'bob', 6, 10);
        expect(oldest.messages.map((m) => m.convSeq)).toEqual(range(1, 5));
        expect(oldest.hasMore).toBe(false);
        expect(await store.history('ann', 'nobody', 0, 10)).toEqual({ messages: [], hasMore: false, oldestRetainedSeq: 0 });
        expect((await store.history('ann', 'bob', 0, 5000)).messages).toHaveLength(25);
      });

      it('keeps at least maxMessages, and nothing older than maxAgeMs after the next send', async () => {
        const { store } = await open();
        const counted = { ...LIMITS, maxMessages: 10 };
        for (const i of range(1, 300)) await put(store, msg('ann', 'bob', `m${i}`), counted, T0);
        const page = await store.history('ann', 'bob', 0, 200);
        const oldest = page.messages[0]!.convSeq;
        expect(page.oldestRetainedSeq).toBe(oldest);
        expect(300 - oldest + 1).toBeGreaterThanOrEqual(10);
        expect(300 - oldest + 1).toBeLessThanOrEqual(10 + COUNT_SLACK);
        const aged = { ...LIMITS, maxAgeMs: 1000 };
        await put(store, msg('cat', 'dan', 'old1', { sentAtMs: T0 }), aged, T0);
        await put(store, msg('cat', 'dan', 'old2', { sentAtMs: T0 + 10 }), aged, T0 + 10);
        await put(store, msg('cat', 'dan', 'new', { sentAtMs: T0 + 1005 }), aged, T0 + 1005);
        expect(texts((await store.history('cat', 'dan', 0, 10)).messages)).toEqual(['old2', 'new']);
      });
    });

    describe('recall', () => {
      it('recalls the sender\'s own message within the window, once, and history shows it gone', async () => {
        const { store, peer } = await open();
        const other = await peer();
        await put(store, msg('ann', 'bob', 'oops', { sentAtMs: T0 }), LIMITS, T0);
        await put(store, msg('bob', 'ann', 'reply', { sentAtMs: T0 }), LIMITS, T0);
        expect(await store.recall('ann', 'bob', 9, T0, 120_000)).toEqual({ kind: 'not_found' });
        expect(await store.recall('ann', 'bob', 2, T0, 120_000)).toEqual({ kind: 'not_sender' });
        expect(await store.recall('bob', 'ann', 2, T0 + 120_001, 120_000)).toEqual({ kind: 'expired' });
        const recalled = await other.recall('ann', 'bob', 1, T0 + 120_000, 120_000);
        expect(recalled).toMatchObject({ kind: 'recalled', message: { convSeq: 1, sender: 'ann', recipient: 'bob', recalledAtMs: T0 + 120_000 } });
        expect(await store.recall('ann', 'bob', 1, T0 + 999_999, 120_000)).toMatchObject({ kind: 'already', message: { convSeq: 1, recalledAtMs: T0 + 120_000 } });
        const page = await store.history('bob', 'ann', 0, 10);
        expect(page.messages[0]).toMatchObject({ convSeq: 1, recalledAtMs: T0 + 120_000 });
        expect(page.messages[0]!.body.length).toBe(0);
        expect(texts(page.messages)[1]).toBe('reply');
      });
    });

    describe('read positions and unread counts', () => {
      it('counts the peer\'s messages after the reader\'s position, which only moves forward', async () => {
        const { store, peer } = await open();
        const other = await peer();
        await put(store, msg('ann', 'bob', 'a1'), LIMITS, T0); // 1
        await put(store, msg('ann', 'bob', 'a2'), LIMITS, T0); // 2
        await put(store, msg('bob', 'ann', 'b1'), LIMITS, T0); // 3
        await put(store, msg('ann', 'bob', 'a3'), LIMITS, T0); // 4
        expect(await other.unread('bob', ['ann', 'nobody'])).toEqual([
          { peer: 'ann', count: 3, lastConvSeq: 4 },
          { peer: 'nobody', count: 0, lastConvSeq: 0 },
        ]);
        expect(await store.unread('ann', ['bob'])).toEqual([{ peer: 'bob', count: 1, lastConvSeq: 4 }]);
        expect(await other.markRead('bob', 'ann', 2)).toEqual({ readSeq: 2, advanced: true, unread: 1 });
        expect(await store.markRead('bob', 'ann', 1)).toEqual({ readSeq: 2, advanced: false, unread: 1 });
        expect(await store.unread('bob', ['ann'])).toEqual([{ peer: 'ann', count: 1, lastConvSeq: 4 }]);
        await put(store, msg('ann', 'bob', 'a4'), LIMITS, T0); // 5
        expect(await store.unread('bob', ['ann'])).toEqual([{ peer: 'ann', count: 2, lastConvSeq: 5 }]);
        expect(await store.markRead('bob', 'ann', 99)).toEqual({ readSeq: 5, advanced: true, unread: 0 });
        expect(await store.unread('bob', ['ann'])).toEqual([{ peer: 'ann', count: 0, lastConvSeq: 5 }]);
        expect(await store.markRead('ann', 'nobody', 3)).toEqual({ readSeq: 0, advanced: false, unread: 0 });
      });
    });

    describe('conversation lists', () => {
      it('lists peers by their latest message, either way, an older one changing nothing', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const at = (s: number) => ({ sentAtMs: T0 + s * 1000 });
        await put(store, msg('ann', 'bob', 'a', at(1)), LIMITS, T0);
        await put(store, msg('cat', 'ann', 'b', at(2)), LIMITS, T0);
        await put(other, msg('ann', 'dan', 'c', at(3)), LIMITS, T0);
        await put(store, msg('bob', 'ann', 'd', at(4)), LIMITS, T0);
        await put(store, msg('dan', 'ann', 'e', at(0)), LIMITS, T0); // late and older: changes nothing
        expect(await other.conversations('ann', 10)).toEqual(['bob', 'dan', 'cat']);
        expect(await store.conversations('ann', 2)).toEqual(['bob', 'dan']);
        expect(await store.conversations('dan', 5)).toEqual(['ann']);
        expect(await store.conversations('nobody', 5)).toEqual([]);
      });
    });

    describe('online sessions', () => {
      it('says when a user goes online and offline, across sessions, processes and expiry', async () => {
        const { store, peer } = await open();
        const other = await peer();
        expect(await store.sessionOnline('ann', 'p1:s1', 1000, T0)).toBe(true);
        expect(await other.sessionOnline('ann', 'p2:s7', 1000, T0)).toBe(false);
        expect(await store.online(['ann', 'bob'], T0 + 1)).toEqual([true, false]);
        expect(await store.sessionOffline('ann', 'p1:s1', T0 + 2)).toBe(false);
        expect(await other.sessionOffline('ann', 'p1:s1', T0 + 2)).toBe(false); // already gone
        expect(await other.sessionOffline('ann', 'p2:s7', T0 + 3)).toBe(true);
        expect(await store.online(['ann'], T0 + 3)).toEqual([false]);
        // A session nobody renews expires; a renewed one lives on.
        expect(await store.sessionOnline('bob', 'p1:s2', 1000, T0)).toBe(true);
        expect(await store.sessionOnline('cat', 'p1:s3', 1000, T0)).toBe(true);
        await other.renewSessions([{ user: 'cat', sessionKey: 'p1:s3' }, { user: 'nobody', sessionKey: 'x' }], 1000, T0 + 900);
        expect(await store.online(['bob', 'cat', 'nobody'], T0 + 1000)).toEqual([false, true, false]);
        expect(await store.sessionOnline('bob', 'p1:s9', 1000, T0 + 1500)).toBe(true);
        expect(await store.online(['cat'], T0 + 1900)).toEqual([false]);
      });
    });

    describe('errors', () => {
      it('rejects bad arguments and calls after close', async () => {
        const { store } = await open();
        const bad = { code: 'ERR_INVALID_ARGUMENT' };
        await expect(put(store, msg('', 'bob', 'x'), LIMITS, T0)).rejects.toMatchObject(bad);
        await expect(put(store, msg('ann', 'bob', 'x', { clientMsgId: '' }), LIMITS, T0)).rejects.toMatchObject(bad);
        await expect(put(store, msg('ann', 'bob', 'x', { clientMsgId: 'c'.repeat(65) }), LIMITS, T0)).rejects.toMatchObject(bad);
        await expect(store.history('ann', 'bob', -1, 10)).rejects.toMatchObject(bad);
        await expect(store.markRead('ann', '', 1)).rejects.toMatchObject(bad);
        await expect(store.sessionOnline('ann', 's', 0, T0)).rejects.toMatchObject(bad);
        await store.close();
        await store.close();
        await expect(put(store, msg('ann', 'bob', 'x'), LIMITS, T0)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
        await expect(store.conversations('ann', 1)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
      });
    });
  });
}
