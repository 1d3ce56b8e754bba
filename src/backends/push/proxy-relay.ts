/**
 * Completes a topic push's fan-out across nodes. The node that accepts a topic (or all) push publishes
 * it once to each proxy attached to it (proxy-fanout.ts); normally every proxy is attached to every
 * node, and that is all. A proxy attached only to other nodes — a node that just started or whose
 * stream to a proxy is being re-established, a proxy whose routes name only some nodes — gets it from
 * one node attached to it, asked through the store (`forward`): still once per proxy.
 */
import type pino from 'pino';
import { proxyTopic, pushEvent } from './device-sessions.js';
import type { ProxyFanOut } from './proxy-fanout.js';
import type { PushRecord, PushStore } from './store.js';

interface Forwarded {
  id: string;
  proxies: string[];
}

export class ProxyRelay {
  constructor(
    private readonly store: PushStore,
    private readonly fanOut: ProxyFanOut,
    private readonly node: string,
    private readonly log: pino.Logger,
  ) {}

  /** Starts taking pushes other nodes forward to this one. */
  start(): Promise<void> {
    return this.store.listen(this.node, (message) => void this.onForwarded(message));
  }

  /** Asks other nodes to publish `record` to the proxies `reached` (by this node) does not include. */
  async relay(record: PushRecord, reached: ReadonlySet<string>): Promise<void> {
    const byNode = new Map<string, string[]>();
    // Read for every topic push (one store call): a proxy that attached a moment ago is not missed.
    for (const [proxy, nodes] of await this.store.proxyNodes()) {
      if (reached.has(proxy)) continue;
      const node = nodes.find((n) => n !== this.node);
      if (node === undefined) continue;
      let list = byNode.get(node);
      if (list === undefined) byNode.set(node, (list = []));
      list.push(proxy);
    }
    await Promise.all([...byNode].map(([node, proxies]) => this.store.forward(node, JSON.stringify({ id: record.id, proxies } satisfies Forwarded))));
  }

  private async onForwarded(message: string): Promise<void> {
    try {
      const { id, proxies } = JSON.parse(message) as Forwarded;
      const status = await this.store.status(id);
      if (status === null) return;
      const { record } = status;
      this.fanOut.publish(proxyTopic(record.topic), pushEvent(record), record.priority, new Set(proxies));
    } catch (err) {
      this.log.warn({ err }, 'push: publishing a forwarded push failed');
    }
  }
}
