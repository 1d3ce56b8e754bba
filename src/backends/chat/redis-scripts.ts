import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A Lua script run by EVALSHA, falling back to EVAL (which caches it) the first time a server has not
 * seen it. Unlike ioredis' defineCommand this does not add methods to the connection, so the store can
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
 * Appends one message to a room's history stream (stream ID `<seq>-0`, so XRANGE by seq is direct)
 * and trims it: by length with `MAXLEN ~` (whole stream nodes, the cheap way), then by age exactly,
 * scanning from the oldest entry while its sentAt field is older than the cutoff. The scan stops at
 * the entry just added, so it is never trimmed by its own append; each trimmed entry is read once, so
 * the scan costs O(1) amortized per append and one `XRANGE … COUNT 1` when nothing is due.
 * An ID not above the stream's last generated ID fails in XADD, before any write. Returns the number of
 * entries trimmed: by length (XLEN before and after the XADD, both O(1)) plus by age.
 *
 * KEYS[1] history stream
 * ARGV[1] entry ID, [2] maxLength, [3] age cutoff ms ('' = no age bound),
 *     [4] priority, [5] sender, [6] sentAtMs, [7] body   (fields p, s, t, b: t is the 6th reply item)
 */
export const APPEND_HISTORY = new RedisScript(`
local before = redis.call('XLEN', KEYS[1])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[1], 'p', ARGV[4], 's', ARGV[5], 't', ARGV[6], 'b', ARGV[7])
local trimmed = before + 1 - redis.call('XLEN', KEYS[1])
if ARGV[3] == '' then return trimmed end
local cutoff = tonumber(ARGV[3])
local keep = nil
local passed = 0
local start = '-'
local count = 1
while not keep do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', count)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    if entry[1] == ARGV[1] or tonumber(entry[2][6]) >= cutoff then
      keep = entry[1]
      break
    end
    passed = passed + 1
    start = '(' .. entry[1]
  end
  count = 100
end
if keep and passed > 0 then redis.call('XTRIM', KEYS[1], 'MINID', keep) end
return trimmed + passed
`);

/**
 * One page of members: user IDs in byte order after the cursor, with their records, read atomically.
 *
 * KEYS[1] order sorted set (all scores 0), KEYS[2] member records hash
 * ARGV[1] ZRANGEBYLEX start ('-' or '(' .. last user ID), ARGV[2] how many
 */
export const MEMBER_PAGE = new RedisScript(`
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {ids, ids} end
return {ids, redis.call('HMGET', KEYS[2], unpack(ids))}
`);

/**
 * Applies attribute changes in order: each real change (a new value, or deleting a present key) takes
 * the next version from the counter and is appended to the change log stream under ID `<version>-0`,
 * trimmed with `MAXLEN ~`; no-ops are skipped. Returns {version, op, key, value} per change.
 *
 * KEYS[1] attribute hash, KEYS[2] version counter, KEYS[3] change log stream
 * ARGV[1] log length, then triples: op ('s' set | 'd' delete), key, value ('' for a delete)
 */
export const SET_ATTRIBUTES = new RedisScript(`
local out = {}
for i = 2, #ARGV, 3 do
  local op, key, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[1], key)
  local changed = false
  if op == 's' then
    if current ~= value then
      redis.call('HSET', KEYS[1], key, value)
      changed = true
    end
  elseif current then
    redis.call('HDEL', KEYS[1], key)
    changed = true
  end
  if changed then
    local version = redis.call('INCR', KEYS[2])
    local id = string.format('%d-0', version)
    if op == 's' then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], id, 'k', key, 'v', value)
    else
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], id, 'k', key)
    end
    out[#out + 1] = {version, op, key, value}
  end
end
return out
`);

/*
 * Membership scripts. A member record is JSON `{"r":role,"j":joinedAtMs,"l":lease}` ("l" absent for a
 * member without a presence lease); the leases hash counts the members held under each lease, so that a
 * purge reads a few lease IDs, not every member, when nothing expired.
 *
 * KEYS[1] member records hash, KEYS[2] order sorted set, KEYS[3] lease counts hash (all of one room)
 */
const UNCOUNT_LEASE = `
local function uncount(lease)
  if lease and redis.call('HINCRBY', KEYS[3], lease, -1) <= 0 then redis.call('HDEL', KEYS[3], lease) end
end
`;

/**
 * Adds or replaces a member record, moving its count from the old lease to the new one. Returns 1 when
 * the user was not a member.
 *
 * ARGV[1] user ID, [2] record, [3] lease ('' = none)
 */
export const JOIN_MEMBER = new RedisScript(`${UNCOUNT_LEASE}
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then uncount(cjson.decode(old).l) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[3], 1) end
if old then return 0 end
return 1
`);

/**
 * Removes a member record, only one held under ARGV[2] when that is not ''. Returns 1 when removed.
 *
 * ARGV[1] user ID, [2] lease the record must be held under ('' = any)
 */
export const LEAVE_MEMBER = new RedisScript(`${UNCOUNT_LEASE}
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local lease = cjson.decode(old).l
if ARGV[2] ~= '' and lease ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
uncount(lease)
return 1
`);

/**
 * Drops every member held under one of the expired leases ARGV[1..n] (which the caller found gone from
 * the lease keys; an expired lease never comes back, so the check need not be in this script) and
 * returns their user IDs. Leases the room no longer counts are skipped, so a repeated purge is cheap;
 * otherwise the member hash is walked once.
 */
export const PURGE_LEASES = new RedisScript(`
local dead = {}
local any = false
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[3], ARGV[i]) == 1 then
    dead[ARGV[i]] = true
    any = true
  end
end
local purged = {}
if not any then return purged end
local records = redis.call('HGETALL', KEYS[1])
for i = 1, #records, 2 do
  local lease = cjson.decode(records[i + 1]).l
  if lease and dead[lease] then
    redis.call('HDEL', KEYS[1], records[i])
    redis.call('ZREM', KEYS[2], records[i])
    purged[#purged + 1] = records[i]
  end
end
return purged
`);
