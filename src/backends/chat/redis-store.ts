import { Redis } from 'ioredis';
import { RedisHandle, type RedisConnectionOptions } from '../kit/redis/redis-handle.js';
import {
  ACQUIRE_LEASE,
  APPEND_HISTORY,
  DROP_ROOM,
  JOIN_MEMBER,
  LEAVE_MEMBER,
  MEMBER_PAGE,
  NEXT_SEQ,
  PURGE_PRESENCE,
  RELEASE_LEASE,
  RENEW_LEASE,
  SET_ATTRIBUTES,
  STALE_OWNER_REPLY,
} from './redis-scripts.js';
import type { RedisScript } from '../kit/redis/redis-script.js';
import {
  badCursor,
  checkAttributeChanges,
  checkHolder,
  checkInteger,
  checkLimit,
  checkLimits,
  checkMember,
  checkMessage,
  checkPresence,
  checkUserId,
  historyOrderError,
  staleOwner,
  storeClosed,
  toPriority,
  toRole,
} from './store-checks.js';
import {
  DEFAULT_ATTRIBUTE_LOG_LENGTH,
  MAX_HISTORY_READ,
  MAX_MEMBER_PAGE,
  type AttributeChange,
  type ChatStore,
  type HistoryLimits,
  type LeaseGrant,
  type Member,
  type Page,
  type StoredMessage,
} from './store.js';

/** Where to connect (or the connection to use), and how to name keys. */
export interface RedisChatStoreOptions extends RedisConnectionOptions {
  /** Prepended to every key (default `livemux:chat:`), so several deployments can share one Redis. */
  readonly keyPrefix?: string;
  /** Attribute changes kept per room for `attributeChanges` (at least; default 1000). */
  readonly attributeLogLength?: number;
}

/**
 * The keys of one room; the `{room}` hash tag keeps them in one cluster slot, as scripts require.
 * `dropRoom` deletes the lease and DROPPED; only the fencing counter outlives a drop.
 */
const DROPPED = ['seq', 'history', 'members', 'order', 'presence', 'mutes', 'bans', 'whitelist', 'attrs', 'attrver', 'attrlog'] as const;
type Part = (typeof DROPPED)[number] | 'lease' | 'fence';

/**
 * ChatStore on Redis (6.2 or later) through ioredis, so a room's new owner continues where the old one
 * stopped. Per room, under `<prefix>{<room>}:`:
 *
 * | key       | type       | holds |
 * |-----------|------------|-------|
 * | seq       | string     | last sequence number (INCR) |
 * | history   | stream     | messages, ID `<seq>-0`, fields p (priority) s (sender) t (sentAtMs) b (body) |
 * | members   | hash       | userId → `{"r":role,"j":joinedAtMs,"p":presence}` ("p" only for a member with a presence) |
 * | order     | sorted set | userIds, score 0: pages walk it by ZRANGEBYLEX, the cursor is the last userId |
 * | presence  | hash       | presence ID → members held under it |
 * | mutes     | hash       | userId → untilMs |
 * | bans      | hash       | userId → untilMs |
 * | whitelist | set        | whitelisted userIds |
 * | attrs     | hash       | attribute key → value |
 * | attrver   | string     | version of the last attribute change (INCR) |
 * | attrlog   | stream     | attribute changes, ID `<version>-0`, fields k and v (absent for a delete) |
 * | lease     | string     | `<token> <holder>` with a PX expiry: the write lease |
 * | fence     | string     | last fencing token handed out (INCR); kept by `dropRoom` |
 *
 * Ordered writes run as Lua scripts that check the lease token first, in the same round trip.
 * Presences are not room state: each is a key `<prefix>{presence}:<id>` with a PX expiry (Redis's
 * clock), so all presences share one hash tag and one MGET checks a room's presences.
 * Multi-key writes run as one Lua script or MULTI; reads that must agree (messages with the oldest
 * seq, the map with its version) run in one MULTI. Expired mutes and bans stay until lifted or the
 * room is dropped: expiry is judged with the caller's clock, not the server's, as the contract says.
 */
