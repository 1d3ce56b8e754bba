import { Deque } from './deque.js';

/** Settings of a {@link FairBatcher}. */
export interface FairBatcherOptions {
  /** Soft cap on the summed size hints of one batch; a batch exceeds it only when one item does. */
  maxBatchBytes: number;
  /** Batches handed to `write` and not yet reported done; more wait. */
  maxInFlight: number;
  /** A key queuing this many bytes or more is "full" (see {@link FairBatcher.isFull}). */
  keyLimitBytes: number;
}

interface Queued<T> {
  item: T;
  size: number;
  /** Push order across all keys. */
  seq: number;
}

interface KeyQueue<T> {
  items: Deque<Queued<T>>;
  bytes: number;
}

/**
 * Batches items for a stream shared by many keys (sessions), fairly: each key has its own FIFO queue, and
 * a batch takes one item from each key with items, round robin, until it is full. Only `maxInFlight`
 * batches are handed to the writer at a time, so items wait here, where the next batch can still be
 * built fairly, instead of in the stream's own buffer in arrival order. A key that sends little is
 * therefore never queued behind another key's backlog: it waits for at most one round of the keys with
 * items and the batches in flight.
 *
 * Within a batch, items are in push order across keys (a batch is a fair choice of items, not a
 * reordering): what one turn offers, when it fits one batch, travels exactly as it was pushed.
 *
 * Guarantees: the items of one key reach `write` in push order; every item is written exactly once
 * unless {@link discard} drops it; `write` gets a fresh array it may keep. Flushing happens in the turn
 * after a push (`setImmediate`, so one turn's items travel together) and whenever a batch is done.
 */
export class FairBatcher<K, T> {
  private readonly queues = new Map<K, KeyQueue<T>>();
  /** Keys with queued items, each once, in round-robin order. */
  private readonly ready = new Deque<K>();
  private inFlight = 0;
  private totalItems = 0;
  private seq = 0;
  private immediate: NodeJS.Immediate | null = null;
  /** Set by {@link schedule}: the next flush writes a batch even when empty. */
  private forced = false;
  private readonly onImmediate = (): void => {
    this.immediate = null;
    this.flush();
  };
  private readonly done = (): void => {
    this.inFlight--;
    this.scheduleFlush();
  };

  /**
   * @param write hands a batch to the stream and calls `done` once the stream has taken it.
   * @param drained called with a key whose queue went from full (≥ `keyLimitBytes`) to under it.
   */
  constructor(
    private readonly write: (items: T[], done: () => void) => void,
    private readonly options: FairBatcherOptions,
    private readonly drained: (key: K) => void = () => {},
  ) {}

  /** Items waiting to be written. */
  get pending(): number {
    return this.totalItems;
  }

  /** Whether `key` queues at least `keyLimitBytes` (its producer should wait for `drained`). */
  isFull(key: K): boolean {
    return (this.queues.get(key)?.bytes ?? 0) >= this.options.keyLimitBytes;
  }

  /** Queues `item` of `key`, `size` its approximate encoded size. */
  push(key: K, item: T, size: number): void {
    let q = this.queues.get(key);
    if (!q) {
      q = { items: new Deque(), bytes: 0 };
      this.queues.set(key, q);
      this.ready.push(key);
    }
    q.items.push({ item, size, seq: this.seq++ });
    q.bytes += size;
    this.totalItems++;
    this.scheduleFlush();
  }

  /** Makes the next flush write a batch even if nothing is queued (e.g. a stream's first message). */
  schedule(): void {
    this.forced = true;
    this.scheduleFlush();
  }

  /** Writes batches while fewer than `maxInFlight` are in flight (or, with `all`, until nothing is left). */
  flush(all = false): void {
    while ((this.totalItems > 0 || this.forced) && (all || this.inFlight < this.options.maxInFlight)) {
      this.forced = false;
      this.inFlight++;
      this.write(this.nextBatch(), this.done);
    }
  }

  /** Drops every queued item and the scheduled flush; returns how many items were dropped. */
  discard(): number {
    const dropped = this.totalItems;
    this.queues.clear();
    this.ready.clear();
    this.totalItems = 0;
    this.forced = false;
    // Batches in flight belong to a stream that is gone: their `done` may never come.
    this.inFlight = 0;
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
    }
    return dropped;
  }

  private nextBatch(): T[] {
    const batch: Queued<T>[] = [];
    let bytes = 0;
    let keys = 0;
    const { maxBatchBytes, keyLimitBytes } = this.options;
    while (this.ready.length > 0 && (batch.length === 0 || bytes < maxBatchBytes)) {
      const key = this.ready.shift()!;
      const q = this.queues.get(key)!;
      const queued = q.items.shift()!;
      const { size } = queued;
      batch.push(queued);
      bytes += size;
      keys++;
      this.totalItems--;
      const wasFull = q.bytes >= keyLimitBytes;
      q.bytes -= size;
      if (q.items.length > 0) this.ready.push(key);
      else this.queues.delete(key);
      if (wasFull && q.bytes < keyLimitBytes) this.drained(key);
    }
    // Several keys' items: back in push order (each key's own items already are).
    if (keys > 1) batch.sort((a, b) => a.seq - b.seq);
    return batch.map((q) => q.item);
  }

  private scheduleFlush(): void {
    if (this.immediate === null) this.immediate = setImmediate(this.onImmediate);
  }
}
