import { Redis } from 'ioredis';
import { LivemuxError } from '../../../protocol/errors.js';

/** Where a Redis-backed store connects, or the connection it is lent. */
export interface RedisConnectionOptions {
  /** `redis://[user:password@]host:port[/db]`; wins over host/port. */
  readonly url?: string;
  readonly host?: string;
  readonly port?: number;
  /** A connection to use instead of opening one; the store never quits it. */
  readonly connection?: Redis;
  /**
   * Told of connection errors on a connection the store opened (ioredis reconnects by itself and
   * queues calls meanwhile). Without it ioredis prints them to stderr.
   */
  readonly onError?: (err: Error) => void;
}

/**
 * A Redis-backed store's connection, owned (opened from options, quit by `close`) or lent (left open
 * for its owner), with what every such store needs around it: calls that `close` settles instead of
 * leaving them waiting for a server that is gone, a closed state that refuses further calls with the
 * store's own error, and MULTI replies unwrapped.
 */
export class RedisHandle {
  readonly redis: Redis;
  /** Whether `close` quits the connection: only one this handle opened itself. */
  readonly owned: boolean;
  private closedFlag = false;
  /** Rejecters of the calls waiting on Redis (see io). */
  private readonly inFlight = new Set<(err: Error) => void>();

  /**
   * @param closedError the store's error for a call after `close` (method = what was called).
   */
  constructor(
    options: RedisConnectionOptions,
    private readonly closedError: (method: string) => LivemuxError,
  ) {
    this.owned = options.connection === undefined;
    this.redis =
      options.connection ??
      (options.url !== undefined ? new Redis(options.url) : new Redis({ host: options.host ?? '127.0.0.1', port: options.port ?? 6379 }));
    if (this.owned && options.onError) this.redis.on('error', options.onError);
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Throws the store's closed error once `close` was called. */
  ensureOpen(method: string): void {
    if (this.closedFlag) throw this.closedError(method);
  }

  /** `work`, settled by close() if it would otherwise wait forever for a connection that is gone. */
  io<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.inFlight.add(reject);
      work.then(resolve, reject).finally(() => this.inFlight.delete(reject));
    });
  }

  /** Runs a MULTI and returns its replies, throwing the first command error. */
  async transaction(multi: ReturnType<Redis['multi']>): Promise<unknown[]> {
    const results = await this.io(multi.exec());
    // exec() answers null only when a WATCHed key changed; these transactions watch nothing.
    if (results === null) throw new LivemuxError('ERR_STORE_ABORTED', 'store: Redis transaction aborted');
    return results.map(([err, value]) => {
      if (err) throw err;
      return value;
    });
  }

  /** Marks the handle closed and quits an owned connection; idempotent. */
  async close(): Promise<void> {
    if (this.closedFlag) return;
    this.closedFlag = true;
    if (this.owned) await quit(this.redis, () => this.abandon());
  }

  /** Rejects every call still waiting on Redis with the closed error. */
  private abandon(): void {
    const abandoned = this.closedError('close (the call was waiting for Redis)');
    for (const reject of this.inFlight) reject(abandoned);
    this.inFlight.clear();
  }
}

/**
 * Quits `redis` and resolves once its socket is gone, so a process that closes its store can exit at
 * once. `abandon` settles calls that would otherwise wait forever (no socket to flush them).
 */
export async function quit(redis: Redis, abandon: () => void = () => undefined): Promise<void> {
  if (redis.status === 'end') return;
  if (redis.status === 'connecting' || redis.status === 'connect' || redis.status === 'ready') {
    // QUIT lets replies already due arrive; a connection still handshaking has nothing to flush.
    // Not events.once: that rejects on an 'error' event, and errors while closing do not matter.
    const ended = new Promise((resolve) => redis.once('end', resolve));
    if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
    else redis.disconnect();
    await ended;
    return;
  }
  // Between reconnect attempts there is no socket: disconnect() only cancels the next attempt, and
  // ioredis would keep the calls it queued pending forever, so they are settled here.
  redis.disconnect();
  abandon();
}