export class RedisChatStore implements ChatStore {
  private readonly handle: RedisHandle;
  private readonly prefix: string;
  private readonly attributeLogLength: number;

  /**
   * Opens its own connection from `url` or `host`/`port`, or uses the `connection` it is lent (a bare
   * Redis is shorthand for `{ connection }`), which `close` then leaves open for its owner.
   */
  constructor(opts: RedisChatStoreOptions | Redis = {}) {
    const options: RedisChatStoreOptions = opts instanceof Redis ? { connection: opts } : opts;
    this.prefix = options.keyPrefix ?? 'livemux:chat:';
    this.attributeLogLength = options.attributeLogLength ?? DEFAULT_ATTRIBUTE_LOG_LENGTH;
    checkInteger('attributeLogLength', this.attributeLogLength, 1);
    this.handle = new RedisHandle(options, storeClosed);
  }

  private get redis(): Redis {
    return this.handle.redis;
  }

  async acquireLease(room: string, holder: string, ttlMs: number): Promise<LeaseGrant> {
    this.ensureOpen('acquireLease');
    checkHolder(holder);
    checkInteger('acquireLease ttlMs', ttlMs, 1);
    const reply = (await this.handle.io(ACQUIRE_LEASE.run(this.redis, [this.key(room, 'lease'), this.key(room, 'fence')], [holder, ttlMs]))) as
      | [1, number]
      | [0, string, number];
    if (reply[0] === 1) return { acquired: true, token: reply[1] };
    return { acquired: false, holder: reply[1], remainingMs: Math.max(0, reply[2]) };
  }

  async renewLease(room: string, token: number, ttlMs: number): Promise<boolean> {
    this.ensureOpen('renewLease');
    checkInteger('renewLease token', token, 1);
    checkInteger('renewLease ttlMs', ttlMs, 1);
    return (await this.handle.io(RENEW_LEASE.run(this.redis, [this.key(room, 'lease')], [token, ttlMs]))) === 1;
  }

  async releaseLease(room: string, token: number): Promise<void> {
    this.ensureOpen('releaseLease');
    checkInteger('releaseLease token', token, 1);
    await this.handle.io(RELEASE_LEASE.run(this.redis, [this.key(room, 'lease')], [token]));
  }

  async nextSeq(room: string, token: number): Promise<number> {
    return (await this.fenced('nextSeq', room, token, NEXT_SEQ, [this.key(room, 'seq')], [])) as number;
  }

  async appendHistory(room: string, token: number, message: StoredMessage, limits: HistoryLimits, nowMs: number): Promise<number> {
    this.ensureOpen('appendHistory');
    checkMessage(message);
    checkLimits(limits);
    checkInteger('appendHistory nowMs', nowMs, 0);
    const cutoff = limits.maxAgeMs === Number.POSITIVE_INFINITY ? '' : String(nowMs - limits.maxAgeMs);
    try {
      return (await this.fenced(
        'appendHistory',
        room,
        token,
        APPEND_HISTORY,
        [this.key(room, 'history')],
        [`${message.seq}-0`, limits.maxLength, cutoff, message.priority, message.senderId, message.sentAtMs, message.body],
      )) as number;
    } catch (err) {
      if (err instanceof Error && /equal or smaller than the target stream top item/.test(err.message)) {
        throw historyOrderError(room, message.seq, null, err);
      }
      throw err;
    }
  }

