/**
 * The Push backend's device sessions driven directly through their handlers, over a stand-in proxy
 * stream: the order requests are answered in, whatever path they take, and what acks count.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ProxyStreamContext } from '../../src/backends/kit/backend-server.js';
import { MemoryPushStore } from '../../src/backends/push/memory-store.js';
import { createPushBackend, type PushBackend } from '../../src/backends/push/push-backend.js';
import { decodePushEvent, encodePushRequest, type PushEvent, type PushRequest } from '../../src/backends/push/push-codec.js';

/** A proxy stream that records what the backend delivers, decoded, per session. */
class StandInStream {
  readonly events: { session: number; event: PushEvent }[] = [];
  readonly sessions = new Set<number>();
  readonly ctx = {
    proxyId: 'proxy-1',
    peer: 'test',
    gone: false,
    sessions: this.sessions,
    writable: true,
    stats: {},
    deliver: (session: number, payload: Buffer) => this.events.push({ session, event: decodePushEvent(payload) }),
    close: () => {},
    subscribe: () => {},
    unsubscribe: () => {},
    publish: () => {},
    onDrain: (fn: () => void) => fn(),
  } as unknown as ProxyStreamContext;

  replies(session: number): { requestId: number; ok: boolean; errorCode: string }[] {
    return this.events.filter((e) => e.session === session && e.event.reply !== undefined).map((e) => e.event.reply!);
  }
}

/** A memory store whose `subscribe` waits for `openGate()`: a store round trip in flight. */
class SlowSubscribeStore extends MemoryPushStore {
  private gate: (() => void) | null = null;
  override async subscribe(...args: Parameters<MemoryPushStore['subscribe']>): Promise<string[] | null> {
    await new Promise<void>((resolve) => (this.gate = resolve));
    return super.subscribe(...args);
  }
  openGate(): void {
    this.gate?.();
  }
}

const KEY = 'device-sessions-key-0123456789';
let push: PushBackend | null = null;
afterEach(async () => {
  await push?.close();
  push = null;
});

async function open(store: MemoryPushStore): Promise<{ stream: StandInStream; send: (request: PushRequest) => void }> {
  push = createPushBackend({ store, apiKeys: [{ name: 'k', key: KEY, rate: 1000, burst: 1000 }] });
  const stream = new StandInStream();
  push.handlers.onAttach!(stream.ctx);
  stream.sessions.add(1);
  push.handlers.onOpen(stream.ctx, 1, { userId: 'ann', metadata: { device_id: 'phone' } } as never);
  await until(() => stream.events.some((e) => e.event.synced !== undefined));
  return { stream, send: (request) => push!.handlers.onData(stream.ctx, 1, encodePushRequest(request), 1) };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    if (i > 1000) throw new Error('condition never held');
    await new Promise((r) => setImmediate(r));
  }
}

describe('push device sessions', () => {
  it('answers an ack that arrives behind a request still at the store after that request, in order', async () => {
    const store = new SlowSubscribeStore();
    const { stream, send } = await open(store);
    send({ requestId: 1, subscribe: { topics: ['news'] } });
    send({ requestId: 2, ack: { ids: ['p-1'] } });
    await new Promise((r) => setImmediate(r));
    expect(stream.replies(1)).toEqual([]);
    store.openGate();
    await until(() => stream.replies(1).length === 2);
    expect(stream.replies(1).map((r) => [r.requestId, r.ok])).toEqual([
      [1, true],
      [2, true],
    ]);
    // With nothing in flight, an ack is answered in the same turn.
    send({ requestId: 3, ack: { ids: ['p-2'] } });
    expect(stream.replies(1).at(-1)).toMatchObject({ requestId: 3, ok: true });
  });

  it('refuses an ack of more than 1000 ids with BAD_REQUEST and goes on with the next request', async () => {
    const { stream, send } = await open(new MemoryPushStore());
    send({ requestId: 4, ack: { ids: Array.from({ length: 1001 }, (_, i) => `p-${i}`) } });
    send({ requestId: 5, listTopics: {} });
    await until(() => stream.replies(1).length === 2);
    expect(stream.replies(1)).toMatchObject([
      { requestId: 4, ok: false, errorCode: 'BAD_REQUEST' },
      { requestId: 5, ok: true },
    ]);
  });

  it('counts a device\'s acks of a push to all once, repeats and unknown ids not at all', async () => {
    const { stream, send } = await open(new MemoryPushStore());
    const { id } = await push!.service.accept('k', { id: 'all-1', to: { all: true }, data: 'x' });
    send({ requestId: 0, ack: { ids: [id, id, 'no-such-push'] } });
    send({ requestId: 0, ack: { ids: [id] } });
    await push!.devices.settled();
    expect(await push!.service.status('k', id)).toMatchObject({ targeted: 1, delivered: 1, pending: 0 });
    expect(stream.replies(1)).toEqual([]); // request id 0: fire and forget
  });
});
