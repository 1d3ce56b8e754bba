import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { TokenBucket } from '../util/token-bucket.js';

/**
 * Limits on one user across all its connections: how fast it may open sessions (each one a backend
 * session opened and, later, closed). Per-connection limits alone let a user with many connections
 * churn backend sessions at connections × the per-connection rate.
 */
export interface UserLimiter {
  /** Takes one OPEN from `userId`'s budget; false when the user is over `users.open_rate`. */
  tryOpen(userId: string, now?: number): boolean;
  /** What a refused OPEN is told to wait (OPEN_FAIL `retry_after_ms`). */
  readonly retryAfterMs: number;
  close(): Promise<void>;
}

export interface UserLimitSettings {
  openRate: number;
  openBurst: number;
  redisUrl: string | null;
  redisKeyPrefix: string;
}

interface UserEntry {
  bucket: TokenBucket;
  lastUse: number;
}

/** How often idle users are forgotten. */
const SWEEP_MS = 10_000;

/**
 * One token bucket per user (rate `openRate`, burst `openBurst`), for the users active lately only: a
 * bucket left alone for `openBurst / openRate` seconds is full again, the same as a new one, so it is
 * forgotten at the next sweep. Memory is bounded by the users that opened sessions in that time.
 */
export class LocalUserLimits implements UserLimiter {
  readonly retryAfterMs: number;
  private readonly users = new Map<string, UserEntry>();
  private readonly refillMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly settings: Pick<UserLimitSettings, 'openRate' | 'openBurst'>) {
    this.retryAfterMs = Math.max(1, Math.ceil(1000 / settings.openRate));
    this.refillMs = (settings.openBurst / settings.openRate) * 1000;
    this.sweeper = setInterval(() => this.sweep(performance.now()), SWEEP_MS).unref();
  }

  tryOpen(userId: string, now = performance.now()): boolean {
    let entry = this.users.get(userId);
    if (!entry) {
      entry = { bucket: new TokenBucket(this.settings.openRate, this.settings.openBurst, now), lastUse: now };
      this.users.set(userId, entry);
    }
    entry.lastUse = now;
    return entry.bucket.take(now);
  }

  /** Users tracked now (for tests and /status). */
  get size(): number {
    return this.users.size;
  }

  sweep(now: number): void {
    for (const [userId, entry] of this.users) if (now - entry.lastUse >= this.refillMs) this.users.delete(userId);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}

/**
 * The local buckets, plus a count shared by every proxy through Redis: per user and per second, the
 * proxies add the OPENs they admitted (`INCRBY` on `<prefix>open:<user>:<second>`, batched per event-loop
 * turn, keys expiring after two seconds) and read the fleet's total back. A user whose total for the
 * current second passes `openRate` is refused on this proxy until that second ends.
 *
 * Admission stays synchronous (an OPEN never waits for Redis), so the fleet may overshoot by what the
 * proxies admit within one Redis round trip, and each proxy's own burst the first second. If Redis is
 * unreachable, the local buckets still apply and the failure is logged (at most every 10 s).
 */
export class SharedUserLimits implements UserLimiter {
  readonly retryAfterMs: number;
  private readonly local: LocalUserLimits;
  private readonly redis: Redis;
  /** OPENs admitted here and not yet added to Redis, by user. */
  private pending = new Map<string, number>();
  private flushScheduled = false;
  /** Users over the fleet's rate, and the end of the second (epoch ms) until which they stay refused. */
  private readonly blocked = new Map<string, number>();
  private lastErrorLog = 0;

  constructor(
    private readonly settings: UserLimitSettings & { redisUrl: string },
    private readonly log: Logger,
  ) {
    this.local = new LocalUserLimits(settings);
    this.retryAfterMs = this.local.retryAfterMs;
    // No offline queue: while Redis is away, counts are dropped rather than piled up in memory.
    this.redis = new Redis(settings.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
    this.redis.on('error', (err: Error) => this.logError(err));
  }

  tryOpen(userId: string, now = performance.now()): boolean {
    const until = this.blocked.get(userId);
    if (until !== undefined) {
      if (Date.now() < until) {
        // Spend the local bucket too: it must not come back full when the fleet's second ends, or
        // every proxy would admit a whole burst again at each second.
        this.local.tryOpen(userId, now);
        return false;
      }
      this.blocked.delete(userId);
    }
    if (!this.local.tryOpen(userId, now)) return false;
    this.pending.set(userId, (this.pending.get(userId) ?? 0) + 1);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => void this.flush());
    }
    return true;
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const counts = this.pending;
    this.pending = new Map();
    const second = Math.floor(Date.now() / 1000);
    const users = [...counts.keys()];
    const pipeline = this.redis.pipeline();
    for (const user of users) {
      const key = `${this.settings.redisKeyPrefix}open:${user}:${second}`;
      pipeline.incrby(key, counts.get(user)!).pexpire(key, 2_000);
    }
    let replies: [Error | null, unknown][] | null;
    try {
      replies = await pipeline.exec();
    } catch (err) {
      this.logError(err as Error);
      return;
    }
    const windowEnd = (second + 1) * 1000;
    users.forEach((user, i) => {
      const [err, total] = replies?.[2 * i] ?? [null, 0];
      if (err) this.logError(err);
      else if (Number(total) > this.settings.openRate) this.blocked.set(user, windowEnd);
    });
    for (const [user, until] of this.blocked) if (until <= Date.now()) this.blocked.delete(user);
  }

  private logError(err: Error): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) return;
    this.lastErrorLog = now;
    this.log.warn({ err: err.message }, 'user limits: redis unavailable, limiting per proxy only');
  }

  async close(): Promise<void> {
    await this.local.close();
    this.redis.disconnect();
  }
}

/** The limiter `settings` ask for: shared through Redis when `redisUrl` is set, else per proxy. */
export function createUserLimits(settings: UserLimitSettings, log: Logger): UserLimiter {
  return settings.redisUrl ? new SharedUserLimits({ ...settings, redisUrl: settings.redisUrl }, log) : new LocalUserLimits(settings);
}