  async readHistory(room: string, afterSeq: number, limit: number): Promise<{ messages: StoredMessage[]; oldestSeq: number | null }> {
    this.ensureOpen('readHistory');
    checkInteger('readHistory afterSeq', afterSeq, 0);
    const count = checkLimit('readHistory limit', limit, MAX_HISTORY_READ);
    const key = this.key(room, 'history');
    const [entries, oldest] = await this.handle.transaction(
      this.redis.multi().xrangeBuffer(key, `${afterSeq + 1}-0`, '+', 'COUNT', count).xrange(key, '-', '+', 'COUNT', 1),
    );
    const first = (oldest as [string, string[]][])[0];
    return {
      messages: (entries as StreamEntry[]).map(toMessage),
      oldestSeq: first ? seqOf(first[0]) : null,
    };
  }

  async latestHistory(room: string, limit: number): Promise<StoredMessage[]> {
    this.ensureOpen('latestHistory');
    const count = checkLimit('latestHistory limit', limit, MAX_HISTORY_READ);
    const entries = await this.handle.io(this.redis.xrevrangeBuffer(this.key(room, 'history'), '+', '-', 'COUNT', count));
    return entries.reverse().map(toMessage);
  }

  async join(room: string, member: Member): Promise<boolean> {
    this.ensureOpen('join');
    checkMember(member);
    const record = JSON.stringify({ r: member.role, j: member.joinedAtMs, p: member.presence });
    return (await this.handle.io(JOIN_MEMBER.run(this.redis, this.memberKeys(room), [member.userId, record, member.presence ?? '']))) === 1;
  }

  async leave(room: string, userId: string, presence?: string): Promise<boolean> {
    this.ensureOpen('leave');
    if (presence !== undefined) checkPresence(presence, 'leave presence');
    return (await this.handle.io(LEAVE_MEMBER.run(this.redis, this.memberKeys(room), [userId, presence ?? '']))) === 1;
  }

  async member(room: string, userId: string): Promise<Member | null> {
    this.ensureOpen('member');
    const record = await this.handle.io(this.redis.hget(this.key(room, 'members'), userId));
    return record === null ? null : toMember(userId, record);
  }

  async members(room: string, cursor: string | null, limit: number): Promise<Page<Member>> {
    this.ensureOpen('members');
    const count = checkLimit('members limit', limit, MAX_MEMBER_PAGE);
    const start = cursor === null ? '-' : `(${decodeCursor(cursor)}`;
    // One more than asked tells whether a next page exists.
    const keys = [this.key(room, 'order'), this.key(room, 'members')];
    const [ids, records] = (await this.handle.io(MEMBER_PAGE.run(this.redis, keys, [start, count + 1]))) as [string[], (string | null)[]];
    const items: Member[] = [];
    const end = Math.min(ids.length, count);
    for (let i = 0; i < end; i++) {
      const record = records[i];
      // join and leave write both keys in one script, so a record is missing only if written by someone else.
      if (record !== null && record !== undefined) items.push(toMember(ids[i] as string, record));
    }
    return { items, next: ids.length > count ? encodeCursor(ids[count - 1] as string) : null };
  }

  async memberCount(room: string): Promise<number> {
    this.ensureOpen('memberCount');
    return this.handle.io(this.redis.hlen(this.key(room, 'members')));
  }

  async startPresence(presence: string, ttlMs: number): Promise<void> {
    this.ensureOpen('startPresence');
    checkPresence(presence, 'startPresence presence');
    checkInteger('startPresence ttlMs', ttlMs, 1);
    await this.handle.io(this.redis.set(this.presenceKey(presence), '1', 'PX', ttlMs));
  }

  async renewPresence(presence: string, ttlMs: number): Promise<boolean> {
    this.ensureOpen('renewPresence');
    checkPresence(presence, 'renewPresence presence');
    checkInteger('renewPresence ttlMs', ttlMs, 1);
    // XX: only a key that still exists, so an expired presence stays expired.
    return (await this.handle.io(this.redis.set(this.presenceKey(presence), '1', 'PX', ttlMs, 'XX'))) === 'OK';
  }

