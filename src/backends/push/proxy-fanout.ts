import type { Priority } from '../../protocol/constants.js';
import type { ProxyStreamContext } from '../kit/backend-server.js';

/**
 * The proxies attached to this node, for edge fan-out: a topic push is published ONCE per proxy (the
 * proxy copies it to its local subscribers, docs/backend-contract.md §6), never once per device. Every
 * proxy routing to the push pool attaches to every endpoint of it, so the node that accepts a push
 * reaches every proxy itself, whichever node its devices' sessions are bound to.
 *
 * A proxy may briefly hold two streams (a reconnect overlapping a dead stream not yet detected): the
 * newest attached one is used.
 */
export class ProxyFanOut {
  /** proxy id → its streams, newest last. */
  private readonly streams = new Map<string, ProxyStreamContext[]>();

  /** @param onChange told the proxies attached whenever a proxy attaches or its last stream goes. */
  constructor(private readonly onChange: (proxies: readonly string[]) => void = () => {}) {}

  attach(ctx: ProxyStreamContext): void {
    let list = this.streams.get(ctx.proxyId);
    if (list === undefined) {
      this.streams.set(ctx.proxyId, (list = []));
      this.onChange(this.proxies());
    }
    if (!list.includes(ctx)) list.push(ctx);
  }

  detach(ctx: ProxyStreamContext): void {
    const list = this.streams.get(ctx.proxyId);
    if (list === undefined) return;
    const i = list.indexOf(ctx);
    if (i >= 0) list.splice(i, 1);
    if (list.length > 0) return;
    this.streams.delete(ctx.proxyId);
    this.onChange(this.proxies());
  }

  /** The ids of the proxies attached now. */
  proxies(): string[] {
    return [...this.streams.keys()];
  }

  /** Proxies attached now. */
  get size(): number {
    return this.streams.size;
  }

  /**
   * Publishes `payload` to `topic` once on each attached proxy (of `only`, when given); returns the ids
   * of the proxies it reached.
   */
  publish(topic: string, payload: Buffer, priority: Priority, only?: ReadonlySet<string>): Set<string> {
    const reached = new Set<string>();
    for (const [proxyId, list] of this.streams) {
      if (only !== undefined && !only.has(proxyId)) continue;
      for (let i = list.length - 1; i >= 0; i--) {
        const ctx = list[i]!;
        if (ctx.gone) continue;
        ctx.publish(topic, payload, priority);
        reached.add(proxyId);
        break;
      }
    }
    return reached;
  }
}
