import type pino from 'pino';
import { Backoff } from '../../../util/backoff.js';
import { Deque } from '../../../util/deque.js';
import type { DeliveryLedger } from './delivery-ledger.js';
import type { InboxEntry, InboxStore } from './inbox-store.js';

/** Where a feed sends what its device should get; the backend encodes it for its protocol. */
export interface FeedSink {
  /** Entries for the device, ascending seq. Each is sent once per feed; a new feed sends unacknowledged ones again. */
  entries(entries: readonly InboxEntry[]): void;
  /** Entries `fromSeq..toSeq` were removed by retention before this device acknowledged them: they are lost. */
  gap(fromSeq: number, toSeq: number): void;
  /** A transient payload published to the user (typing, presence, online-only push). */
  transient(payload: Buffer): void;
  /**
   * Called once, when the feed has sent (or skipped) everything the inbox held when it started:
   * `lastSeq` is the inbox's latest seq then. Entries after it keep coming as they are appended.
   */
  synced(lastSeq: number): void;
}

/** How a feed works; the hub fills these in. */
export interface FeedOptions {
  readonly store: InboxStore;
  readonly ledger: DeliveryLedger | null;
  /** Largest number of unacknowledged entries sent to the device; more wait for acks (flow control). */
  readonly window: number;
  /** Entries examined per store read. */
  readonly pageSize: number;
  readonly now: () => number;
  readonly log: pino.Logger;
}

/** An entry sent and not yet covered by the device's cumulative cursor. */
interface Sent {
  readonly seq: number;
  readonly ref: string;
  acked: boolean;
}

const READ_RETRY = { initialMs: 100, maxMs: 5_000, jitter: 'equal' } as const;

/**
 * Delivery of one user's inbox to one device session: starts after the device's cursor, reads the
 * store in pages, then follows live notices, and keeps at most `window` unacknowledged entries in
 * flight. Acknowledgements are cumulative (`ack`, IM) or per entry (`ackEntry`, Push); either way the
 * device's cumulative cursor — every entry up to it acknowledged or skipped — is written to the store
 * (one write in flight, the latest value wins), so a new feed starts where this one's device stopped.
 *
 * Guarantees: entries reach the sink in ascending seq without repeats; none is skipped unless it is
 * expired, superseded, or reported in a `gap`; a live notice is sent directly when it is the next seq,
 * so a device that keeps up costs no store reads. A failing store read is retried with backoff.
 */
export class DeviceFeed {
  /** Highest seq sent or skipped. */
  private sentThrough = 0;
  /** Highest seq known to exist (from notices and reads). */
  private knownLast = 0;
  private readonly inFlight = new Deque<Sent>();
  private unacked = 0;
  /** Live entries that arrived ahead of the next seq (while reading, or beyond the window). */
  private readonly ahead = new Map<number, InboxEntry>();
  private reading = false;
  private started = false;
  /** The inbox's latest seq at the first read: `synced` is due once sent through it; null before, and after it was said. */
  private syncTarget: number | null = null;
  private synced = false;
  private closedFlag = false;
  /** Cursor known to be in the store. */
  private persisted = 0;
  private persisting = false;
  private readonly retry = new Backoff(READ_RETRY);
  private retryTimer: NodeJS.Timeout | null = null;

  /** @internal Made by InboxHub.attach. */
  constructor(
    readonly user: string,
    readonly device: string,
    private readonly sink: FeedSink,
    private readonly options: FeedOptions,
    private readonly onClose: (feed: DeviceFeed) => void,
  ) {}

  /** Every entry up to this seq is acknowledged by the device, or was skipped. */
  get cursor(): number {
    return this.inFlight.length === 0 ? this.sentThrough : this.inFlight.peek()!.seq - 1;
  }

