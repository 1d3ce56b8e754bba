/**
 * One coarse timer for every connection of a proxy (PROTOCOL.md §9: handshake, heartbeat, idle and
 * close deadlines). A Node timer per connection costs an object, a heap entry and a re-arm on every
 * change; at 100k connections that is most of a connection's footprint. Here a connection owns one
 * small {@link WheelEntry} and the wheel one Node timer, whatever the number of connections.
 *
 * Hashed timing wheel: `slots` lists of entries, one slot per tick of `tickMs`, an entry filed in the
 * slot of the first tick at or after its due time; entries due more than one revolution ahead wait in
 * their slot until their round comes. Scheduling and cancelling are O(1) (the lists are intrusive and
 * doubly linked); a tick touches only its slot.
 *
 * Guarantees: a callback never runs before its due time, and runs at the first tick at or after it,
 * so at most `tickMs` late plus however long the event loop was busy. Each entry is scheduled at most
 * once at a time (scheduling again moves it). Callbacks may schedule or cancel any entry.
 */

/** Monotonic milliseconds, as performance.now(). */
export type Clock = () => number;

/** One timer slot in the wheel: owned by its user, linked into the wheel while scheduled. */
export class WheelEntry {
  /** When it is due (clock ms); meaningful only while scheduled. */
  due = 0;
  /** Absolute tick it fires at; -1 while not scheduled. */
  tick = -1;
  next: WheelEntry | null = null;
  prev: WheelEntry | null = null;

  constructor(readonly fire: (now: number) => void) {}

  get scheduled(): boolean {
    return this.tick >= 0;
  }
}

export interface TimerWheelOptions {
  /** Resolution: the most a callback may be late, event-loop delays aside. Default 250 ms. */
  tickMs?: number;
  /** Slots of one revolution (entries further ahead wait a round). Default 512 (128 s at 250 ms). */
  slots?: number;
  clock?: Clock;
  /** Drive the wheel with its own (unref'd) timer. False: the owner calls {@link advance}. */
  autoStart?: boolean;
}

/** `WheelEntry.tick` of an entry taken off its slot to fire in the current tick. */
const FIRING = -2;

export class TimerWheel {
  readonly tickMs: number;
  private readonly heads: (WheelEntry | null)[];
  private readonly clock: Clock;
  private readonly autoStart: boolean;
  /** Last tick whose slot has been processed. */
  private processed: number;
  private count = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly run = (): void => {
    this.timer = null;
    this.advance();
    if (this.count > 0 && !this.timer) this.arm();
  };

  constructor(options: TimerWheelOptions = {}) {
    this.tickMs = options.tickMs ?? 250;
    this.heads = new Array<WheelEntry | null>(options.slots ?? 512).fill(null);
    this.clock = options.clock ?? (() => performance.now());
    this.autoStart = options.autoStart ?? true;
    this.processed = Math.floor(this.clock() / this.tickMs);
  }

  /** Entries scheduled now. */
  get size(): number {
    return this.count;
  }

  now(): number {
    return this.clock();
  }

  /** Files `entry` to fire at `due` (clock ms), moving it if it was already scheduled. */
  schedule(entry: WheelEntry, due: number): void {
    if (entry.scheduled) this.unlink(entry);
    // An empty wheel stopped looking at the clock: ticks already past are not to be walked later.
    if (this.count === 0) this.processed = Math.max(this.processed, Math.floor(this.clock() / this.tickMs));
    // The first tick at or after `due`, and never one already processed (its slot will not be looked at
    // again this round).
    const tick = Math.max(Math.ceil(due / this.tickMs), this.processed + 1);
    entry.due = due;
    entry.tick = tick;
    const slot = tick % this.heads.length;
    const head = this.heads[slot]!;
    entry.prev = null;
    entry.next = head;
    if (head) head.prev = entry;
    this.heads[slot] = entry;
    if (++this.count === 1 && this.autoStart && !this.timer) this.arm();
  }

  cancel(entry: WheelEntry): void {
    if (entry.scheduled) this.unlink(entry);
    else if (entry.tick === FIRING) entry.tick = -1;
  }

  /** Runs every entry due by `now` (the wheel's own timer calls it; tests may too). */
  advance(now = this.clock()): void {
    const last = Math.floor(now / this.tickMs);
    while (this.processed < last) {
      if (this.count === 0) {
        this.processed = last;
        return;
      }
      const tick = ++this.processed;
      const slot = tick % this.heads.length;
      // Taken off the slot before any callback runs, so callbacks may schedule or cancel anything.
      const due: WheelEntry[] = [];
      for (let entry = this.heads[slot]!; entry; ) {
        const next = entry.next;
        if (entry.tick === tick) {
          this.unlink(entry);
          entry.tick = FIRING;
          due.push(entry);
        }
        entry = next!;
      }
      for (const entry of due) {
        // Cancelled or moved by an earlier callback of this tick: not due any more.
        if (entry.tick !== FIRING) continue;
        entry.tick = -1;
        entry.fire(now);
      }
    }
  }

  private unlink(entry: WheelEntry): void {
    const slot = entry.tick % this.heads.length;
    if (entry.prev) entry.prev.next = entry.next;
    else this.heads[slot] = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    entry.next = entry.prev = null;
    entry.tick = -1;
    if (--this.count === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** Wakes up at the next tick boundary, so a callback is at most one tick late (plus event-loop lag). */
  private arm(): void {
    const delay = Math.max(1, Math.ceil((this.processed + 1) * this.tickMs - this.clock()));
    // Unref'd: pending deadlines alone must not keep a process alive; sockets do that.
    this.timer = setTimeout(this.run, delay).unref();
  }
}
