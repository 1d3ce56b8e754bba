import type pino from 'pino';
import { Priority } from '../../protocol/constants.js';
import type { InboxStore, InboxWatch } from '../kit/inbox/inbox-store.js';
import { decodeImEvent, encodeImEvent, type PresenceEvent } from './im-codec.js';
import type { ImStore } from './store.js';

/** Groups of sessions renewed one per tick: a third of the TTL / RENEW_SLICES apart (1 s for the default 30 s TTL). */
const RENEW_SLICES = 10;

/** A session as presence sees it. */
export interface PresenceSession {
  readonly userId: string;
  /** Unique per session across every process: what the store's online set holds. */
  readonly sessionKey: string;
  /** Sends an encoded ImEvent to the session's client. */
  send(payload: Buffer, priority: Priority): void;
}

export interface PresenceOptions {
  readonly store: ImStore;
  /** Carries presence changes between processes: publish/watch only, per watched user (a pub/sub channel each with Redis). */
  readonly bus: InboxStore;
  /** A session not renewed for this long (its process died) counts as offline. */
  readonly ttlMs: number;
  readonly now: () => number;
  readonly log: pino.Logger;
}

/** One watched user on this process: its sessions watching, its bus watch, and what they were last told. */
interface Watched {
  readonly watchers: Set<PresenceSession>;
  readonly watch: InboxWatch;
  online: boolean;
}

/**
 * Presence for the IM backend: a user is online while any of its sessions is, on any process.
 * Sessions are recorded in the store with a TTL (renewed every third of it); the process whose
 * session took a user online, or its last one offline, publishes the change on the presence bus,
 * which every process watching that user hears and passes to its watching sessions. A process that
 * dies publishes nothing: its sessions expire, and each process re-checks the users its sessions
 * watch every half TTL, telling them of those gone offline. So a change reaches watchers at once, or
 * within 1.5 × TTL when a process died.
 *
 * The renewals are spread over the third of the TTL: the sessions sit in RENEW_SLICES groups, and each
 * tick renews one group. Renewing them all at once wrote two commands per session in one go every
 * 10 s (4,000 for 2,000 sessions), holding up the event loop and Redis, and with them every message in
 * flight, for milliseconds that grow with the sessions a process holds.
 */
export class Presence {
  /** The open sessions, each in one slice (`opened` deals them out in turn); a tick renews one slice. */
  private readonly slices = Array.from({ length: RENEW_SLICES }, () => new Set<PresenceSession>());
  private dealt = 0;
  private ticks = 0;
  private readonly watched = new Map<string, Watched>();
  /** What each session watches. */
  private readonly lists = new Map<PresenceSession, Set<string>>();
  private readonly renewTimer: NodeJS.Timeout;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(private readonly options: PresenceOptions) {
    this.renewTimer = setInterval(() => this.renew(), Math.max(1, Math.floor(options.ttlMs / 3 / RENEW_SLICES)));
    this.renewTimer.unref();
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(1, Math.floor(options.ttlMs / 2)));
    this.sweepTimer.unref();
  }

  /** Number of users watched by sessions of this process. */
  get watchedUsers(): number {
    return this.watched.size;
  }

  /** A session opened: the user may have come online. */
  async opened(session: PresenceSession): Promise<void> {
    this.slices[this.dealt++ % RENEW_SLICES]!.add(session);
    const now = this.options.now();
    if (await this.options.store.sessionOnline(session.userId, session.sessionKey, this.options.ttlMs, now)) {
      await this.publish(session.userId, true, now);
    }
  }

  /** A session ended: it watches nothing more, and the user may have gone offline. */
  async closed(session: PresenceSession): Promise<void> {
    for (const slice of this.slices) if (slice.delete(session)) break;
    this.setList(session, []);
    this.lists.delete(session);
    const now = this.options.now();
    if (await this.options.store.sessionOffline(session.userId, session.sessionKey, now)) {
      await this.publish(session.userId, false, now);
    }
  }

  /** Replaces what `session` watches; resolves with the current state of each user. */
  async watch(session: PresenceSession, users: readonly string[]): Promise<PresenceEvent[]> {
    const wanted = [...new Set(users)];
    this.setList(session, wanted);
    const states = await Promise.all(wanted.map((user) => this.watched.get(user)!.watch.ready)).then(() =>
      this.options.store.online(wanted, this.options.now()),
    );
    const at = this.options.now();
    return wanted.map((user, i) => {
      const w = this.watched.get(user);
      if (w !== undefined) w.online = states[i]!;
      return { user, online: states[i]!, atMs: at };
    });
  }

  /** Stops the timers and every bus watch (sessions are left to their TTL). */
  close(): void {
    clearInterval(this.renewTimer);
    clearInterval(this.sweepTimer);
    for (const w of this.watched.values()) w.watch.close();
    this.watched.clear();
    this.lists.clear();
    for (const slice of this.slices) slice.clear();
  }

  private setList(session: PresenceSession, users: readonly string[]): void {
    const previous = this.lists.get(session) ?? new Set<string>();
    const next = new Set(users);
    for (const user of previous) {
      if (next.has(user)) continue;
      const w = this.watched.get(user);
      if (w === undefined) continue;
      w.watchers.delete(session);
      if (w.watchers.size === 0) {
        w.watch.close();
        this.watched.delete(user);
      }
    }
    for (const user of next) {
      let w = this.watched.get(user);
      if (w === undefined) {
        const watch = this.options.bus.watch(user, (notice) => {
          if (notice.kind === 'transient') this.heard(user, notice.payload);
        });
        watch.ready.catch((err: unknown) => this.options.log.warn({ err, user }, 'im presence: watching a user failed'));
        this.watched.set(user, (w = { watchers: new Set(), watch, online: false }));
      }
      w.watchers.add(session);
    }
    this.lists.set(session, next);
  }

  /** A change published by some process: passed on to this process's watchers, unless they know it. */
  private heard(user: string, payload: Buffer): void {
    const w = this.watched.get(user);
    const event = decodeImEvent(payload).presence;
    if (w === undefined || event === undefined || event.online === w.online) return;
    w.online = event.online;
    for (const session of w.watchers) session.send(payload, Priority.LOW);
  }

  private async publish(user: string, online: boolean, atMs: number): Promise<void> {
    await this.options.bus.publish(user, encodeImEvent({ presence: { user, online, atMs } }));
  }

  /** Renews the next slice's sessions: each session once every RENEW_SLICES ticks, a third of the TTL. */
  private renew(): void {
    const slice = this.slices[this.ticks++ % RENEW_SLICES]!;
    const sessions = [...slice].map((s) => ({ user: s.userId, sessionKey: s.sessionKey }));
    if (sessions.length === 0) return;
    this.options.store
      .renewSessions(sessions, this.options.ttlMs, this.options.now())
      .catch((err: unknown) => this.options.log.warn({ err }, 'im presence: renewing sessions failed'));
  }

  /** Users whose sessions all expired (their process died) are told offline to this process's watchers. */
  private sweep(): void {
    const believedOnline = [...this.watched].filter(([, w]) => w.online).map(([user]) => user);
    if (believedOnline.length === 0) return;
    const now = this.options.now();
    this.options.store.online(believedOnline, now).then(
      (states) => {
        const payloads = believedOnline.map((user, i) => (states[i] ? null : encodeImEvent({ presence: { user, online: false, atMs: now } })));
        payloads.forEach((payload, i) => {
          if (payload !== null) this.heard(believedOnline[i]!, payload);
        });
      },
      (err: unknown) => this.options.log.warn({ err }, 'im presence: checking watched users failed'),
    );
  }
}