  /** Entries sent and not acknowledged. */
  get unacknowledged(): number {
    return this.unacked;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * @internal The hub's watch is ready and the device's stored cursor known: read after `startAfter`,
   * then follow notices. Live notices that came before are kept for it.
   */
  start(startAfter: number, storedCursor: number): void {
    if (this.closedFlag) return;
    this.started = true;
    this.sentThrough = startAfter;
    this.persisted = storedCursor;
    for (const seq of this.ahead.keys()) if (seq <= startAfter) this.ahead.delete(seq);
    this.knownLast = Number.POSITIVE_INFINITY; // unknown until the first read says
    this.pump();
  }

  /** @internal An entry was appended to the user's inbox. */
  live(entry: InboxEntry): void {
    if (this.closedFlag || entry.seq <= this.sentThrough) return;
    // Infinity means a read is due anyway and will say how far the inbox goes.
    if (this.knownLast !== Number.POSITIVE_INFINITY) this.knownLast = Math.max(this.knownLast, entry.seq);
    if (this.started && !this.reading && entry.seq === this.sentThrough + 1 && this.ahead.size === 0 && this.hasRoom()) {
      this.sentThrough = entry.seq;
      if (this.deliverable(entry)) this.send([entry]);
      this.checkSynced();
      return;
    }
    // Kept (bounded) so the read that fills the hole need not fetch it again.
    if (this.ahead.size < this.options.window) this.ahead.set(entry.seq, entry);
    this.pump();
  }

  /** @internal A transient payload for the user. */
  transient(payload: Buffer): void {
    if (!this.closedFlag) this.sink.transient(payload);
  }

  /** @internal Notices may have been lost: read until up to date again. */
  resync(): void {
    if (this.closedFlag) return;
    this.knownLast = Number.POSITIVE_INFINITY;
    this.pump();
  }

  /** Cumulative acknowledgement: the device has every entry up to `seq` (capped at what was sent). */
  ack(seq: number): void {
    if (this.closedFlag) return;
    for (let head = this.inFlight.peek(); head !== undefined && head.seq <= seq; head = this.inFlight.peek()) {
      this.inFlight.shift();
      if (!head.acked) this.acknowledged(head);
    }
    this.afterAck();
  }

  /** Acknowledgement of one entry (Push): the cursor moves once every entry before it is acknowledged too. */
  ackEntry(seq: number): void {
    if (this.closedFlag) return;
    const i = this.inFlight.lowerBound(seq - 1, (s) => s.seq);
    const sent = this.inFlight.at(i);
    if (sent === undefined || sent.seq !== seq || sent.acked) return;
    this.acknowledged(sent);
    while (this.inFlight.peek()?.acked) this.inFlight.shift();
    this.afterAck();
  }

  /** Stops delivery; the cursor reached so far is still written. Idempotent. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.ahead.clear();
    this.persist();
    this.onClose(this);
  }

  private acknowledged(sent: Sent): void {
    sent.acked = true;
    this.unacked--;
    const ledger = this.options.ledger;
    if (ledger !== null && sent.ref !== '') {
      ledger.delivered(sent.ref, this.user).catch((err: unknown) => this.options.log.warn({ err, ref: sent.ref, user: this.user }, 'inbox: counting a delivery failed'));
    }
  }

  private afterAck(): void {
    this.persist();
    this.pump();
  }

  private hasRoom(): boolean {
    // Entries acknowledged out of order stay in the deque until those before them are: bound that too.
    return this.unacked < this.options.window && this.inFlight.length < this.options.window * 4;
  }

  private deliverable(entry: InboxEntry): boolean {
    return entry.expiresAtMs === 0 || entry.expiresAtMs > this.options.now();
  }

  private send(entries: InboxEntry[]): void {
    for (const e of entries) {
      this.inFlight.push({ seq: e.seq, ref: e.ref, acked: false });
      this.unacked++;
    }
    this.sink.entries(entries);
  }

  /** Sends what waits ahead in order, then reads the store while the device is behind and has room. */
  private pump(): void {
    if (this.closedFlag || !this.started || this.reading || this.retryTimer !== null) return;
    const batch: InboxEntry[] = [];
    for (let next = this.ahead.get(this.sentThrough + 1); next !== undefined && this.hasRoom() && this.unacked + batch.length < this.options.window; next = this.ahead.get(this.sentThrough + 1)) {
      this.ahead.delete(next.seq);
      this.sentThrough = next.seq;
      if (this.deliverable(next)) batch.push(next);
    }
    if (batch.length > 0) this.send(batch);
    this.checkSynced();
    if (this.sentThrough >= this.knownLast || !this.hasRoom()) return;
    const room = Math.max(1, this.options.window - this.unacked);
    this.reading = true;
    const after = this.sentThrough;
    this.options.store.read(this.user, after, Math.min(this.options.pageSize, room), this.options.now()).then(
      (page) => {
        this.reading = false;
        this.retry.reset();
        if (this.closedFlag) return;
        if (after > page.lastSeq) {
          // Ahead of the inbox (a client that remembers more than the store has, e.g. after the store
          // lost its data): start over from the oldest retained entry.
          this.sentThrough = 0;
          this.knownLast = page.lastSeq;
          this.pump();
          return;
        }
        if (page.gap !== null && page.gap.fromSeq > this.sentThrough) this.sink.gap(page.gap.fromSeq, page.gap.toSeq);
        const fresh = page.entries.filter((e) => e.seq > this.sentThrough);
        this.sentThrough = Math.max(this.sentThrough, page.throughSeq);
        this.knownLast = this.knownLast === Number.POSITIVE_INFINITY ? page.lastSeq : Math.max(this.knownLast, page.lastSeq);
        for (const seq of this.ahead.keys()) {
          if (seq <= this.sentThrough) this.ahead.delete(seq);
          else this.knownLast = Math.max(this.knownLast, seq);
        }
        if (fresh.length > 0) this.send(fresh);
        if (!this.synced) this.syncTarget ??= page.lastSeq;
        this.checkSynced();
        // Skipped entries (expired, superseded) may have moved the cursor without any ack.
        this.persist();
        this.pump();
      },
      (err: unknown) => {
        this.reading = false;
        if (this.closedFlag) return;
        const delay = this.retry.next();
        this.options.log.warn({ err, user: this.user, device: this.device, retryMs: delay }, 'inbox: reading the store failed');
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.pump();
        }, delay);
        this.retryTimer.unref();
      },
    );
  }

  private checkSynced(): void {
    if (this.syncTarget === null || this.sentThrough < this.syncTarget) return;
    const lastSeq = this.syncTarget;
    this.syncTarget = null;
    this.synced = true;
    this.sink.synced(lastSeq);
  }

  /** Writes the cursor when it moved; one write at a time, the latest value wins. */
  private persist(): void {
    const cursor = this.cursor;
    if (this.persisting || cursor <= this.persisted) return;
    this.persisting = true;
    this.options.store.ack(this.user, this.device, cursor, this.options.now()).then(
      (stored) => {
        this.persisting = false;
        this.persisted = Math.max(this.persisted, Math.min(stored, cursor));
        // Stored below ours only if the inbox is behind us (stale client); do not loop on it.
        if (stored >= cursor) this.persist();
      },
      (err: unknown) => {
        this.persisting = false;
        this.options.log.warn({ err, user: this.user, device: this.device }, 'inbox: writing the device cursor failed');
      },
    );
  }
}
