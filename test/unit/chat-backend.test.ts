/**
 * The Chat room engine (src/backends/chat) driven through its BackendHandlers with MemoryChatStore and
 * fake proxy streams that act like the proxy for topics: ordering, edge fan-out, priorities under the
 * upstream limit, moderation and permission errors, history and gaps, attributes, reattach, idle TTL.
 */
import { readFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { Code } from '../../src/protocol/codes.js';
import { Priority } from '../../src/protocol/constants.js';
import { createChatBackend, type ChatBackend, type ChatBackendOptions } from '../../src/backends/chat/chat-backend.js';
import {
  ModerateAction,
  WireRole,
  decodeChatRequest,
  encodeChatRequest,
  type ChatEvent,
  type ChatRequest,
  type JoinRequest,
  type Reply,
} from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { RoomRateLimiter } from '../../src/backends/chat/room-rate-limiter.js';
import { WordFilter } from '../../src/backends/chat/word-filter.js';
import { ChatHarness } from '../helpers/chat-harness.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';

const ROOM = 'room-1';
let chat: ChatBackend;
let harness: ChatHarness;

afterEach(async () => {
  await chat?.close();
});

function start(options: ChatBackendOptions = {}): ChatBackend {
  chat = createChatBackend({ userRate: 10_000, userBurst: 10_000, ...options });
  harness = new ChatHarness(chat);
  return chat;
}

interface OpenOptions {
  role?: string;
  reattach?: boolean;
  room?: string;
}

/** Opens `session` on `stream` for `userId` in ROOM (or `opts.room`), as the proxy's SessionOpened would. */
function open(stream: FakeProxyStream, session: number, userId: string, opts: OpenOptions = {}): void {
  harness.open(stream, session, userId, { ...opts, room: opts.room ?? ROOM });
}

/** Sends a request (no await: requests queue in their room); returns its request id. */
function request(stream: FakeProxyStream, session: number, req: Omit<ChatRequest, 'requestId'>, priority: Priority = Priority.HIGH): number {
  return harness.request(stream, session, req, priority);
}

const events = (stream: FakeProxyStream, session: number): ChatEvent[] => harness.events(stream, session);
const replyTo = (stream: FakeProxyStream, session: number, requestId: number): Reply => harness.replyTo(stream, session, requestId);
const seqs = (stream: FakeProxyStream, session: number): number[] =>
  events(stream, session).flatMap((e) => (e.message ? [e.message.seq] : []));
const bodies = (stream: FakeProxyStream, session: number): string[] =>
  events(stream, session).flatMap((e) => (e.message ? [Buffer.from(e.message.body).toString()] : []));

async function join(stream: FakeProxyStream, session: number, userId: string, opts: OpenOptions & { sinceSeq?: number } = {}): Promise<Reply> {
  open(stream, session, userId, opts);
  const id = request(stream, session, { join: { sinceSeq: opts.sinceSeq ?? 0, role: WireRole.UNSPECIFIED } });
  await chat.settled();
  return replyTo(stream, session, id);
}

function send(stream: FakeProxyStream, session: number, text: string, priority: Priority = Priority.HIGH): number {
  return request(stream, session, { send: { body: Buffer.from(text), clientMsgId: '' } }, priority);
}

describe('ordering and edge fan-out', () => {
  it('gives every member the same sequence, each sender in its order, one publish per proxy', async () => {
    start();
    const p1 = new FakeProxyStream('proxy-1');
    const p2 = new FakeProxyStream('proxy-2');
    await join(p1, 1, 'alice');
    await join(p1, 2, 'bob');
    await join(p2, 1, 'carol');
    const publishesBefore = p1.publishes.length + p2.publishes.length;
    for (let i = 0; i < 20; i++) {
      send(p1, 1, `a${i}`);
      send(p2, 1, `c${i}`);
    }
    await chat.settled();
    const expected = Array.from({ length: 40 }, (_, i) => i + 1);
    expect(seqs(p1, 1)).toEqual(expected);
    expect(seqs(p1, 2)).toEqual(expected);
    expect(seqs(p2, 1)).toEqual(expected);
    // The interleaving is the order the requests arrived in, and each sender's order is kept.
    expect(bodies(p1, 2).filter((b) => b.startsWith('a'))).toEqual(Array.from({ length: 20 }, (_, i) => `a${i}`));
    expect(bodies(p2, 1)).toEqual(bodies(p1, 1));
    // 40 messages, 2 proxies: 80 publishes, whatever the number of members per proxy.
    expect(p1.publishes.length + p2.publishes.length - publishesBefore).toBe(80);
    expect(chat.stats.accepted.high).toBe(40);
  });

  it('answers a send with its seq and carries sender, priority and client_msg_id', async () => {
    start();
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    const id = request(p, 1, { send: { body: Buffer.from('hi'), clientMsgId: 'm-1' } }, Priority.LOW);
    await chat.settled();
    expect(replyTo(p, 1, id)).toMatchObject({ ok: true, sent: { seq: 1 } });
    expect(events(p, 1).find((e) => e.message)?.message).toMatchObject({ seq: 1, senderId: 'alice', priority: Priority.LOW, clientMsgId: 'm-1' });
  });

  it('announces joins and leaves to the others, and answers list_members', async () => {
    start();
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    await join(p, 2, 'bob', { role: 'host' });
    expect(events(p, 1).find((e) => e.memberJoined)?.memberJoined).toEqual({ userId: 'bob', role: WireRole.HOST, onlineCount: 2 });
    expect(events(p, 2).some((e) => e.memberJoined)).toBe(false);
    const list = request(p, 1, { listMembers: { cursor: '', limit: 1 } });
    await chat.settled();
    const page = replyTo(p, 1, list).members!;
    expect(page).toMatchObject({ onlineCount: 2, members: [{ userId: 'alice', role: WireRole.MEMBER }] });
    const next = request(p, 1, { listMembers: { cursor: page.nextCursor, limit: 10 } });
    await chat.settled();
    expect(replyTo(p, 1, next).members).toMatchObject({ members: [{ userId: 'bob' }], nextCursor: '' });
    request(p, 2, { leave: {} });
    await chat.settled();
    expect(events(p, 1).find((e) => e.memberLeft)?.memberLeft).toEqual({ userId: 'bob', onlineCount: 1 });
  });

  it('answers requests of a session that has not joined with NOT_JOINED, and garbage with BAD_REQUEST', async () => {
    start();
    const p = new FakeProxyStream();
    open(p, 1, 'alice');
    const id = send(p, 1, 'hi');
    chat.handlers.onData(p, 1, Buffer.from([0xff, 0xff, 0xff]), Priority.HIGH);
    await chat.settled();
    expect(replyTo(p, 1, id)).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_JOINED });
    expect(replyTo(p, 1, 0)).toMatchObject({ ok: false, errorCode: ChatErrorCode.BAD_REQUEST });
  });

  it('closes a session opened without metadata.room_id', () => {
    start();
    const p = new FakeProxyStream();
    open(p, 1, 'alice', { room: '' });
    expect(p.closed.get(1)).toEqual({ code: Code.BACKEND_CLOSED, reason: 'chat: metadata.room_id is required' });
  });
});

