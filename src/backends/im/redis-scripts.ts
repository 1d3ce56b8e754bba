import { RedisScript } from '../kit/redis/redis-script.js';
import { INBOX_APPEND_LUA, INBOX_KEYS_LUA, SEQ_OF_LUA } from '../kit/inbox/redis-inbox-scripts.js';
import { TRIM_BY_AGE_LUA } from '../kit/redis/stream-trim.js';

/*
 * Lua scripts of the Redis IM store (redis-store.ts). Each touches the keys of one conversation
 * (hash tag `{c:<conversation id>}`) or of one user (`{u:<user>}`), except the send, which writes the
 * conversation and both users' inboxes in one step: IM needs one Redis primary (not Cluster). History
 * stream entries have the fields i (serverId) s (sender) r (recipient) c (clientMsgId) d (device)
 * t (sentAtMs) b (body), always in that order: values at positions 2, 4, …, 14 of an entry's list.
 */

/**
 * Stores messages, each with its entry appended to both inboxes, each atomically: per message, the
 * dedupe record first (a resend answers {1, '<convSeq> <sentAt> <serverId>'}), then the block check
 * ({2} when the recipient blocked the sender), then seq, history (count and age trimmed), the sender's
 * sent count and the dedupe record; then the inbox entry, `InboxItem { message }` = 0x12, length, the
 * message fields, 0x20 and the conv_seq as a varint (as im-codec.ts inboxMessageBody builds it),
 * appended with the kit's inbox_append to the recipient's inbox and then the sender's: {0, convSeq,
 * the recipient's inbox seq, the sender's, then the age marks (TRIM_BY_AGE_LUA) of the history, the
 * recipient's inbox and the sender's after their age checks, false for a check not made}. Each age
 * check runs only when the message asks for it: redis-store.ts remembers the marks and asks only
 * while a cutoff may have passed one, which saves nearly every send the three GETs of the marks.
 * When a message carries an activity time, both users' conversation lists record the conversation's
 * activity then (ZADD GT), each trimmed to the most recent ARGV[8] peers. A message whose commands fail answers {3, error} and does not stop the others.
 *
 * Answers one reply per message, in order. The sends of one event-loop turn share one call: the
 * per-call costs (the client's command and promise, the server's script call and reply) are paid
 * once for all of them.
 *
 * The script names its keys itself (redis-store.ts's layout; the inboxes' through the kit's
 * inbox_keys) from the prefixes and the ids a message carries, so no key travels in KEYS: each
 * argument costs the client a conversion and the server a parse and a Lua string, and a send named
 * 18 keys, most of them the same ids under other suffixes. Keys a script does not declare are allowed
 * outside Redis Cluster, and the send spans three hash tags anyway: IM needs one Redis primary.
 *
 * ARGV, shared by the call's messages: [1] the store's key prefix, [2] the inboxes' key prefix,
 * [3] dedupe TTL ms, [4] maxMessages, [5] the history's max age ms ('' = none), [6] an inbox's
 * maxEntries, [7] its max age ms ('' = none), [8] most peers a conversation list keeps. Then 12 per
 * message, the n-th message's at 8 + 12 (n - 1) + i: [1] conversation id (store.ts conversationId),
 * [2] serverId, [3] sender, [4] recipient, [5] clientMsgId, [6] sender's device, [7] sentAt,
 * [8] body, [9] the message's encoded fields but conv_seq, [10] now ms (the age cutoffs' clock and the
 * inbox entries' createdAt), [11] activity time ('' = do not record), [12] which age checks to
 * make, a character each for the history, the recipient's inbox and the sender's: '1' = check, '0' =
 * skip (its mark is known to be at or above the cutoff: the check would find nothing to trim). The
 * inbox appends' other arguments are the same for every IM append: no expiry, ref, collapse key or
 * dedupe; the sender's entry has the device as its origin.
 */
