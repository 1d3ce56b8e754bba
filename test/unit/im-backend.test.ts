import { afterEach, describe, expect, it } from 'vitest';
import { createImBackend, type ImBackend, type ImBackendOptions } from '../../src/backends/im/im-backend.js';
import { encodeImEvent } from '../../src/backends/im/im-codec.js';
import { ImErrorCode } from '../../src/backends/im/im-errors.js';
import { MemoryImStore } from '../../src/backends/im/memory-store.js';
import { Code } from '../../src/protocol/codes.js';
import { Priority } from '../../src/protocol/constants.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';
import { ImHarness } from '../helpers/im-harness.js';

let im: ImBackend | null = null;

function start(options: ImBackendOptions = {}): { h: ImHarness; p: FakeProxyStream; q: FakeProxyStream } {
  im = createImBackend(options);
  return { h: new ImHarness(im), p: new FakeProxyStream('proxy-1'), q: new FakeProxyStream('proxy-2') };
}

afterEach(async () => {
  await im?.close();
  im = null;
});

describe('IM backend', () => {
  it('closes a session without a device_id', () => {
    const { p } = start();
    p.open(1);
    im!.handlers.onOpen(p, 1, { userId: 'ann', business: 'im', metadata: {}, clientAddress: '', connectionId: 'c', clientSessionId: 1, reattach: false, claims: {}, maxPayload: 128 * 1024 });
    expect(p.closed.get(1)).toEqual({ code: Code.BACKEND_CLOSED, reason: 'im: metadata.device_id is required (1..128 bytes)' });
  });

  it('stores a message before acknowledging it, and delivers it to every device of both users but the sending one', async () => {
    const { h, p, q } = start();
    const annPhone = h.open(p, 'ann', 'phone');
    const annLaptop = h.open(q, 'ann', 'laptop');
    const bobPhone = h.open(q, 'bob', 'phone');
    for (const d of [annPhone, annLaptop, bobPhone]) await h.sync(d);
    const ack = await h.say(annPhone, 'bob', 'hello bob', 'uuid-1');
    expect(ack.sent).toMatchObject({ convSeq: 1, clientMsgId: 'uuid-1', duplicate: false });
    expect(ack.sent!.serverId).toMatch(/^[0-9a-f-]{36}$/);
    const history = await im!.store.history('ann', 'bob', 0, 10);
    expect(history.messages.map((m) => m.serverId)).toEqual([ack.sent!.serverId]);
    for (const d of [bobPhone, annLaptop]) {
      await h.until(() => h.texts(d).length === 1, `${d.user}/${d.device} gets it`);
      expect(h.texts(d)).toEqual(['ann>bob:hello bob']);
      expect(h.items(d)[0]!.message).toMatchObject({ serverId: ack.sent!.serverId, convSeq: 1, senderDevice: 'phone', sentAtMs: ack.sent!.sentAtMs });
    }
    // The sending phone has it (the Reply): its copy is passed over, and its cursor moves past it.
    await h.say(bobPhone, 'ann', 'hi ann');
    await h.until(() => h.texts(annPhone).length === 1, 'bob\'s answer on the phone');
    expect(h.texts(annPhone)).toEqual(['bob>ann:hi ann']);
    expect(h.items(annPhone)[0]!.inboxSeq).toBe(2);
    expect(im!.stats.messagesStored).toBe(2);
  });

  it('keeps messages for an offline device and gives them on Sync with unread counts, then Synced', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    await h.say(ann, 'bob', 'one');
    await h.say(ann, 'bob', 'two');
    const cat = h.open(p, 'cat', 'phone');
    await h.say(cat, 'bob', 'meow');
    const bob = h.open(p, 'bob', 'phone');
    const reply = await h.sync(bob);
    expect(reply.sync!.lastInboxSeq).toBe(3);
    expect(reply.sync!.unread).toEqual([
      { peer: 'cat', count: 1, lastConvSeq: 1 },
      { peer: 'ann', count: 2, lastConvSeq: 2 },
    ]);
    expect(h.texts(bob)).toEqual(['ann>bob:one', 'ann>bob:two', 'cat>bob:meow']);
    expect(h.items(bob).map((i) => i.inboxSeq)).toEqual([1, 2, 3]);
    // The reply comes before the entries, and Synced after them.
    const kinds = h.events(bob).map((e) => Object.keys(e)[0]);
    expect(kinds).toEqual(['reply', 'entries', 'synced']);
    expect(h.events(bob).at(-1)!.synced).toEqual({ lastSeq: 3, resumed: false });
  });

  it('stores a resent client_msg_id once and answers the original ids', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    const bob = h.open(p, 'bob', 'phone');
    await h.sync(bob);
    const first = await h.say(ann, 'bob', 'once', 'uuid-7');
    const again = await h.say(ann, 'bob', 'once', 'uuid-7');
    expect(again.sent).toEqual({ ...first.sent, duplicate: true });
    await h.until(() => h.texts(bob).length === 1, 'one message');
    await h.say(ann, 'bob', 'next');
    await h.until(() => h.texts(bob).length === 2, 'the next message');
    expect(h.texts(bob)).toEqual(['ann>bob:once', 'ann>bob:next']);
    expect(im!.stats).toMatchObject({ messagesStored: 2, duplicates: 1 });
  });

  it('sends again, on the next Sync, what a device did not acknowledge', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    let bob = h.open(p, 'bob', 'phone');
    await h.sync(bob);
    for (const t of ['a', 'b', 'c']) await h.say(ann, 'bob', t);
    await h.until(() => h.texts(bob).length === 3, 'three');
    h.request(bob, { ack: { inboxSeq: 1 } }, true);
    await h.until(async () => (await im!.hub.store.cursor('bob', 'phone')) === 1, 'cursor 1');
    h.close(bob);
    bob = h.open(p, 'bob', 'phone');
    // The device says it has 3; it acknowledged 1: 2 and 3 come again (the SDK drops them by server id).
    await h.sync(bob, 3);
    expect(h.texts(bob)).toEqual(['ann>bob:b', 'ann>bob:c']);
  });

  it('sends a read receipt to the peer\'s devices and the reader\'s other devices', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    const bobPhone = h.open(p, 'bob', 'phone');
    const bobTablet = h.open(p, 'bob', 'tablet');
    for (const d of [ann, bobPhone, bobTablet]) await h.sync(d);
    await h.say(ann, 'bob', 'm1');
    await h.say(ann, 'bob', 'm2');
    const read = await h.call(bobPhone, { read: { peer: 'ann', convSeq: 1 } });
    expect(read.read).toEqual({ readSeq: 1, unread: 1 });
    for (const d of [ann, bobTablet, bobPhone]) {
      await h.until(() => h.items(d).some((i) => i.read), `${d.user}/${d.device} gets the receipt`);
      expect(h.items(d).find((i) => i.read)!.read).toMatchObject({ reader: 'bob', peer: 'ann', convSeq: 1 });
    }
    // A repeat moves nothing and sends nothing new.
    expect((await h.call(bobTablet, { read: { peer: 'ann', convSeq: 1 } })).read).toEqual({ readSeq: 1, unread: 1 });
    await h.say(ann, 'bob', 'm3');
    await h.until(() => h.texts(bobTablet).length === 3, 'm3');
    expect(h.items(bobTablet).filter((i) => i.read)).toHaveLength(1);
    expect(im!.stats.receipts).toBe(1);
    const sync = await h.call(bobTablet, { sync: { afterSeq: 100 } });
    expect(sync.sync!.unread).toEqual([{ peer: 'ann', count: 2, lastConvSeq: 3 }]);
  });

  it('recalls a message within the window: tombstones everywhere, history shows it recalled', async () => {
    let clock = 1_700_000_000_000;
    const { h, p } = start({ now: () => clock, recallWindowMs: 60_000 });
    const ann = h.open(p, 'ann', 'phone');
    const bob = h.open(p, 'bob', 'phone');
    await h.sync(bob);
    const sent = await h.say(ann, 'bob', 'oops');
    await h.say(bob, 'ann', 'what?');
    expect(await h.call(bob, { recall: { peer: 'ann', convSeq: 1 } })).toMatchObject({ ok: false, errorCode: ImErrorCode.PERMISSION_DENIED });
    expect(await h.call(ann, { recall: { peer: 'bob', convSeq: 9 } })).toMatchObject({ ok: false, errorCode: ImErrorCode.NOT_FOUND });
    clock += 30_000;
    expect((await h.call(ann, { recall: { peer: 'bob', convSeq: 1 } })).ok).toBe(true);
    await h.until(() => h.items(bob).some((i) => i.recall), 'the tombstone');
    expect(h.items(bob).find((i) => i.recall)!.recall).toEqual({ serverId: sent.sent!.serverId, sender: 'ann', recipient: 'bob', convSeq: 1, recalledAtMs: clock });
    const page = await h.call(bob, { history: { peer: 'ann', beforeSeq: 0, limit: 10 } });
    expect(page.history!.messages.map((m) => [m.convSeq, m.recalled, Buffer.from(m.body).toString()])).toEqual([
      [1, true, ''],
      [2, false, 'what?'],
    ]);
    clock += 60_001;
    expect(await h.call(bob, { recall: { peer: 'ann', convSeq: 2 } })).toMatchObject({ ok: false, errorCode: ImErrorCode.RECALL_EXPIRED });
    expect(im!.stats.recalls).toBe(1);
  });

  it('passes typing on at low priority, rate-limited, and never stores it', async () => {
    const { h, p } = start({ typingRate: 1 });
    const ann = h.open(p, 'ann', 'phone');
    const bob = h.open(p, 'bob', 'phone');
    await h.sync(bob);
    for (let i = 0; i < 5; i++) h.request(ann, { typing: { to: 'bob' } }, true);
    await im!.settled();
    await h.until(() => h.events(bob).filter((e) => e.typing).length === 2, 'two typing events (the burst)');
    const typing = (bob.stream.inbox.get(bob.session) ?? []).filter((r) => r.priority === Priority.LOW);
    expect(typing).toHaveLength(2);
    expect(h.events(bob).find((e) => e.typing)!.typing!.from).toBe('ann');
    expect(await im!.hub.store.lastSeq('bob')).toBe(0);
  });

  it('refuses with documented codes: blocked, too large, to yourself, a bad client id, over the rate', async () => {
    const { h, p } = start({ maxBodyBytes: 10, sendRate: 1, sendBurst: 2 });
    const ann = h.open(p, 'ann', 'phone');
    const bob = h.open(p, 'bob', 'phone');
    expect((await h.call(bob, { block: { user: 'ann' } })).ok).toBe(true);
    expect((await h.call(bob, { listBlocked: { after: '' } })).blocked).toEqual({ users: ['ann'], hasMore: false });
    const send = (to: string, body: string, clientMsgId = `c-${body}`) => h.call(ann, { send: { to, body: Buffer.from(body), clientMsgId } });
    expect(await send('bob', 'hi')).toMatchObject({ ok: false, errorCode: ImErrorCode.BLOCKED });
    expect(await send('bob', 'x'.repeat(11))).toMatchObject({ ok: false, errorCode: ImErrorCode.TOO_LARGE });
    expect(await send('ann', 'me')).toMatchObject({ ok: false, errorCode: ImErrorCode.BAD_REQUEST });
    expect(await send('bob', 'id', '')).toMatchObject({ ok: false, errorCode: ImErrorCode.BAD_REQUEST });
    expect((await h.call(bob, { unblock: { user: 'ann' } })).ok).toBe(true);
    expect((await send('bob', 'ok1')).ok).toBe(true);
    const limited = await send('bob', 'ok2');
    // The refused send to bob took a token too: spamming someone who blocked you counts.
    expect(limited).toMatchObject({ ok: false, errorCode: ImErrorCode.RATE_LIMITED, retryAfterMs: 1000 });
    expect(im!.stats.refused).toMatchObject({ blocked: 1, too_large: 1, bad_request: 2, rate_limited: 1 });
  });

  it('refuses requests over the per-user request rate, sends and acks aside', async () => {
    const { h, p } = start({ requestRate: 2 });
    const ann = h.open(p, 'ann', 'phone');
    const ids = [1, 2, 3, 4, 5].map(() => h.request(ann, { listBlocked: { after: '' } }));
    await im!.settled();
    expect(ids.map((id) => h.replyTo(ann, id)?.errorCode)).toEqual(['', '', '', '', ImErrorCode.RATE_LIMITED]);
    expect(h.replyTo(ann, ids[4]!)?.retryAfterMs).toBe(500);
    expect((await h.call(ann, { send: { to: 'bob', body: Buffer.from('x'), clientMsgId: 'c' } })).ok).toBe(true);
  });

  it('pages a conversation\'s history backwards', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    for (let i = 1; i <= 7; i++) await h.say(ann, 'bob', `m${i}`);
    const bob = h.open(p, 'bob', 'new-phone');
    const latest = await h.call(bob, { history: { peer: 'ann', beforeSeq: 0, limit: 3 } });
    expect(latest.history!.messages.map((m) => m.convSeq)).toEqual([5, 6, 7]);
    expect(latest.history!.hasMore).toBe(true);
    const older = await h.call(bob, { history: { peer: 'ann', beforeSeq: 5, limit: 0 } });
    expect(older.history!.messages.map((m) => Buffer.from(m.body).toString())).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(older.history).toMatchObject({ hasMore: false, oldestRetainedSeq: 1 });
  });

  it('tells watchers when a user comes online and goes offline, any device counting', async () => {
    const { h, p, q } = start({ maxWatched: 2 });
    const ann = h.open(p, 'ann', 'phone');
    const watch = await h.call(ann, { watchPresence: { users: ['bob', 'cat'] } });
    expect(watch.presence!.users.map((u) => [u.user, u.online])).toEqual([
      ['bob', false],
      ['cat', false],
    ]);
    const bobPhone = h.open(q, 'bob', 'phone');
    await h.until(() => h.events(ann).some((e) => e.presence?.online === true), 'online');
    const bobLaptop = h.open(p, 'bob', 'laptop');
    h.close(bobPhone);
    await im!.settled();
    h.close(bobLaptop);
    await h.until(() => h.events(ann).some((e) => e.presence?.online === false), 'offline');
    expect(h.events(ann).flatMap((e) => (e.presence ? [`${e.presence.user}:${e.presence.online}`] : []))).toEqual(['bob:true', 'bob:false']);
    expect(await h.call(ann, { watchPresence: { users: ['a', 'b', 'c'] } })).toMatchObject({ ok: false, errorCode: ImErrorCode.TOO_MANY_WATCHED });
  });

  it('answers a malformed request with request id 0, and a request of no known kind with its id', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    im!.handlers.onData(p, ann.session, Buffer.from([0xff, 0xff, 0xff]), Priority.HIGH);
    expect(h.replyTo(ann, 0)).toMatchObject({ ok: false, errorCode: ImErrorCode.BAD_REQUEST });
    expect(await h.call(ann, {})).toMatchObject({ ok: false, errorCode: ImErrorCode.BAD_REQUEST, errorMessage: 'im request: no request kind set' });
  });

  it('resumes delivery for a session moved here after a failure, from the device\'s cursor, unasked', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    const bob = h.open(p, 'bob', 'phone');
    await h.sync(bob);
    await h.say(ann, 'bob', 'a');
    await h.say(ann, 'bob', 'b');
    await h.until(() => h.texts(bob).length === 2, 'two');
    h.request(bob, { ack: { inboxSeq: 1 } }, true);
    await h.until(async () => (await im!.hub.store.cursor('bob', 'phone')) === 1, 'cursor 1');
    h.close(bob);
    const moved = h.open(p, 'bob', 'phone', true);
    await h.until(() => h.events(moved).some((e) => e.synced), 'synced');
    expect(h.events(moved).find((e) => e.synced)!.synced).toEqual({ lastSeq: 2, resumed: true });
    expect(h.texts(moved)).toEqual(['ann>bob:b']);
    await h.say(ann, 'bob', 'c');
    await h.until(() => h.texts(moved).length === 2, 'live');
  });

  it('ends a half-closed session once the Replies it is owed are out, and the user goes offline', async () => {
    const { h, p } = start();
    const ann = h.open(p, 'ann', 'phone');
    const watcher = h.open(p, 'cat', 'phone');
    await h.call(watcher, { watchPresence: { users: ['ann'] } });
    const id = h.request(ann, { send: { to: 'bob', body: Buffer.from('last words'), clientMsgId: 'c-last' } });
    im!.handlers.onHalfClose!(p, ann.session, 0, '');
    // The send in progress is still answered, then the session ends with code 0.
    await h.until(() => p.closed.has(ann.session), 'the session ended');
    expect(h.replyTo(ann, id)).toMatchObject({ ok: true, sent: { convSeq: 1 } });
    const events = p.inbox.get(ann.session)!;
    expect(p.closed.get(ann.session)).toEqual({ code: 0, reason: '' });
    expect(events.length).toBeGreaterThan(0);
    expect(im!.sessions).toBe(1);
    await h.until(() => h.events(watcher).some((e) => e.presence?.online === false), 'ann offline');
    // With nothing owed it ends at once.
    const bob = h.open(p, 'bob', 'phone');
    im!.handlers.onHalfClose!(p, bob.session, 0, '');
    expect(p.closed.get(bob.session)).toEqual({ code: 0, reason: '' });
    expect(im!.sessions).toBe(1);
  });

  it('keeps every event within the client\'s max_payload, and refuses a session that cannot take one message', async () => {
    const maxBodyBytes = 1000;
    const { h, p } = start({ maxBodyBytes });
    p.open(99);
    im!.handlers.onOpen(p, 99, { userId: 'ann', business: 'im', metadata: { device_id: 'd' }, clientAddress: '', connectionId: 'c', clientSessionId: 1, reattach: false, claims: {}, maxPayload: 1500 });
    expect(p.closed.get(99)).toMatchObject({ code: Code.BACKEND_CLOSED, reason: expect.stringMatching(/^im: this connection's max_payload 1500 is below the \d+ bytes one message may take$/) });
    const maxPayload = 4096;
    const ann = h.open(p, 'ann', 'phone');
    for (let i = 1; i <= 12; i++) await h.say(ann, 'bob', `${i}`.padEnd(maxBodyBytes, '.'));
    const bob = h.open(p, 'bob', 'phone', false, maxPayload);
    await h.sync(bob);
    const sizes = p.inbox.get(bob.session)!.map((r) => r.payload.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(maxPayload);
    expect(h.items(bob).map((i) => i.inboxSeq)).toEqual([...Array(12).keys()].map((i) => i + 1));
    // A history page holds what fits, newest first kept, and says there is more.
    const page = await h.call(bob, { history: { peer: 'ann', beforeSeq: 0, limit: 10 } });
    expect(encodeImEvent({ reply: page }).length).toBeLessThanOrEqual(maxPayload);
    const seqs = page.history!.messages.map((m) => m.convSeq);
    expect(seqs.length).toBeGreaterThan(1);
    expect(seqs.at(-1)).toBe(12);
    expect(page.history!.hasMore).toBe(true);
    const rest = await h.call(bob, { history: { peer: 'ann', beforeSeq: seqs[0]!, limit: 10 } });
    expect(rest.history!.messages.at(-1)!.convSeq).toBe(seqs[0]! - 1);
    // Presence states that would not fit are refused up front.
    const many = Array.from({ length: 20 }, (_, i) => `${i}`.padStart(250, 'u'));
    expect(await h.call(bob, { watchPresence: { users: many } })).toMatchObject({ ok: false, errorCode: ImErrorCode.TOO_MANY_WATCHED });
  });

  it('bounds the block list and pages it in Replies that fit', async () => {
    const { h, p } = start({ maxBlocked: 30, maxBodyBytes: 1000 });
    const ann = h.open(p, 'ann', 'phone', false, 4096);
    const users = Array.from({ length: 30 }, (_, i) => `${String(i).padStart(2, '0')}`.padEnd(200, 'x'));
    for (const user of users) expect((await h.call(ann, { block: { user } })).ok).toBe(true);
    expect(await h.call(ann, { block: { user: 'one-more' } })).toMatchObject({ ok: false, errorCode: ImErrorCode.TOO_MANY_BLOCKED });
    expect((await h.call(ann, { block: { user: users[3]! } })).ok).toBe(true);
    const listed: string[] = [];
    let pages = 0;
    for (let more = true; more; pages++) {
      const r = await h.call(ann, { listBlocked: { after: listed.at(-1) ?? '' } });
      expect(encodeImEvent({ reply: r }).length).toBeLessThanOrEqual(4096);
      listed.push(...r.blocked!.users);
      more = r.blocked!.hasMore;
    }
    expect(listed).toEqual(users);
    expect(pages).toBeGreaterThan(1);
  });

  it('answers INTERNAL when the store fails, and counts it', async () => {
    const store = new MemoryImStore();
    store.storeMessage = async () => {
      throw new Error('store down');
    };
    const { h, p } = start({ store });
    const ann = h.open(p, 'ann', 'phone');
    expect(await h.call(ann, { send: { to: 'bob', body: Buffer.from('x'), clientMsgId: 'c' } })).toMatchObject({ ok: false, errorCode: ImErrorCode.INTERNAL });
    expect(im!.stats.refused.failed).toBe(1);
    expect(await im!.metrics.registry.getSingleMetricAsString('livemux_im_request_failures_total')).toMatch(/kind="send"} 1/);
    expect(await im!.metrics.registry.getSingleMetricAsString('livemux_im_sends_refused_total')).toMatch(/reason="failed"} 1/);
  });
});
