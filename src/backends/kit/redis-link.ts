/**
 * What every Redis-backed store of the backend kit needs around its ioredis connection: opening it or
 * borrowing one, running Lua scripts, MULTI replies, and a close that never leaves a caller waiting on
 * a connection that is gone. The Chat store and the Push store share it.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { LivemuxError } from '../../protocol/errors.js';

/** Where to connect, or the connection to use. */
export interface RedisLinkOptions {
  /** `redis://[user:password@]host:port[/db]`; wins over host/port. */
  readonly url?: string;
  readonly host?: string;
  readonly port?: number;
  /** A connection to use instead of opening one; the link never quits it. */
  readonly connection?: Redis;
  /**
   * Told of connection errors on a connection the link opened (ioredis reconnects by itself and queues
   * calls meanwhile). Without it ioredis prints them to stderr.
   */
  readonly onError?: (err: Error) => void;
}

/**
 * A Lua script run by EVALSHA, falling back to EVAL (which caches it) the first time a server has not
 * seen it. Unlike ioredis' defineCommand this does not add methods to the connection, so a store can
 * run scripts on a connection it was lent.
 */
export class RedisScript {
  readonly sha: string;

  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | Buffer | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

/**
 * One store's connection. `closedError(method)` is the error every call after `close` gets (each store
 * names itself in it).
 */
export class RedisLink {
  readonly redis: Redis;
  /** Whether `close` quits the connection: only one the link opened itself. */
  private readonly ownsConnection: boolean;
  private closed = false;
  /** Rejecters of the calls waiting on Redis (see io). */
  private readonly inFlight = new Set<(err: Error) => void>();

  constructor(
    options: RedisLinkOptions,
    private readonly closedError: (method: string) => LivemuxError,
  ) {
    this.ownsConnection = options.connection === undefined;
    this.redis =
      options.connection ??
      (options.url !== undefined ? new Redis(options.url) : new Redis({ host: options.host ?? '127.0.0.1', port: options.port ?? 6379 }));
    if (this.ownsConnection && options.onError) this.redis.on('error', options.onError);
  }

  /** Throws the store's closed error once `close` was called. */
  ensureOpen(method: string): void {
    if (this.closed) throw this.closedError(method);
  }

  /** `work`, settled by close() if it would otherwise wait forever for a connection that is gone. */
  io<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.inFlight.add(reject);
      work.then(resolve, reject).finally(() => this.inFlight.delete(reject));
    });
  }

  /** Runs `script` on this connection (through `io`). */
  run(script: RedisScript, keys: readonly string[], args: readonly (string | Buffer | number)[]): Promise<unknown> {
    return this.io(script.run(this.redis, keys, args));
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

  /** Quits a connection the link opened (leaves a lent one open) and settles calls still waiting. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.ownsConnection || this.redis.status === 'end') return;
    if (this.redis.status === 'connecting' || this.redis.status === 'connect' || this.redis.status === 'ready') {
      // Resolve once the socket is gone, so a process that closes its store can exit at once. QUIT lets
      // replies already due arrive; a connection still handshaking has nothing to flush.
      // Not events.once: that rejects on an 'error' event, and errors while closing do not matter.
      const ended = new Promise((resolve) => this.redis.once('end', resolve));
      if (this.redis.status === 'ready') await this.redis.quit().catch(() => this.redis.disconnect());
      else this.redis.disconnect();
      await ended;
      return;
    }
    // Between reconnect attempts there is no socket: disconnect() only cancels the next attempt, and
    // ioredis would keep the calls it queued pending forever, so they are settled here.
    this.redis.disconnect();
    const abandoned = this.closedError('close (the call was waiting for Redis)');
    for (const reject of this.inFlight) reject(abandoned);
    this.inFlight.clear();
  }
}
