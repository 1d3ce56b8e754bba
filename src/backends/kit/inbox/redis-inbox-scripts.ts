import { RedisScript } from '../redis/redis-script.js';
import { TRIM_BY_AGE_LUA } from '../redis/stream-trim.js';

/*
 * Lua scripts of the Redis inbox store (redis-inbox-store.ts). Every key of one script belongs to one
 * user (hash tag `{user}`), so the scripts also run on Redis Cluster. Stream IDs are `<seq>-0`; an
 * entry's fields are t (createdAtMs), x (expiresAtMs, 0 = none), r (ref), k (collapse key), b (body),
 * always all five in that order, so field values sit at reply positions 2, 4, 6, 8, 10.
 */

/** The seq of a stream ID or of a `<seq> <rest>` record. */
const SEQ_OF = `
local function seq_of(text) return tonumber(string.match(text, '^(%d+)')) end
`;

/**
 * Appends one entry: dedupe check, seq, XADD with count trimming (`MAXLEN ~`, whole stream nodes),
 * exact age trimming (TRIM_BY_AGE_LUA, never the new entry), collapse index, dedupe record, and the
 * notice on the user's channel: all in one script, so an append is atomic and notices leave in seq order.
 *
 * Returns {1, seq, createdAt} for a duplicate; {0, seq} or {0, seq, '<seq> <ref>'} (the superseded
 * entry, still retained) otherwise.
 *
 * KEYS[1] seq counter, [2] log stream, [3] collapse hash (key → '<seq> <ref>'), [4] dedupe record
 * ARGV[1] maxEntries, [2] age cutoff ms ('' = none), [3] createdAt, [4] expiresAt, [5] ref,
 *     [6] collapse key, [7] body, [8] dedupe TTL ms, [9] notice channel, [10] '1' when deduplicating
 */
export const APPEND = new RedisScript(`${SEQ_OF}${TRIM_BY_AGE_LUA}
if ARGV[10] == '1' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local space = string.find(seen, ' ', 1, true)
    return {1, tonumber(string.sub(seen, 1, space - 1)), tonumber(string.sub(seen, space + 1))}
  end
end
local seq = redis.call('INCR', KEYS[1])
local id = seq .. '-0'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id, 't', ARGV[3], 'x', ARGV[4], 'r', ARGV[5], 'k', ARGV[6], 'b', ARGV[7])
if ARGV[2] ~= '' then trim_by_age(KEYS[2], tonumber(ARGV[2]), id, 2) end
local superseded = false
if ARGV[6] ~= '' then
  local old = redis.call('HGET', KEYS[3], ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[6], seq .. ' ' .. ARGV[5])
  local oldest = seq_of(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1][1])
  if old and seq_of(old) >= oldest then superseded = old end
  -- Keys whose entries retention removed linger until the index is twice what retention keeps.
  if redis.call('HLEN', KEYS[3]) > 2 * tonumber(ARGV[1]) + 64 then
    local all = redis.call('HGETALL', KEYS[3])
    for i = 1, #all, 2 do
      if seq_of(all[i + 1]) < oldest then redis.call('HDEL', KEYS[3], all[i]) end
    end
  end
end
if ARGV[10] == '1' then redis.call('SET', KEYS[4], seq .. ' ' .. ARGV[3], 'PX', ARGV[8]) end
redis.call('PUBLISH', ARGV[9], 'e' .. seq .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. #ARGV[5] .. ' ' .. #ARGV[6] .. '\\n' .. ARGV[5] .. ARGV[6] .. ARGV[7])
if superseded then return {0, seq, superseded} end
return {0, seq}
`);

/**
 * One page: the latest seq, the oldest retained seq (latest + 1 when none), the highest seq examined,
 * then each deliverable entry as {seq, t, x, r, k, b}. Entries expired at ARGV[3] or superseded (the
 * collapse index names a newer entry for their key) are examined but not returned.
 *
 * KEYS[1] seq counter, [2] log stream, [3] collapse hash
 * ARGV[1] afterSeq, [2] how many to examine, [3] nowMs
 */
export const READ = new RedisScript(`${SEQ_OF}
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = tonumber(ARGV[1])
if after >= last then return {last, last + 1, after} end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local oldest = last + 1
if #first > 0 then oldest = seq_of(first[1][1]) end
local batch = redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+', 'COUNT', ARGV[2])
local now = tonumber(ARGV[3])
local out = {last, oldest, after}
for _, entry in ipairs(batch) do
  local seq = seq_of(entry[1])
  local f = entry[2]
  out[3] = seq
  local expires = tonumber(f[4])
  local keep = expires == 0 or expires > now
  if keep and f[8] ~= '' then
    local latest = redis.call('HGET', KEYS[3], f[8])
    keep = (not latest) or seq_of(latest) == seq
  end
  if keep then out[#out + 1] = {seq, f[2], f[4], f[6], f[8], f[10]} end
end
return out
`);

/**
 * Moves a device's cursor forward (never past the latest seq, never back) and stamps its ack time;
 * a device new to the user beyond ARGV[4] devices first evicts the least recently acknowledged one.
 * Returns the cursor.
 *
 * KEYS[1] devices hash (device → '<cursor> <ackedAtMs>'), [2] seq counter
 * ARGV[1] device, [2] seq, [3] nowMs, [4] maxDevices
 */
export const ACK = new RedisScript(`${SEQ_OF}
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local target = math.min(tonumber(ARGV[2]), last)
local current = redis.call('HGET', KEYS[1], ARGV[1])
local cursor = 0
if current then
  cursor = seq_of(current)
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  local all = redis.call('HGETALL', KEYS[1])
  local oldest, oldestAt = nil, nil
  for i = 1, #all, 2 do
    local at = tonumber(string.match(all[i + 1], ' (%d+)$'))
    if oldestAt == nil or at < oldestAt then oldest, oldestAt = all[i], at end
  end
  redis.call('HDEL', KEYS[1], oldest)
end
if target > cursor then cursor = target end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %s', cursor, ARGV[3]))
return cursor
`);