describe('sessions ending', () => {
  it('a proxy stream that ends takes its members out of the room; the others hear of it', async () => {
    start();
    const gone = new FakeProxyStream('proxy-1');
    const stays = new FakeProxyStream('proxy-2');
    await join(gone, 1, 'alice');
    await join(stays, 1, 'bob');
    const publishedBefore = gone.publishes.length;
    gone.gone = true;
    chat.handlers.onProxyGone!(gone, 'test');
    await chat.settled();
    expect(events(stays, 1).find((e) => e.memberLeft)?.memberLeft).toEqual({ userId: 'alice', onlineCount: 1 });
    send(stays, 1, 'still here');
    await chat.settled();
    expect(gone.publishes.length).toBe(publishedBefore);
    expect(seqs(stays, 1)).toEqual([1]);
  });

  it('a proxy holding two streams gets each message once, on its newest stream', async () => {
    start();
    const old = new FakeProxyStream('proxy-1');
    const newer = new FakeProxyStream('proxy-1');
    await join(old, 1, 'alice');
    await join(newer, 1, 'bob');
    const before = { old: old.publishes.length, newer: newer.publishes.length };
    send(newer, 1, 'hello');
    await chat.settled();
    expect({ old: old.publishes.length - before.old, newer: newer.publishes.length - before.newer }).toEqual({ old: 0, newer: 1 });
  });

  it('a session closed while its join is in flight does not stay a member', async () => {
    start();
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    open(p, 2, 'bob');
    request(p, 2, { join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } });
    p.drop(2);
    chat.handlers.onClose(p, 2, 0, 'client closed');
    await chat.settled();
    const list = request(p, 1, { listMembers: { cursor: '', limit: 10 } });
    await chat.settled();
    expect(replyTo(p, 1, list).members?.members.map((m) => m.userId)).toEqual(['alice']);
  });
});

