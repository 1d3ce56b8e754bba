/**
 * Drops a Map's oldest entries (first in insertion order) in amortised O(1). `map.keys().next()` is not:
 * V8 keeps a deleted entry as a hole until the table is rebuilt, and a fresh iterator steps over every
 * hole before the first live entry, so after many deletions from the front each call costs as many
 * steps as were deleted (a bounded Map taking 10,000 inserts a second spent most of its time there).
 * One long-lived iterator steps over each hole once.
 */
export class MapEviction<K, V> {
  private cursor: Iterator<[K, V]> | null = null;
  /** The entry the cursor stands on: the oldest, unless deleted (or replaced) since. */
  private head: [K, V] | null = null;

  constructor(private readonly map: Map<K, V>) {}

  /** Deletes the oldest entries while the map holds more than `max`, or while `dead` says the oldest is. */
  trim(max: number, dead?: (value: V) => boolean): void {
    for (let head = this.oldest(); head !== null; head = this.oldest()) {
      if (this.map.size <= max && (dead === undefined || !dead(head[1]))) return;
      this.map.delete(head[0]);
      this.head = null;
    }
  }

  private oldest(): [K, V] | null {
    // Deleted elsewhere, or deleted and set again (then at the end, where the cursor meets it again).
    if (this.head !== null && this.map.get(this.head[0]) === this.head[1]) return this.head;
    this.head = null;
    for (let restarted = false; ; ) {
      this.cursor ??= this.map.entries();
      const next = this.cursor.next();
      if (next.done !== true) return (this.head = next.value);
      // An iterator that reached the end stays there, even once entries are added: start afresh once.
      this.cursor = null;
      if (restarted || this.map.size === 0) return null;
      restarted = true;
    }
  }
}
