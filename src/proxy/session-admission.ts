import type { BackendLink } from './upstream/link.js';
import { Code, codeInfo } from '../protocol/codes.js';
import type { Open } from '../protocol/messages.js';
import type { RouteContext } from '../routing/types.js';
import type { ProxyContext } from './context.js';
import { SmallMap } from '../util/small-map.js';
import { TokenBucket } from '../util/token-bucket.js';

/** The answer to an OPEN: a link to bind the session to, or the OPEN_FAIL to send (`limit`: the limit that refused it). */
export type Admission =
  | { kind: 'admit'; link: BackendLink; business: string }
  | { kind: 'refuse'; code: Code; reason: string; retryAfterMs: number; limit?: string };

/** The `business` label of an OPEN naming no business the routes know: client input never becomes a label. */
export const UNKNOWN_BUSINESS_LABEL = '(unknown)';

/**
 * Decides, for one connection, whether an OPEN becomes a session and on which backend link: the
 * connection's own limits, then routing (routes.yaml), then the route's per-connection limits
 * (`limits.max_sessions_per_connection`, `limits.open_rate`), then the user's OPEN rate across all its
 * connections (`users.open_rate`). Keeps the per-business counts those limits need; the connection
 * reports every session it opens and retires.
 */
export class SessionAdmission {
  /** Open sessions per business (a connection rarely uses more than one or two). */
  private readonly sessions = new SmallMap<string, number>();
  /** The route's `limits.open_rate` per business, for routes that set one; null while none does. */
  private buckets: SmallMap<string, TokenBucket> | null = null;

  constructor(
    private readonly ctx: ProxyContext,
    /** The connection (read when routing, not copied: one object fewer per connection). */
    private readonly who: Readonly<Omit<RouteContext, 'metadata'>>,
  ) {}

  decide(open: Open, openSessions: number, draining: boolean): Admission {
    const { business } = open;
    // The name as it appears in reasons: a client's 16 KiB name must not make an OPEN_FAIL over its limit.
    const shown = business.length > 64 ? `${business.slice(0, 64)}…` : business;
    if (draining) return refuse(Code.GOING_AWAY, 'OPEN: server is draining');
    const max = this.ctx.config.limits.maxSessions;
    if (openSessions >= max) return refuse(Code.TOO_MANY_SESSIONS, `OPEN: too many sessions (${openSessions} vs ${max})`);

    const { userId, connectionId, clientAddress } = this.who;
    const decision = this.ctx.routes().resolve(business, { userId, connectionId, clientAddress, metadata: open.metadata }, this.ctx.links.isHealthy);
    switch (decision.kind) {
      case 'unknown_business':
        return refuse(Code.UNKNOWN_BUSINESS, `OPEN: business "${shown}" has no route`);
      case 'disabled':
        return refuse(Code.BUSINESS_DISABLED, `OPEN: business "${shown}" is disabled`);
      case 'missing_key':
        return refuse(Code.MISSING_HASH_KEY, `OPEN: metadata "${decision.field}" is required by the route of "${shown}"`);
      case 'unavailable':
        return refuse(Code.BACKEND_UNAVAILABLE, `OPEN: no healthy backend for "${shown}"`, decision.retryAfterMs);
    }

    const { maxSessionsPerConnection, openRate } = decision.route.limits;
    const sessions = this.sessions.get(decision.business) ?? 0;
    if (maxSessionsPerConnection > 0 && sessions >= maxSessionsPerConnection) {
      return refuse(Code.TOO_MANY_SESSIONS, `OPEN: too many "${shown}" sessions (${sessions} vs ${maxSessionsPerConnection})`);
    }
    if (openRate > 0 && !this.bucketOf(decision.business, openRate).take()) {
      return refuse(Code.RATE_LIMITED, `OPEN: more than ${openRate} "${shown}" OPENs per second`, 1000);
    }
    const link = this.ctx.links.get(decision.endpoint);
    if (!link) {
      return refuse(Code.BACKEND_UNAVAILABLE, `OPEN: no link to ${decision.endpoint}`, codeInfo(Code.BACKEND_UNAVAILABLE).delayMs);
    }
    const { users } = this.ctx;
    if (!users.tryOpen(this.who.userId)) {
      const rate = this.ctx.config.users.openRate;
      return refuse(Code.RATE_LIMITED, `OPEN: this user opens more than ${rate} sessions per second`, users.retryAfterMs, 'users.open_rate');
    }
    this.ctx.metrics.routingDecisions.inc({ business, endpoint: decision.endpoint });
    // The route's own string for the name: the session keeps it, not a copy read from each OPEN.
    return { kind: 'admit', link, business: decision.business };
  }

  /** `business` as a metric label: itself when the routes name it, else {@link UNKNOWN_BUSINESS_LABEL}. */
  businessLabel(business: string): string {
    return this.ctx.routes().config.routes.some((r) => r.business === business) ? business : UNKNOWN_BUSINESS_LABEL;
  }

  opened(business: string): void {
    this.sessions.set(business, (this.sessions.get(business) ?? 0) + 1);
  }

  retired(business: string): void {
    const sessions = this.sessions.get(business);
    if (sessions !== undefined) this.sessions.set(business, sessions - 1);
  }

  /** Made at the first OPEN the route limits, at the rate it had then. */
  private bucketOf(business: string, openRate: number): TokenBucket {
    const buckets = (this.buckets ??= new SmallMap());
    let bucket = buckets.get(business);
    if (!bucket) buckets.set(business, (bucket = new TokenBucket(openRate, openRate)));
    return bucket;
  }
}

function refuse(code: Code, reason: string, retryAfterMs = 0, limit?: string): Admission {
  return limit === undefined ? { kind: 'refuse', code, reason, retryAfterMs } : { kind: 'refuse', code, reason, retryAfterMs, limit };
}
