import pino from 'pino';
import { LivemuxError } from '../../../protocol/errors.js';
import { Backoff } from '../../../util/backoff.js';
import type { DeliveryLedger } from './delivery-ledger.js';
import { DeviceFeed, type FeedOptions, type FeedSink } from './device-feed.js';
import type { AppendRequest, AppendResult, InboxNotice, InboxStore, InboxWatch } from './inbox-store.js';

export interface InboxHubOptions {
  readonly store: InboxStore;
  /** Counts deliveries per `ref` (Push); without it refs are stored and delivered but not counted. */
  readonly ledger?: DeliveryLedger;
  /** Unacknowledged entries in flight per device (default 256). */
  readonly window?: number;
  /** Entries examined per store read (default 100). */
  readonly pageSize?: number;
  /** Wall clock, ms since the epoch (default Date.now). */
  readonly now?: () => number;
  readonly logger?: pino.Logger;
}

export const HUB_DEFAULTS = Object.freeze({ window: 256, pageSize: 100 });

/** Where a device's feed starts. */
export interface AttachOptions {
  /**
   * The last seq the device says it has. The feed starts after the lower of this and the device's
   * stored cursor, so what the device did not acknowledge comes again; absent, after the stored
   * cursor (0 for a device new to the user: everything retained).
   */
  readonly afterSeq?: number;
}

/** One watched user: the store watch and the local feeds it serves. */
interface UserWatch {
  readonly watch: InboxWatch;
  readonly feeds: Set<DeviceFeed>;
}

const ATTACH_RETRY = { initialMs: 100, maxMs: 5_000, jitter: 'equal' } as const;

/**
 * "Deliver to a user's devices wherever they are, and keep it for them while they are offline": the
 * kit's delivery layer over an InboxStore. A backend process attaches each device session it serves
 * (`attach`), and any process appends for any user (`deliver`); the store's notices reach the user's
 * devices on whichever process holds them. One store watch per user with local devices, shared by
 * them. See docs/inbox.md.
 */
export class InboxHub {
  readonly store: InboxStore;
  readonly ledger: DeliveryLedger | null;
  private readonly watches = new Map<string, UserWatch>();
  private readonly feedOptions: FeedOptions;
  private readonly log: pino.Logger;
  private readonly now: () => number;

  constructor(options: InboxHubOptions) {
    this.store = options.store;
    this.ledger = options.ledger ?? null;
    this.now = options.now ?? Date.now;
    this.log = options.logger ?? pino({ level: 'silent' });
    const window = options.window ?? HUB_DEFAULTS.window;
    const pageSize = options.pageSize ?? HUB_DEFAULTS.pageSize;
    for (const [name, value] of [['window', window], ['pageSize', pageSize]] as const) {
      if (!Number.isSafeInteger(value) || value < 1) throw new LivemuxError('ERR_INVALID_ARGUMENT', `inbox hub ${name}: expected a positive integer (${value})`);
    }
    this.feedOptions = { store: this.store, ledger: this.ledger, window, pageSize, now: this.now, log: this.log };
  }

  /**
   * Starts delivering `user`'s inbox to one device session: `sink` gets its entries (after the start
   * cursor, then live), gaps, transients and `synced`. Returns at once; the feed starts when the store
   * watch is ready and the device's cursor read (retried with backoff while the store fails). Close
   * the feed when the session ends.
   */
  attach(user: string, device: string, sink: FeedSink, options: AttachOptions = {}): DeviceFeed {
    const feed = new DeviceFeed(user, device, sink, this.feedOptions, (f) => this.detach(f));
    const watched = this.watch(user);
    watched.feeds.add(feed);
    void this.begin(feed, watched, options.afterSeq);
    return feed;
  }

  /**
   * Appends `request` to `user`'s inbox; the user's devices on every process get it. With a ledger and
   * a `ref`, the user is targeted first (so an acknowledgement can never arrive before it counts), and a
   * superseded entry's ref counts the user as collapsed.
   */
  async deliver(user: string, request: AppendRequest): Promise<AppendResult> {
    return (await this.deliverMany([user], request))[0]!;
  }

  /** `deliver` to each of `users` (targeted in one ledger call); resolves with each result, in order. */
  async deliverMany(users: readonly string[], request: AppendRequest): Promise<AppendResult[]> {
    const ref = request.ref ?? '';
    const now = this.now();
    if (this.ledger !== null && ref !== '' && users.length > 0) await this.ledger.target(ref, users, request.expiresAtMs ?? 0, now);
    return Promise.all(
      users.map(async (user) => {
        const result = await this.store.append(user, request, now);
        const superseded = result.superseded;
        if (this.ledger !== null && superseded !== null && superseded.ref !== '') await this.ledger.collapsed(superseded.ref, user);
        return result;
      }),
    );
  }

  /** A transient payload to the user's devices online now, on every process; nothing is stored. */
  publish(user: string, payload: Buffer): Promise<void> {
    return this.store.publish(user, payload);
  }

  /** The feeds of `user` attached on this process (its online devices here). */
  feeds(user: string): readonly DeviceFeed[] {
    return [...(this.watches.get(user)?.feeds ?? [])];
  }

  /** Users with at least one feed on this process. */
  get users(): number {
    return this.watches.size;
  }

  /** Closes every feed (their cursors are still written) and stops watching. Does not close the store. */
  close(): void {
    for (const watched of [...this.watches.values()]) for (const feed of [...watched.feeds]) feed.close();
  }

  private watch(user: string): UserWatch {
    let watched = this.watches.get(user);
    if (watched === undefined) {
      const feeds = new Set<DeviceFeed>();
      const watch = this.store.watch(user, (notice) => dispatch(feeds, notice));
      watched = { watch, feeds };
      this.watches.set(user, watched);
    }
    return watched;
  }

  /** Waits for the watch and the stored cursor, then starts the feed; retried with backoff while the store fails. */
  private async begin(feed: DeviceFeed, watched: UserWatch, afterSeq: number | undefined): Promise<void> {
    const backoff = new Backoff(ATTACH_RETRY);
    for (;;) {
      try {
        const [, stored] = await Promise.all([watched.watch.ready, this.store.cursor(feed.user, feed.device)]);
        const startAfter = afterSeq === undefined ? (stored ?? 0) : Math.min(afterSeq, stored ?? afterSeq);
        feed.start(startAfter, stored ?? 0);
        return;
      } catch (err) {
        if (feed.closed) return;
        const delayMs = backoff.next();
        this.log.warn({ err, user: feed.user, device: feed.device, retryMs: delayMs }, 'inbox: attaching a device failed');
        if (this.watches.get(feed.user) === watched) {
          // A watch whose subscription failed stays failed: make a new one for this feed and the others.
          watched.watch.close();
          this.watches.delete(feed.user);
          const fresh = this.watch(feed.user);
          for (const f of watched.feeds) fresh.feeds.add(f);
        }
        watched = this.watches.get(feed.user)!;
        await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
        if (feed.closed) return;
      }
    }
  }

  private detach(feed: DeviceFeed): void {
    const watched = this.watches.get(feed.user);
    if (watched === undefined || !watched.feeds.delete(feed) || watched.feeds.size > 0) return;
    watched.watch.close();
    this.watches.delete(feed.user);
  }
}

function dispatch(feeds: ReadonlySet<DeviceFeed>, notice: InboxNotice): void {
  for (const feed of feeds) {
    if (notice.kind === 'entry') feed.live(notice.entry);
    else if (notice.kind === 'transient') feed.transient(notice.payload);
    else feed.resync();
  }
}
