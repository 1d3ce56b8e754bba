import type { Logger } from 'pino';
import type { EndpointHealth } from './endpoint-health.js';
import { GrpcBackendLink } from './grpc-link.js';
import { TcpPassthroughLink } from './tcp-link.js';
import { type BackendCommandSink, type BackendLink, LinkState } from './link.js';
import type { Metrics } from '../../observability/metrics.js';
import type { EndpointSpec, RouteTable } from '../../routing/types.js';
import type { LinkDirectory } from '../context.js';

/** Upstream connect timeout for tcp endpoints no route configures. */
const DEFAULT_CONNECT_MS = 3_000;

/**
 * Keeps exactly one link per endpoint named in the route table: a multiplexed gRPC stream for grpc
 * pools, a per-session TCP tunnel factory for tcp pools. Reloads go in two steps: `add` before sessions
 * are moved (so they can move to a new endpoint), `prune` after (so a removed endpoint's link is closed
 * only once nobody is bound to it).
 *
 * An endpoint is usable when its link is up and its health (breaker, active checks) is good.
 */
export class BackendLinks implements LinkDirectory {
  private readonly links = new Map<string, BackendLink>();

  constructor(
    private readonly sink: BackendCommandSink,
    private readonly health: EndpointHealth,
    private readonly opts: {
      proxyId: string;
      logger: Logger;
      metrics: Metrics;
      /** A gRPC link's stream is up again (it may still wait for its health to recover). */
      onLinkReady?: (endpoint: string) => void;
    },
  ) {}

  get(endpoint: string): BackendLink | undefined {
    return this.links.get(endpoint);
  }

  /** Bound, so it can be handed out as a callback. */
  readonly isHealthy = (endpoint: string): boolean =>
    this.links.get(endpoint)?.state === LinkState.READY && this.health.isHealthy(endpoint);

  /** Opens links for endpoints of `table` that have none, and updates health settings. */
  add(table: RouteTable): void {
    const specs = table.endpoints();
    this.health.reconcile(specs);
    const connectMs = connectTimeouts(table);
    for (const spec of specs) {
      if (this.links.has(spec.address)) continue;
      this.links.set(spec.address, this.create(spec, connectMs.get(spec.pool) ?? DEFAULT_CONNECT_MS));
    }
  }

  /** Closes links of endpoints `table` no longer names. */
  prune(table: RouteTable): void {
    const wanted = new Set(table.endpoints().map((s) => s.address));
    for (const [endpoint, link] of this.links) {
      if (wanted.has(endpoint)) continue;
      link.close();
      this.links.delete(endpoint);
      this.publishState(endpoint, null);
    }
  }

  /** Endpoint → link state, for the admin status page. */
  states(): Record<string, LinkState> {
    return Object.fromEntries([...this.links].map(([endpoint, link]) => [endpoint, link.state]));
  }

  /** Endpoint → messages carried by its link so far (`livemux_backend_messages_total`). */
  messageCounts(): [string, { out: number; in: number }][] {
    return [...this.links].map(([endpoint, link]) => [endpoint, link.messageCounts()]);
  }

  /** True when at least one endpoint is usable (or none is configured). */
  anyReady(): boolean {
    if (this.links.size === 0) return true;
    for (const endpoint of this.links.keys()) if (this.isHealthy(endpoint)) return true;
    return false;
  }

  closeAll(): void {
    for (const link of this.links.values()) link.close();
    this.links.clear();
    this.health.close();
  }

  private create(spec: EndpointSpec, connectMs: number): BackendLink {
    const { proxyId, logger } = this.opts;
    if (spec.protocol === 'tcp') {
      this.publishState(spec.address, LinkState.READY);
      return new TcpPassthroughLink(spec.address, this.sink, {
        connectMs,
        logger,
        onFailure: (endpoint, reason) => this.health.reportFailure(endpoint, reason),
        onSuccess: (endpoint) => this.health.reportSuccess(endpoint),
      });
    }
    return new GrpcBackendLink(spec.address, this.sink, {
      proxyId,
      logger,
      onStateChange: (state) => {
        this.publishState(spec.address, state);
        if (state === LinkState.DOWN) this.health.reportFailure(spec.address, 'backend stream lost');
        else if (state === LinkState.READY) {
          this.health.reportSuccess(spec.address);
          this.opts.onLinkReady?.(spec.address);
        }
      },
    });
  }

  private publishState(endpoint: string, current: LinkState | null): void {
    for (const state of Object.values(LinkState)) {
      this.opts.metrics.backendStreamState.set({ endpoint, state }, state === current ? 1 : 0);
    }
  }
}

/** Per pool, the largest connect timeout among the routes using it (tcp links are per endpoint). */
function connectTimeouts(table: RouteTable): Map<string, number> {
  const out = new Map<string, number>();
  for (const route of table.config.routes) {
    out.set(route.pool, Math.max(out.get(route.pool) ?? 0, route.timeouts.connectMs));
  }
  return out;
}
