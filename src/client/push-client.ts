/**
 * The SDK's typed Push client (docs/push.md §SDK): the always-on `push` session of an app. It keeps the
 * session open across reconnects, acknowledges each push once the app has it, and drops repeats, so the
 * server's at-least-once delivery reaches the app exactly once.
 */
import { EventEmitter } from 'node:events';
import { PRIORITY_NAMES, type PriorityName } from '../protocol/constants.js';
import { LivemuxError } from '../protocol/errors.js';
import { Deque } from '../util/deque.js';
import { decodePushEvent, encodePushRequest, type PushEvent, type PushRequest } from '../backends/push/push-codec.js';
import type { LivemuxClient } from './client.js';
import type { ClientSession } from './client-session.js';

/** One push, as the app receives it. */
export interface Push {
  readonly id: string;
  readonly data: Buffer;
  readonly priority: PriorityName;
  /** "" = none. */
  readonly collapseKey: string;
  /** When the push API accepted it (ms since the epoch). */
  readonly sentAtMs: number;
  /** 0: sent to online devices only. */
  readonly expiresAtMs: number;
  readonly audience: 'users' | 'topic' | 'all';
  /** The topic it was sent to (audience `topic`), else "". */
  readonly topic: string;
}

export interface PushClientOptions {
  /** This install's stable id (1-128 of A-Z a-z 0-9 . _ : -): pushes kept for offline devices are kept per device. */
  deviceId: string;
  /** Push ids remembered to drop repeats (default 10,000). A mobile SDK keeps them across app restarts. */
  dedupeCapacity?: number;
}

export type PushClientEvents = {
  /** A push the app has not seen before (it is acknowledged once the listeners ran). */
  push: [push: Push];
  /** The pushes kept while the device was away have all been sent (after each (re)open). */
  synced: [backlog: number, topics: string[]];
  /** The session ended for good (the client closed, or a code that must not be retried). */
  close: [code: number, reason: string];
};

const AUDIENCES = ['users', 'topic', 'all'] as const;

/**
 * Opens the push session of `client` for one device. Resolves once the session is open (the backlog
 * follows, then `'synced'`): listeners attached in the same turn as the promise resolves miss nothing.
 * Pushes reach `'push'` listeners when there are any, else async iteration.
 */
export async function openPush(client: LivemuxClient, options: PushClientOptions): Promise<PushClient> {
  const session = await client.open('push', { device_id: options.deviceId }, { reopen: true });
  return new PushClient(session, options.dedupeCapacity ?? 10_000);
}

/**
 * Guarantees: each push id reaches the app at most once while it is among the last `dedupeCapacity`
 * ids seen; every push received is acknowledged (repeats too, so the server stops resending them);
 * requests (subscribe, unsubscribe, topics) are answered in order, and reject with ERR_PUSH_INTERRUPTED
 * when the session is reopened before their reply came (retry them: they are idempotent).
 */
export class PushClient extends EventEmitter<PushClientEvents> implements AsyncIterable<Push> {
  private readonly seen = new Set<string>();
  private readonly seenOrder = new Deque<string>();
  private readonly queue = new Deque<Push>();
  private readonly readers: ((r: IteratorResult<Push>) => void)[] = [];
  private readonly pending = new Map<number, { resolve: (topics: string[]) => void; reject: (err: Error) => void }>();
  private acks: string[] = [];
  private ackTimer: NodeJS.Immediate | null = null;
  private nextRequestId = 1;
  private ended = false;

  /** @internal Use {@link openPush}. */
  constructor(
    private readonly session: ClientSession,
    private readonly dedupeCapacity: number,
  ) {
    super();
    // From the next turn: the app attaches its listeners right after `await openPush(...)`, and must
    // not miss the backlog or Synced that arrived with OPEN_OK (the session holds them until then).
    setImmediate(() => session.on('data', (payload) => this.onData(payload)));
    session.on('reopened', () => this.interrupt());
    session.on('close', (code, reason) => {
      this.ended = true;
      this.interrupt();
      for (const read of this.readers.splice(0)) read({ done: true, value: undefined });
      this.emit('close', code, reason);
    });
  }

