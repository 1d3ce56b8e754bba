import type { BackendLink } from './upstream/link.js';
import { Code, codeInfo } from '../protocol/codes.js';
import type { Open } from '../protocol/messages.js';
import type { RouteContext } from '../routing/types.js';
import type { ProxyContext } from './context.js';
import { SmallMap } from '../util/small-map.js';
import { TokenBucket } from '../util/token-bucket.js';

/** The answer to an OPEN: a link to bind the session to, or the OPEN_FAIL to send. */
export type Admission =
  | { kind: 'admit'; link: BackendLink }
  | { kind: 'refuse'; code: Code; reason: string; retryAfterMs: number };

interface BusinessUsage {
  sessions: number;
  bucket: TokenBucket | null;
}

/**
 * Decides, for one connection, whether an OPEN becomes a session and on which backend link: the
 * connection's own limits, then routing (routes.yaml), then the route's per-connection limits
 * (`limits.max_sessions_per_connection`, `limits.open_rate`). Keeps the per-business counts those
 * limits need; the connection reports every session it opens and retires.
 */
export class SessionAdmission {
  /** Per business (a connection rarely uses more than one or two). */
  private readonly usage = new SmallMap<string, BusinessUsage>();

  constructor(
    private readonly ctx: ProxyContext,
    /** The connection (read when routing, not copied: one object fewer per connection). */
    private readonly who: Readonly<Omit<RouteContext, 'metadata'>>,
  ) {}

  decide(open: Open, openSessions: number, draining: boolean): Admission {
    const { business } = open;
    if (draining) return refuse(Code.GOING_AWAY, 'OPEN: server is draining');
    const max = this.ctx.config.limits.maxSessions;
    if (openSessions >= max) return refuse(Code.TOO_MANY_SESSIONS, `OPEN: too many sessions (${openSessions} vs ${max})`);

    const { userId, connectionId, clientAddress } = this.who;
    const decision = this.ctx.routes().resolve(business, { userId, connectionId, clientAddress, metadata: open.metadata }, this.ctx.links.isHealthy);
    switch (decision.kind) {
      case 'unknown_business':
        return refuse(Code.UNKNOWN_BUSINESS, `OPEN: business "${business}" has no route`);
      case 'disabled':
        return refuse(Code.BUSINESS_DISABLED, `OPEN: business "${business}" is disabled`);
      case 'missing_key':
        return refuse(Code.MISSING_HASH_KEY, `OPEN: metadata "${decision.field}" is required by the route of "${business}"`);
      case 'unavailable':
        return refuse(Code.BACKEND_UNAVAILABLE, `OPEN: no healthy backend for "${business}"`, decision.retryAfterMs);
    }

    const { maxSessionsPerConnection, openRate } = decision.route.limits;
    const usage = this.usageOf(business, openRate);
    if (maxSessionsPerConnection > 0 && usage.sessions >= maxSessionsPerConnection) {
      return refuse(Code.TOO_MANY_SESSIONS, `OPEN: too many "${business}" sessions (${usage.sessions} vs ${maxSessionsPerConnection})`);
    }
    if (usage.bucket && !usage.bucket.take()) {
      return refuse(Code.RATE_LIMITED, `OPEN: more than ${openRate} "${business}" OPENs per second`, 1000);
    }
    const link = this.ctx.links.get(decision.endpoint);
    if (!link) {
      return refuse(Code.BACKEND_UNAVAILABLE, `OPEN: no link to ${decision.endpoint}`, codeInfo(Code.BACKEND_UNAVAILABLE).delayMs);
    }
    this.ctx.metrics.routingDecisions.inc({ business, endpoint: decision.endpoint });
    return { kind: 'admit', link };
  }

  opened(business: string): void {
    this.usageOf(business, 0).sessions++;
  }

  retired(business: string): void {
    const usage = this.usage.get(business);
    if (usage) usage.sessions--;
  }

  private usageOf(business: string, openRate: number): BusinessUsage {
    let usage = this.usage.get(business);
    if (!usage) this.usage.set(business, (usage = { sessions: 0, bucket: openRate > 0 ? new TokenBucket(openRate, openRate) : null }));
    return usage;
  }
}

function refuse(code: Code, reason: string, retryAfterMs = 0): Admission {
  return { kind: 'refuse', code, reason, retryAfterMs };
}
