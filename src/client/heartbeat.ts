/** What {@link Heartbeat} asks its connection to do. */
export interface HeartbeatActions {
  /** Nothing arrived for one interval: send a PING. */
  ping(): void;
  /** Nothing arrived for two intervals: the connection is presumed dead. */
  dead(silentMs: number): void;
}

/**
 * Client-side liveness (PROTOCOL.md, heartbeats): PING after one interval with nothing received, dead
 * after two. Any received frame counts, so a busy connection never pings.
 *
 * Guarantees: at most one PING per silent stretch; `dead` fires at most once; after `stop` nothing
 * fires. {@link received} only stores a timestamp (it runs for every frame); the single timer re-arms
 * itself from that timestamp.
 */
export class Heartbeat {
  private lastReceived: number;
  private pinged = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly intervalMs: number,
    private readonly actions: HeartbeatActions,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.lastReceived = now();
  }

  start(): void {
    this.arm(this.intervalMs);
  }

  /** Records that a frame arrived. */
  received(): void {
    this.lastReceived = this.now();
    this.pinged = false;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private check(): void {
    this.timer = null;
    const silent = this.now() - this.lastReceived;
    if (silent >= 2 * this.intervalMs) {
      this.actions.dead(silent);
      return;
    }
    if (silent >= this.intervalMs && !this.pinged) {
      this.pinged = true;
      this.actions.ping();
    }
    const deadline = silent >= this.intervalMs ? 2 * this.intervalMs : this.intervalMs;
    this.arm(deadline - silent);
  }

  private arm(delayMs: number): void {
    // Unref'd: a heartbeat alone must not keep a process alive; the socket does that while it is open.
    this.timer = setTimeout(() => this.check(), Math.max(1, Math.ceil(delayMs))).unref();
  }
}
