import type { Logger } from 'pino';
import { GrpcBackendLink } from '../backends/grpc-link.js';
import { type BackendCommandSink, type BackendLink, LinkState } from '../backends/types.js';
import type { Metrics } from '../observability/metrics.js';
import type { LinkDirectory } from './context.js';

/**
 * Keeps exactly one backend stream per endpoint named in the route table. `reconcile` opens links for
 * new endpoints and closes those no longer named, so a route reload never duplicates a stream.
 */
export class BackendLinks implements LinkDirectory {
  private readonly links = new Map<string, BackendLink>();

  constructor(
    private readonly sink: BackendCommandSink,
    private readonly opts: { proxyId: string; logger: Logger; metrics: Metrics },
  ) {}

  get(endpoint: string): BackendLink | undefined {
    return this.links.get(endpoint);
  }

  /** An endpoint is healthy while its stream is established. Bound, so it can be handed out as a callback. */
  readonly isHealthy = (endpoint: string): boolean => this.links.get(endpoint)?.state === LinkState.READY;

  reconcile(endpoints: readonly string[]): void {
    const wanted = new Set(endpoints);
    for (const [endpoint, link] of this.links) {
      if (!wanted.has(endpoint)) {
        link.close();
        this.links.delete(endpoint);
        this.publishState(endpoint, null);
      }
    }
    for (const endpoint of wanted) {
      if (this.links.has(endpoint)) continue;
      const link = new GrpcBackendLink(endpoint, this.sink, {
        proxyId: this.opts.proxyId,
        logger: this.opts.logger,
        onStateChange: (state) => this.publishState(endpoint, state),
      });
      this.links.set(endpoint, link);
    }
  }

  /** Endpoint → state, for the admin status page. */
  states(): Record<string, LinkState> {
    return Object.fromEntries([...this.links].map(([endpoint, link]) => [endpoint, link.state]));
  }

  /** True when at least one link is established (or none is configured). */
  anyReady(): boolean {
    if (this.links.size === 0) return true;
    for (const link of this.links.values()) if (link.state === LinkState.READY) return true;
    return false;
  }

  closeAll(): void {
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }

  private publishState(endpoint: string, current: LinkState | null): void {
    for (const state of Object.values(LinkState)) {
      this.opts.metrics.backendStreamState.set({ endpoint, state }, state === current ? 1 : 0);
    }
  }
}
