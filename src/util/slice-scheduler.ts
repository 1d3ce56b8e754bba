import { Deque } from './deque.js';

/** Work that can stop at a deadline and go on later. */
export interface SlicedTask {
  /**
   * Works until done (false) or until `deadline` (a `performance.now()` time) has passed (true: there
   * is more, call again). A task that does little per call may ignore the deadline: the scheduler looks
   * at the clock every few tasks.
   */
  runUntil(deadline: number): boolean;
}

/**
 * The time for per-item bookkeeping (the outbound queues' wait histogram), read once per synchronous
 * run rather than per item: a fan-out queues an entry per member in one run, and a slice writes
 * hundreds of sockets, so a clock read each (0.05-0.2 µs here) would cost more than the rest of the
 * bookkeeping. Exact to one run: the slice scheduler, and tasks that look at the clock, refresh it as
 * they go; it expires at the end of the run (a microtask).
 */
export const runClock = {
  t: -1,
  expire: (): void => void (runClock.t = -1),
  now(): number {
    return runClock.t < 0 ? runClock.set(performance.now()) : runClock.t;
  },
  /** Sets the time of this run to `t` (just read from performance.now()) and returns it. */
  set(t: number): number {
    if (runClock.t < 0) queueMicrotask(runClock.expire);
    return (runClock.t = t);
  },
};

/**
 * How long one slice may hold the event loop before I/O gets a turn. A room message from a client waits
 * up to a slice at each of the proxy's steps while a fan-out is under way (its read, its forward to the
 * backend, the backend's Publish read, the fan-out), and only then joins the members not walked yet. At
 * 10 ms those waits were most of livemux's latency at low rates: at 100 messages/s to 10,000 members
 * (2026-12-04 13:09–13:11, native receivers) its p50 / p99 were 124–127 / 192–196 ms against the Node
 * relay's 85–117 / 170–225; at 2 ms, 56–73 / 106–137 against 85–87 / 160–170, and at 3,200/s (about half
 * the peak) 104–117 / 170–274 against 129–140 / 229–263. An event-loop turn per 2 ms costs nothing
 * measurable beside the ~200 socket writes of a slice: near the peak (6,200/s) the proxy spent
 * 0.0161–0.0182 µs per delivery, 0.0162–0.0172 at 10 ms.
 */
export const SLICE_MS = 2;
/** Tasks run between two looks at the clock. */
const CLOCK_EVERY = 64;

/**
 * Runs tasks in slices of SLICE_MS with the event loop's I/O between them, in the order they were
 * scheduled; a task stopped by the deadline goes on in a later slice, after the others.
 *
 * Why slices: writing a fan-out to 10,000 sockets is 10,000 write syscalls, a few hundred milliseconds on
 * a small machine. Done in one go, nothing is read meanwhile: a client's message forwarded to a backend,
 * and the backend's Publish coming back, would each wait for a whole round, and that room's latency
 * would be three rounds. In slices, what arrives meanwhile joins the sockets not written yet, in the
 * same round.
 */
export class SliceScheduler {
  private readonly tasks = new Deque<SlicedTask>();
  private immediate: NodeJS.Immediate | null = null;

  /** Runs one slice now (the rest follows in later turns). */
  readonly run = (): void => {
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = null;
    const deadline = runClock.set(performance.now()) + SLICE_MS;
    for (let n = 1; this.tasks.length > 0; n++) {
      const task = this.tasks.shift()!;
      if (task.runUntil(deadline)) {
        this.tasks.push(task);
        break;
      }
      if (n % CLOCK_EVERY === 0 && runClock.set(performance.now()) > deadline) break;
    }
    if (this.tasks.length > 0) this.immediate ??= setImmediate(this.run);
  };

  /** Runs `task` in a coming slice. The caller makes sure a task is scheduled once at a time. */
  schedule(task: SlicedTask): void {
    this.tasks.push(task);
    this.immediate ??= setImmediate(this.run);
  }
}
