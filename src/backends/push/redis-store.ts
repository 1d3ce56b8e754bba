import type { Redis } from 'ioredis';
import { LivemuxError } from '../../protocol/errors.js';
import type { Priority } from '../../protocol/constants.js';
import { RedisHandle, quit, type RedisConnectionOptions } from '../kit/redis/redis-handle.js';
import { RedisScript } from '../kit/redis/redis-script.js';
import { PUSH_STORE_DEFAULTS } from './memory-store.js';
import { ALL_TOPIC, type AckEntry, type Claim, type PushAudience, type PushRecord, type PushStatus, type PushStore } from './store.js';

/** Where to connect (or the connection to use), how to name keys, and how long devices are kept. */
export interface RedisPushStoreOptions extends RedisConnectionOptions {
  /** Prepended to every key (default `livemux:push:`), so several deployments can share one Redis. */
  readonly keyPrefix?: string;
  /** Devices not seen for this long are forgotten with their topics (default 30 days). */
  readonly deviceRetentionMs?: number;
  /** Most pushes one topic log keeps (default 1000). */
  readonly topicLogLength?: number;
}

/**
 * Claims an id: `done` with the record when it exists, `claimed` when the caller now holds it (PX
 * lapse), else `pending`. KEYS[1] record, KEYS[2] claim; ARGV[1] claim ttl ms.
 */
const CLAIM = new RedisScript(`
local record = redis.call('HGET', KEYS[1], 'r')
if record then return {'done', record} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return {'claimed'} end
return {'pending'}
`);

/**
 * Counts a device's acknowledgement (or, into the replaced set, a replaced copy) once, for a topic push
 * that exists and that the device was subscribed to when it was sent (a device cannot count for pushes
 * it was never sent); the set lives as long as the record. KEYS[1] record, KEYS[2] the set; ARGV[1]
 * device, ARGV[2] key prefix. Returns 1 when new.
 */
const COUNT_DEVICE = new RedisScript(`
local f = redis.call('HMGET', KEYS[1], 'f', 't', 's')
if not f[1] or f[2] == '' then return 0 end
local since = redis.call('ZSCORE', ARGV[2] .. 's:' .. f[2], ARGV[1])
if not since or tonumber(since) > tonumber(f[3]) then return 0 end
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 1 then redis.call('PEXPIREAT', KEYS[2], f[1]) end
return added
`);

/**
 * Marks a device seen at ARGV[2] (first time, or after it lapsed: a fresh device in ALL_TOPIC), forgets
 * up to 10 devices past their retention, and returns the device's topics as a flat field/value list.
 * KEYS[1] the device's topics hash, KEYS[2] the seen zset; ARGV[1] device, ARGV[2] now, ARGV[3]
 * retention ms, ARGV[4] key prefix, ARGV[5] ALL_TOPIC.
 */
const TOUCH = new RedisScript(`
local now = tonumber(ARGV[2])
local horizon = now - tonumber(ARGV[3])
local function forget(device)
  local key = ARGV[4] .. 'd:' .. device
  for _, topic in ipairs(redis.call('HKEYS', key)) do redis.call('ZREM', ARGV[4] .. 's:' .. topic, device) end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[2], device)
end
local seen = redis.call('ZSCORE', KEYS[2], ARGV[1])
if seen and tonumber(seen) <= horizon then forget(ARGV[1]); seen = false end
if not seen then
  redis.call('HSET', KEYS[1], ARGV[5], now)
  redis.call('ZADD', ARGV[4] .. 's:' .. ARGV[5], now, ARGV[1])
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
for _, stale in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', horizon, 'LIMIT', 0, 10)) do forget(stale) end
return redis.call('HGETALL', KEYS[1])
`);

/**
 * Subscribes a device to the topics ARGV[5..] at ARGV[2] unless it would then have more than ARGV[3]
 * (ALL_TOPIC not counted): returns 0 then, changing nothing, else 1. KEYS[1] the device's topics hash;
 * ARGV[1] device, ARGV[4] key prefix.
 */