  async endPresence(presence: string): Promise<void> {
    this.ensureOpen('endPresence');
    checkPresence(presence, 'endPresence presence');
    await this.handle.io(this.redis.del(this.presenceKey(presence)));
  }

  async purgeExpired(room: string): Promise<string[]> {
    this.ensureOpen('purgeExpired');
    const presences = await this.handle.io(this.redis.hkeys(this.key(room, 'presence')));
    if (presences.length === 0) return [];
    const alive = await this.handle.io(this.redis.mget(presences.map((presence) => this.presenceKey(presence))));
    const expired = presences.filter((_, i) => alive[i] === null);
    if (expired.length === 0) return [];
    return (await this.handle.io(PURGE_PRESENCE.run(this.redis, this.memberKeys(room), expired))) as string[];
  }

  async setMute(room: string, userId: string, untilMs: number): Promise<void> {
    await this.setExpiry('setMute', this.key(room, 'mutes'), userId, untilMs);
  }

  async setBan(room: string, userId: string, untilMs: number): Promise<void> {
    await this.setExpiry('setBan', this.key(room, 'bans'), userId, untilMs);
  }

  async muteUntil(room: string, userId: string, nowMs: number): Promise<number> {
    return this.activeExpiry('muteUntil', this.key(room, 'mutes'), userId, nowMs);
  }

  async banUntil(room: string, userId: string, nowMs: number): Promise<number> {
    return this.activeExpiry('banUntil', this.key(room, 'bans'), userId, nowMs);
  }

  async setWhitelisted(room: string, userId: string, on: boolean): Promise<void> {
    this.ensureOpen('setWhitelisted');
    checkUserId(userId, 'setWhitelisted userId');
    const key = this.key(room, 'whitelist');
    await this.handle.io(on ? this.redis.sadd(key, userId) : this.redis.srem(key, userId));
  }

  async isWhitelisted(room: string, userId: string): Promise<boolean> {
    this.ensureOpen('isWhitelisted');
    return (await this.handle.io(this.redis.sismember(this.key(room, 'whitelist'), userId))) === 1;
  }

  async setAttributes(room: string, token: number, changes: Readonly<Record<string, string | null>>): Promise<AttributeChange[]> {
    this.ensureOpen('setAttributes');
    const entries = checkAttributeChanges(changes);
    const args: (string | number)[] = [this.attributeLogLength];
    for (const [key, value] of entries) args.push(value === null ? 'd' : 's', key, value ?? '');
    const keys = [this.key(room, 'attrs'), this.key(room, 'attrver'), this.key(room, 'attrlog')];
    const reply = (await this.fenced('setAttributes', room, token, SET_ATTRIBUTES, keys, args)) as [number, string, string, string][];
    return reply.map(([version, op, key, value]) => ({ version, key, value: op === 'd' ? null : value }));
  }

  async attributes(room: string): Promise<{ values: Record<string, string>; version: number }> {
    this.ensureOpen('attributes');
    const [values, version] = await this.handle.transaction(this.redis.multi().hgetall(this.key(room, 'attrs')).get(this.key(room, 'attrver')));
    return { values: { ...(values as Record<string, string>) }, version: Number(version ?? 0) };
  }

  async attributeChanges(room: string, afterVersion: number): Promise<AttributeChange[] | null> {
    this.ensureOpen('attributeChanges');
    checkInteger('attributeChanges afterVersion', afterVersion, 0);
    const [current, entries] = await this.handle.transaction(
      this.redis.multi().get(this.key(room, 'attrver')).xrange(this.key(room, 'attrlog'), `${afterVersion + 1}-0`, '+'),
    );
    const version = Number(current ?? 0);
    if (afterVersion > version) return null;
    if (afterVersion === version) return [];
    const changes = (entries as [string, string[]][]).map(([id, fields]): AttributeChange => ({
      version: seqOf(id),
      key: fields[1] as string,
      value: fields.length > 2 ? (fields[3] as string) : null,
    }));
    // Versions are consecutive, so the log reaches back far enough iff it starts right after afterVersion.
    return changes[0]?.version === afterVersion + 1 ? changes : null;
  }