describe('priorities under the upstream limit', () => {
  it('the limiter discards low before high and admits system and privileged senders always', () => {
    const limiter = new RoomRateLimiter(20, 0);
    const low = Array.from({ length: 50 }, () => limiter.admit(Priority.LOW, false, 0)).filter(Boolean).length;
    const high = Array.from({ length: 10 }, () => limiter.admit(Priority.HIGH, false, 0)).filter(Boolean).length;
    const system = Array.from({ length: 5 }, () => limiter.admit(Priority.SYSTEM, false, 0)).filter(Boolean).length;
    const privileged = limiter.admit(Priority.LOW, true, 0);
    expect({ low, high, system, privileged }).toEqual({ low: 10, high: 10, system: 5, privileged: true });
    // One second later the bucket is full again.
    expect(limiter.admit(Priority.LOW, false, 1000)).toBe(true);
  });

  it('a flood of low messages loses no high or system message, and every drop is counted', async () => {
    start({ roomRate: 20 });
    const p = new FakeProxyStream();
    await join(p, 1, 'fan');
    await join(p, 2, 'host', { role: 'host' });
    const lowIds = Array.from({ length: 50 }, (_, i) => send(p, 1, `low${i}`, Priority.LOW));
    const highIds = Array.from({ length: 10 }, (_, i) => send(p, 1, `high${i}`, Priority.HIGH));
    const systemIds = Array.from({ length: 5 }, (_, i) => send(p, 2, `sys${i}`, Priority.SYSTEM));
    await chat.settled();
    expect(highIds.every((id) => replyTo(p, 1, id).ok)).toBe(true);
    expect(systemIds.every((id) => replyTo(p, 2, id).ok)).toBe(true);
    const lowOk = lowIds.filter((id) => replyTo(p, 1, id).ok).length;
    expect(lowOk).toBeGreaterThanOrEqual(10);
    expect(lowOk).toBeLessThan(15);
    expect(replyTo(p, 1, lowIds[49]!)).toMatchObject({ ok: false, errorCode: ChatErrorCode.RATE_LIMITED });
    expect(chat.stats.dropped.room_rate).toEqual({ system: 0, high: 0, low: 50 - lowOk });
    expect(chat.stats.accepted).toEqual({ system: 5, high: 10, low: lowOk });
    // Accepted messages are numbered without holes: dropped ones never took a seq.
    expect(seqs(p, 1)).toEqual(Array.from({ length: lowOk + 15 }, (_, i) => i + 1));
  });

  it('limits each member\'s send rate', async () => {
    start({ userRate: 1, userBurst: 2 });
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    const ids = [send(p, 1, 'a'), send(p, 1, 'b'), send(p, 1, 'c')];
    await chat.settled();
    expect(ids.map((id) => replyTo(p, 1, id).errorCode)).toEqual(['', '', ChatErrorCode.RATE_LIMITED]);
    expect(chat.stats.dropped.user_rate.high).toBe(1);
  });
});

