import { badCursor } from './store-checks.js';
import type { Member } from './store.js';

interface Slot {
  readonly ord: number;
  member: Member;
  present: boolean;
}

/**
 * The members of one room in join order, for the memory chat store. Each member gets an ordinal when
 * it joins; a page cursor is the last ordinal returned, found again by binary search, so a cursor stays
 * valid across joins (appended at the end) and leaves (a departed slot stays as a tombstone until
 * compaction, which keeps every ordinal). Join and leave are O(1) amortized, a page is O(log n + limit)
 * while tombstones are bounded to half the slots.
 */
export class MemberIndex {
  private readonly byId = new Map<string, Slot>();
  private slots: Slot[] = [];
  private departed = 0;
  private nextOrd = 1;

  get size(): number {
    return this.byId.size;
  }

  get(userId: string): Member | null {
    return this.byId.get(userId)?.member ?? null;
  }

  /** A copy of the present members, in no particular order (safe to leave while walking it). */
  snapshot(): Member[] {
    return Array.from(this.byId.values(), (slot) => slot.member);
  }

  /**
   * Adds a member at the end, or replaces the record of one present (keeping its place in the walk).
   * Returns the record replaced, null for a new member.
   */
  join(member: Member): Member | null {
    const slot = this.byId.get(member.userId);
    if (slot) {
      const replaced = slot.member;
      slot.member = member;
      return replaced;
    }
    const fresh: Slot = { ord: this.nextOrd++, member, present: true };
    this.slots.push(fresh);
    this.byId.set(member.userId, fresh);
    return null;
  }

  /** Removes a member; returns its record, null when it was not present. */
  leave(userId: string): Member | null {
    const slot = this.byId.get(userId);
    if (!slot) return null;
    this.byId.delete(userId);
    slot.present = false;
    this.departed++;
    if (this.departed > 64 && this.departed * 2 > this.slots.length) {
      this.slots = this.slots.filter((s) => s.present);
      this.departed = 0;
    }
    return slot.member;
  }

  /** Up to `limit` present members after `cursor`, and the cursor of the next page (null at the end). */
  page(cursor: string | null, limit: number): { items: Member[]; next: string | null } {
    const after = cursor === null ? 0 : decodeCursor(cursor);
    let i = this.firstAfter(after);
    const items: Member[] = [];
    let lastOrd = after;
    for (; i < this.slots.length && items.length < limit; i++) {
      const slot = this.slots[i] as Slot;
      if (!slot.present) continue;
      items.push(slot.member);
      lastOrd = slot.ord;
    }
    while (i < this.slots.length && !(this.slots[i] as Slot).present) i++;
    return { items, next: i < this.slots.length ? encodeCursor(lastOrd) : null };
  }

  private firstAfter(ord: number): number {
    let lo = 0;
    let hi = this.slots.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.slots[mid] as Slot).ord > ord) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

const CURSOR = /^m([0-9a-z]{1,11})$/;

function encodeCursor(ord: number): string {
  return `m${ord.toString(36)}`;
}

function decodeCursor(cursor: string): number {
  const match = CURSOR.exec(cursor);
  const ord = match ? Number.parseInt(match[1] as string, 36) : Number.NaN;
  if (!Number.isSafeInteger(ord)) throw badCursor(cursor);
  return ord;
}
