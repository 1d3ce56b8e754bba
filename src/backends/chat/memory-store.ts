import { Deque } from './deque.js';
import { MemberIndex } from './member-index.js';
import {
  checkAttributeChanges,
  checkInteger,
  checkLimit,
  checkLease,
  checkLimits,
  checkMember,
  checkMessage,
  checkUserId,
  historyOrderError,
  storeClosed,
} from './store-checks.js';
import {
  DEFAULT_ATTRIBUTE_LOG_LENGTH,
  MAX_HISTORY_READ,
  MAX_MEMBER_PAGE,
  type AttributeChange,
  type ChatStore,
  type HistoryLimits,
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
  /** Members held under each presence lease, so a purge checks leases, not members. */
  readonly leaseCounts = new Map<string, number>();
  readonly mutes = new Map<string, number>();
  readonly bans = new Map<string, number>();
  readonly whitelist = new Set<string>();
  readonly attributes = new Map<string, string>();
  attributeVersion = 0;
  readonly attributeLog = new Deque<AttributeChange>();
}

const bySeq = (m: StoredMessage): number => m.seq;

/**
 * The embedded ChatStore: rooms live in this process and die with it, so it suits one Chat backend
 * process (or tests); several owners that must continue each other's sequences use RedisChatStore.
 * Every operation is synchronous underneath, so each is atomic. A room's state is created by its first
 * write; reads of an unknown room answer from empty defaults without creating anything.
 *
 * History is a ring per room trimmed exactly to its bounds on each append; the attribute log is a ring
 * of the newest `attributeLogLength` changes; members are kept in join order (see MemberIndex).
 * Presence leases are deadlines on this process's monotonic clock.
 */
export class MemoryChatStore implements ChatStore {
  private readonly rooms = new Map<string, RoomState>();
  /** Presence lease → deadline (performance.now() ms); an expired one is deleted when next looked at. */
  private readonly leases = new Map<string, number>();
  private readonly attributeLogLength: number;
  private closed = false;

  constructor(opts: MemoryChatStoreOptions = {}) {
    this.attributeLogLength = opts.attributeLogLength ?? DEFAULT_ATTRIBUTE_LOG_LENGTH;
    checkInteger('attributeLogLength', this.attributeLogLength, 1);
  }

  async nextSeq(room: string): Promise<number> {
    return ++this.write('nextSeq', room).seq;
  }

  async appendHistory(room: string, message: StoredMessage, limits: HistoryLimits, nowMs: number): Promise<number> {
    this.ensureOpen('appendHistory');
    checkMessage(message);
    checkLimits(limits);
    checkInteger('appendHistory nowMs', nowMs, 0);
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
    const { userId, role, joinedAtMs, lease } = member;
    const replaced = state.members.join(lease === undefined ? { userId, role, joinedAtMs } : { userId, role, joinedAtMs, lease });
    if (replaced !== null) countLease(state, replaced.lease, -1);
    countLease(state, lease, 1);
    return replaced === null;
  }

  async leave(room: string, userId: string, lease?: string): Promise<boolean> {
    this.ensureOpen('leave');
    if (lease !== undefined) checkLease(lease, 'leave lease');
    const state = this.rooms.get(room);
    const current = state?.members.get(userId);
    if (!state || !current || (lease !== undefined && current.lease !== lease)) return false;
    state.members.leave(userId);
    countLease(state, current.lease, -1);
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

  async startLease(lease: string, ttlMs: number): Promise<void> {
    this.ensureOpen('startLease');
    checkLease(lease, 'startLease lease');
    checkInteger('startLease ttlMs', ttlMs, 1);
    this.leases.set(lease, performance.now() + ttlMs);
  }

  async renewLease(lease: string, ttlMs: number): Promise<boolean> {
    this.ensureOpen('renewLease');
    checkLease(lease, 'renewLease lease');
    checkInteger('renewLease ttlMs', ttlMs, 1);
    if (!this.leaseAlive(lease)) return false;
    this.leases.set(lease, performance.now() + ttlMs);
    return true;
  }

  async endLease(lease: string): Promise<void> {
    this.ensureOpen('endLease');
    checkLease(lease, 'endLease lease');
    this.leases.delete(lease);
  }

  async purgeExpired(room: string): Promise<string[]> {
    this.ensureOpen('purgeExpired');
    const state = this.rooms.get(room);
    if (!state) return [];
    const dead = new Set<string>();
    for (const lease of state.leaseCounts.keys()) if (!this.leaseAlive(lease)) dead.add(lease);
    if (dead.size === 0) return [];
    const purged: string[] = [];
    for (const member of state.members.snapshot()) {
      if (member.lease === undefined || !dead.has(member.lease)) continue;
      state.members.leave(member.userId);
      purged.push(member.userId);
    }
    for (const lease of dead) state.leaseCounts.delete(lease);
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

  async setAttributes(room: string, changes: Readonly<Record<string, string | null>>): Promise<AttributeChange[]> {
    this.ensureOpen('setAttributes');
    const entries = checkAttributeChanges(changes);
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

  async dropRoom(room: string): Promise<void> {
    this.ensureOpen('dropRoom');
    this.rooms.delete(room);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.rooms.clear();
    this.leases.clear();
  }

  /** Whether `lease` is live now; an expired one is forgotten, so it reads as ended from then on. */
  private leaseAlive(lease: string): boolean {
    const deadline = this.leases.get(lease);
    if (deadline === undefined) return false;
    if (deadline > performance.now()) return true;
    this.leases.delete(lease);
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

/** Adds `delta` to the member count of `lease` in a room (none: a member without a lease). */
function countLease(state: RoomState, lease: string | undefined, delta: number): void {
  if (lease === undefined) return;
  const count = (state.leaseCounts.get(lease) ?? 0) + delta;
  if (count > 0) state.leaseCounts.set(lease, count);
  else state.leaseCounts.delete(lease);
}

const EMPTY_MEMBERS = new MemberIndex();