describe('moderation and permissions', () => {
  async function room(): Promise<FakeProxyStream> {
    start();
    const p = new FakeProxyStream();
    await join(p, 1, 'host', { role: 'host' });
    await join(p, 2, 'bob');
    await join(p, 3, 'carol');
    return p;
  }

  const moderate = (p: FakeProxyStream, session: number, action: number, targetUser: string, durationMs = 0): number =>
    request(p, session, { moderate: { action, targetUser, durationMs, reason: 'test' } });

  it('refuses moderation, attributes and system priority to members with PERMISSION_DENIED', async () => {
    const p = await room();
    const ids = [
      moderate(p, 2, ModerateAction.MUTE, 'carol'),
      request(p, 2, { setAttributes: { set: { k: 'v' }, delete: [] } }),
      send(p, 2, 'urgent', Priority.SYSTEM),
    ];
    await chat.settled();
    for (const id of ids) expect(replyTo(p, 2, id)).toMatchObject({ ok: false, errorCode: ChatErrorCode.PERMISSION_DENIED });
    expect(seqs(p, 3)).toEqual([]);
  });

  it('refuses a role the token does not grant, and a host moderating an admin', async () => {
    start();
    const p = new FakeProxyStream();
    open(p, 1, 'bob');
    const id = request(p, 1, { join: { sinceSeq: 0, role: WireRole.HOST } });
    await chat.settled();
    expect(replyTo(p, 1, id)).toMatchObject({ ok: false, errorCode: ChatErrorCode.PERMISSION_DENIED });
    await join(p, 2, 'host', { role: 'host' });
    await join(p, 3, 'admin', { role: 'admin' });
    const m = moderate(p, 2, ModerateAction.MUTE, 'admin');
    await chat.settled();
    expect(replyTo(p, 2, m)).toMatchObject({ ok: false, errorCode: ChatErrorCode.PERMISSION_DENIED });
  });

  it('mutes with an expiry and unmutes', async () => {
    let now = 1_000_000;
    start({ now: () => now });
    const p = new FakeProxyStream();
    await join(p, 1, 'host', { role: 'host' });
    await join(p, 2, 'bob');
    const m = moderate(p, 1, ModerateAction.MUTE, 'bob', 60_000);
    const s1 = send(p, 2, 'hello');
    await chat.settled();
    expect(replyTo(p, 1, m).ok).toBe(true);
    expect(replyTo(p, 2, s1)).toMatchObject({ ok: false, errorCode: ChatErrorCode.MUTED, retryAfterMs: 60_000 });
    now += 60_000;
    // A mute applies to the messages sequenced after it (docs/chat.md §4): each step waits for the last.
    const s2 = send(p, 2, 'hello again');
    await chat.settled();
    moderate(p, 1, ModerateAction.MUTE, 'bob');
    await chat.settled();
    const s3 = send(p, 2, 'muted for good');
    await chat.settled();
    moderate(p, 1, ModerateAction.UNMUTE, 'bob');
    await chat.settled();
    const s4 = send(p, 2, 'unmuted');
    await chat.settled();
    expect([s2, s3, s4].map((id) => replyTo(p, 2, id).errorCode)).toEqual(['', ChatErrorCode.MUTED, '']);
    expect(chat.stats.dropped.muted.high).toBe(2);
  });

  it('kick tells the member, closes its session with 205 and announces the leave', async () => {
    const p = await room();
    const id = moderate(p, 1, ModerateAction.KICK, 'bob');
    await chat.settled();
    expect(replyTo(p, 1, id).ok).toBe(true);
    expect(events(p, 2).at(-1)).toEqual({ kicked: { reason: 'test', by: 'host' } });
    expect(p.closed.get(2)).toEqual({ code: Code.BACKEND_CLOSED, reason: 'kicked' });
    expect(events(p, 3).find((e) => e.memberLeft)?.memberLeft).toEqual({ userId: 'bob', onlineCount: 2 });
    const again = moderate(p, 1, ModerateAction.KICK, 'bob');
    await chat.settled();
    expect(replyTo(p, 1, again)).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_FOUND });
  });

  it('ban closes the member\'s session and blocks rejoin until unban', async () => {
    const p = await room();
    moderate(p, 1, ModerateAction.BAN, 'bob');
    await chat.settled();
    expect(events(p, 2).at(-1)).toEqual({ banned: { reason: 'test', by: 'host', untilMs: 0 } });
    expect(p.closed.get(2)?.code).toBe(Code.BACKEND_CLOSED);
    expect(await join(p, 4, 'bob')).toMatchObject({ ok: false, errorCode: ChatErrorCode.BANNED });
    moderate(p, 1, ModerateAction.UNBAN, 'bob');
    await chat.settled();
    expect(await join(p, 5, 'bob')).toMatchObject({ ok: true });
  });

  it('whitelisted members may send system priority and pass the room limit', async () => {
    const p = await room();
    // A send is checked when it arrives: each waits for the (un)whitelisting before it to be applied.
    moderate(p, 1, ModerateAction.WHITELIST, 'bob');
    await chat.settled();
    const ok = send(p, 2, 'pinned', Priority.SYSTEM);
    moderate(p, 1, ModerateAction.UNWHITELIST, 'bob');
    await chat.settled();
    const denied = send(p, 2, 'pinned again', Priority.SYSTEM);
    await chat.settled();
    expect(replyTo(p, 2, ok).ok).toBe(true);
    expect(replyTo(p, 2, denied).errorCode).toBe(ChatErrorCode.PERMISSION_DENIED);
  });

  it('rejects or masks sensitive words', async () => {
    start({ words: ['badword'] });
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    const id = send(p, 1, 'a BadWord here');
    await chat.settled();
    expect(replyTo(p, 1, id)).toMatchObject({ ok: false, errorCode: ChatErrorCode.REJECTED_WORD });
    expect(chat.stats.dropped.word.high).toBe(1);
    const masker = new WordFilter(['bad', 'badword', '坏'], 'mask');
    expect(masker.apply(Buffer.from('a BadWord, 坏 bad!'))).toEqual({ kind: 'masked', body: Buffer.from('a *******, * ***!') });
    expect(masker.apply(Buffer.from('fine')).kind).toBe('clean');
  });
});

