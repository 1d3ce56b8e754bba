import { performance } from 'node:perf_hooks';
import { MapEviction } from '../../../util/map-eviction.js';
import { checkId, checkInteger, inboxClosed } from './inbox-checks.js';

/**
 * Delivery statistics per producer-side id (`ref`, e.g. a push id) across every node: how many
 * members (users, or devices: the producer chooses) it targeted, how many acknowledged it, how many
 * never will because a newer entry of the same collapse key replaced it, and — once its expiry passed
 * — how many it missed. Each member is in exactly one state, so the counts always add up:
 * `targeted = delivered + collapsed + pending + expired`.
 */
export interface RefStats {
  readonly targeted: number;
  /** Members that acknowledged (an acknowledgement after the expiry still counts: it was delivered in time). */
  readonly delivered: number;
  /** Members whose entry was superseded through its collapse key before they acknowledged it. */
  readonly collapsed: number;
  /** Neither delivered nor collapsed, before the expiry. */
  readonly pending: number;
  /** Neither delivered nor collapsed, once the expiry passed. */
  readonly expired: number;
  /** 0 = never expires. */
  readonly expiresAtMs: number;
}

export interface DeliveryLedgerOptions {
  /** How long a ref's statistics are kept after its expiry (or after its last `target` when it never expires); default 24 h. */
  readonly statsTtlMs?: number;
  /**
   * Most refs the memory ledger keeps (default: no bound); beyond it the oldest ref (first targeted) is
   * forgotten first, before its time, and its `stats` are null. A producer targeting thousands of refs a
   * second would otherwise keep a day of them.
   */
  readonly maxRefs?: number;
}

export const DEFAULT_STATS_TTL_MS = 24 * 3600_000;

/**
 * The ledger's contract; the memory and Redis ledgers pass one conformance suite
 * (test/conformance/inbox-store.ts). Every operation is idempotent per (ref, member), so producers and
 * feeds may repeat them after a failure: counts never go twice.
 */
export interface DeliveryLedger {
  /**
   * Adds `members` to the ref's targets (members already known keep their state) and sets its expiry
   * (0 = never; the latest expiry given wins). Creates the ref.
   */
  target(ref: string, members: readonly string[], expiresAtMs: number, nowMs: number): Promise<void>;
  /**
   * `member` acknowledged the ref: targeted or collapsed → delivered (a member unknown to a known ref
   * is added as targeted and delivered). Resolves true when this changed the counts; false for a
   * repeat, or for a ref the ledger does not know (never targeted, or its statistics expired).
   */
  delivered(ref: string, member: string): Promise<boolean>;
  /** The member's entry was superseded: targeted → collapsed; any other state is kept. Resolves true when it changed. */
  collapsed(ref: string, member: string): Promise<boolean>;
  /** The ref's statistics at `nowMs`, or null when unknown. */
  stats(ref: string, nowMs: number): Promise<RefStats | null>;
  close(): Promise<void>;
}

type MemberState = 't' | 'd' | 'c';

/**
 * A ref's members with their states: the first inline, a Map only from the second on. Most refs have
 * one member (a push to one user), and a ref is kept a day: a Map each would be most of its memory.
 */
class Members {
  size = 0;
  private first = '';
  private firstState: MemberState = 't';
  private rest: Map<string, MemberState> | null = null;

  get(member: string): MemberState | undefined {
    return member === this.first ? this.firstState : this.rest?.get(member);
  }

  set(member: string, state: MemberState): void {
    // Member ids are never '' (checkId): an empty `first` is a free slot.
    if (this.size === 0 || member === this.first) {
      this.size ||= 1;
      this.first = member;
      this.firstState = state;
      return;
    }
    this.rest ??= new Map();
    const before = this.rest.size;
    this.rest.set(member, state);
    this.size += this.rest.size - before;
  }
}

interface RefRecord {
  expiresAtMs: number;
  readonly members: Members;
  delivered: number;
  collapsed: number;
  /** performance.now() when the record is forgotten. */
  forgetAt: number;
}

