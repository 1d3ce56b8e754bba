import type { EndpointConfig, RouteConfig, RoutesConfig } from '../config/routes-config.js';
import { Code, codeInfo } from '../protocol/codes.js';
import { LivemuxError } from '../protocol/errors.js';
import { hashKeyOf } from './hash-key.js';
import { getPolicy } from './registry.js';
import type { EndpointSpec, Picker, PoolProtocol, RouteContext, RouteDecision, RouteTable } from './types.js';

/** Retry hint when a pool has no healthy endpoint: the code's own first backoff step. */
const RETRY_AFTER_MS = codeInfo(Code.BACKEND_UNAVAILABLE).delayMs;

const UNKNOWN_BUSINESS: RouteDecision = Object.freeze({ kind: 'unknown_business' });
const DISABLED: RouteDecision = Object.freeze({ kind: 'disabled' });
const UNAVAILABLE: RouteDecision = Object.freeze({ kind: 'unavailable', retryAfterMs: RETRY_AFTER_MS });

interface CompiledRoute {
  readonly config: RouteConfig;
  readonly protocol: PoolProtocol;
  /** Null for a disabled route: it never picks, so nothing is built for it. */
  readonly picker: Picker | null;
  readonly missingKey: RouteDecision | null;
}

/** Pickers of each table by what they were built from, so the next table can reuse them. */
const pickersOf = new WeakMap<RouteTable, ReadonlyMap<string, Picker>>();

/** What a picker depends on: the policy and the endpoint list in order (round_robin's ties follow it). */
function pickerKey(policy: string, endpoints: readonly EndpointConfig[]): string {
  return `${policy}\n${endpoints.map((e) => `${e.address}*${e.weight}`).join('\n')}`;
}

/**
 * Builds an immutable route table from a validated routes config.
 *
 * Pickers: one per distinct (policy, endpoint list), shared by every route that has both, so
 * round_robin balances the businesses of one pool together and a consistent_hash ring is built once
 * per pool. With `previous` (the table being replaced), a picker whose policy and endpoints did not
 * change is taken over rather than rebuilt: a reload that adds a business does not rebuild every ring,
 * and round_robin keeps its rotation. `version` identifies the snapshot (the loader increments it on
 * each reload).
 */
export function createRouteTable(config: RoutesConfig, version = 1, previous?: RouteTable): RouteTable {
  const reusable = previous ? pickersOf.get(previous) : undefined;
  const pickers = new Map<string, Picker>();
  const routes = new Map<string, CompiledRoute>();
  for (const route of config.routes) {
    const pool = config.pools[route.pool];
    // Unreachable for a validated config; guards against a config built by hand.
    if (!pool) throw new LivemuxError('ERR_UNKNOWN_POOL', `route ${route.business}: unknown pool "${route.pool}"`);
    let picker: Picker | null = null;
    if (route.enabled) {
      const key = pickerKey(route.policy, pool.endpoints);
      picker = pickers.get(key) ?? reusable?.get(key) ?? null;
      if (!picker) {
        const policy = getPolicy(route.policy);
        if (!policy) throw new LivemuxError('ERR_UNKNOWN_POLICY', `route ${route.business}: unknown policy "${route.policy}"`);
        picker = policy.createPicker(pool.endpoints);
      }
      pickers.set(key, picker);
    }
    const { hashKey } = route;
    const missingKey = hashKey.kind === 'metadata' ? Object.freeze({ kind: 'missing_key' as const, field: hashKey.field }) : null;
    routes.set(route.business, { config: route, protocol: pool.protocol, picker, missingKey });
  }

  const specs = new Map<string, EndpointSpec>();
  for (const [name, pool] of Object.entries(config.pools)) {
    for (const { address } of pool.endpoints) {
      if (!specs.has(address)) specs.set(address, Object.freeze({ address, protocol: pool.protocol, pool: name, poolConfig: pool }));
    }
  }
  const endpointList = Object.freeze([...specs.values()]);

  const table: RouteTable = Object.freeze({
    version,
    config,
    resolve(business: string, ctx: RouteContext, isHealthy: (endpoint: string) => boolean): RouteDecision {
      const route = routes.get(business);
      if (!route) return UNKNOWN_BUSINESS;
      if (!route.picker) return DISABLED;
      const key = hashKeyOf(route.config.hashKey, ctx);
      if (key === undefined) return route.missingKey!;
      const endpoint = route.picker.pick(key, isHealthy);
      if (endpoint === null) return UNAVAILABLE;
      const { config: r, protocol } = route;
      return { kind: 'ok', business: r.business, pool: r.pool, protocol, endpoint, key, route: r };
    },
    endpoints: () => endpointList,
  });
  pickersOf.set(table, pickers);
  return table;
}
