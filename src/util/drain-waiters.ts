import type { Logger } from 'pino';

/**
 * Callbacks waiting for a gRPC stream to drain. Shared by both ends of the backend contract, which both
 * hand out `onDrain` to code that stops sending while a stream is backed up.
 */
export class DrainWaiters {
  private waiters: (() => void)[] = [];

  constructor(
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  add(fn: () => void): void {
    this.waiters.push(fn);
  }

  /** Runs every waiter once; one that throws is logged and does not stop the others. */
  release(): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const fn of waiters) {
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, `${this.what}: drain callback threw`);
      }
    }
  }
}
