import { RedisHandle, type RedisConnectionOptions } from '../redis/redis-handle.js';
import { RedisScript } from '../redis/redis-script.js';
import { DEFAULT_STATS_TTL_MS, refStats, type DeliveryLedger, type DeliveryLedgerOptions, type RefStats } from './delivery-ledger.js';
import { checkId, checkInteger, inboxClosed } from './inbox-checks.js';

export interface RedisDeliveryLedgerOptions extends RedisConnectionOptions, DeliveryLedgerOptions {
  /** Prepended to every key (default `livemux:ledger:`). */
  readonly keyPrefix?: string;
}

/**
 * Adds members as targeted (HSETNX keeps a known member's state), raises the expiry, and sets both
 * keys to live `statsTtl` past it.
 *
 * KEYS[1] members hash (member → t|d|c), [2] counts hash (d, c, exp)
 * ARGV[1] expiresAt, [2] nowMs, [3] statsTtl ms, [4..] members
 */
const TARGET = new RedisScript(`
for i = 4, #ARGV do redis.call('HSETNX', KEYS[1], ARGV[i], 't') end
local expires = math.max(tonumber(redis.call('HGET', KEYS[2], 'exp') or '0'), tonumber(ARGV[1]))
redis.call('HSET', KEYS[2], 'exp', string.format('%d', expires))
redis.call('HSETNX', KEYS[2], 'd', 0)
redis.call('HSETNX', KEYS[2], 'c', 0)
local life = math.max(0, expires - tonumber(ARGV[2])) + tonumber(ARGV[3])
redis.call('PEXPIRE', KEYS[1], life)
redis.call('PEXPIRE', KEYS[2], life)
return 0
`);

/**
 * targeted or collapsed (or unknown, for a known ref) → delivered. Returns 1 when the counts changed.
 *
 * KEYS[1] members hash, [2] counts hash; ARGV[1] member
 */
const DELIVERED = new RedisScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local state = redis.call('HGET', KEYS[1], ARGV[1])
if state == 'd' then return 0 end
if state == 'c' then redis.call('HINCRBY', KEYS[2], 'c', -1) end
redis.call('HSET', KEYS[1], ARGV[1], 'd')
redis.call('HINCRBY', KEYS[2], 'd', 1)
if not state then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return 1
`);

/**
 * targeted → collapsed. Returns 1 when the counts changed.
 *
 * KEYS[1] members hash, [2] counts hash; ARGV[1] member
 */
const COLLAPSED = new RedisScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 't' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'c')
redis.call('HINCRBY', KEYS[2], 'c', 1)
return 1
`);

/**
 * DeliveryLedger on Redis: per ref, under `<prefix>{<ref>}:`, a hash `members` (member → t, d or c)
 * and a hash `counts` (d, c, exp); targeted is the members hash's length. Each operation is one
 * script, so counts and states never disagree; both keys expire `statsTtlMs` after the ref's expiry.
 */
export class RedisDeliveryLedger implements DeliveryLedger {
  private readonly handle: RedisHandle;
  private readonly prefix: string;
  private readonly statsTtlMs: number;

  constructor(options: RedisDeliveryLedgerOptions = {}) {
    this.prefix = options.keyPrefix ?? 'livemux:ledger:';
    this.statsTtlMs = options.statsTtlMs ?? DEFAULT_STATS_TTL_MS;
    checkInteger('statsTtlMs', this.statsTtlMs, 1);
    this.handle = new RedisHandle(options, (method) => inboxClosed(`ledger ${method}`));
  }

  async target(ref: string, members: readonly string[], expiresAtMs: number, nowMs: number): Promise<void> {
    this.handle.ensureOpen('target');
    checkId('target ref', ref);
    for (const member of members) checkId('target member', member);
    checkInteger('target expiresAtMs', expiresAtMs, 0);
    checkInteger('target nowMs', nowMs, 0);
    await this.handle.io(TARGET.run(this.handle.redis, this.keys(ref), [expiresAtMs, nowMs, this.statsTtlMs, ...members]));
  }

  async delivered(ref: string, member: string): Promise<boolean> {
    this.handle.ensureOpen('delivered');
    checkId('delivered ref', ref);
    checkId('delivered member', member);
    return (await this.handle.io(DELIVERED.run(this.handle.redis, this.keys(ref), [member]))) === 1;
  }

  async collapsed(ref: string, member: string): Promise<boolean> {
    this.handle.ensureOpen('collapsed');
    checkId('collapsed ref', ref);
    checkId('collapsed member', member);
    return (await this.handle.io(COLLAPSED.run(this.handle.redis, this.keys(ref), [member]))) === 1;
  }

  async stats(ref: string, nowMs: number): Promise<RefStats | null> {
    this.handle.ensureOpen('stats');
    checkId('stats ref', ref);
    checkInteger('stats nowMs', nowMs, 0);
    const [members, counts] = this.keys(ref);
    const [targeted, values] = (await this.handle.transaction(this.handle.redis.multi().hlen(members!).hmget(counts!, 'd', 'c', 'exp'))) as [
      number,
      (string | null)[],
    ];
    if (values[2] === null || values[2] === undefined) return null;
    return refStats(targeted, Number(values[0]), Number(values[1]), Number(values[2]), nowMs);
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  private keys(ref: string): [string, string] {
    return [`${this.prefix}{${ref}}:members`, `${this.prefix}{${ref}}:counts`];
  }
}
