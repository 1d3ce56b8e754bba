import { RedisScript } from '../redis/redis-script.js';
import { TRIM_BY_AGE_LUA } from '../redis/stream-trim.js';

/*
 * Lua scripts of the Redis inbox store (redis-inbox-store.ts). Every key of one script belongs to one
 * user (hash tag `{user}`), so the scripts also run on Redis Cluster. Stream IDs are `<seq>-0`; an
 * entry's fields are t (createdAtMs), x (expiresAtMs, 0 = none), r (ref), k (collapse key), b (body),
 * o (origin device), always all six in that order, so field values sit at reply positions 2, 4, 6, 8,
 * 10, 12.
 */

/** `seq_of(text)`: the seq of a stream ID or of a `<seq> <rest>` record. */
export const SEQ_OF_LUA = `
local function seq_of(text) return tonumber(string.match(text, '^(%d+)')) end
`;

/**
 * `inbox_append(keys, k, args, a)`: appends one entry: dedupe check, seq, XADD with count trimming
 * (`MAXLEN ~`, whole stream nodes), exact age trimming (TRIM_BY_AGE_LUA, never the new entry),
 * collapse index, dedupe record, and the notice on the user's channel. Exported as a Lua function so
 * that a backend's own script can append to inboxes atomically with its own writes (the IM send does);
 * a script that embeds it must include TRIM_BY_AGE_LUA and SEQ_OF_LUA before it.
 *
 * Returns {1, seq, createdAt} for a duplicate; {0, seq} or {0, seq, '<seq> <ref>'} (the superseded
 * entry, still retained) otherwise; and as a second value, when it checked the age, the log's age
 * mark after it (TRIM_BY_AGE_LUA's second value: a script that remembers it may skip the check while
 * the cutoff stays at or below it, by passing '' as the cutoff), else nil. A script that returns the
 * call's result to Redis returns only the first value.
 *
 * keys[k..k+4]: seq counter, log stream, collapse hash (key → '<seq> <ref>'), dedupe record, the age
 *     mark (TRIM_BY_AGE_LUA)
 * args[a..a+10]: maxEntries, age cutoff ms ('' = none), createdAt, expiresAt, ref, collapse key,
 *     body, dedupe TTL ms, notice channel, '1' when deduplicating, origin device ('' = none)
 */
export const INBOX_APPEND_LUA = `
local function inbox_append(keys, k, args, first)
  local k_seq, k_log, k_collapse, k_dedupe, k_mark = keys[k], keys[k + 1], keys[k + 2], keys[k + 3], keys[k + 4]
  local a = first - 1
  if args[a + 10] == '1' then
    local seen = redis.call('GET', k_dedupe)
    if seen then
      local space = string.find(seen, ' ', 1, true)
      return {1, tonumber(string.sub(seen, 1, space - 1)), tonumber(string.sub(seen, space + 1))}
    end
  end
  local seq = redis.call('INCR', k_seq)
  local id = seq .. '-0'
  redis.call('XADD', k_log, 'MAXLEN', '~', args[a + 1], id, 't', args[a + 3], 'x', args[a + 4], 'r', args[a + 5], 'k', args[a + 6], 'b', args[a + 7], 'o', args[a + 11])
  local age_mark = nil
  if args[a + 2] ~= '' then
    local _, head_at = trim_by_age(k_log, tonumber(args[a + 2]), id, 2, k_mark)
    age_mark = head_at
  end
  local superseded = false
  if args[a + 6] ~= '' then
    local old = redis.call('HGET', k_collapse, args[a + 6])
    redis.call('HSET', k_collapse, args[a + 6], seq .. ' ' .. args[a + 5])
    local oldest = seq_of(redis.call('XRANGE', k_log, '-', '+', 'COUNT', 1)[1][1])
    if old and seq_of(old) >= oldest then superseded = old end
    -- Keys whose entries retention removed linger until the index is twice what retention keeps.
    if redis.call('HLEN', k_collapse) > 2 * tonumber(args[a + 1]) + 64 then
      local all = redis.call('HGETALL', k_collapse)
      for i = 1, #all, 2 do
        if seq_of(all[i + 1]) < oldest then redis.call('HDEL', k_collapse, all[i]) end
      end
    end
  end
  if args[a + 10] == '1' then redis.call('SET', k_dedupe, seq .. ' ' .. args[a + 3], 'PX', args[a + 8]) end
  -- One concatenation: chained .. copies the body once per step.
  redis.call('PUBLISH', args[a + 9], table.concat({'e', seq, ' ', args[a + 3], ' ', args[a + 4], ' ', #args[a + 5], ' ', #args[a + 6], ' ', #args[a + 11], '\\n', args[a + 5], args[a + 6], args[a + 11], args[a + 7]}))
  if superseded then return {0, seq, superseded}, age_mark end
  return {0, seq}, age_mark
end
`;

/**
 * `inbox_keys(prefix, user)`: the keys table `inbox_append` takes (seq, log, collapse, dedupe record,
 * age mark), and the user's notice channel, as RedisInboxStore names them (`<prefix>{<user>}:<part>`,
 * its `key`): for a backend script that appends to users it learns from its arguments, so that the
 * client sends one user id instead of five key names. The dedupe record's slot is false: an append
 * through it must not ask for dedupe (args[a + 10] ~= '1').
 */
export const INBOX_KEYS_LUA = `
local function inbox_keys(prefix, user)
  local p = prefix .. '{' .. user .. '}:'
  return {p .. 'seq', p .. 'log', p .. 'collapse', false, p .. 'oldest'}, p .. 'notify'
end
`;

/** Appends one entry (INBOX_APPEND_LUA), KEYS and ARGV as `inbox_append` takes them from position 1. */
export const APPEND = new RedisScript(`${SEQ_OF_LUA}${TRIM_BY_AGE_LUA}${INBOX_APPEND_LUA}
return inbox_append(KEYS, 1, ARGV, 1)
`);

/**
 * One page: the latest seq, the oldest retained seq (latest + 1 when none), the highest seq examined,
 * then each deliverable entry as {seq, t, x, r, k, b, o}. Entries expired at ARGV[3] or superseded (the
 * collapse index names a newer entry for their key) are examined but not returned.
 *
 * KEYS[1] seq counter, [2] log stream, [3] collapse hash
 * ARGV[1] afterSeq, [2] how many to examine, [3] nowMs
 */
export const READ = new RedisScript(`${SEQ_OF_LUA}
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
  if keep then out[#out + 1] = {seq, f[2], f[4], f[6], f[8], f[10], f[12]} end
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
export const ACK = new RedisScript(`${SEQ_OF_LUA}
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