const SUBSCRIBE = new RedisScript(`
local count = redis.call('HLEN', KEYS[1]) - 1
local added = {}
for i = 5, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 and not added[ARGV[i]] then added[ARGV[i]] = true; count = count + 1 end
end
if count > tonumber(ARGV[3]) then return 0 end
for topic in pairs(added) do
  redis.call('HSET', KEYS[1], topic, ARGV[2])
  redis.call('ZADD', ARGV[4] .. 's:' .. topic, ARGV[2], ARGV[1])
end
return 1
`);

/** Unsubscribes ARGV[3..]. KEYS[1] the device's topics hash; ARGV[1] device, ARGV[2] key prefix. */
const UNSUBSCRIBE = new RedisScript(`
for i = 3, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then redis.call('ZREM', ARGV[2] .. 's:' .. ARGV[i], ARGV[1]) end
end
return 1
`);

/**
 * The topic pushes a device is owed: for each (topic ARGV[2k+3], since ARGV[2k+4]), the log entries
 * sent at or after `since` whose record exists, has not expired at ARGV[2], and is neither acked by nor
 * replaced for the device ARGV[1]. Returns their records (JSON). ARGV[3..]: topic, since pairs; the
 * key prefix is ARGV[#ARGV].
 */
const BACKLOG = new RedisScript(`
local prefix = ARGV[#ARGV]
local now = tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV - 1, 2 do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', prefix .. 'log:' .. ARGV[i], ARGV[i + 1], '+inf')) do
    local tag = '{' .. id .. '}'
    local fields = redis.call('HMGET', prefix .. 'p:' .. tag, 'r', 'e')
    if fields[1] and tonumber(fields[2]) > now
      and redis.call('SISMEMBER', prefix .. 'a:' .. tag, ARGV[1]) == 0
      and redis.call('SISMEMBER', prefix .. 'x:' .. tag, ARGV[1]) == 0 then
      out[#out + 1] = fields[1]
    end
  end
end
return out
`);

/** Sum of HGET(n:<node>, topic) over live nodes, dropping lapsed ones. KEYS[1] nodes set; ARGV[1] topic, ARGV[2] prefix. */
const ONLINE_COUNT = new RedisScript(`
local total = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. 'n:' .. node
  if redis.call('EXISTS', key) == 0 then redis.call('SREM', KEYS[1], node)
  else total = total + tonumber(redis.call('HGET', key, ARGV[1]) or '0') end
end
return total
`);

/** Proxy id → nodes, over live nodes (dropping lapsed ones): a flat list proxy, node, … KEYS[1] nodes set; ARGV[1] prefix. */
const PROXY_NODES = new RedisScript(`
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'n:' .. node) == 0 then redis.call('SREM', KEYS[1], node)
  else
    for _, proxy in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'px:' .. node)) do out[#out + 1] = proxy; out[#out + 1] = node end
  end
end
return out
`);

/**
 * GCRA (the generic cell rate algorithm, as in RFC 2697's token bucket): KEYS[1] holds the key's
 * theoretical arrival time; ARGV[1] ms between calls (1000 / rate), ARGV[2] burst. Uses Redis's own
 * clock, so nodes with skewed clocks share one allowance. Returns 0 (admitted) or the ms to wait.
 */