export const STORE_MESSAGES = new RedisScript(`${SEQ_OF_LUA}${TRIM_BY_AGE_LUA}${INBOX_APPEND_LUA}${INBOX_KEYS_LUA}
local IM, INBOX, dedupe_ttl, max_messages, max_age = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local inbox_max, inbox_age, max_peers = ARGV[6], ARGV[7], tonumber(ARGV[8])
local function varint(n)
  local out = ''
  while n >= 128 do
    out = out .. string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  return out .. string.char(n)
end
local function store(a)
  local server_id, sender, recipient, cmid, device = ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local sent_at, created_at, due = ARGV[a + 7], ARGV[a + 10], ARGV[a + 12]
  local c = IM .. '{c:' .. ARGV[a + 1] .. '}:'
  local k_dedupe = c .. 'cmid:' .. #sender .. ':' .. sender .. ':' .. cmid
  local seen = redis.call('GET', k_dedupe)
  if seen then return {1, seen} end
  if redis.call('HEXISTS', c .. 'blockers', recipient) == 1 then return {2} end
  local seq = redis.call('INCR', c .. 'seq')
  local id = seq .. '-0'
  local history = c .. 'history'
  redis.call('XADD', history, 'MAXLEN', '~', max_messages, id, 'i', server_id, 's', sender, 'r', recipient, 'c', cmid, 'd', device, 't', sent_at, 'b', ARGV[a + 8])
  local history_mark = false
  if max_age ~= '' and string.byte(due, 1) == 49 then
    local _, head_at = trim_by_age(history, tonumber(created_at) - tonumber(max_age), id, 12, c .. 'oldest')
    history_mark = head_at or false
  end
  redis.call('HINCRBY', c .. 'sent', sender, 1)
  redis.call('SET', k_dedupe, seq .. ' ' .. sent_at .. ' ' .. server_id, 'PX', dedupe_ttl)
  local message = ARGV[a + 9] .. string.char(0x20) .. varint(seq)
  local item = string.char(0x12) .. varint(#message) .. message
  local cutoff = ''
  if inbox_age ~= '' then cutoff = tonumber(created_at) - tonumber(inbox_age) end
  local function append(user, origin, check)
    local keys, channel = inbox_keys(INBOX, user)
    local cut = ''
    if check then cut = cutoff end
    return inbox_append(keys, 1, {inbox_max, cut, created_at, '0', '', '', item, '', channel, '', origin}, 1)
  end
  local to_recipient, recipient_mark = append(recipient, '', string.byte(due, 2) == 49)
  local to_sender, sender_mark = append(sender, device, string.byte(due, 3) == 49)
  if ARGV[a + 11] ~= '' then
    local trim = -(max_peers + 1)
    local mine, theirs = IM .. '{u:' .. sender .. '}:convs', IM .. '{u:' .. recipient .. '}:convs'
    redis.call('ZADD', mine, 'GT', ARGV[a + 11], recipient)
    redis.call('ZREMRANGEBYRANK', mine, 0, trim)
    redis.call('ZADD', theirs, 'GT', ARGV[a + 11], sender)
    redis.call('ZREMRANGEBYRANK', theirs, 0, trim)
  end
  return {0, seq, to_recipient[2], to_sender[2], history_mark, recipient_mark or false, sender_mark or false}
end
local out = {}
for n = 0, (#ARGV - 8) / 12 - 1 do
  local ok, reply = pcall(store, 8 + 12 * n)
  -- A failed redis.call raises a table {err = …} (Redis 7), a Lua error a string.
  if ok then out[n + 1] = reply else out[n + 1] = {3, type(reply) == 'table' and reply.err or tostring(reply)} end
end
return out
`);

/**
 * A page going backwards: up to ARGV[2] entries before ARGV[1] (an XREVRANGE end), newest first, each
 * as {id, fields, recalledAt or '0'}; and the oldest retained ID ('' when none).
 *
 * KEYS[1] history, [2] recalled hash (convSeq → recalledAt)
 */
export const HISTORY = new RedisScript(`
local page = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', ARGV[2])
for i, entry in ipairs(page) do
  page[i] = {entry[1], entry[2], redis.call('HGET', KEYS[2], string.match(entry[1], '^(%d+)')) or '0'}
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local oldest = ''
if #first > 0 then oldest = first[1][1] end
return {oldest, page}
`);