describe('history and recovery', () => {
  async function roomWith(messages: number, options: ChatBackendOptions = {}): Promise<FakeProxyStream> {
    start({ joinHistory: 3, history: { maxLength: 5 }, ...options });
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    for (let i = 1; i <= messages; i++) send(p, 1, `m${i}`);
    await chat.settled();
    return p;
  }

  it('since_seq 0 gets Joined then the latest N', async () => {
    const p = await roomWith(10);
    await join(p, 2, 'bob');
    const got = events(p, 2);
    expect(got[0]?.joined).toMatchObject({ seq: 10, onlineCount: 2, role: WireRole.MEMBER });
    expect(seqs(p, 2)).toEqual([8, 9, 10]);
  });

  it('a member reconnecting with its last seq gets exactly what it missed', async () => {
    const p = await roomWith(10);
    await join(p, 2, 'bob', { sinceSeq: 7 });
    expect(seqs(p, 2)).toEqual([8, 9, 10]);
    expect(events(p, 2).some((e) => e.gap)).toBe(false);
    await join(p, 3, 'carol', { sinceSeq: 10 });
    expect(seqs(p, 3)).toEqual([]);
  });

  it('sends a HistoryGap before the retained messages when some were trimmed', async () => {
    const p = await roomWith(10);
    await join(p, 2, 'bob', { sinceSeq: 2 });
    const got = events(p, 2).filter((e) => !e.reply);
    expect(got[0]?.joined?.seq).toBe(10);
    expect(got[1]).toEqual({ gap: { fromSeq: 3, toSeq: 5 } });
    expect(seqs(p, 2)).toEqual([6, 7, 8, 9, 10]);
  });

  it('pages history on request', async () => {
    const p = await roomWith(10);
    const id = request(p, 1, { history: { afterSeq: 7, limit: 2 } });
    await chat.settled();
    const page = replyTo(p, 1, id).history!;
    expect(page.oldestSeq).toBe(6);
    expect(page.messages.map((m) => [m.seq, Buffer.from(m.body).toString()])).toEqual([
      [8, 'm8'],
      [9, 'm9'],
    ]);
  });

  it('a moved (reattach) session is back in its room silently', async () => {
    const p = await roomWith(2);
    const moved = new FakeProxyStream('proxy-2');
    open(moved, 9, 'dave', { reattach: true });
    await chat.settled();
    expect(events(p, 1).some((e) => e.memberJoined)).toBe(false);
    expect(events(moved, 9)).toEqual([]);
    send(p, 1, 'after the move');
    await chat.settled();
    expect(seqs(moved, 9)).toEqual([3]);
  });

  it('drops an idle room after its TTL: the sequence starts again', async () => {
    const p = await roomWith(3, { idleTtlMs: 20 });
    request(p, 1, { leave: {} });
    await chat.settled();
    await new Promise((r) => setTimeout(r, 60));
    await chat.settled();
    expect(chat.rooms.has(ROOM)).toBe(false);
    const grant = await chat.store.acquireLease(ROOM, 'test', 1000);
    expect(grant.acquired).toBe(true);
    expect(await chat.store.nextSeq(ROOM, grant.acquired ? grant.token : 0)).toBe(1);
  });
});

