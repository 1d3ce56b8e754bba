import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type ProxyRecord, encodeRecord, indexKey, recordKey } from './proxy-record.js';

/** A proxy's load as it reports it on each heartbeat. */
export interface ProxyLoad {
  connections: number;
  eventLoopLagMs: number;
}

/** Settings of a {@link DispatchRegistration} (the proxy's `dispatch` config section). */
export interface RegistrationOptions {
  /** `redis://…` URL of the Redis the dispatchers read. */
  redisUrl: string;
  cluster: string;
  id: string;
  /** `host:port` clients dial. */
  address: string;
  /** Worker processes serving the address. */
  workers: number;
  heartbeatMs: number;
  /** How long the record outlives the last heartbeat: a proxy silent this long is out of dispatch. */
  ttlMs: number;
  /** Read on every heartbeat. */
  load: () => ProxyLoad | Promise<ProxyLoad>;
  logger: Logger;
}

/**
 * A proxy's entry in dispatch (docs/dispatch.md): its record is written at once, then on every
 * heartbeat with fresh load, each time with the TTL, so a proxy that dies or loses Redis drops out
 * of dispatch within `ttlMs`. Draining is published at once; `close` removes the entry.
 *
 * Redis being away never affects clients already connected: a heartbeat that fails is logged once
 * per outage and retried on the next beat.
 */
export class DispatchRegistration {
  private readonly redis: Redis;
  private readonly timer: NodeJS.Timeout;
  private draining = false;
  private closed = false;
  private failing = false;
  /** The write in flight, so `close` can wait for it before deleting the entry. */
  private inFlight: Promise<void> = Promise.resolve();

  private constructor(private readonly opts: RegistrationOptions) {
    // Fail fast while disconnected: a heartbeat queued for minutes would publish stale load.
    this.redis = new Redis(opts.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    this.redis.on('error', () => {}); // reported through the heartbeat that fails
    this.timer = setInterval(() => this.beat(), opts.heartbeatMs);
    this.timer.unref();
  }

  /** Connects to Redis and writes the first record; resolves once it is written (or failed, logged). */
  static async start(opts: RegistrationOptions): Promise<DispatchRegistration> {
    const registration = new DispatchRegistration(opts);
    await registration.redis.connect().catch(() => {});
    await registration.beat();
    return registration;
  }

  /** Publishes `draining` now, so dispatchers stop handing out this address before the next beat. */
  async setDraining(): Promise<void> {
    if (this.draining || this.closed) return;
    this.draining = true;
    await this.beat();
  }

  /** Removes the entry and disconnects. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.inFlight;
    const { cluster, id } = this.opts;
    try {
      await this.redis.multi().del(recordKey(cluster, id)).zrem(indexKey(cluster), id).exec();
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'dispatch: could not remove the registration (it expires by itself)');
    }
    this.redis.disconnect();
  }

  private beat(): Promise<void> {
    if (this.closed) return this.inFlight;
    this.inFlight = this.inFlight.then(() => this.write());
    return this.inFlight;
  }

  private async write(): Promise<void> {
    if (this.closed) return;
    const { cluster, id, address, workers, ttlMs, logger } = this.opts;
    try {
      const load = await this.opts.load();
      const record: ProxyRecord = {
        id,
        cluster,
        address,
        connections: load.connections,
        workers,
        eventLoopLagMs: load.eventLoopLagMs,
        draining: this.draining,
        updatedAt: Date.now(),
      };
      await this.redis
        .multi()
        .set(recordKey(cluster, id), encodeRecord(record), 'PX', ttlMs)
        .zadd(indexKey(cluster), record.updatedAt, id)
        .exec();
      if (this.failing) logger.info({ cluster }, 'dispatch: registration restored');
      this.failing = false;
    } catch (err) {
      if (!this.failing) logger.warn({ err: (err as Error).message, cluster }, 'dispatch: heartbeat failed; retrying every beat');
      this.failing = true;
    }
  }
}
