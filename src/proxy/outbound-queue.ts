import type { Socket } from 'node:net';
import { FrameType, MAX_QUEUED_CONTROL_BYTES, Priority } from '../protocol/constants.js';
import type { HistogramSeries } from '../observability/histogram.js';
import type { FrameStats } from '../observability/metrics.js';
import { Deque } from '../util/deque.js';

/** Whoever queued a DATA entry; told when it leaves the queue (written or dropped). */
export interface QueueOwner {
  /** True once the owner no longer wants its frames written (e.g. its session was reset). */
  readonly discarded: boolean;
  /** `size`: the bytes the entry held (as queued with `data`). */
  onDequeued(size: number): void;
}

/** Why a DATA frame was not written; the label of `livemux_dropped_frames_total{reason}`. */
export type DropReason = 'queue_full' | 'no_credit' | 'evicted' | 'session_closed' | 'rate_capped' | 'merge_overflow';

export interface OutboundHooks {
  onDrop(reason: DropReason, priority: Priority, frames: number): void;
  /**
   * A control frame did not fit: `control` when unwritten control frames alone would pass
   * MAX_QUEUED_CONTROL_BYTES (the peer sends what earns replies and does not read them), `total` when
   * the queue's bound would be passed. The frame was not queued; the connection must close.
   */
  onOverflow(kind: 'control' | 'total'): void;
}

/** Result of asking the queue to take `size` more bytes of DATA. */
export type Admission = 'ok' | 'drop' | 'overflow';

interface Entry {
  head: Buffer;
  body: Buffer | null;
  size: number;
  /** DATA frames in `head` + `body`: 1, or a run of one topic fan-out (TopicFanOut). */
  frames: number;
  priority: Priority;
  owner: QueueOwner | null;
  /** When it was queued ({@link runClock}), for livemux_outbound_queue_wait_seconds. */
  at: number;
}

/**
 * The time for queue-wait bookkeeping, read once per synchronous run rather than per entry: a fan-out
 * queues an entry per member in one run, and the flush writes hundreds of sockets per slice, so a clock
 * read each (0.05-0.2 µs here) would cost more than the rest of the bookkeeping. Exact to one run; the
 * flush scheduler refreshes it as it goes.
 */
const runClock = {
  t: -1,
  expire: (): void => void (runClock.t = -1),
  now(): number {
    if (runClock.t < 0) runClock.set(performance.now());
    return runClock.t;
  },
  set(t: number): void {
    if (runClock.t < 0) queueMicrotask(runClock.expire);
    runClock.t = t;
  },
};

// Up to this many queued bytes are gathered into one socket write per flush round: small frames are
// coalesced into a single syscall, large ones are still not copied more than once.
const COALESCE_BYTES = 64 * 1024;

/** How long one slice of flushing may hold the event loop before I/O gets a turn. */
const FLUSH_SLICE_MS = 10;
/** Queues flushed between two looks at the clock. */
const FLUSH_CLOCK_EVERY = 64;

/**
 * Flushes queues after the event-loop turn that filled them, so every frame queued while handling one
 * round of I/O (e.g. one backend batch fanned out to thousands of sessions) leaves in one write per
 * socket.
 *
 * A fan-out to 10,000 sockets is 10,000 write syscalls, a few hundred milliseconds on a small machine.
 * Done in one go, nothing is read meanwhile: a client's message forwarded to a backend, and the
 * backend's Publish coming back, would each wait for a whole round, and that room's latency would be
 * three rounds. So flushing goes in slices of FLUSH_SLICE_MS with I/O between them; what arrives
 * meanwhile joins the queues not written yet and leaves with them, in the same round.
 */
class FlushScheduler {
  private readonly dirty = new Deque<OutboundQueue>();
  private immediate: NodeJS.Immediate | null = null;
  readonly run = (): void => {
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = null;
    const start = performance.now();
    runClock.set(start);
    const deadline = start + FLUSH_SLICE_MS;
    for (let n = 1; this.dirty.length > 0; n++) {
      this.dirty.shift()!.flush();
      if (n % FLUSH_CLOCK_EVERY !== 0) continue;
      const now = performance.now();
      runClock.set(now);
      if (now > deadline) break;
    }
    if (this.dirty.length > 0) this.immediate ??= setImmediate(this.run);
  };

  schedule(q: OutboundQueue): void {
    this.dirty.push(q);
    this.immediate ??= setImmediate(this.run);
  }
}

const scheduler = new FlushScheduler();

/** The queue a socket drains into; the 'drain' listener is one function for every socket, not a closure each. */
const QUEUE = Symbol('livemux.outboundQueue');
type QueuedSocket = Socket & { [QUEUE]: OutboundQueue };

function onSocketDrain(this: QueuedSocket): void {
  this[QUEUE].scheduleFlush();
}

/**
 * Starts writing the queues that have frames waiting now rather than at the scheduled turn (one slice;
 * the rest follows as scheduled). For a producer that has just queued a large fan-out in the check
 * phase: waiting for the next turn would add a whole poll phase to every recipient's latency.
 */
export const flushQueuedWrites: () => void = scheduler.run;

