import type { RoutesConfig } from '../config/routes-config.js';
import { Code, codeInfo } from '../protocol/codes.js';
import { LivemuxError } from '../protocol/errors.js';
import { getPolicy } from './policies.js';
import type { Picker, RouteContext, RouteDecision, RouteTable } from './types.js';

/** Retry hint when a pool has no healthy endpoint: the code's own first backoff step. */
const RETRY_AFTER_MS = codeInfo(Code.BACKEND_UNAVAILABLE).delayMs;

interface CompiledRoute {
  readonly business: string;
  readonly pool: string;
  readonly enabled: boolean;
  readonly picker: Picker;
}

/**
 * Builds an immutable route table from a validated routes config: one picker per pool, shared by
 * every route that names the pool, so sessions of several businesses on one pool are balanced
 * together. `version` identifies the snapshot (the loader increments it on each reload).
 */
export function createRouteTable(config: RoutesConfig, version = 1): RouteTable {
  const pickers = new Map<string, Picker>();
  const endpoints = new Set<string>();
  for (const [name, pool] of Object.entries(config.pools)) {
    const policy = getPolicy(pool.policy);
    // Unreachable for a validated config; guards against a config built by hand.
    if (!policy) throw new LivemuxError('ERR_UNKNOWN_POLICY', `pool ${name}: unknown policy "${pool.policy}"`);
    pickers.set(name, policy.createPicker(pool.endpoints));
    for (const endpoint of pool.endpoints) endpoints.add(endpoint.address);
  }

  const routes = new Map<string, CompiledRoute>();
  for (const route of config.routes) {
    const picker = pickers.get(route.pool);
    if (!picker) throw new LivemuxError('ERR_UNKNOWN_POOL', `route ${route.business}: unknown pool "${route.pool}"`);
    routes.set(route.business, { business: route.business, pool: route.pool, enabled: route.enabled, picker });
  }

  const endpointList = Object.freeze([...endpoints]);
  return Object.freeze({
    version,
    resolve(business: string, ctx: RouteContext, isHealthy: (endpoint: string) => boolean): RouteDecision {
      const route = routes.get(business);
      if (!route) return { kind: 'unknown_business' };
      if (!route.enabled) return { kind: 'disabled' };
      const endpoint = route.picker.pick(ctx, isHealthy);
      if (endpoint === null) return { kind: 'unavailable', retryAfterMs: RETRY_AFTER_MS };
      return { kind: 'ok', business: route.business, pool: route.pool, endpoint };
    },
    endpoints: () => endpointList,
  });
}
