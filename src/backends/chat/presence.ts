/**
 * Presences of one Chat backend: the store-side proof that a proxy's sessions are still heard here.
 * Each member record is tagged with the presence of the proxy its session arrived from (ChatStore
 * `Member.presence`); while a stream from that proxy is attached, this backend renews the presence every
 * third of its TTL. If the proxy dies, or this backend dies and never reports the closes of that proxy's
 * sessions, the presence expires and whoever owns the room next purges those members (`purgeExpired`).
 * Sessions that live on are moved by their proxy to the room's new owner (`reattach`), which re-tags
 * their records under its own presence.
 *
 * Not to be confused with the room write lease (room-leases.ts): a presence says who is in a room, the
 * write lease who may write it.
 *
 * Presence IDs are `<backend instance>:<proxyId>:<generation>` and never reused: a presence that
 * expired (this process stalled, or the store was unreachable, for longer than the TTL) stays expired,
 * so a purge never races a writer; the backend starts a new generation and re-tags its members
 * (`onLost`).
 */
import { randomUUID } from 'node:crypto';
import type pino from 'pino';
import type { ProxyStreamContext } from '../kit/backend-server.js';
import type { ChatStore } from './store.js';

/** One presence ID, started in the store once (again after a failed start). */
class Presence {
  private started: Promise<void> | null = null;

  constructor(readonly id: string) {}

  /** Resolves once the presence exists in the store. */
  start(store: ChatStore, ttlMs: number): Promise<void> {
    this.started ??= store.startPresence(this.id, ttlMs).catch((err: unknown) => {
      this.started = null;
      throw err;
    });
    return this.started;
  }

  get isStarted(): boolean {
    return this.started !== null;
  }
}

/** The presence of one proxy and the streams from it that keep it renewed. */
interface ProxyPresence {
  presence: Presence;
  /** The presence was replaced after expiring; its members are re-tagged once the new one started. */
  lost: boolean;
  /** A renewal tick is waiting on the store. */
  busy: boolean;
  readonly streams: Set<ProxyStreamContext>;
  readonly timer: NodeJS.Timeout;
}

export interface ProxyPresencesOptions {
  readonly store: ChatStore;
  readonly ttlMs: number;
  readonly log: pino.Logger;
  /** The presence of `proxyId` expired while its streams were up: re-tag its members under `presence`. */
  readonly onLost: (proxyId: string, presence: string) => void;
}

export class ProxyPresences {
  private readonly instance = randomUUID();
  private readonly byProxy = new Map<string, ProxyPresence>();
  private generation = 0;

  constructor(private readonly opts: ProxyPresencesOptions) {}

  /** A stream from `ctx.proxyId` is up: its presence is renewed from now on (started at first use). */
  attach(ctx: ProxyStreamContext): void {
    const present = this.byProxy.get(ctx.proxyId);
    if (present !== undefined) {
      present.streams.add(ctx);
      return;
    }
    const timer = setInterval(() => void this.renew(ctx.proxyId), Math.max(1, Math.floor(this.opts.ttlMs / 3)));
    timer.unref();
    this.byProxy.set(ctx.proxyId, { presence: this.newPresence(ctx.proxyId), lost: false, busy: false, streams: new Set([ctx]), timer });
  }

  /**
   * A stream ended. With the last stream from its proxy the presence ends too: the sessions of that
   * stream are being left explicitly, and ending the presence lets any purge take what a failed leave
   * left behind.
   */
  detach(ctx: ProxyStreamContext): void {
    const present = this.byProxy.get(ctx.proxyId);
    if (present === undefined || !present.streams.delete(ctx) || present.streams.size > 0) return;
    clearInterval(present.timer);
    this.byProxy.delete(ctx.proxyId);
    if (present.presence.isStarted) {
      this.opts.store.endPresence(present.presence.id).catch((err: unknown) => this.opts.log.debug({ err, presence: present.presence.id }, 'chat: ending a presence failed'));
    }
  }

  /** The presence a member whose session arrived on `ctx` is held under, started in the store first. */
  async presenceOf(ctx: ProxyStreamContext): Promise<string> {
    const present = this.byProxy.get(ctx.proxyId);
    // Not attached: the stream ended, so its sessions are ending too. A presence never started is
    // expired from the start: whatever is written under it goes at the next purge.
    if (present === undefined) return this.nextId(ctx.proxyId);
    const presence = present.presence;
    await presence.start(this.opts.store, this.opts.ttlMs);
    return presence.id;
  }

  /** Stops renewing (the backend is closing; the presences expire by themselves). */
  close(): void {
    for (const present of this.byProxy.values()) clearInterval(present.timer);
    this.byProxy.clear();
  }

  /** One renewal tick; a tick still waiting on the store makes the next one a no-op. */
  private async renew(proxyId: string): Promise<void> {
    const present = this.byProxy.get(proxyId);
    if (present === undefined || present.busy) return;
    present.busy = true;
    try {
      await this.renewOnce(proxyId, present);
    } catch (err) {
      this.opts.log.warn({ err, proxyId, presence: present.presence.id }, 'chat: renewing a presence failed');
    } finally {
      present.busy = false;
    }
  }

  private async renewOnce(proxyId: string, present: ProxyPresence): Promise<void> {
    const presence = present.presence;
    if (present.lost) {
      await presence.start(this.opts.store, this.opts.ttlMs);
      present.lost = false;
      if (this.byProxy.get(proxyId) === present) this.opts.onLost(proxyId, presence.id);
      return;
    }
    // Nobody joined through this proxy yet: nothing to keep alive.
    if (!presence.isStarted) return;
    await presence.start(this.opts.store, this.opts.ttlMs);
    if (await this.opts.store.renewPresence(presence.id, this.opts.ttlMs)) return;
    present.presence = this.newPresence(proxyId);
    present.lost = true;
    this.opts.log.warn({ proxyId, presence: presence.id, next: present.presence.id }, 'chat: presence expired while its proxy was attached; re-tagging its members');
    await this.renewOnce(proxyId, present);
  }

  private newPresence(proxyId: string): Presence {
    return new Presence(this.nextId(proxyId));
  }

  /** A presence ID never used before (IDs are never reused, see the module comment). */
  private nextId(proxyId: string): string {
    return `${this.instance}:${proxyId}:${++this.generation}`;
  }
}