describe('room attributes', () => {
  it('gives the full map on join and the changes in order afterwards', async () => {
    start();
    const p = new FakeProxyStream();
    await join(p, 1, 'host', { role: 'host' });
    await join(p, 2, 'bob');
    const a = request(p, 1, { setAttributes: { set: { seat1: 'alice', seat2: 'bob' }, delete: [] } });
    const b = request(p, 1, { setAttributes: { set: { seat2: 'carol' }, delete: ['seat1'] } });
    const c = request(p, 1, { setAttributes: { set: { x: 'y' }, delete: ['x'] } });
    await chat.settled();
    expect(replyTo(p, 1, a).attributes).toEqual({ version: 2 });
    expect(replyTo(p, 1, b).attributes).toEqual({ version: 4 });
    expect(replyTo(p, 1, c)).toMatchObject({ ok: false, errorCode: ChatErrorCode.BAD_REQUEST });
    expect(events(p, 2).flatMap((e) => (e.attributesChanged ? [e.attributesChanged] : []))).toEqual([
      { version: 2, previousVersion: 0, set: { seat1: 'alice', seat2: 'bob' }, deleted: [], by: 'host' },
      { version: 4, previousVersion: 2, set: { seat2: 'carol' }, deleted: ['seat1'], by: 'host' },
    ]);
    await join(p, 3, 'carol');
    expect(events(p, 3)[0]?.joined).toMatchObject({ attributes: { seat2: 'carol' }, attributesVersion: 4 });
  });
});

describe('protocol registry and vectors', () => {
  it('documents every error code in docs/chat.md, and nothing else', () => {
    const doc = readFileSync(joinPath(PACKAGE_ROOT, 'docs', 'chat.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## 8. Errors'), doc.indexOf('## 9.'));
    const documented = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented).toEqual(Object.values(ChatErrorCode));
  });

  it('encodes the test vector of docs/chat.md', () => {
    const hex = encodeChatRequest({ requestId: 1, join: { sinceSeq: 5 } as JoinRequest }).toString('hex');
    expect(hex).toBe('080112020805');
    expect(readFileSync(joinPath(PACKAGE_ROOT, 'docs', 'chat.md'), 'utf8')).toContain('`08 01 12 02 08 05`');
    expect(decodeChatRequest(Buffer.from(hex, 'hex'))).toEqual({ requestId: 1, join: { sinceSeq: 5, role: WireRole.UNSPECIFIED } });
  });
});
