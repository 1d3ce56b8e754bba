/**
 * Presence leases of one Chat backend: the store-side proof that a proxy's sessions are still heard
 * here. Each member record is tagged with the lease of the proxy its session arrived from (ChatStore
 * `Member.lease`); while a stream from that proxy is attached, this backend renews the lease every third
 * of its TTL. If the proxy dies, or this backend dies and never reports the closes of that proxy's
 * sessions, the lease expires and whoever owns the room next purges those members (`purgeExpired`).
 * Sessions that live on are moved by their proxy to the room's new owner (`reattach`), which re-tags
 * their records under its own lease.
 *
 * Lease IDs are `<backend instance>:<proxyId>:<generation>` and never reused: a lease that expired
 * (this process stalled, or the store was unreachable, for longer than the TTL) stays expired, so a
 * purge never races a writer; the backend starts a new generation and re-tags its members (`onLost`).
 */
import { randomUUID } from 'node:crypto';
import type pino from 'pino';
import type { ProxyStreamContext } from '../backend-server.js';
import type { ChatStore } from './store.js';

/** One lease ID, started in the store once (again after a failed start). */
class Lease {
  private started: Promise<void> | null = null;

  constructor(readonly id: string) {}

  /** Resolves once the lease exists in the store. */
  start(store: ChatStore, ttlMs: number): Promise<void> {
    this.started ??= store.startLease(this.id, ttlMs).catch((err: unknown) => {
      this.started = null;
      throw err;
    });
    return this.started;
  }

  get isStarted(): boolean {
    return this.started !== null;
  }
}

/** The lease of one proxy and the streams from it that keep it renewed. */
interface ProxyPresence {
  lease: Lease;
  /** The lease was replaced after expiring; its members are re-tagged once the new one started. */
  lost: boolean;
  /** A renewal tick is waiting on the store. */
  busy: boolean;
  readonly streams: Set<ProxyStreamContext>;
  readonly timer: NodeJS.Timeout;
}

export interface PresenceLeasesOptions {
  readonly store: ChatStore;
  readonly ttlMs: number;
  readonly log: pino.Logger;
  /** The lease of `proxyId` expired while its streams were up: re-tag its members under `lease`. */
  readonly onLost: (proxyId: string, lease: string) => void;
}

export class PresenceLeases {
  private readonly instance = randomUUID();
  private readonly byProxy = new Map<string, ProxyPresence>();
  private generation = 0;

  constructor(private readonly opts: PresenceLeasesOptions) {}

  /** A stream from `ctx.proxyId` is up: its lease is renewed from now on (started at first use). */
  attach(ctx: ProxyStreamContext): void {
    const present = this.byProxy.get(ctx.proxyId);
    if (present !== undefined) {
      present.streams.add(ctx);
      return;
    }
    const timer = setInterval(() => void this.renew(ctx.proxyId), Math.max(1, Math.floor(this.opts.ttlMs / 3)));
    timer.unref();
    this.byProxy.set(ctx.proxyId, { lease: this.newLease(ctx.proxyId), lost: false, busy: false, streams: new Set([ctx]), timer });
  }

  /**
   * A stream ended. With the last stream from its proxy the lease ends too: the sessions of that stream
   * are being left explicitly, and ending the lease lets any purge take what a failed leave left behind.
   */
  detach(ctx: ProxyStreamContext): void {
    const present = this.byProxy.get(ctx.proxyId);
    if (present === undefined || !present.streams.delete(ctx) || present.streams.size > 0) return;
    clearInterval(present.timer);
    this.byProxy.delete(ctx.proxyId);
    if (present.lease.isStarted) {
      this.opts.store.endLease(present.lease.id).catch((err: unknown) => this.opts.log.debug({ err, lease: present.lease.id }, 'chat: ending a presence lease failed'));
    }
  }

  /** The lease a member whose session arrived on `ctx` is held under, started in the store first. */
  async leaseOf(ctx: ProxyStreamContext): Promise<string> {
    const present = this.byProxy.get(ctx.proxyId);
    // Not attached: the stream ended, so its sessions are ending too. A lease never started is expired
    // from the start: whatever is written under it goes at the next purge.
    if (present === undefined) return this.nextId(ctx.proxyId);
    const lease = present.lease;
    await lease.start(this.opts.store, this.opts.ttlMs);
    return lease.id;
  }

  /** Stops renewing (the backend is closing; the leases expire by themselves). */
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
      this.opts.log.warn({ err, proxyId, lease: present.lease.id }, 'chat: renewing a presence lease failed');
    } finally {
      present.busy = false;
    }
  }

  private async renewOnce(proxyId: string, present: ProxyPresence): Promise<void> {
    const lease = present.lease;
    if (present.lost) {
      await lease.start(this.opts.store, this.opts.ttlMs);
      present.lost = false;
      if (this.byProxy.get(proxyId) === present) this.opts.onLost(proxyId, lease.id);
      return;
    }
    // Nobody joined through this proxy yet: nothing to keep alive.
    if (!lease.isStarted) return;
    await lease.start(this.opts.store, this.opts.ttlMs);
    if (await this.opts.store.renewLease(lease.id, this.opts.ttlMs)) return;
    present.lease = this.newLease(proxyId);
    present.lost = true;
    this.opts.log.warn({ proxyId, lease: lease.id, next: present.lease.id }, 'chat: presence lease expired while its proxy was attached; re-tagging its members');
    await this.renewOnce(proxyId, present);
  }

  private newLease(proxyId: string): Lease {
    return new Lease(this.nextId(proxyId));
  }

  /** A lease ID never used before (IDs are never reused, see the module comment). */
  private nextId(proxyId: string): string {
    return `${this.instance}:${proxyId}:${++this.generation}`;
  }
}