  async dropRoom(room: string, token: number): Promise<void> {
    await this.fenced('dropRoom', room, token, DROP_ROOM, DROPPED.map((part) => this.key(room, part)), []);
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  private key(room: string, part: Part): string {
    return `${this.prefix}{${room}}:${part}`;
  }

  /** The keys the membership scripts take, in their KEYS order. */
  private memberKeys(room: string): string[] {
    return [this.key(room, 'members'), this.key(room, 'order'), this.key(room, 'presence')];
  }

  private presenceKey(presence: string): string {
    return `${this.prefix}{presence}:${presence}`;
  }

  /**
   * Runs an ordered write script: KEYS are the room's lease key then `keys`, ARGV the token then
   * `args`; the script's STALE_OWNER refusal becomes ERR_STALE_OWNER.
   */
  private async fenced(
    method: string,
    room: string,
    token: number,
    script: RedisScript,
    keys: readonly string[],
    args: readonly (string | Buffer | number)[],
  ): Promise<unknown> {
    this.ensureOpen(method);
    checkInteger(`${method} token`, token, 1);
    try {
      return await this.handle.io(script.run(this.redis, [this.key(room, 'lease'), ...keys], [token, ...args]));
    } catch (err) {
      if (err instanceof Error && err.message.startsWith(STALE_OWNER_REPLY)) throw staleOwner(method, room, token, err);
      throw err;
    }
  }

  private ensureOpen(method: string): void {
    this.handle.ensureOpen(method);
  }

  private async setExpiry(method: string, key: string, userId: string, untilMs: number): Promise<void> {
    this.ensureOpen(method);
    checkInteger(`${method} untilMs`, untilMs, 0);
    await this.handle.io(untilMs === 0 ? this.redis.hdel(key, userId) : this.redis.hset(key, userId, untilMs));
  }

  private async activeExpiry(method: string, key: string, userId: string, nowMs: number): Promise<number> {
    this.ensureOpen(method);
    checkInteger(`${method} nowMs`, nowMs, 0);
    const until = Number((await this.handle.io(this.redis.hget(key, userId))) ?? 0);
    return nowMs < until ? until : 0;
  }
}

type StreamEntry = [id: Buffer, fields: Buffer[]];

/** The seq (or version) in a stream ID `<n>-0`. */
function seqOf(id: string | Buffer): number {
  const text = id.toString();
  return Number(text.slice(0, text.indexOf('-')));
}

/** A history entry, written by APPEND_HISTORY with fields p, s, t, b in that order. */
function toMessage([id, fields]: StreamEntry): StoredMessage {
  return {
    seq: seqOf(id),
    priority: toPriority(Number((fields[1] as Buffer).toString())),
    senderId: (fields[3] as Buffer).toString(),
    sentAtMs: Number((fields[5] as Buffer).toString()),
    body: fields[7] as Buffer,
  };
}

function toMember(userId: string, record: string): Member {
  const parsed = JSON.parse(record) as { r?: unknown; j?: unknown; p?: unknown };
  const member = { userId, role: toRole(parsed.r), joinedAtMs: Number(parsed.j) };
  return typeof parsed.p === 'string' ? { ...member, presence: parsed.p } : member;
}

const CURSOR = /^r[A-Za-z0-9_-]+$/;

/** The cursor is the last user ID of a page, base64url-encoded behind a marker. */
function encodeCursor(userId: string): string {
  return `r${Buffer.from(userId).toString('base64url')}`;
}

function decodeCursor(cursor: string): string {
  const userId = CURSOR.test(cursor) ? Buffer.from(cursor.slice(1), 'base64url').toString() : '';
  if (userId === '' || encodeCursor(userId) !== cursor) throw badCursor(cursor);
  return userId;
}
