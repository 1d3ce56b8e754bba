import type { HistogramSeries } from '../observability/histogram.js';
import { Code } from '../protocol/codes.js';
import type { Priority } from '../protocol/constants.js';
import type { BackendCommandSink, BackendLink } from '../proxy/upstream/link.js';
import type { ProxySession } from './proxy-session.js';
import { TopicFanOut } from './topic-fanout.js';

/**
 * Decides where sessions go when the endpoint serving them is lost (its link failed, its breaker opened,
 * or a reload removed it): to another endpoint, or closed with a code. Implemented by the proxy, which
 * owns routing.
 */
export interface SessionRelocator {
  relocate(sessions: readonly ProxySession[], lostEndpoint: string, reason: string): void;
  /** The endpoint could not take one session; bind it elsewhere per its route's retry policy. */
  retry(session: ProxySession, failedEndpoint: string, reason: string): void;
}

/**
 * Every session on this proxy, by the id the proxy gave it on its backend stream, plus the topics for
 * edge fan-out. Commands arriving from any backend land here.
 *
 * Topics and Publishes belong to {@link TopicFanOut}: a topic's messages of one event-loop turn are
 * encoded once (per distinct session id) and walked to its local subscribers, one write each. Every
 * other command first brings the sessions it names up to date, so a stream's commands still apply in
 * order.
 */
export class SessionRegistry implements BackendCommandSink {
  private readonly byRef = new Map<number, ProxySession>();
  private readonly byLink = new Map<BackendLink, Set<ProxySession>>();
  private readonly fanOut: TopicFanOut;
  private nextRef = 1;
  private relocator: SessionRelocator | null = null;

  /** Commands naming a session this proxy no longer has (it closed while the command was in flight). */
  staleCommands = 0;

  /** `fanOutDelay` receives each Publish's fan-out delay (livemux_fanout_delay_seconds). */
  constructor(fanOutDelay?: HistogramSeries) {
    this.fanOut = new TopicFanOut((ref) => this.byRef.get(ref), fanOutDelay);
  }

  /** Where sessions of a lost endpoint go; without one they are closed BACKEND_UNAVAILABLE. */
  setRelocator(relocator: SessionRelocator): void {
    this.relocator = relocator;
  }

  /** A fresh id for a session about to be opened on a backend stream. */
  allocateRef(): number {
    return this.nextRef++;
  }

  add(session: ProxySession): void {
    this.byRef.set(session.ref, session);
    let set = this.byLink.get(session.link);
    if (!set) this.byLink.set(session.link, (set = new Set()));
    set.add(session);
  }

  /** Forgets a retired session and its topic memberships. */
  remove(session: ProxySession): void {
    this.fanOut.leaveAll(session);
    this.byRef.delete(session.ref);
    this.byLink.get(session.link)?.delete(session);
  }

  /**
   * Moves a session to another link (see ProxySession.rebind), keeping the per-link index true. Topic
   * memberships end with the old binding (docs/backend-contract.md §4): the new backend subscribes what
   * it wants, so the old owner's subscriptions cannot leak onto a session it no longer serves.
   */
  rebind(session: ProxySession, link: BackendLink): boolean {
    const from = session.link;
    this.fanOut.leaveAll(session);
    if (!session.rebind(link)) return false;
    this.byLink.get(from)?.delete(session);
    let set = this.byLink.get(link);
    if (!set) this.byLink.set(link, (set = new Set()));
    set.add(session);
    return true;
  }

  /** Sessions bound to a link now (a copy: callers move or close them while iterating). */
  sessionsOn(link: BackendLink): ProxySession[] {
    return [...(this.byLink.get(link) ?? [])];
  }

  /** Every session (a copy). */
  all(): ProxySession[] {
    return [...this.byRef.values()];
  }

  get size(): number {
    return this.byRef.size;
  }

  /** Number of local subscribers of a topic (for tests and the admin status page). */
  subscribers(topic: string): number {
    return this.fanOut.subscribers(topic);
  }

  deliver(ref: number, payload: Buffer, priority: Priority): void {
    const s = this.byRef.get(ref);
    if (s) this.fanOut.deliver(s, payload, priority);
    else this.staleCommands++;
  }

  close(ref: number, code: number, reason: string): void {
    const s = this.byRef.get(ref);
    if (!s) {
      this.staleCommands++;
      return;
    }
    this.fanOut.settle(s);
    s.closedByBackend(code, reason);
  }

  unreachable(ref: number, reason: string, unsent: readonly Buffer[]): void {
    const s = this.byRef.get(ref);
    if (!s) {
      this.staleCommands++;
      return;
    }
    this.fanOut.settle(s);
    const endpoint = s.link.endpoint;
    s.suspend(unsent);
    if (this.relocator) this.relocator.retry(s, endpoint, reason);
    else s.closeByProxy(Code.BACKEND_UNAVAILABLE, reason);
  }

  subscribe(ref: number, topic: string): void {
    const s = this.byRef.get(ref);
    if (s) this.fanOut.subscribe(s, topic);
    else this.staleCommands++;
  }

  unsubscribe(ref: number, topic: string): void {
    const s = this.byRef.get(ref);
    if (s) this.fanOut.unsubscribe(s, topic);
    else this.staleCommands++;
  }

  publish(topic: string, payload: Buffer, priority: Priority, excludeRef: number): void {
    this.fanOut.publish(topic, payload, priority, excludeRef);
  }

  /**
   * The stream to an endpoint failed: its sessions are gone on the backend side. They are handed to the
   * relocator (moved to another endpoint, or closed retryably).
   */
  linkDown(link: BackendLink, reason: string): void {
    const sessions = this.sessionsOn(link);
    if (sessions.length === 0) return;
    for (const s of sessions) this.fanOut.settle(s);
    // The dead link cannot hear SessionClosed; moving or closing must not try to tell it.
    for (const s of sessions) s.detachFromDeadLink();
    if (this.relocator) this.relocator.relocate(sessions, link.endpoint, reason);
    else for (const s of sessions) s.closedByBackend(Code.BACKEND_UNAVAILABLE, `backend ${link.endpoint} unavailable: ${reason}`);
  }

  canDeliver(ref: number): boolean {
    return this.byRef.get(ref)?.backedUp !== true;
  }

  released(ref: number): boolean {
    const s = this.byRef.get(ref);
    return s !== undefined && !this.fanOut.holding && s.released;
  }

  onDeliverable(ref: number, fn: () => void): void {
    const s = this.byRef.get(ref);
    if (s) s.onDeliverable(fn);
    else fn();
  }
}
