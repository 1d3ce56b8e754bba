/**
 * A growable ring buffer: O(1) push at the back, shift at the front and indexed reads. `Array#shift`
 * is O(n), which turns a deep queue (tens of thousands of small frames for a slow reader) quadratic.
 *
 * Memory: nothing is allocated until the first push (a connection keeps several of these, most of them
 * empty for their whole life), and a large buffer is given back once the deque empties, so memory
 * follows the live length rather than the deepest it ever was.
 */
export class Deque<T> {
  private buf: (T | undefined)[] = EMPTY as (T | undefined)[];
  private head = 0;
  private len = 0;

  get length(): number {
    return this.len;
  }

  push(value: T): void {
    if (this.len === this.buf.length) this.grow();
    this.buf[(this.head + this.len) & (this.buf.length - 1)] = value;
    this.len++;
  }

  /** The front item without removing it (undefined when empty). */
  peek(): T | undefined {
    return this.len === 0 ? undefined : this.buf[this.head];
  }

  /** Removes and returns the front item (undefined when empty). */
  shift(): T | undefined {
    if (this.len === 0) return undefined;
    const value = this.buf[this.head];
    this.buf[this.head] = undefined; // let the item be collected
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.len--;
    if (this.len === 0 && this.buf.length > SHRINK_ABOVE) this.clear();
    return value;
  }

  /** Forgets every item and releases the buffer. */
  clear(): void {
    this.buf = EMPTY as (T | undefined)[];
    this.head = 0;
    this.len = 0;
  }

  /** The item at `index` from the front (0 = oldest); undefined outside 0..length-1. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.len) return undefined;
    return this.buf[(this.head + index) & (this.buf.length - 1)];
  }

  /** Replaces the item at `index` (0 = oldest); false, changing nothing, outside 0..length-1. */
  set(index: number, value: T): boolean {
    if (index < 0 || index >= this.len) return false;
    this.buf[(this.head + index) & (this.buf.length - 1)] = value;
    return true;
  }

  /** Items `from` (inclusive) to `to` (exclusive), oldest first. */
  slice(from: number, to: number): T[] {
    const out: T[] = [];
    const end = Math.min(to, this.len);
    for (let i = Math.max(0, from); i < end; i++) out.push(this.buf[(this.head + i) & (this.buf.length - 1)] as T);
    return out;
  }

  /** The first index whose `key(item)` is greater than `after` (length if none); items must be sorted by key. */
  lowerBound(after: number, key: (item: T) => number): number {
    let lo = 0;
    let hi = this.len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (key(this.at(mid) as T) > after) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  private grow(): void {
    // The capacity stays a power of two so `& (length - 1)` wraps an index.
    const next = new Array<T | undefined>(Math.max(MIN_CAPACITY, this.buf.length * 2));
    for (let i = 0; i < this.len; i++) next[i] = this.buf[(this.head + i) & (this.buf.length - 1)];
    this.buf = next;
    this.head = 0;
  }
}

/** Shared by every empty deque; never written (a push grows away from it first). */
const EMPTY: readonly unknown[] = Object.freeze([]);
const MIN_CAPACITY = 8;
/** An emptied deque keeps a buffer up to this size (reused by the next burst), and frees a larger one. */
const SHRINK_ABOVE = 1024;
