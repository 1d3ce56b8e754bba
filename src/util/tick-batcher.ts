/**
 * Per-tick batching for both ends of the backend stream (the proxy's events, the backend's commands).
 *
 * Why `setImmediate` and not `process.nextTick`/`queueMicrotask`: a proxy receives many client sockets'
 * data in one poll phase of the event loop, each in its own callback. A microtask flush would send one
 * message per socket callback; `setImmediate` runs right after the poll phase, so everything produced
 * in one event-loop turn travels together. It adds no timer delay: the check phase follows the poll
 * phase directly.
 */

/**
 * Soft cap on the bytes of one batch. gRPC peers reject messages over their receive limit (4 MiB by
 * default in every gRPC implementation); a batch is flushed early rather than grow past this cap, so
 * a batch exceeds it only when a single item does.
 */
export const DEFAULT_MAX_BATCH_BYTES = 1024 * 1024;

/**
 * Collects items pushed during one event-loop turn and hands them to `flush` as one array.
 *
 * Guarantees: items reach `flush` in push order; every pushed item is flushed exactly once unless
 * `discard()` drops it; `flush` receives a fresh array it may keep (the batcher never touches it again).
 * One `setImmediate` is scheduled per batch, never per item.
 */
export class TickBatcher<T> {
  private items: T[] = [];
  private bytes = 0;
  private immediate: NodeJS.Immediate | null = null;
  /** Set by `schedule()`: flush even if no item is pending (e.g. a hello with no events). */
  private forced = false;
  private readonly onImmediate = (): void => {
    this.immediate = null;
    this.flush();
  };

  /**
   * @param sink receives each batch; called synchronously from `flush()` or from the scheduled turn.
   * @param maxBytes soft cap on the summed size hints of one batch (see DEFAULT_MAX_BATCH_BYTES).
   */
  constructor(
    private readonly sink: (items: T[]) => void,
    private readonly maxBytes: number = DEFAULT_MAX_BATCH_BYTES,
  ) {}

  /** Items waiting for the next flush. */
  get pending(): number {
    return this.items.length;
  }

  /**
   * Queues `item` for the current turn's batch. `sizeHint` is its approximate encoded size; when it
   * would push the batch past `maxBytes`, the batch so far is flushed first.
   */
  push(item: T, sizeHint: number): void {
    if (this.items.length > 0 && this.bytes + sizeHint > this.maxBytes) this.flush();
    this.items.push(item);
    this.bytes += sizeHint;
    if (this.immediate === null) this.immediate = setImmediate(this.onImmediate);
  }

  /** Makes the next turn call `sink` even if nothing is pushed (with an empty array in that case). */
  schedule(): void {
    this.forced = true;
    if (this.immediate === null) this.immediate = setImmediate(this.onImmediate);
  }

  /** Hands pending items to `sink` now (no-op when nothing is pending and `schedule()` was not called). */
  flush(): void {
    if (this.items.length === 0 && !this.forced) return;
    const batch = this.items;
    this.items = [];
    this.bytes = 0;
    this.forced = false;
    this.sink(batch);
  }

  /** Drops pending items and cancels the scheduled flush. Returns how many items were dropped. */
  discard(): number {
    const dropped = this.items.length;
    if (dropped > 0) this.items = [];
    this.bytes = 0;
    this.forced = false;
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
    }
    return dropped;
  }
}
