/**
 * A ProxyStreamContext for unit tests of backends: it records every command and acts like the proxy for
 * topics (a Publish reaches each subscribed session of this stream, but `excludeSession`), so a test
 * reads what each client would receive.
 */
import type { Priority } from '../../src/protocol/constants.js';
import { type ProxyStreamContext, newProxyStreamStats } from '../../src/backends/kit/backend-server.js';

export interface Received {
  readonly payload: Buffer;
  readonly priority: Priority;
}

export class FakeProxyStream implements ProxyStreamContext {
  gone = false;
  readonly peer = 'fake';
  readonly writable = true;
  readonly sessions = new Set<number>();
  readonly stats = newProxyStreamStats();
  /** What each session received (Deliver, or a Publish to one of its topics), in order. */
  readonly inbox = new Map<number, Received[]>();
  readonly closed = new Map<number, { code: number; reason: string }>();
  readonly publishes: { topic: string; payload: Buffer; priority: Priority; excludeSession?: number }[] = [];
  private readonly topics = new Map<string, Set<number>>();

  constructor(readonly proxyId = 'proxy-1') {}

  open(session: number): void {
    this.sessions.add(session);
    this.inbox.set(session, []);
  }

  /** The proxy ends the session (what the handlers' onClose follows). */
  drop(session: number): void {
    this.sessions.delete(session);
    for (const members of this.topics.values()) members.delete(session);
  }

  deliver(session: number, payload: Buffer, priority: Priority): void {
    if (this.sessions.has(session)) this.inbox.get(session)!.push({ payload, priority });
  }

  close(session: number, code: number, reason: string): void {
    this.closed.set(session, { code, reason });
    this.drop(session);
  }

  subscribe(session: number, topic: string): void {
    let members = this.topics.get(topic);
    if (members === undefined) this.topics.set(topic, (members = new Set()));
    members.add(session);
  }

  unsubscribe(session: number, topic: string): void {
    this.topics.get(topic)?.delete(session);
  }

  publish(topic: string, payload: Buffer, priority: Priority, excludeSession?: number): void {
    this.publishes.push({ topic, payload, priority, ...(excludeSession === undefined ? {} : { excludeSession }) });
    for (const session of this.topics.get(topic) ?? []) {
      if (session !== excludeSession) this.deliver(session, payload, priority);
    }
  }

  onDrain(fn: () => void): void {
    fn();
  }
}