  /** Adds this device to topics (kept across sessions); resolves with all its topics. */
  subscribe(topics: string[]): Promise<string[]> {
    return this.request({ subscribe: { topics } });
  }

  unsubscribe(topics: string[]): Promise<string[]> {
    return this.request({ unsubscribe: { topics } });
  }

  /** The device's topics. */
  topics(): Promise<string[]> {
    return this.request({ listTopics: {} });
  }

  /** Sends pending acks, then closes the session. */
  async close(): Promise<void> {
    this.flushAcks();
    await this.session.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<Push> {
    return {
      next: () => {
        const push = this.queue.shift();
        if (push !== undefined) {
          this.ack(push.id);
          return Promise.resolve({ done: false, value: push });
        }
        if (this.ended) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve) => this.readers.push(resolve));
      },
      return: () => Promise.resolve({ done: true, value: undefined }),
    };
  }

  private request(kind: Omit<PushRequest, 'requestId'>): Promise<string[]> {
    if (this.ended) return Promise.reject(new LivemuxError('ERR_PUSH_CLOSED', 'push: the session is closed'));
    const requestId = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      this.session.send(encodePushRequest({ requestId, ...kind })).catch((err: Error) => {
        this.pending.delete(requestId);
        reject(err);
      });
    });
  }

  private onData(payload: Buffer): void {
    let event: PushEvent;
    try {
      event = decodePushEvent(payload);
    } catch {
      return; // not ours to crash on: a newer server's event this SDK cannot read
    }
    if (event.push !== undefined) {
      const p = event.push;
      if (this.seen.has(p.id)) {
        this.ack(p.id);
        return;
      }
      this.remember(p.id);
      const push: Push = {
        id: p.id,
        data: Buffer.from(p.data),
        priority: PRIORITY_NAMES[p.priority] ?? 'high',
        collapseKey: p.collapseKey,
        sentAtMs: p.sentAtMs,
        expiresAtMs: p.expiresAtMs,
        audience: AUDIENCES[p.audience] ?? 'users',
        topic: p.topic,
      };
      this.deliver(push);
    } else if (event.reply !== undefined) {
      const waiter = this.pending.get(event.reply.requestId);
      if (waiter === undefined) return;
      this.pending.delete(event.reply.requestId);
      if (event.reply.ok) waiter.resolve(event.reply.topics);
      else waiter.reject(new LivemuxError(`ERR_PUSH_${event.reply.errorCode}`, event.reply.errorMessage));
    } else if (event.synced !== undefined) {
      this.emit('synced', event.synced.backlog, event.synced.topics);
    }
  }

  private deliver(push: Push): void {
    if (this.listenerCount('push') > 0) {
      this.emit('push', push);
      this.ack(push.id);
      return;
    }
    const reader = this.readers.shift();
    if (reader !== undefined) {
      this.ack(push.id);
      reader({ done: false, value: push });
    } else this.queue.push(push);
  }

  private remember(id: string): void {
    this.seen.add(id);
    this.seenOrder.push(id);
    while (this.seenOrder.length > this.dedupeCapacity) this.seen.delete(this.seenOrder.shift()!);
  }

  /** Acks of one turn travel in one request (fire-and-forget: request_id 0). */
  private ack(id: string): void {
    this.acks.push(id);
    this.ackTimer ??= setImmediate(() => this.flushAcks());
  }

  private flushAcks(): void {
    if (this.ackTimer !== null) clearImmediate(this.ackTimer);
    this.ackTimer = null;
    while (this.acks.length > 0 && !this.ended) {
      // Lost with the connection if it drops now: the server resends, and the repeat is acked then.
      this.session.send(encodePushRequest({ requestId: 0, ack: { ids: this.acks.splice(0, 1000) } })).catch(() => {});
    }
  }

  private interrupt(): void {
    for (const waiter of this.pending.values()) waiter.reject(new LivemuxError('ERR_PUSH_INTERRUPTED', 'push: the session was reopened before the reply came; retry'));
    this.pending.clear();
  }
}
