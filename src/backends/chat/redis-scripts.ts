import { RedisScript } from '../kit/redis/redis-script.js';
import { TRIM_BY_AGE_LUA } from '../kit/redis/stream-trim.js';

/**
 * Sets `current`: whether the room's lease key (KEYS[1], holding `<token> <holder>`) holds the caller's
 * token (ARGV[1]). The lease scripts and every ordered write script start with it.
 */
const IS_CURRENT = `
local lease = redis.call('GET', KEYS[1])
local current = lease ~= false and string.sub(lease, 1, #ARGV[1] + 1) == ARGV[1] .. ' '
`;

/** The fencing check of the ordered writes: a caller without the current token gets an error, before any write. */
const FENCE = `${IS_CURRENT}
if not current then return redis.error_reply('STALE_OWNER lease token ' .. ARGV[1] .. ' is not current') end
`;

/** How a fenced script's refusal starts (redis.error_reply keeps the first word as the error code). */
export const STALE_OWNER_REPLY = 'STALE_OWNER';

/**
 * Takes a room's lease for a holder, or renews it if the holder has it: a new lease takes the next
 * token from the fencing counter (INCR, never reset) and is stored as `<token> <holder>` with PX ttl.
 * Returns {1, token} when the caller holds it, {0, holder, remaining ms} when another does.
 *
 * KEYS[1] lease, KEYS[2] fencing counter
 * ARGV[1] holder, ARGV[2] ttl ms
 */
export const ACQUIRE_LEASE = new RedisScript(`
local lease = redis.call('GET', KEYS[1])
if lease then
  local space = string.find(lease, ' ', 1, true)
  local holder = string.sub(lease, space + 1)
  if holder ~= ARGV[1] then return {0, holder, redis.call('PTTL', KEYS[1])} end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(string.sub(lease, 1, space - 1))}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return {1, token}
`);

/**
 * Extends the lease if the token is current. Returns 1, or 0 when it is not (lost).
 *
 * KEYS[1] lease; ARGV[1] token, ARGV[2] ttl ms
 */
export const RENEW_LEASE = new RedisScript(`${IS_CURRENT}
if not current then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`);

/**
 * Deletes the lease if the token is current (a holder never ends a successor's lease).
 *
 * KEYS[1] lease; ARGV[1] token
 */
export const RELEASE_LEASE = new RedisScript(`${IS_CURRENT}
if current then redis.call('DEL', KEYS[1]) end
return 0
`);

/**
 * The next sequence number, for the lease holder only.
 *
 * KEYS[1] lease, KEYS[2] seq counter; ARGV[1] token
 */
export const NEXT_SEQ = new RedisScript(`${FENCE}
return redis.call('INCR', KEYS[2])
`);

/**
 * Deletes the given keys of a room, the lease first, for the lease holder only (the caller leaves
 * the fencing counter out, so tokens keep growing).
 *
 * KEYS[1] lease, KEYS[2..] the room's other keys; ARGV[1] token
 */
export const DROP_ROOM = new RedisScript(`${FENCE}
redis.call('DEL', unpack(KEYS))
return 0
`);

/**
 * Appends one message to a room's history stream (stream ID `<seq>-0`, so XRANGE by seq is direct)
 * and trims it: by length with `MAXLEN ~` (whole stream nodes, the cheap way), then by age exactly
 * (TRIM_BY_AGE_LUA on the sentAt field, never the entry just added).
 * The lease check comes first, in the same script, so fencing costs no round trip.
 * An ID not above the stream's last generated ID fails in XADD, before any write. Returns the number of
 * entries trimmed: by length (XLEN before and after the XADD, both O(1)) plus by age.
 *
 * KEYS[1] lease, KEYS[2] history stream
 * ARGV[1] token, [2] entry ID, [3] maxLength, [4] age cutoff ms ('' = no age bound),
 *     [5] priority, [6] sender, [7] sentAtMs, [8] body   (fields p, s, t, b: t is the 6th reply item)
 */
export const APPEND_HISTORY = new RedisScript(`${FENCE}${TRIM_BY_AGE_LUA}
local before = redis.call('XLEN', KEYS[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], ARGV[2], 'p', ARGV[5], 's', ARGV[6], 't', ARGV[7], 'b', ARGV[8])
local trimmed = before + 1 - redis.call('XLEN', KEYS[2])
if ARGV[4] == '' then return trimmed end
return trimmed + trim_by_age(KEYS[2], tonumber(ARGV[4]), ARGV[2], 6)
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
 * trimmed with `MAXLEN ~`; no-ops are skipped. Returns {version, op, key, value} per change. Only for
 * the lease holder.
 *
 * KEYS[1] lease, KEYS[2] attribute hash, KEYS[3] version counter, KEYS[4] change log stream
 * ARGV[1] token, ARGV[2] log length, then triples: op ('s' set | 'd' delete), key, value ('' for a delete)
 */
export const SET_ATTRIBUTES = new RedisScript(`${FENCE}
local out = {}
for i = 3, #ARGV, 3 do
  local op, key, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[2], key)
  local changed = false
  if op == 's' then
    if current ~= value then
      redis.call('HSET', KEYS[2], key, value)
      changed = true
    end
  elseif current then
    redis.call('HDEL', KEYS[2], key)
    changed = true
  end
  if changed then
    local version = redis.call('INCR', KEYS[3])
    local id = string.format('%d-0', version)
    if op == 's' then
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], id, 'k', key, 'v', value)
    else
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], id, 'k', key)
    end
    out[#out + 1] = {version, op, key, value}
  end
end
return out
`);

/*
 * Membership scripts. A member record is JSON `{"r":role,"j":joinedAtMs,"p":presence}` ("p" absent for
 * a member without a presence); the presence hash counts the members held under each presence, so that
 * a purge reads a few presence IDs, not every member, when nothing expired.
 *
 * KEYS[1] member records hash, KEYS[2] order sorted set, KEYS[3] presence counts hash (all of one room)
 */
const UNCOUNT_PRESENCE = `
local function uncount(presence)
  if presence and redis.call('HINCRBY', KEYS[3], presence, -1) <= 0 then redis.call('HDEL', KEYS[3], presence) end
end
`;

/**
 * Adds or replaces a member record, moving its count from the old presence to the new one. Returns 1
 * when the user was not a member.
 *
 * ARGV[1] user ID, [2] record, [3] presence ('' = none)
 */
export const JOIN_MEMBER = new RedisScript(`${UNCOUNT_PRESENCE}
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then uncount(cjson.decode(old).p) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[3], 1) end
if old then return 0 end
return 1
`);

/**
 * Removes a member record, only one held under ARGV[2] when that is not ''. Returns 1 when removed.
 *
 * ARGV[1] user ID, [2] presence the record must be held under ('' = any)
 */
export const LEAVE_MEMBER = new RedisScript(`${UNCOUNT_PRESENCE}
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local presence = cjson.decode(old).p
if ARGV[2] ~= '' and presence ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
uncount(presence)
return 1
`);

/**
 * Drops every member held under one of the expired presences ARGV[1..n] (which the caller found gone
 * from the presence keys; an expired presence never comes back, so the check need not be in this
 * script) and returns their user IDs. Presences the room no longer counts are skipped, so a repeated
 * purge is cheap; otherwise the member hash is walked once.
 */
export const PURGE_PRESENCE = new RedisScript(`
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
  local presence = cjson.decode(records[i + 1]).p
  if presence and dead[presence] then
    redis.call('HDEL', KEYS[1], records[i])
    redis.call('ZREM', KEYS[2], records[i])
    purged[#purged + 1] = records[i]
  end
end
return purged
`);
