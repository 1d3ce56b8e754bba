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

/** How long one slice may hold the event loop before I/O gets a turn. */
export const SLICE_MS = 10;
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