/** The ledger in this process (the embedded default). Records are forgotten lazily, on access and at each `target`. */
export class MemoryDeliveryLedger implements DeliveryLedger {
  private readonly refs = new Map<string, RefRecord>();
  /** Forgets refs first targeted first (the Map keeps insertion order): past their time, or beyond maxRefs. */
  private readonly eviction = new MapEviction(this.refs);
  private readonly statsTtlMs: number;
  private readonly maxRefs: number;
  private closed = false;

  constructor(options: DeliveryLedgerOptions = {}) {
    this.statsTtlMs = options.statsTtlMs ?? DEFAULT_STATS_TTL_MS;
    checkInteger('statsTtlMs', this.statsTtlMs, 1);
    this.maxRefs = options.maxRefs ?? Number.POSITIVE_INFINITY;
    if (this.maxRefs !== Number.POSITIVE_INFINITY) checkInteger('maxRefs', this.maxRefs, 1);
  }

  async target(ref: string, members: readonly string[], expiresAtMs: number, nowMs: number): Promise<void> {
    this.ensureOpen('target');
    checkId('target ref', ref);
    for (const member of members) checkId('target member', member);
    checkInteger('target expiresAtMs', expiresAtMs, 0);
    checkInteger('target nowMs', nowMs, 0);
    let record = this.record(ref);
    if (record === undefined) {
      this.refs.set(ref, (record = { expiresAtMs, members: new Members(), delivered: 0, collapsed: 0, forgetAt: 0 }));
    }
    record.expiresAtMs = Math.max(record.expiresAtMs, expiresAtMs);
    for (const member of members) if (record.members.get(member) === undefined) record.members.set(member, 't');
    // Same lifetime as the Redis keys: statsTtl after the expiry, or after now when there is none.
    record.forgetAt = performance.now() + Math.max(0, record.expiresAtMs - nowMs) + this.statsTtlMs;
    // Past their time, oldest first (insertion order is close to expiry order: stops at the first live
    // one; the others are forgotten when read), and beyond the count bound.
    const now = performance.now();
    this.eviction.trim(this.maxRefs, (r) => r.forgetAt <= now);
  }

  async delivered(ref: string, member: string): Promise<boolean> {
    this.ensureOpen('delivered');
    checkId('delivered ref', ref);
    checkId('delivered member', member);
    const record = this.record(ref);
    const state = record?.members.get(member);
    if (record === undefined || state === 'd') return false;
    if (state === 'c') record.collapsed--;
    record.members.set(member, 'd');
    record.delivered++;
    return true;
  }

  async collapsed(ref: string, member: string): Promise<boolean> {
    this.ensureOpen('collapsed');
    checkId('collapsed ref', ref);
    checkId('collapsed member', member);
    const record = this.record(ref);
    if (record?.members.get(member) !== 't') return false;
    record.members.set(member, 'c');
    record.collapsed++;
    return true;
  }

  async stats(ref: string, nowMs: number): Promise<RefStats | null> {
    this.ensureOpen('stats');
    checkId('stats ref', ref);
    checkInteger('stats nowMs', nowMs, 0);
    const record = this.record(ref);
    if (record === undefined) return null;
    return refStats(record.members.size, record.delivered, record.collapsed, record.expiresAtMs, nowMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.refs.clear();
  }

  /** The live record of `ref`; a record past its time is forgotten here. */
  private record(ref: string): RefRecord | undefined {
    const record = this.refs.get(ref);
    if (record !== undefined && record.forgetAt <= performance.now()) {
      this.refs.delete(ref);
      return undefined;
    }
    return record;
  }

  private ensureOpen(method: string): void {
    if (this.closed) throw inboxClosed(`ledger ${method}`);
  }
}

/** Statistics from the stored counts: the undecided members are pending before the expiry, expired after. */
export function refStats(targeted: number, delivered: number, collapsed: number, expiresAtMs: number, nowMs: number): RefStats {
  const undecided = Math.max(0, targeted - delivered - collapsed);
  const expired = expiresAtMs !== 0 && expiresAtMs <= nowMs;
  return { targeted, delivered, collapsed, pending: expired ? 0 : undecided, expired: expired ? undecided : 0, expiresAtMs };
}
