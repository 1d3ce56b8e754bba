/**
 * A map for the few entries a connection keeps per kind (its sessions, its per-business counts), with
 * the Map methods they use. An empty Map already costs about 230 bytes with its hash table, many times
 * a small entry's worth: here the first entry sits in two fields and a Map is made only for the others.
 * Iteration order is not insertion order (a freed first slot takes the next key).
 */
export class SmallMap<K, V> {
  private firstKey: K | undefined = undefined;
  private first: V | undefined = undefined;
  private rest: Map<K, V> | null = null;

  get size(): number {
    return (this.first === undefined ? 0 : 1) + (this.rest?.size ?? 0);
  }

  get(key: K): V | undefined {
    return this.first !== undefined && key === this.firstKey ? this.first : this.rest?.get(key);
  }

  /** `value` must not be undefined (it marks the free first slot). */
  set(key: K, value: V): void {
    if (this.first === undefined || key === this.firstKey) {
      if (this.rest?.delete(key) && this.rest.size === 0) this.rest = null;
      this.firstKey = key;
      this.first = value;
    } else (this.rest ??= new Map()).set(key, value);
  }

  delete(key: K): boolean {
    if (this.first !== undefined && key === this.firstKey) {
      this.first = undefined;
      this.firstKey = undefined;
      return true;
    }
    if (!this.rest?.delete(key)) return false;
    if (this.rest.size === 0) this.rest = null;
    return true;
  }

  *values(): IterableIterator<V> {
    if (this.first !== undefined) yield this.first;
    if (this.rest) yield* this.rest.values();
  }
}
