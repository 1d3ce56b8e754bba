/**
 * Presences of the Chat backend (src/backends/chat/presence.ts) driven through its handlers with
 * MemoryChatStore and fake proxy streams, with a short TTL: a stream that goes away takes its members
 * out at once; members held by an owner that died expire unless their session was moved to the new
 * owner; a presence lost while its proxy is attached is replaced and its members re-tagged; a user on two
 * proxies outlives one of them. The CLI refuses a TTL too short to renew.
 *
 * Time is the test's own (vitest fake timers, performance.now() included): with the real clock a busy
 * machine stalled the renewal timers past the TTL, and presences expired that the test kept alive.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createChatBackend, type ChatBackend } from '../../src/backends/chat/chat-backend.js';
import { WireRole, type ChatEvent } from '../../src/backends/chat/chat-codec.js';
import { runCliCaptured } from '../helpers/cli.js';
import { MemoryChatStore } from '../../src/backends/chat/memory-store.js';
import type { ChatStore } from '../../src/backends/chat/store.js';
import { ChatHarness } from '../helpers/chat-harness.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';

const ROOM = 'room-p';
const TTL = 120;
const backends: ChatBackend[] = [];

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
});

/** Lets `ms` of the test's clock pass, running the timers (renewals, sweeps) due in it in order. */
const sleep = (ms: number): Promise<void> => vi.advanceTimersByTimeAsync(ms).then(() => undefined);

function start(store: ChatStore = new MemoryChatStore()): ChatHarness {
  const chat = createChatBackend({ store, presenceTtlMs: TTL });
  backends.push(chat);
  return new ChatHarness(chat);
}

async function join(h: ChatHarness, stream: FakeProxyStream, session: number, userId: string, reattach = false): Promise<void> {
  h.open(stream, session, userId, { room: ROOM, reattach });
  if (reattach) {
    await h.chat.settled();
    return;
  }
  expect((await h.call(stream, session, { join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } })).ok).toBe(true);
}

async function listed(h: ChatHarness, stream: FakeProxyStream, session: number): Promise<{ ids: string[]; onlineCount: number }> {
  const reply = await h.call(stream, session, { listMembers: { cursor: '', limit: 100 } });
  return { ids: reply.members!.members.map((m) => m.userId).sort(), onlineCount: reply.members!.onlineCount };
}

const left = (events: ChatEvent[]): string[] => events.flatMap((e) => (e.memberLeft ? [e.memberLeft.userId] : [])).sort();

async function eventually(done: () => boolean | Promise<boolean>, what: string, timeoutMs = TTL * 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A view of `store` whose close does nothing: a second owner on the same data. */
function shared(store: ChatStore): ChatStore {
  return new Proxy(store, {
    get: (target, key) => (key === 'close' ? async () => undefined : Reflect.get(target, key, target)),
  });
}

describe('Chat presence', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    // The store reads node:perf_hooks' performance, the object the fake timers would replace, not patch.
    vi.spyOn(performance, 'now').mockImplementation(() => Date.now());
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  it('a proxy stream that goes away takes its members out at once, with MemberLeft', async () => {
    const h = start();
    const p1 = new FakeProxyStream('proxy-1');
    const p2 = new FakeProxyStream('proxy-2');
    await join(h, p1, 1, 'alice');
    await join(h, p2, 2, 'bob');
    await join(h, p2, 3, 'carol');
    p2.gone = true;
    h.chat.handlers.onProxyGone!(p2, 'test');
    await h.chat.settled();
    expect(left(h.events(p1, 1))).toEqual(['bob', 'carol']);
    expect(await listed(h, p1, 1)).toEqual({ ids: ['alice'], onlineCount: 1 });
    expect(await h.chat.metrics.registry.getSingleMetric('livemux_chat_presence_expired_total')!.get()).toMatchObject({ values: [{ value: 0 }] });
  });

  it('members held by an owner that died expire, unless the proxy moved their session to the new owner', async () => {
    const store = new MemoryChatStore();
    const a = start(shared(store));
    const b = start(store);
    const p1 = new FakeProxyStream('proxy-1');
    const p2 = new FakeProxyStream('proxy-2');
    await join(a, p1, 1, 'alice');
    await join(a, p2, 2, 'bob');
    // The owner dies: its presences are no longer renewed and nobody hears bob's session end.
    await backends.splice(0, 1)[0]!.close();
    const q1 = new FakeProxyStream('proxy-1');
    await join(b, q1, 1, 'alice', true);
    expect(await store.memberCount(ROOM)).toBe(2);
    await eventually(() => left(b.events(q1, 1)).length > 0, 'a MemberLeft');
    expect(left(b.events(q1, 1))).toEqual(['bob']);
    expect(await listed(b, q1, 1)).toEqual({ ids: ['alice'], onlineCount: 1 });
    // alice is held under the new owner's presence, renewed: she stays.
    await sleep(TTL * 3);
    expect(await listed(b, q1, 1)).toEqual({ ids: ['alice'], onlineCount: 1 });
    expect(await b.chat.metrics.registry.getSingleMetric('livemux_chat_presence_expired_total')!.get()).toMatchObject({ values: [{ value: 1 }] });
  });

  it('a presence lost while its proxy is attached is replaced and its members re-tagged', async () => {
    const store = new MemoryChatStore();
    const h = start(store);
    const p1 = new FakeProxyStream('proxy-1');
    await join(h, p1, 1, 'alice');
    await join(h, p1, 2, 'bob');
    const lost = (await store.member(ROOM, 'alice'))!.presence!;
    // As if this process stalled past the TTL: the presence is gone from the store.
    await store.endPresence(lost);
    await eventually(async () => (await store.member(ROOM, 'bob'))?.presence !== undefined && (await store.member(ROOM, 'bob'))?.presence !== lost, 'bob re-tagged');
    await eventually(async () => (await store.member(ROOM, 'alice'))?.presence !== lost, 'alice re-tagged');
    await sleep(TTL * 2);
    await h.chat.settled();
    expect(await listed(h, p1, 1)).toEqual({ ids: ['alice', 'bob'], onlineCount: 2 });
    // Whichever came first, the sweep or the re-tag, nobody was told that a present member left.
    expect(left(h.events(p1, 1))).toEqual([]);
    expect(h.events(p1, 1).filter((e) => e.memberJoined).map((e) => e.memberJoined!.userId)).toEqual(['bob']);
  });

  it('a user on two proxies stays a member when one of them goes', async () => {
    const store = new MemoryChatStore();
    const h = start(store);
    const p1 = new FakeProxyStream('proxy-1');
    const p2 = new FakeProxyStream('proxy-2');
    await join(h, p1, 1, 'bob');
    await join(h, p1, 2, 'alice');
    await join(h, p2, 3, 'alice');
    p2.gone = true;
    h.chat.handlers.onProxyGone!(p2, 'test');
    await h.chat.settled();
    expect((await store.member(ROOM, 'alice'))?.presence).toBe((await store.member(ROOM, 'bob'))?.presence);
    await sleep(TTL * 2);
    expect(await listed(h, p1, 1)).toEqual({ ids: ['alice', 'bob'], onlineCount: 2 });
    expect(left(h.events(p1, 1))).toEqual([]);
  });
});

describe('livemux chat-backend --presence-ttl-ms', () => {
  it.each(['10', '1500.5', '', 'soon'])('refuses %j', async (value) => {
    const run = await runCliCaptured(['chat-backend', '--port', '0', '--presence-ttl-ms', value]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`livemux chat-backend: option '--presence-ttl-ms <ms>' argument '${value}' is invalid. expected an integer >= 300 (ms)`);
  });
});
