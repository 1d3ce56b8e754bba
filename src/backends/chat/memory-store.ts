import { performance } from 'node:perf_hooks';
import { Deque } from '../../util/deque.js';
import { MemberIndex } from './member-index.js';
import {
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

/** Options of the in-memory store. */
export interface MemoryChatStoreOptions {
  /** Attribute changes kept per room for `attributeChanges` (default 1000). */
  readonly attributeLogLength?: number;
}

/** Everything the store holds about one room. */
class RoomState {
  seq = 0;
  /** Highest seq ever appended, trimmed or not: appends must go above it. */
  highestAppended = 0;
  readonly history = new Deque<StoredMessage>();
  readonly members = new MemberIndex();
  /** Members held under each presence, so a purge checks presences, not members. */
  readonly presenceCounts = new Map<string, number>();
  readonly mutes = new Map<string, number>();
  readonly bans = new Map<string, number>();
  readonly whitelist = new Set<string>();
  readonly attributes = new Map<string, string>();
  attributeVersion = 0;
  readonly attributeLog = new Deque<AttributeChange>();
}

/** A room's write lease; it lapses at `expiresAt` (performance.now() ms, immune to wall-clock jumps). */
interface Lease {
  readonly token: number;
  readonly holder: string;
  expiresAt: number;
}

const bySeq = (m: StoredMessage): number => m.seq;

/**
 * The embedded ChatStore: rooms live in this process and die with it, so it suits one Chat backend
 * process (or tests); several owners that must continue each other's sequences use RedisChatStore.
 * Every operation is synchronous underneath, so each is atomic. A room's state is created by its first
 * write; reads of an unknown room answer from empty defaults without creating anything.
 *
 * Write leases live in a table beside the rooms (`dropRoom` ends the room's lease too); tokens come from one
 * store-wide counter, so they grow for every room, across drops as well.
 *
 * History is a ring per room trimmed exactly to its bounds on each append; the attribute log is a ring
 * of the newest `attributeLogLength` changes; members are kept in join order (see MemberIndex).
 * Presences are deadlines on this process's monotonic clock.
 */
export class MemoryChatStore implements ChatStore {
  private readonly rooms = new Map<string, RoomState>();
  private readonly leases = new Map<string, Lease>();
  private lastToken = 0;
  /** Presence → deadline (performance.now() ms); an expired one is deleted when next looked at. */
  private readonly presences = new Map<string, number>();
  private readonly attributeLogLength: number;
  private closed = false;

  constructor(opts: MemoryChatStoreOptions = {}) {
    this.attributeLogLength = opts.attributeLogLength ?? DEFAULT_ATTRIBUTE_LOG_LENGTH;
    checkInteger('attributeLogLength', this.attributeLogLength, 1);
  }

  async acquireLease(room: string, holder: string, ttlMs: number): Promise<LeaseGrant> {
    this.ensureOpen('acquireLease');
    checkHolder(holder);
    checkInteger('acquireLease ttlMs', ttlMs, 1);
    const now = performance.now();
    const lease = this.liveLease(room, now);
    if (lease !== undefined && lease.holder !== holder) return { acquired: false, holder: lease.holder, remainingMs: Math.ceil(lease.expiresAt - now) };
    if (lease !== undefined) {
      lease.expiresAt = now + ttlMs;
      return { acquired: true, token: lease.token };
    }
    const token = ++this.lastToken;
    this.leases.set(room, { token, holder, expiresAt: now + ttlMs });
    return { acquired: true, token };
  }

  async renewLease(room: string, token: number, ttlMs: number): Promise<boolean> {
    this.ensureOpen('renewLease');
    checkInteger('renewLease token', token, 1);
    checkInteger('renewLease ttlMs', ttlMs, 1);
    const now = performance.now();
    const lease = this.liveLease(room, now);
    if (lease?.token !== token) return false;
    lease.expiresAt = now + ttlMs;
    return true;
  }

  async releaseLease(room: string, token: number): Promise<void> {
    this.ensureOpen('releaseLease');
    checkInteger('releaseLease token', token, 1);
    if (this.liveLease(room, performance.now())?.token === token) this.leases.delete(room);
  }

  async nextSeq(room: string, token: number): Promise<number> {
    this.fence('nextSeq', room, token);
    return ++this.write('nextSeq', room).seq;
  }

  async appendHistory(room: string, token: number, message: StoredMessage, limits: HistoryLimits, nowMs: number): Promise<number> {
    this.ensureOpen('appendHistory');
    checkMessage(message);
    checkLimits(limits);
    checkInteger('appendHistory nowMs', nowMs, 0);
    this.fence('appendHistory', room, token);
    const state = this.write('appendHistory', room);
    if (message.seq <= state.highestAppended) throw historyOrderError(room, message.seq, state.highestAppended);
    state.highestAppended = message.seq;
    const { history } = state;
    // Age first, so the message being appended is never trimmed by its own append.
    const before = history.length;
    const cutoff = nowMs - limits.maxAgeMs;
    while (history.length > 0 && (history.at(0) as StoredMessage).sentAtMs < cutoff) history.shift();
    history.push(message);
    while (history.length > limits.maxLength) history.shift();
    return before + 1 - history.length;
  }

  async readHistory(room: string, afterSeq: number, limit: number): Promise<{ messages: StoredMessage[]; oldestSeq: number | null }> {
    this.ensureOpen('readHistory');
    checkInteger('readHistory afterSeq', afterSeq, 0);
    const count = checkLimit('readHistory limit', limit, MAX_HISTORY_READ);
    const history = this.rooms.get(room)?.history;
    if (!history || history.length === 0) return { messages: [], oldestSeq: null };
    const from = history.lowerBound(afterSeq, bySeq);
    return { messages: history.slice(from, from + count), oldestSeq: (history.at(0) as StoredMessage).seq };
  }

  async latestHistory(room: string, limit: number): Promise<StoredMessage[]> {
    this.ensureOpen('latestHistory');
    const count = checkLimit('latestHistory limit', limit, MAX_HISTORY_READ);
    const history = this.rooms.get(room)?.history;
    if (!history) return [];
    return history.slice(history.length - count, history.length);
  }

  async join(room: string, member: Member): Promise<boolean> {
    this.ensureOpen('join');
    checkMember(member);
    const state = this.write('join', room);
    const { userId, role, joinedAtMs, presence } = member;
    const replaced = state.members.join(presence === undefined ? { userId, role, joinedAtMs } : { userId, role, joinedAtMs, presence });
    if (replaced !== null) countPresence(state, replaced.presence, -1);
    countPresence(state, presence, 1);
    return replaced === null;
  }

  async leave(room: string, userId: string, presence?: string): Promise<boolean> {
    this.ensureOpen('leave');
    if (presence !== undefined) checkPresence(presence, 'leave presence');
    const state = this.rooms.get(room);
    const current = state?.members.get(userId);
    if (!state || !current || (presence !== undefined && current.presence !== presence)) return false;
    state.members.leave(userId);
    countPresence(state, current.presence, -1);
    return true;
  }

  async member(room: string, userId: string): Promise<Member | null> {
    this.ensureOpen('member');
    return this.rooms.get(room)?.members.get(userId) ?? null;
  }

  async members(room: string, cursor: string | null, limit: number): Promise<Page<Member>> {
    this.ensureOpen('members');
    const count = checkLimit('members limit', limit, MAX_MEMBER_PAGE);
    const members = this.rooms.get(room)?.members ?? EMPTY_MEMBERS;
    return members.page(cursor, count);
  }

  async memberCount(room: string): Promise<number> {
    this.ensureOpen('memberCount');
    return this.rooms.get(room)?.members.size ?? 0;
  }

  async startPresence(presence: string, ttlMs: number): Promise<void> {
    this.ensureOpen('startPresence');
    checkPresence(presence, 'startPresence presence');
    checkInteger('startPresence ttlMs', ttlMs, 1);
    this.presences.set(presence, performance.now() + ttlMs);
  }

  async renewPresence(presence: string, ttlMs: number): Promise<boolean> {
    this.ensureOpen('renewPresence');
    checkPresence(presence, 'renewPresence presence');
    checkInteger('renewPresence ttlMs', ttlMs, 1);
    if (!this.presenceAlive(presence)) return false;
    this.presences.set(presence, performance.now() + ttlMs);
    return true;
  }

  async endPresence(presence: string): Promise<void> {
    this.ensureOpen('endPresence');
    checkPresence(presence, 'endPresence presence');
    this.presences.delete(presence);
  }

  async purgeExpired(room: string): Promise<string[]> {
    this.ensureOpen('purgeExpired');
    const state = this.rooms.get(room);
    if (!state) return [];
    const dead = new Set<string>();
    for (const presence of state.presenceCounts.keys()) if (!this.presenceAlive(presence)) dead.add(presence);
    if (dead.size === 0) return [];
    const purged: string[] = [];
    for (const member of state.members.snapshot()) {
      if (member.presence === undefined || !dead.has(member.presence)) continue;
      state.members.leave(member.userId);
      purged.push(member.userId);
    }
    for (const presence of dead) state.presenceCounts.delete(presence);
    return purged;
  }

  async setMute(room: string, userId: string, untilMs: number): Promise<void> {
    this.setExpiry('setMute', room, userId, untilMs, (s) => s.mutes);
  }

  async setBan(room: string, userId: string, untilMs: number): Promise<void> {
    this.setExpiry('setBan', room, userId, untilMs, (s) => s.bans);
  }

  async muteUntil(room: string, userId: string, nowMs: number): Promise<number> {
    return this.activeExpiry('muteUntil', this.rooms.get(room)?.mutes, userId, nowMs);
  }

  async banUntil(room: string, userId: string, nowMs: number): Promise<number> {
    return this.activeExpiry('banUntil', this.rooms.get(room)?.bans, userId, nowMs);
  }

  async setWhitelisted(room: string, userId: string, on: boolean): Promise<void> {
    this.ensureOpen('setWhitelisted');
    checkUserId(userId, 'setWhitelisted userId');
    if (on) this.write('setWhitelisted', room).whitelist.add(userId);
    else this.rooms.get(room)?.whitelist.delete(userId);
  }

  async isWhitelisted(room: string, userId: string): Promise<boolean> {
    this.ensureOpen('isWhitelisted');
    return this.rooms.get(room)?.whitelist.has(userId) ?? false;
  }

  async setAttributes(room: string, token: number, changes: Readonly<Record<string, string | null>>): Promise<AttributeChange[]> {
    this.ensureOpen('setAttributes');
    const entries = checkAttributeChanges(changes);
    this.fence('setAttributes', room, token);
    const state = this.write('setAttributes', room);
    const applied: AttributeChange[] = [];
    for (const [key, value] of entries) {
      const current = state.attributes.get(key);
      if (value === null ? current === undefined : current === value) continue;
      if (value === null) state.attributes.delete(key);
      else state.attributes.set(key, value);
      const change: AttributeChange = { version: ++state.attributeVersion, key, value };
      state.attributeLog.push(change);
      if (state.attributeLog.length > this.attributeLogLength) state.attributeLog.shift();
      applied.push(change);
    }
    return applied;
  }

  async attributes(room: string): Promise<{ values: Record<string, string>; version: number }> {
    this.ensureOpen('attributes');
    const state = this.rooms.get(room);
    return { values: Object.fromEntries(state?.attributes ?? []), version: state?.attributeVersion ?? 0 };
  }

  async attributeChanges(room: string, afterVersion: number): Promise<AttributeChange[] | null> {
    this.ensureOpen('attributeChanges');
    checkInteger('attributeChanges afterVersion', afterVersion, 0);
    const state = this.rooms.get(room);
    const version = state?.attributeVersion ?? 0;
    if (afterVersion > version) return null;
    if (afterVersion === version) return [];
    const log = (state as RoomState).attributeLog;
    // Versions in the log are consecutive, so the first one wanted sits at a computed index.
    const oldest = log.at(0)?.version;
    if (oldest === undefined || oldest > afterVersion + 1) return null;
    return log.slice(afterVersion + 1 - oldest, log.length);
  }

  async dropRoom(room: string, token: number): Promise<void> {
    this.fence('dropRoom', room, token);
    this.rooms.delete(room);
    this.leases.delete(room);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.rooms.clear();
    this.leases.clear();
    this.presences.clear();
  }

  /** The room's lease unless it lapsed (a lapsed one is forgotten here). */
  private liveLease(room: string, now: number): Lease | undefined {
    const lease = this.leases.get(room);
    if (lease !== undefined && lease.expiresAt <= now) {
      this.leases.delete(room);
      return undefined;
    }
    return lease;
  }

  /** Throws ERR_STALE_OWNER unless `token` is the room's live lease token (an ordered write's check). */
  private fence(method: string, room: string, token: number): void {
    this.ensureOpen(method);
    checkInteger(`${method} token`, token, 1);
    if (this.liveLease(room, performance.now())?.token !== token) throw staleOwner(method, room, token);
  }

  /** Whether `presence` is live now; an expired one is forgotten, so it reads as ended from then on. */
  private presenceAlive(presence: string): boolean {
    const deadline = this.presences.get(presence);
    if (deadline === undefined) return false;
    if (deadline > performance.now()) return true;
    this.presences.delete(presence);
    return false;
  }

  private ensureOpen(method: string): void {
    if (this.closed) throw storeClosed(method);
  }

  /** The state of `room` for a write, created on the first one. */
  private write(method: string, room: string): RoomState {
    this.ensureOpen(method);
    let state = this.rooms.get(room);
    if (!state) {
      state = new RoomState();
      this.rooms.set(room, state);
    }
    return state;
  }

  private setExpiry(method: string, room: string, userId: string, untilMs: number, table: (s: RoomState) => Map<string, number>): void {
    this.ensureOpen(method);
    checkInteger(`${method} untilMs`, untilMs, 0);
    if (untilMs === 0) {
      const state = this.rooms.get(room);
      if (state) table(state).delete(userId);
      return;
    }
    table(this.write(method, room)).set(userId, untilMs);
  }

  private activeExpiry(method: string, table: Map<string, number> | undefined, userId: string, nowMs: number): number {
    this.ensureOpen(method);
    checkInteger(`${method} nowMs`, nowMs, 0);
    const until = table?.get(userId) ?? 0;
    return nowMs < until ? until : 0;
  }
}

/** Adds `delta` to the member count of `presence` in a room (none: a member without a presence). */
function countPresence(state: RoomState, presence: string | undefined, delta: number): void {
  if (presence === undefined) return;
  const count = (state.presenceCounts.get(presence) ?? 0) + delta;
  if (count > 0) state.presenceCounts.set(presence, count);
  else state.presenceCounts.delete(presence);
}

const EMPTY_MEMBERS = new MemberIndex();