const TAKE_CALL = new RedisScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
if tat - now > tolerance then return math.ceil(tat - now - tolerance) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
return 0
`);

/** The longest a push can live (28 days, the API's ttl_s bound): log entries older than this are dropped. */
const MAX_LOG_AGE_MS = 28 * 24 * 3600_000;

/**
 * PushStore on Redis (6.2 or later) through ioredis, so any Push node accepts any call and a node's
 * death loses nothing stored. Under `<prefix>`:
 *
 * | key          | type       | holds |
 * |--------------|------------|-------|
 * | p:{id}       | hash       | r: the record (JSON), e: expiresAtMs, f: when to forget it, t: topic, s: sentAtMs; PEXPIREAT f |
 * | c:{id}       | string     | a creation claim, PX the claim TTL |
 * | a:{id}       | set        | devices that acknowledged the push; PEXPIREAT f |
 * | x:{id}       | set        | devices whose copy a newer push of the same collapse key replaced |
 * | d:<device>   | hash       | topic → subscribed at (ms), ALL_TOPIC included |
 * | seen         | sorted set | device → last seen (ms); devices past the retention are forgotten |
 * | s:<topic>    | sorted set | device → subscribed at: the topic's subscribers |
 * | log:<topic>  | sorted set | push id → sent at: the topic's pushes with a TTL (bounded) |
 * | n:<node>     | hash       | topic → devices online on that node; PX the node TTL |
 * | px:<node>    | set        | proxies attached to that node; PX the node TTL |
 * | nodes        | set        | nodes that wrote online counts (lapsed ones are dropped when counted) |
 * | rate:<key>   | string     | an API key's next allowed call time (GCRA), PX about its burst's length |
 *
 * `forward` publishes on the channel `<prefix>to:<node>`, which that node's `listen` subscribes to.
 *
 * A push's keys share the `{id}` hash tag; device and topic scripts span several keys, so the store
 * needs a single Redis (standalone or Sentinel-managed), not Redis Cluster.
 */
export class RedisPushStore implements PushStore {
  private readonly link: RedisHandle;
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly deviceRetentionMs: number;
  private readonly topicLogLength: number;
  private readonly onError: ((err: Error) => void) | undefined;
  /** The connection `listen` subscribes on; null until then. */
  private subscriber: Redis | null = null;

  constructor(options: RedisPushStoreOptions = {}) {
    this.onError = options.onError;
    this.prefix = options.keyPrefix ?? 'livemux:push:';
    this.deviceRetentionMs = options.deviceRetentionMs ?? PUSH_STORE_DEFAULTS.deviceRetentionMs;
    this.topicLogLength = options.topicLogLength ?? PUSH_STORE_DEFAULTS.topicLogLength;
    this.link = new RedisHandle(options, (method) => new LivemuxError('ERR_STORE_CLOSED', `push store ${method}: store is closed`));
    this.redis = this.link.redis;
  }

  async claim(id: string, claimTtlMs: number): Promise<Claim> {
    this.link.ensureOpen('claim');
    const reply = (await this.run(CLAIM, [this.pushKey('p', id), this.pushKey('c', id)], [claimTtlMs])) as [string, string?];
    if (reply[0] === 'done') return { kind: 'done', record: decodeRecord(reply[1]!) };
    return { kind: reply[0] === 'claimed' ? 'claimed' : 'pending' };
  }

  async complete(record: PushRecord, retentionMs: number): Promise<void> {
    this.link.ensureOpen('complete');
    const forget = record.expiresAtMs + retentionMs;
    const key = this.pushKey('p', record.id);
    const multi = this.redis
      .multi()
      .hset(key, 'r', encodeRecord(record), 'e', record.expiresAtMs, 'f', forget, 't', record.topic, 's', record.sentAtMs)
      .pexpireat(key, forget)
      .del(this.pushKey('c', record.id));
    if (record.audience !== 'users' && record.ttlS > 0) {
      const log = `${this.prefix}log:${record.topic}`;
      multi
        .zadd(log, record.sentAtMs, record.id)
        .zremrangebyscore(log, '-inf', record.sentAtMs - MAX_LOG_AGE_MS)
        .zremrangebyrank(log, 0, -this.topicLogLength - 1);
    }
    await this.link.transaction(multi);
  }

  async release(id: string): Promise<void> {
    this.link.ensureOpen('release');
    await this.link.io(this.redis.del(this.pushKey('c', id)));
  }

  async status(id: string): Promise<PushStatus | null> {
    this.link.ensureOpen('status');
    const [record, delivered, replaced] = (await this.link.transaction(
      this.redis.multi().hget(this.pushKey('p', id), 'r').scard(this.pushKey('a', id)).scard(this.pushKey('x', id)),
    )) as [string | null, number, number];
    return record === null ? null : { record: decodeRecord(record), delivered, replaced };
  }

  async ack(entries: readonly AckEntry[]): Promise<number> {
    this.link.ensureOpen('ack');
    const replies = await Promise.all(entries.map(({ id, device }) => this.run(COUNT_DEVICE, [this.pushKey('p', id), this.pushKey('a', id)], [device, this.prefix])));
    return replies.reduce<number>((n, r) => n + Number(r), 0);
  }

  async markReplaced(ids: readonly string[], device: string): Promise<void> {
    this.link.ensureOpen('markReplaced');
    await Promise.all(ids.map((id) => this.run(COUNT_DEVICE, [this.pushKey('p', id), this.pushKey('x', id)], [device, this.prefix])));
  }

  async touchDevice(device: string, nowMs: number): Promise<Map<string, number>> {
    this.link.ensureOpen('touchDevice');
    const flat = (await this.run(
      TOUCH,
      [this.deviceKey(device), `${this.prefix}seen`],
      [device, nowMs, this.deviceRetentionMs, this.prefix, ALL_TOPIC],
    )) as string[];
    const topics = new Map<string, number>();
    for (let i = 0; i < flat.length; i += 2) topics.set(flat[i]!, Number(flat[i + 1]));
    return topics;
  }

  async subscribe(device: string, topics: readonly string[], nowMs: number, maxTopics: number): Promise<string[] | null> {
    this.link.ensureOpen('subscribe');
    await this.touchDevice(device, nowMs);
    const ok = await this.run(SUBSCRIBE, [this.deviceKey(device)], [device, nowMs, maxTopics, this.prefix, ...topics]);
    return ok === 1 ? this.topicList(device) : null;
  }

  async unsubscribe(device: string, topics: readonly string[]): Promise<string[]> {
    this.link.ensureOpen('unsubscribe');
    const removable = topics.filter((t) => t !== ALL_TOPIC);
    if (removable.length > 0) await this.run(UNSUBSCRIBE, [this.deviceKey(device)], [device, this.prefix, ...removable]);
    return this.topicList(device);
  }

  async subscriberCount(topic: string): Promise<number> {
    this.link.ensureOpen('subscriberCount');
    const horizon = Date.now() - this.deviceRetentionMs;
    // Devices past the retention are only swept a few at a time (TOUCH): ALL_TOPIC is counted by `seen`.
    if (topic === ALL_TOPIC) return this.link.io(this.redis.zcount(`${this.prefix}seen`, `(${horizon}`, '+inf'));
    return this.link.io(this.redis.zcard(`${this.prefix}s:${topic}`));
  }

  async backlog(device: string, topics: ReadonlyMap<string, number>, nowMs: number): Promise<PushRecord[]> {
    this.link.ensureOpen('backlog');
    const args: (string | number)[] = [device, nowMs];
    for (const [topic, since] of topics) args.push(topic, since);
    args.push(this.prefix);
    const records = ((await this.run(BACKLOG, [], args)) as string[]).map(decodeRecord);
    return records.sort((a, b) => a.sentAtMs - b.sentAtMs);
  }

  async setOnline(node: string, counts: ReadonlyMap<string, number>, nodeTtlMs: number): Promise<void> {
    this.link.ensureOpen('setOnline');
    const key = `${this.prefix}n:${node}`;
    const multi = this.redis.multi();
    const set: (string | number)[] = [];
    const removed: string[] = [];
    for (const [topic, count] of counts) {
      if (count > 0) set.push(topic, count);
      else removed.push(topic);
    }
    // A placeholder field keeps the hash (and so the node) alive with no device online.
    multi.hset(key, '', 0, ...set);
    if (removed.length > 0) multi.hdel(key, ...removed);
    multi.pexpire(key, nodeTtlMs).sadd(`${this.prefix}nodes`, node);
    await this.link.transaction(multi);
  }

  async renewNode(node: string, nodeTtlMs: number): Promise<boolean> {
    this.link.ensureOpen('renewNode');
    const [counts] = (await this.link.transaction(
      this.redis.multi().pexpire(`${this.prefix}n:${node}`, nodeTtlMs).pexpire(`${this.prefix}px:${node}`, nodeTtlMs),
    )) as [number, number];
    return counts === 1;
  }

  async onlineCount(topic: string): Promise<number> {
    this.link.ensureOpen('onlineCount');
    return Number(await this.run(ONLINE_COUNT, [`${this.prefix}nodes`], [topic, this.prefix]));
  }

  async removeNode(node: string): Promise<void> {
    this.link.ensureOpen('removeNode');
    await this.link.transaction(this.redis.multi().del(`${this.prefix}n:${node}`, `${this.prefix}px:${node}`).srem(`${this.prefix}nodes`, node));
  }

  async setProxies(node: string, proxies: readonly string[], nodeTtlMs: number): Promise<void> {
    this.link.ensureOpen('setProxies');
    const key = `${this.prefix}px:${node}`;
    const multi = this.redis.multi().del(key);
    if (proxies.length > 0) multi.sadd(key, ...proxies).pexpire(key, nodeTtlMs);
    await this.link.transaction(multi.sadd(`${this.prefix}nodes`, node));
  }

  async proxyNodes(): Promise<Map<string, string[]>> {
    this.link.ensureOpen('proxyNodes');
    const flat = (await this.run(PROXY_NODES, [`${this.prefix}nodes`], [this.prefix])) as string[];
    const out = new Map<string, string[]>();
    for (let i = 0; i < flat.length; i += 2) out.set(flat[i]!, [...(out.get(flat[i]!) ?? []), flat[i + 1]!]);
    for (const nodes of out.values()) nodes.sort();
    return out;
  }

  async forward(node: string, message: string): Promise<void> {
    this.link.ensureOpen('forward');
    await this.link.io(this.redis.publish(`${this.prefix}to:${node}`, message));
  }

  async listen(node: string, onMessage: (message: string) => void): Promise<void> {
    this.link.ensureOpen('listen');
    // A subscribed connection can do nothing else: its own, a duplicate of the store's.
    const subscriber = (this.subscriber ??= this.redis.duplicate());
    if (this.onError !== undefined) subscriber.on('error', this.onError);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === `${this.prefix}to:${node}`) onMessage(message);
    });
    await this.link.io(subscriber.subscribe(`${this.prefix}to:${node}`));
  }

  async takeCall(keyName: string, rate: number, burst: number): Promise<number> {
    this.link.ensureOpen('takeCall');
    return Number(await this.run(TAKE_CALL, [`${this.prefix}rate:${keyName}`], [1000 / rate, burst]));
  }

  async close(): Promise<void> {
    const subscriber = this.subscriber;
    this.subscriber = null;
    await Promise.all([this.link.close(), subscriber === null ? undefined : quit(subscriber)]);
  }

  private run(script: RedisScript, keys: readonly string[], args: readonly (string | Buffer | number)[]): Promise<unknown> {
    return this.link.io(script.run(this.redis, keys, args));
  }

  private pushKey(part: 'p' | 'c' | 'a' | 'x', id: string): string {
    return `${this.prefix}${part}:{${id}}`;
  }

  private deviceKey(device: string): string {
    return `${this.prefix}d:${device}`;
  }

  private async topicList(device: string): Promise<string[]> {
    const topics = await this.link.io(this.redis.hkeys(this.deviceKey(device)));
    return topics.filter((t) => t !== ALL_TOPIC).sort();
  }
}

/** A record as stored: short keys, the data as base64. */
function encodeRecord(r: PushRecord): string {
  return JSON.stringify({
    i: r.id,
    k: r.keyName,
    g: r.fingerprint,
    a: r.audience,
    t: r.topic,
    p: r.priority,
    c: r.collapseKey,
    d: r.data.toString('base64'),
    s: r.sentAtMs,
    l: r.ttlS,
    e: r.expiresAtMs,
    n: r.targeted,
  });
}

function decodeRecord(json: string): PushRecord {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(json) as Record<string, unknown>;
  } catch (err) {
    throw new LivemuxError('ERR_STORE_CORRUPT', 'push store: a stored record is not JSON', { cause: err });
  }
  return {
    id: String(v.i),
    keyName: String(v.k),
    fingerprint: String(v.g),
    audience: v.a as PushAudience,
    topic: String(v.t),
    priority: Number(v.p) as Priority,
    collapseKey: String(v.c),
    data: Buffer.from(String(v.d), 'base64'),
    sentAtMs: Number(v.s),
    ttlS: Number(v.l),
    expiresAtMs: Number(v.e),
    targeted: Number(v.n),
  };
}
