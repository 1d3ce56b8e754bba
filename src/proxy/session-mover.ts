import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';
import { Code } from '../protocol/codes.js';
import type { RouteContext, RouteTable } from '../routing/types.js';
import type { ProxySession } from '../session/proxy-session.js';
import type { SessionRegistry, SessionRelocator } from '../session/registry.js';
import type { BackendLinks } from './upstream/backend-links.js';

/** Why sessions are being moved; the `reason` label of `livemux_sessions_relocated_total`. */
type RelocationReason = 'endpoint_failed' | 'endpoint_removed' | 'business_disabled' | 'business_removed' | 'connect_failed' | 'owner_recovered';

/** Policies that give a key one owner: their sessions go back to it when it recovers. */
const KEYED_POLICIES: ReadonlySet<string> = new Set(['hash', 'consistent_hash']);

/**
 * Moves sessions when their endpoint is lost, and applies a reloaded route table to the sessions
 * already open. Routing decides the new home exactly as for a new session, with the lost endpoint
 * excluded: a consistent_hash route lands on the key's next owner on the ring, hash on the next
 * healthy slot, round_robin on another endpoint. The backend is told it is a re-attach. A session that
 * has nowhere to go is closed with a retryable code, never dropped silently.
 */
export class SessionMover implements SessionRelocator {
  constructor(
    private readonly deps: {
      routes: () => RouteTable;
      links: BackendLinks;
      registry: SessionRegistry;
      metrics: Metrics;
      logger: Logger;
    },
  ) {}

  /** The endpoint serving `sessions` failed (stream lost, breaker opened). */
  relocate(sessions: readonly ProxySession[], lostEndpoint: string, reason: string): void {
    for (const s of sessions) {
      if (this.move(s, lostEndpoint, 'endpoint_failed', Code.BACKEND_UNAVAILABLE, `backend ${lostEndpoint} unavailable: ${reason}`)) {
        s.displacedFrom = lostEndpoint;
      }
    }
  }

  /**
   * `endpoint` is usable again. Sessions of hash and consistent_hash routes that were moved off it go
   * back when routing names it their key's owner again, as re-attaches. Otherwise a key would keep two
   * owners, the fallback for the moved sessions and the recovered one for new sessions (for a chat
   * room: two sequences). round_robin sessions have no owner and stay where they are.
   */
  endpointRecovered(endpoint: string): void {
    const { routes, links, registry, metrics, logger } = this.deps;
    const link = links.get(endpoint);
    if (!link || !links.isHealthy(endpoint)) return;
    const table = routes();
    for (const s of registry.all()) {
      if (s.displacedFrom !== endpoint) continue;
      s.displacedFrom = null;
      const route = table.config.routes.find((r) => r.business === s.business);
      if (!route || !KEYED_POLICIES.has(route.policy)) continue;
      const decision = table.resolve(s.business, contextOf(s), links.isHealthy);
      if (decision.kind !== 'ok' || decision.endpoint !== endpoint || !registry.rebind(s, link)) continue;
      metrics.sessionsRelocated.inc({ reason: 'owner_recovered', result: 'moved' });
      logger.debug({ conn: s.info.connectionId, session: s.info.clientSessionId, to: endpoint }, 'session moved back to its owner');
    }
  }

  /**
   * One endpoint could not take `s` (a tcp connect failed). Its route's retry policy decides: another
   * endpoint after `backoff_ms` × the failure count, up to `attempts` times, else CLOSE
   * BACKEND_UNAVAILABLE. The session's unsent bytes wait in it meanwhile.
   */
  retry(s: ProxySession, failedEndpoint: string, reason: string): void {
    const route = this.deps.routes().config.routes.find((r) => r.business === s.business);
    const failures = ++s.bindFailures;
    if (!route || failures > route.retry.attempts) {
      this.close(s, 'connect_failed', Code.BACKEND_UNAVAILABLE, `backend unreachable: ${reason}`);
      return;
    }
    setTimeout(
      () => this.move(s, failedEndpoint, 'connect_failed', Code.BACKEND_UNAVAILABLE, `backend unreachable: ${reason}`),
      route.retry.backoffMs * failures,
    ).unref();
  }

  /**
   * A new route table is in effect. Sessions keep their binding unless their business is gone (closed
   * UNKNOWN_BUSINESS) or disabled (closed BUSINESS_DISABLED), or their endpoint left the route's pool
   * (moved, else closed ENDPOINT_REMOVED). A changed policy or an added endpoint moves nobody. The close
   * code is the one a reopen would get as OPEN_FAIL, so a client's retry rule (PROTOCOL.md §10) cannot
   * send it back to a business that refuses it for good.
   */
  apply(table: RouteTable): void {
    const routes = new Map(table.config.routes.map((r) => [r.business, r]));
    for (const s of this.deps.registry.all()) {
      const route = routes.get(s.business);
      if (!route) {
        this.close(s, 'business_removed', Code.UNKNOWN_BUSINESS, `business "${s.business}" removed from routes.yaml`);
        continue;
      }
      if (!route.enabled) {
        this.close(s, 'business_disabled', Code.BUSINESS_DISABLED, `business "${s.business}" disabled`);
        continue;
      }
      const endpoint = s.link.endpoint;
      const pool = table.config.pools[route.pool];
      if (pool?.endpoints.some((e) => e.address === endpoint)) continue;
      this.move(s, endpoint, 'endpoint_removed', Code.ENDPOINT_REMOVED, `endpoint ${endpoint} removed from pool "${route.pool}"`);
    }
  }

  /** Routes `s` again with `avoid` excluded and rebinds it; true when moved, else it is closed. */
  private move(s: ProxySession, avoid: string, reason: RelocationReason, failCode: Code, failReason: string): boolean {
    const { routes, links, registry, metrics, logger } = this.deps;
    const decision = routes().resolve(s.business, contextOf(s), (endpoint) => endpoint !== avoid && links.isHealthy(endpoint));
    const link = decision.kind === 'ok' ? links.get(decision.endpoint) : undefined;
    if (link && registry.rebind(s, link)) {
      metrics.sessionsRelocated.inc({ reason, result: 'moved' });
      logger.debug({ conn: s.info.connectionId, session: s.info.clientSessionId, from: avoid, to: link.endpoint, reason }, 'session moved');
      return true;
    }
    this.close(s, reason, failCode, failReason);
    return false;
  }

  private close(s: ProxySession, reason: RelocationReason, code: Code, why: string): void {
    this.deps.metrics.sessionsRelocated.inc({ reason, result: 'closed' });
    s.closeByProxy(code, why);
  }
}

/** What routing looks at, rebuilt from what the session told its backend when it opened. */
function contextOf(s: ProxySession): RouteContext {
  const { userId, connectionId, clientAddress, metadata } = s.info;
  return { userId, connectionId, clientAddress, metadata };
}
