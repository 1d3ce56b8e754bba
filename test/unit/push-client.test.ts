/**
 * The SDK push client's own logic (dedupe, acks, request replies) over a stand-in session: the server
 * cannot be made to repeat a push on demand, and repeats are exactly what this must handle.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Audience, decodePushRequest, encodePushEvent, type PushRequest } from '../../src/backends/push/push-codec.js';
import type { ClientSession } from '../../src/client/client-session.js';
import { PushClient, type Push } from '../../src/client/push-client.js';

class StandInSession extends EventEmitter {
  readonly sent: PushRequest[] = [];
  send(payload: Buffer): Promise<void> {
    this.sent.push(decodePushRequest(payload));
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.emit('close', 0, '');
    return Promise.resolve();
  }
  push(id: string, data = id): void {
    const event = encodePushEvent({ push: { id, data: Buffer.from(data), priority: 2, collapseKey: '', sentAtMs: 1, expiresAtMs: 0, audience: Audience.ALL, topic: '' } });
    this.emit('data', event, 'low');
  }
  acked(): string[] {
    return this.sent.flatMap((r) => r.ack?.ids ?? []);
  }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function client(capacity = 10): Promise<{ session: StandInSession; push: PushClient; got: Push[] }> {
  const session = new StandInSession();
  const push = new PushClient(session as unknown as ClientSession, capacity);
  const got: Push[] = [];
  push.on('push', (p) => got.push(p));
  await turn(); // the client starts reading on the next turn
  return { session, push, got };
}

describe('PushClient', () => {
  it('hands each id to the app once, and acknowledges every copy, batched per turn', async () => {
    const { session, got } = await client();
    session.push('a');
    session.push('b');
    session.push('a');
    await turn();
    expect(got.map((p) => p.id)).toEqual(['a', 'b']);
    expect(got[1]).toMatchObject({ priority: 'low', audience: 'all' });
    expect(session.acked()).toEqual(['a', 'b', 'a']);
    expect(session.sent.filter((r) => r.ack !== undefined)).toHaveLength(1);
    expect(session.sent[0]!.requestId).toBe(0);
  });

  it('remembers the last `capacity` ids only', async () => {
    const { session, got } = await client(2);
    for (const id of ['a', 'b', 'c', 'a']) session.push(id);
    expect(got.map((p) => p.id)).toEqual(['a', 'b', 'c', 'a']);
    session.push('c');
    expect(got).toHaveLength(4);
  });

  it('delivers to the iterator when nobody listens, acknowledging as it yields', async () => {
    const session = new StandInSession();
    const push = new PushClient(session as unknown as ClientSession, 10);
    await turn();
    session.push('x');
    await turn();
    expect(session.acked()).toEqual([]);
    const it = push[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ id: 'x' });
    await turn();
    expect(session.acked()).toEqual(['x']);
  });

  it('resolves requests with their reply and rejects them when the session is reopened first', async () => {
    const { session, push } = await client();
    const subscribed = push.subscribe(['a']);
    await turn();
    const id = session.sent[0]!.requestId;
    session.emit('data', encodePushEvent({ reply: { requestId: id, ok: true, errorCode: '', errorMessage: '', topics: ['a'] } }), 'high');
    expect(await subscribed).toEqual(['a']);
    const refused = push.subscribe(['bad topic']);
    await turn();
    session.emit('data', encodePushEvent({ reply: { requestId: session.sent[1]!.requestId, ok: false, errorCode: 'BAD_TOPIC', errorMessage: 'no', topics: [] } }), 'high');
    await expect(refused).rejects.toMatchObject({ code: 'ERR_PUSH_BAD_TOPIC' });
    const interrupted = push.topics();
    session.emit('reopened');
    await expect(interrupted).rejects.toMatchObject({ code: 'ERR_PUSH_INTERRUPTED' });
  });
});
