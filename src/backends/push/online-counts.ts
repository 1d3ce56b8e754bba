import type pino from 'pino';
import type { PushStore } from './store.js';

/**
 * This node's count of online devices per topic, and the proxies attached to it, mirrored into the store
 * so that any node can count a topic's online devices (the `targeted` of a ttl_s 0 push) and find a node
 * attached to a proxy it is not attached to itself (proxy-relay.ts). Changes of one
 * event-loop turn are written together; the node's entry is renewed every third of its TTL, and written
 * whole again if it had lapsed (the store was unreachable for a while). A node that dies stops renewing,
 * so its devices stop counting within the TTL, while they reconnect to other nodes.
 */
export class OnlineCounts {
  private readonly counts = new Map<string, number>();
  private readonly changed = new Set<string>();
  private flushing: NodeJS.Immediate | null = null;
  private readonly renewal: NodeJS.Timeout;
  private writes: Promise<void> = Promise.resolve();
  private proxyList: readonly string[] = [];

  constructor(
    private readonly store: PushStore,
    private readonly node: string,
    private readonly ttlMs: number,
    private readonly log: pino.Logger,
  ) {
    this.renewal = setInterval(() => this.renew(), Math.max(1, Math.floor(ttlMs / 3)));
    this.renewal.unref();
    this.schedule();
  }

  add(topic: string, delta: number): void {
    this.counts.set(topic, (this.counts.get(topic) ?? 0) + delta);
    this.changed.add(topic);
    this.schedule();
  }

  /** Records the proxies attached to this node now (written in order with the counts). */
  setProxies(proxies: readonly string[]): void {
    this.proxyList = proxies;
    this.writes = this.writes
      .then(() => this.store.setProxies(this.node, proxies, this.ttlMs))
      .catch((err: unknown) => this.log.warn({ err }, 'push: writing the attached proxies failed'));
  }

  /** Resolves when every change made so far is written. */
  async settled(): Promise<void> {
    while (this.flushing !== null || this.changed.size > 0) await new Promise((r) => setImmediate(r));
    await this.writes;
  }

  /** Stops renewing and removes this node's counts from the store. */
  async close(): Promise<void> {
    clearInterval(this.renewal);
    if (this.flushing !== null) clearImmediate(this.flushing);
    this.flushing = null;
    await this.writes;
    await this.store.removeNode(this.node).catch((err: unknown) => this.log.warn({ err }, 'push: removing the online counts failed'));
  }

  private schedule(): void {
    this.flushing ??= setImmediate(() => {
      this.flushing = null;
      const batch = new Map<string, number>();
      for (const topic of this.changed) batch.set(topic, this.counts.get(topic) ?? 0);
      this.changed.clear();
      for (const [topic, count] of batch) if (count === 0) this.counts.delete(topic);
      this.write(batch);
    });
  }

  private write(batch: ReadonlyMap<string, number>): void {
    this.writes = this.writes
      .then(() => this.store.setOnline(this.node, batch, this.ttlMs))
      .catch((err: unknown) => {
        // Retried at the next change or renewal.
        for (const topic of batch.keys()) this.changed.add(topic);
        this.log.warn({ err }, 'push: writing online counts failed');
      });
  }

  private renew(): void {
    if (this.changed.size > 0) this.schedule();
    this.writes = this.writes
      .then(async () => {
        if (!(await this.store.renewNode(this.node, this.ttlMs))) {
          this.write(new Map(this.counts));
          this.setProxies(this.proxyList);
        }
      })
      .catch((err: unknown) => this.log.warn({ err }, 'push: renewing online counts failed'));
  }
}
