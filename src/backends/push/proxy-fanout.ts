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

  attach(ctx: ProxyStreamContext): void {
    let list = this.streams.get(ctx.proxyId);
    if (list === undefined) this.streams.set(ctx.proxyId, (list = []));
    if (!list.includes(ctx)) list.push(ctx);
  }

  detach(ctx: ProxyStreamContext): void {
    const list = this.streams.get(ctx.proxyId);
    if (list === undefined) return;
    const i = list.indexOf(ctx);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.streams.delete(ctx.proxyId);
  }

  /** Proxies attached now. */
  get size(): number {
    return this.streams.size;
  }

  /** Publishes `payload` to `topic` on every attached proxy, once each; returns how many proxies it reached. */
  publish(topic: string, payload: Buffer, priority: Priority): number {
    let proxies = 0;
    for (const list of this.streams.values()) {
      for (let i = list.length - 1; i >= 0; i--) {
        const ctx = list[i]!;
        if (ctx.gone) continue;
        ctx.publish(topic, payload, priority);
        proxies++;
        break;
      }
    }
    return proxies;
  }
}