/**
 * Recalls the message at ARGV[2]: {'not_found'}, {'not_sender'}, {'expired'}, or
 * {'recalled' | 'already', fields, recalledAt}.
 *
 * KEYS[1] history, [2] recalled hash; ARGV[1] requester, [2] convSeq, [3] nowMs, [4] window ms
 */
export const RECALL = new RedisScript(`
local found = redis.call('XRANGE', KEYS[1], ARGV[2] .. '-0', ARGV[2] .. '-0')
if #found == 0 then return {'not_found'} end
local fields = found[1][2]
if fields[4] ~= ARGV[1] then return {'not_sender'} end
local at = redis.call('HGET', KEYS[2], ARGV[2])
if at then return {'already', fields, at} end
if tonumber(fields[12]) + tonumber(ARGV[4]) < tonumber(ARGV[3]) then return {'expired'} end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return {'recalled', fields, ARGV[3]}
`);

/**
 * Moves the reader's position forward (capped at the latest seq), recording how many of the peer's
 * messages it covers: the peer's sent count minus the peer's messages after the position (counted in
 * the history). Answers {readSeq, advanced 0|1, unread}.
 *
 * KEYS[1] seq, [2] history, [3] sent counts hash, [4] reads hash (reader → '<readSeq> <peerCount>')
 * ARGV[1] reader, [2] peer, [3] convSeq
 */
export const MARK_READ = new RedisScript(`
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local sent = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
local target = math.min(tonumber(ARGV[3]), last)
local current = redis.call('HGET', KEYS[4], ARGV[1])
local readSeq, peerCount = 0, 0
if current then
  local space = string.find(current, ' ', 1, true)
  readSeq = tonumber(string.sub(current, 1, space - 1))
  peerCount = tonumber(string.sub(current, space + 1))
end
if target <= readSeq then return {readSeq, 0, sent - peerCount} end
local later = 0
local start = (target + 1) .. '-0'
while true do
  local batch = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', 200)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    if entry[2][4] == ARGV[2] then later = later + 1 end
  end
  start = '(' .. batch[#batch][1]
end
redis.call('HSET', KEYS[4], ARGV[1], string.format('%d %d', target, sent - later))
return {target, 1, later}
`);

/**
 * {peer's sent count, the reader's covered count, latest seq} of one conversation.
 *
 * KEYS[1] seq, [2] sent counts hash, [3] reads hash; ARGV[1] reader, [2] peer
 */
export const UNREAD = new RedisScript(`
local current = redis.call('HGET', KEYS[3], ARGV[1])
local covered = 0
if current then covered = tonumber(string.sub(current, string.find(current, ' ', 1, true) + 1)) end
return {tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0'), covered, tonumber(redis.call('GET', KEYS[1]) or '0')}
`);

/**
 * Adds one live session (score = its expiry) after dropping expired ones; the key lives as long as
 * the newest session. Answers 1 when the user had no live session before.
 *
 * KEYS[1] sessions sorted set; ARGV[1] session key, [2] nowMs, [3] expiresAt, [4] ttl ms
 */
export const SESSION_ONLINE = new RedisScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if before == 0 then return 1 end
return 0
`);

/**
 * Removes one session; answers 1 when it was live and none is left.
 *
 * KEYS[1] sessions sorted set; ARGV[1] session key, [2] nowMs
 */
export const SESSION_OFFLINE = new RedisScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
`);

/**
 * Blocks (ARGV[3] = 1) or unblocks ARGV[2] for ARGV[1]: the user's block list and the conversation's
 * record that sends check, together. Answers 0, changing nothing, when a new block would take the list
 * past ARGV[4] entries; else 1.
 *
 * KEYS[1] the user's blocks set, [2] the conversation's blockers hash
 */
export const SET_BLOCKED = new RedisScript(`
if ARGV[3] == '1' then
  if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
  redis.call('SADD', KEYS[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], '1')
else
  redis.call('SREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
`);