/**
 * One connection's bounded outbound queue (PROTOCOL.md §8). Control frames go first, then DATA by
 * priority (system, high, low), FIFO within a priority. `bytes` counts everything queued here, control
 * frames included, plus bytes the connection holds for sessions waiting for credit (`hold`), so one
 * bound covers all a peer makes the proxy hold. Control frames have a bound of their own besides, far
 * below what a reading client ever has queued. The connection's last frame (ERROR) is not queued: it is
 * written ahead of everything not yet written ({@link abort}), so it always gets through.
 *
 * Frames are only handed to the socket while it is under its high-water mark; everything else waits
 * here, where low-priority frames can still be dropped instead of piling up in Node's write buffer.
 */
export class OutboundQueue {
  /** By lane (control, then DATA system, high, low); null while nothing has been queued since {@link compact}. */
  private lanes: Deque<Entry>[] | null = null;
  private queuedBytes = 0;
  private controlBytes = 0;
  private heldBytes = 0;
  private pendingFlush = false;
  private flushing = false;
  private ended = false;
  /** {@link compact} was asked while frames were queued: give the lanes back once they are written. */
  private compactWhenEmpty = false;

  constructor(
    private readonly socket: Socket,
    private readonly maxBytes: number,
    private readonly hooks: OutboundHooks,
    private readonly stats: FrameStats,
    /** One series per lane (control, system, high, low) for the time frames wait here. */
    private readonly waits?: readonly HistogramSeries[],
  ) {
    (socket as QueuedSocket)[QUEUE] = this;
    socket.on('drain', onSocketDrain);
  }

  /** Bytes queued or held for credit. */
  get bytes(): number {
    return this.queuedBytes + this.heldBytes;
  }

  /**
   * Decides whether `size` more bytes of DATA may be taken: low priority is dropped past half the bound
   * (leaving room for what matters); system/high evict queued low frames first and overflow only when
   * the bound is still exceeded — the caller then closes the connection as a slow consumer.
   */
  admit(size: number, priority: Priority): Admission {
    const limit = priority === Priority.LOW ? this.maxBytes / 2 : this.maxBytes;
    if (this.bytes + size <= limit) return 'ok';
    if (priority === Priority.LOW) return 'drop';
    return this.evictLow(size, limit);
  }

  /** Evicts queued low DATA, oldest first, until `size` more bytes fit under `limit`. */
  private evictLow(size: number, limit: number): Admission {
    const low = this.lanes?.[LOW_LANE];
    while (low && low.length > 0 && this.bytes + size > limit) {
      const e = low.shift()!;
      this.queuedBytes -= e.size;
      e.owner?.onDequeued(e.size);
      this.hooks.onDrop('evicted', e.priority, e.frames);
    }
    return this.bytes + size <= limit ? 'ok' : 'overflow';
  }

  /**
   * Queues a complete control frame; never dropped. A frame that does not fit (see
   * {@link OutboundHooks.onOverflow}) is not queued and the hook is told, after queued low DATA has been
   * evicted to make room if that suffices.
   */
  control(frame: Buffer): void {
    if (this.ended) return;
    const size = frame.length;
    if (this.controlBytes + size > MAX_QUEUED_CONTROL_BYTES) return this.hooks.onOverflow('control');
    if (this.bytes + size > this.maxBytes && this.evictLow(size, this.maxBytes) !== 'ok') return this.hooks.onOverflow('total');
    this.controlBytes += size;
    this.stats.countOut(frame[2]!, size);
    this.enqueue(CONTROL_LANE, { head: frame, body: null, size, frames: 1, priority: Priority.SYSTEM, owner: null, at: 0 });
  }

  /**
   * Queues DATA already admitted with {@link admit}: one frame (`head` its header, `body` its payload),
   * or `frames` whole frames of one priority in `head` alone (`body` null). Buffers are shared, never
   * copied here.
   */
  data(owner: QueueOwner, head: Buffer, body: Buffer | null, priority: Priority, frames = 1): void {
    const size = head.length + (body?.length ?? 0);
    this.stats.countOut(FrameType.DATA, size, frames);
    this.enqueue(DATA_LANE[priority], { head, body, size, frames, priority, owner, at: 0 });
  }

  /** Accounts bytes a session holds while waiting for credit (already admitted). */
  hold(size: number): void {
    this.heldBytes += size;
  }

  unhold(size: number): void {
    this.heldBytes -= size;
  }

  /** Stops accepting frames and ends the socket once everything already queued is written. */
  finish(): void {
    this.ended = true;
    this.scheduleFlush();
  }

  /**
   * Forgets every frame not yet written, writes `last` (the connection's ERROR, if any) at once and ends
   * the socket: what the socket already took is ahead of it, nothing else. The queue takes no more frames.
   */
  abort(last?: Buffer): void {
    this.ended = true;
    this.lanes = null;
    this.queuedBytes = 0;
    this.controlBytes = 0;
    if (this.socket.destroyed) return;
    if (!last) return void this.socket.end();
    this.stats.countOut(last[2]!, last.length);
    this.socket.end(last);
  }

