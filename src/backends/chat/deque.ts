/**
 * A growable ring buffer: O(1) push at the back, shift at the front and indexed reads. The memory
 * chat store keeps each room's history and attribute change log in one, both ordered by an ascending
 * number, so `lowerBound` finds a position by binary search.
 */
export class Deque<T> {
  private buf: (T | undefined)[] = new Array<T | undefined>(8);
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

  /** Removes and returns the front item (undefined when empty). */
  shift(): T | undefined {
    if (this.len === 0) return undefined;
    const value = this.buf[this.head];
    this.buf[this.head] = undefined; // let the item be collected
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.len--;
    return value;
  }

  /** The item at `index` from the front (0 = oldest); undefined outside 0..length-1. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.len) return undefined;
    return this.buf[(this.head + index) & (this.buf.length - 1)];
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
    const next = new Array<T | undefined>(this.buf.length * 2);
    for (let i = 0; i < this.len; i++) next[i] = this.buf[(this.head + i) & (this.buf.length - 1)];
    this.buf = next;
    this.head = 0;
  }
}
