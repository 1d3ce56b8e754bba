/**
 * Forgets a Map's dead entries a few at a time: each `step(n)` examines the next `n` entries, going
 * round and round the map, so the work per call is bounded whatever the map's size. A full scan every
 * so many writes instead holds the event loop for as long as the map is large (a store of 150,000
 * pushes: 3-12 ms, every few thousand calls, growing with the retention), and every request queued
 * meanwhile waits for it.
 *
 * Guarantee: an entry that is dead when a round passes it is deleted then; a round takes size/n steps,
 * so what died is forgotten within two rounds. Entries added meanwhile are reached in this round or
 * the next (a Map iterator sees entries added after it was made).
 */
export class MapSweeper<K, V> {
  private cursor: Iterator<[K, V]> | null = null;

  /** `dead` decides, and may release what the entry holds elsewhere; the sweeper deletes it from `map`. */
  constructor(
    private readonly map: Map<K, V>,
    private readonly dead: (value: V, key: K) => boolean,
  ) {}

  /** Examines up to `n` entries (fewer when the map is smaller); returns how many it examined. */
  step(n: number): number {
    let examined = 0;
    let restarted = false;
    while (examined < n) {
      this.cursor ??= this.map.entries();
      const next = this.cursor.next();
      if (next.done === true) {
        this.cursor = null;
        if (restarted) break;
        restarted = true;
        continue;
      }
      examined++;
      const [key, value] = next.value;
      if (this.dead(value, key)) this.map.delete(key);
    }
    return examined;
  }
}