  /**
   * Gives back the lanes of an empty queue, now or once what is queued has been written (called for
   * idle connections, from their periodic check): four deques and their buffers cost an idle connection
   * about 500 bytes; a busy one keeps them, so the hot path allocates nothing new.
   */
  compact(): void {
    if (this.queuedBytes === 0 && !this.pendingFlush && !this.flushing) this.lanes = null;
    else this.compactWhenEmpty = true;
  }

  /** Writes queued frames while the socket accepts them. Called by the scheduler. */
  flush(): void {
    this.pendingFlush = false;
    // A dequeue callback may queue a frame (a session's CLOSE); writing it from a nested flush would
    // put it ahead of frames this flush has already gathered.
    if (this.flushing) return this.scheduleFlush();
    this.flushing = true;
    try {
      this.writeQueued();
    } finally {
      this.flushing = false;
    }
  }

  private writeQueued(): void {
    const socket = this.socket;
    while (!socket.destroyed && !socket.writableNeedDrain) {
      const parts: Buffer[] = [];
      let size = 0;
      const now = this.waits ? runClock.now() : 0;
      while (size < COALESCE_BYTES) {
        const lane = this.nextLane();
        if (lane < 0) break;
        const e = this.lanes![lane]!.shift()!;
        this.queuedBytes -= e.size;
        this.waits?.[lane]!.observe((now - e.at) / 1000);
        if (!e.owner) this.controlBytes -= e.size;
        else {
          // Asked before telling the owner: the session's last DATA may retire it (its CLOSE follows),
          // and that DATA must still be written.
          const discarded = e.owner.discarded;
          e.owner.onDequeued(e.size);
          if (discarded) {
            this.hooks.onDrop('session_closed', e.priority, e.frames);
            continue;
          }
        }
        parts.push(e.head);
        if (e.body && e.body.length > 0) parts.push(e.body);
        size += e.size;
      }
      if (parts.length === 0) {
        if (this.ended) socket.end();
        if (this.compactWhenEmpty) {
          this.compactWhenEmpty = false;
          this.lanes = null;
        }
        return;
      }
      if (parts.length === 1) socket.write(parts[0]!);
      else if (parts.length <= WRITEV_MAX_PARTS && size >= WRITEV_BYTES) writev(socket, parts);
      else socket.write(join(parts, size));
    }
  }

  private enqueue(lane: number, e: Entry): void {
    if (this.ended) return;
    if (this.waits) e.at = runClock.now();
    (this.lanes ??= [new Deque<Entry>(), new Deque<Entry>(), new Deque<Entry>(), new Deque<Entry>()])[lane]!.push(e);
    this.queuedBytes += e.size;
    // Coalesce within the tick, but never let a burst that the socket can take (a whole backend batch
    // arriving at once) sit here and count as a slow reader: the queue should only grow while the
    // socket itself is backed up.
    if (this.queuedBytes >= COALESCE_BYTES && !this.socket.writableNeedDrain) this.flush();
    else this.scheduleFlush();
  }

  /** @internal Flushes at the scheduler's next turn (once, however often it is asked). */
  scheduleFlush(): void {
    if (this.pendingFlush) return;
    this.pendingFlush = true;
    scheduler.schedule(this);
  }

  /** The lane the next frame comes from, or -1 when all are empty (or given back). */
  private nextLane(): number {
    const lanes = this.lanes;
    if (lanes) for (let i = 0; i < lanes.length; i++) if (lanes[i]!.length > 0) return i;
    return -1;
  }
}

/**
 * A few large parts (a passthrough chunk and its header) go out in one writev rather than copied into
 * one buffer: copying 64 KiB per chunk, and collecting the copies, cost the proxy about a fifth of its
 * CPU on a passthrough stream. Many small parts (a fan-out's runs) are still joined: writev's cost per
 * part is higher than copying them, and the join is shared between members.
 */
const WRITEV_BYTES = 16 * 1024;
const WRITEV_MAX_PARTS = 4;

function writev(socket: Socket, parts: Buffer[]): void {
  socket.cork();
  for (const p of parts) socket.write(p);
  socket.uncork();
}

/**
 * The last concatenation written, by the identity of its parts. A fan-out queues the same run buffers
 * for every member with the same session id, so when the next turn's run reaches the sockets a round
 * has not written yet, all of them write the same two shared buffers: they share one copy instead of
 * each making its own (a tenth of the proxy's time at the broadcast peak before this). Queued buffers
 * are never changed, so the same parts always mean the same bytes.
 */
let lastJoin: { parts: readonly Buffer[]; joined: Buffer } | null = null;

function join(parts: Buffer[], size: number): Buffer {
  const last = lastJoin;
  if (last && last.parts.length === parts.length && last.parts.every((p, i) => p === parts[i])) return last.joined;
  const joined = Buffer.concat(parts, size);
  lastJoin = { parts, joined };
  return joined;
}

const CONTROL_LANE = 0;
const LOW_LANE = 3;
/** Lane of each DATA priority: system 1, high 2, low 3. */
const DATA_LANE: Record<Priority, number> = { [Priority.SYSTEM]: 1, [Priority.HIGH]: 2, [Priority.LOW]: 3 };
