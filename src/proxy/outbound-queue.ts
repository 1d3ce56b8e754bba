import type { Socket } from 'node:net';
import { FrameType, MAX_QUEUED_CONTROL_BYTES, Priority } from '../protocol/constants.js';
import type { HistogramSeries } from '../observability/histogram.js';
import type { FrameStats } from '../observability/metrics.js';
import { Deque } from '../util/deque.js';
import { type SlicedTask, SliceScheduler, runClock } from '../util/slice-scheduler.js';
import { type SocketWriter, type WritableListener, socketWriter } from './socket-writer.js';

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

/**
 * Whole system and high DATA frames for one session id, system first, written at once
 * (OutboundQueue.writeNow): what a topic walk gives a member lacking some turns. Shared by every member
 * it fits; never changed.
 */
export interface WholeWrite {
  /** The frames: one buffer, or several written as one writev. */
  readonly data: Buffer | readonly Buffer[];
  readonly size: number;
  /** Frames of each lane. */
  readonly system: number;
  readonly high: number;
  readonly payloadBytes: number;
  /** The largest payload. */
  readonly largest: number;
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

// Up to this many queued bytes are gathered into one socket write per flush round: small frames are
// coalesced into a single syscall, large ones are still not copied more than once.
const COALESCE_BYTES = 64 * 1024;

/**
 * The proxy's writes, in slices with I/O between them (see SliceScheduler): queues are flushed after the
 * event-loop turn that filled them, so every frame queued while handling one round of I/O leaves in one
 * write per socket; topic fan-outs (TopicFanOut) walk their members in the same slices.
 */
export const writeScheduler = new SliceScheduler();

/**
 * Starts writing what is scheduled now rather than at the scheduled turn (one slice; the rest follows as
 * scheduled). For a producer that has just queued a large fan-out in the check phase: waiting for the
 * next turn would add a whole poll phase to every recipient's latency.
 */
export const flushQueuedWrites: () => void = writeScheduler.run;

/**
 * One connection's bounded outbound queue (PROTOCOL.md §8). Control frames go first, then DATA by
 * priority (system, high, low), FIFO within a priority. `bytes` counts everything queued here, control
 * frames included, plus bytes the connection holds for sessions waiting for credit (`hold`), so one
 * bound covers all a peer makes the proxy hold. Control frames have a bound of their own besides, far
 * below what a reading client ever has queued. The connection's last frame (ERROR) is not queued: it is
 * written ahead of everything not yet written ({@link abort}), so it always gets through.
 *
 * Frames are only handed to the socket while it takes them without holding earlier ones back (see
 * SocketWriter); everything else waits here, where low-priority frames can still be dropped instead of
 * piling up in a write buffer.
 */
export class OutboundQueue implements SlicedTask, WritableListener {
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
  private readonly writer: SocketWriter;

  constructor(
    private readonly socket: Socket,
    private readonly maxBytes: number,
    private readonly hooks: OutboundHooks,
    private readonly stats: FrameStats,
    /** One series per lane (control, system, high, low) for the time frames wait here. */
    private readonly waits?: readonly HistogramSeries[],
  ) {
    this.writer = socketWriter(socket, this);
  }

