/**
 * The write leases of one Chat backend's rooms. Routing normally gives a room one owner, but during a
 * failover (the proxy moves sessions to the key's next owner, then back when the first recovers) or
 * while proxies disagree about endpoint health, two backends may both serve a room's sessions. The
 * lease decides which one writes: a backend takes the room's lease before its first ordered write,
 * renews it while the room has joined sessions here, and releases it when the last one leaves, at an
 * idle drop, or on a clean shutdown. The store checks the lease's fencing token inside every ordered
 * write, so a backend whose lease lapsed without its noticing (a long pause) still cannot write.
 *
 * A backend without the lease answers the write with NOT_OWNER (retryable, nothing was written); one
 * whose write was refused as stale forgets its lease at once, so it stops writing the room until it
 * takes the lease again (after the other holder released it or died and its lease expired).
 */
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import type pino from 'pino';
import { LivemuxError } from '../../protocol/errors.js';
import { ChatError, ChatErrorCode } from './chat-errors.js';
import type { Room } from './room.js';
import type { ChatStore } from './store.js';

/** Why a write was refused: another backend holds the lease, or the store refused a stale token. */
export type LeaseRefusal = 'held' | 'stale';

/** Bounds of the retry_after_ms hint of NOT_OWNER: the holder may release long before its lease ends. */
const MIN_RETRY_AFTER_MS = 50;
const MAX_RETRY_AFTER_MS = 1000;

/** The lease this backend holds on one room. */
interface HeldLease {
  readonly token: number;
  /** performance.now() before which the lease is surely still ours (measured from before the request). */
  validUntil: number;
  readonly timer: NodeJS.Timeout;
}

export interface RoomLeasesOptions {
  readonly store: ChatStore;
  /** How long a lease lasts without renewal: a dead holder's rooms stay unwritable this long. */
  readonly ttlMs: number;
  readonly log: pino.Logger;
  /** Told of each refusal (metrics). */
  readonly onRefusal: (reason: LeaseRefusal) => void;
}

export class RoomLeases {
  /** This backend's name in the store: unique per process and per backend instance. */
  readonly holder = `${hostname().replace(/\s/g, '_')}/${process.pid}/${randomUUID().slice(0, 8)}`;
  private readonly held = new Map<Room, HeldLease>();

  constructor(private readonly options: RoomLeasesOptions) {
    const { ttlMs } = options;
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 3) throw new LivemuxError('ERR_INVALID_ARGUMENT', `chat backend leaseTtlMs: expected an integer >= 3 (${ttlMs})`);
  }

  /** Whether this backend believes it holds the room's lease now (no store call). */
  holds(room: Room): boolean {
    const lease = this.held.get(room);
    return lease !== undefined && performance.now() < lease.validUntil;
  }

  /**
   * The room's lease token for an ordered write: the held one while it is surely valid (no store call,
   * the common case), else taken or renewed in the store. Throws NOT_OWNER while another backend holds
   * it. A lease taken anew (not a renewal) means another owner may have written the room meanwhile, so
   * the room's cached latest seq is read again.
   */
  async token(room: Room): Promise<number> {
    const lease = this.held.get(room);
    const now = performance.now();
    if (lease !== undefined && now < lease.validUntil) return lease.token;
    const { store, ttlMs } = this.options;
    const grant = await store.acquireLease(room.id, this.holder, ttlMs);
    if (!grant.acquired) {
      this.forget(room);
      this.options.onRefusal('held');
      throw notOwner(room, `held by ${grant.holder}`, grant.remainingMs);
    }
    if (lease?.token === grant.token) {
      lease.validUntil = now + ttlMs;
      return grant.token;
    }
    this.forget(room);
    room.lastSeq = -1;
    const timer = setInterval(() => this.renew(room), Math.max(1, Math.floor(ttlMs / 3)));
    timer.unref();
    this.held.set(room, { token: grant.token, validUntil: now + ttlMs, timer });
    return grant.token;
  }

  /**
   * What to throw for an error of an ordered write: a stale-token refusal becomes NOT_OWNER (and the
   * lease is forgotten, so this backend stops writing the room); any other error is returned as is.
   */
  refusal(room: Room, err: unknown): unknown {
    if ((err as { code?: unknown }).code !== 'ERR_STALE_OWNER') return err;
    this.forget(room);
    this.options.onRefusal('stale');
    return notOwner(room, 'its lease was taken over', this.options.ttlMs);
  }

  /** Gives the room's lease back (the room is empty here, or dropped); store errors are logged. */
  async release(room: Room): Promise<void> {
    const lease = this.held.get(room);
    if (lease === undefined) return;
    this.forget(room);
    await this.options.store
      .releaseLease(room.id, lease.token)
      .catch((err: unknown) => this.options.log.warn({ err, room: room.id }, 'chat: releasing a room lease failed'));
  }

  /**
   * Drops an idle room from the store, under its lease; nothing is dropped when another backend holds
   * the lease, as it serves the room now and owns its data. Not a refusal: nobody asked to write.
   */
  async drop(room: Room): Promise<void> {
    const { store, ttlMs } = this.options;
    const grant = await store.acquireLease(room.id, this.holder, ttlMs);
    this.forget(room);
    if (grant.acquired) await store.dropRoom(room.id, grant.token);
  }

  /** Releases every lease (clean shutdown), so other backends take the rooms over at once. */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.held.keys()].map((room) => this.release(room)));
  }

  /** The renewal tick: renews while the room has joined sessions here, releases it otherwise. */
  private renew(room: Room): void {
    const lease = this.held.get(room);
    if (lease === undefined) return;
    if (room.sessions.size === 0) {
      void room.run(() => this.release(room));
      return;
    }
    const started = performance.now();
    this.options.store.renewLease(room.id, lease.token, this.options.ttlMs).then(
      (renewed) => {
        if (this.held.get(room) !== lease) return;
        if (renewed) lease.validUntil = started + this.options.ttlMs;
        else {
          this.forget(room);
          this.options.log.warn({ room: room.id, token: lease.token }, 'chat: room lease lost to another backend');
        }
      },
      // The lease lapses here by validUntil; the next write tries to take it again.
      (err: unknown) => this.options.log.warn({ err, room: room.id }, 'chat: renewing a room lease failed'),
    );
  }

  private forget(room: Room): void {
    const lease = this.held.get(room);
    if (lease === undefined) return;
    clearInterval(lease.timer);
    this.held.delete(room);
  }
}

function notOwner(room: Room, why: string, remainingMs: number): ChatError {
  const retryAfterMs = Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, remainingMs));
  return new ChatError(ChatErrorCode.NOT_OWNER, `room ${room.id}: this backend does not hold the room's write lease (${why})`, retryAfterMs);
}