  /**
   * True when every buffer handed to this queue has left the process: nothing queued or held, and the
   * writer writes straight to the libuv handle with no write pending (the kernel took every byte). A
   * stream writer is never released: net.Socket may still hold a buffer it reported written.
   */
  get released(): boolean {
    return this.queuedBytes === 0 && this.heldBytes === 0 && this.writer.kind === 'handle' && this.writer.writable;
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
   * A control frame written at once when nothing is queued, no flush is due and the socket takes writes
   * (an idle connection's PING): no lanes are made for it. Queueing it made four deques, given back once
   * it was written: about 600 B of garbage per PING on every idle connection, every heartbeat. Otherwise
   * queued as {@link control}.
   */
  controlNow(frame: Buffer): void {
    if (this.queuedBytes !== 0 || this.pendingFlush || this.flushing || this.ended || !this.writer.writable) return this.control(frame);
    this.stats.countOut(frame[2]!, frame.length);
    this.waits?.[CONTROL_LANE]!.observe(0);
    this.writer.write(frame);
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
   * idle connections, from their periodic check): four deques and their buffers cost an idle
   * connection about 500 bytes; a busy one keeps them, so the hot path allocates nothing new.
   */
  compact(): void {
    if (this.queuedBytes === 0 && !this.pendingFlush && !this.flushing) this.giveBack();
    else this.compactWhenEmpty = true;
  }

  /**
   * Writes `w` (whole system and high DATA frames, within credit: what a topic walk brings) to the
   * socket at once, as one write, when nothing is queued, it fits the bound (with the bytes held for
   * credit: what `admit` would say with nothing queued) and the socket takes writes: no entry, no flush
   * to wait for. False, with nothing done, otherwise. In the queue-wait histogram they count as a wait
   * of zero, once per lane, as a queued run per lane would count once.
   */
  writeNow(w: WholeWrite): boolean {
    if (this.queuedBytes !== 0 || this.heldBytes + w.size > this.maxBytes || this.flushing || this.ended || !this.writer.writable) return false;
    this.stats.countOut(FrameType.DATA, w.size, w.system + w.high);
    if (this.waits) {
      if (w.system > 0) this.waits[DATA_LANE[Priority.SYSTEM]]!.observe(0);
      if (w.high > 0) this.waits[DATA_LANE[Priority.HIGH]]!.observe(0);
    }
    const data = w.data;
    if (Buffer.isBuffer(data)) this.writer.write(data);
    else this.writer.writev(data);
    return true;
  }

  /** Called by the scheduler: a flush is one step. */
  runUntil(): boolean {
    this.flush();
    return false;
  }

  /** Writes queued frames while the socket accepts them. */
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
    while (this.writer.writable) {
      if (!this.writeNext()) {
        if (this.ended) this.socket.end();
        this.compactIfAsked();
        return;
      }
      // The common case, everything written at once: no second look at the socket's state (an idle
      // connection's PING ends here, so this is where its periodic check's compaction happens).
      if (this.queuedBytes === 0 && !this.ended) return this.compactIfAsked();
    }
  }

  private compactIfAsked(): void {
    if (!this.compactWhenEmpty) return;
    this.compactWhenEmpty = false;
    this.giveBack();
  }

  private giveBack(): void {
    this.lanes = null;
  }

  /**
   * Takes queued frames, up to COALESCE_BYTES, and writes them as one write; false when none is left.
   * A lone whole-frame entry (a control frame, a fan-out run) is written as it is, several as a writev
   * of their buffers: nothing is copied or allocated but the array of parts.
   */
  private writeNext(): boolean {
    let only: Buffer | null = null;
    let parts: Buffer[] | null = null;
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
      const body = e.body !== null && e.body.length > 0 ? e.body : null;
      if (only === null && parts === null && body === null) only = e.head;
      else {
        if (parts === null) {
          parts = only === null ? [] : [only];
          only = null;
        }
        parts.push(e.head);
        if (body !== null) parts.push(body);
      }
      size += e.size;
    }
    if (parts !== null) this.writer.writev(parts);
    else if (only !== null) this.writer.write(only);
    else return false;
    return true;
  }

  private enqueue(lane: number, e: Entry): void {
    if (this.ended) return;
    if (this.waits) e.at = runClock.now();
    (this.lanes ??= [new Deque<Entry>(), new Deque<Entry>(), new Deque<Entry>(), new Deque<Entry>()])[lane]!.push(e);
    this.queuedBytes += e.size;
    // Coalesce within the tick, but never let a burst that the socket can take (a whole backend batch
    // arriving at once) sit here and count as a slow reader: the queue should only grow while the
    // socket itself is backed up.
    if (this.queuedBytes >= COALESCE_BYTES && this.writer.writable) this.flush();
    else this.scheduleFlush();
  }

  /** @internal (WritableListener) The socket takes writes again. */
  onWritable(): void {
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.pendingFlush) return;
    this.pendingFlush = true;
    writeScheduler.schedule(this);
  }

  /** The lane the next frame comes from, or -1 when all are empty (or given back). */
  private nextLane(): number {
    const lanes = this.lanes;
    if (lanes) for (let i = 0; i < lanes.length; i++) if (lanes[i]!.length > 0) return i;
    return -1;
  }
}

const CONTROL_LANE = 0;
const LOW_LANE = 3;
/** Lane of each DATA priority: system 1, high 2, low 3. */
const DATA_LANE: Record<Priority, number> = { [Priority.SYSTEM]: 1, [Priority.HIGH]: 2, [Priority.LOW]: 3 };
