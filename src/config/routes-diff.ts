import { isDeepStrictEqual } from 'node:util';
import type { RoutesConfig } from './routes-config.js';

/** What a reload changed, by name: for the reload log line an operator reads after an edit. */
export interface RoutesDiff {
  routesAdded: string[];
  routesRemoved: string[];
  /** Businesses whose route settings changed (pool, policy, enabled, hash key, limits, ...). */
  routesChanged: string[];
  poolsAdded: string[];
  poolsRemoved: string[];
  /** Pools whose settings other than their endpoint list changed (protocol, checks, breaker). */
  poolsChanged: string[];
  /** `pool/address` of endpoints added, removed, or given another weight. */
  endpointsAdded: string[];
  endpointsRemoved: string[];
  endpointsChanged: string[];
}

/** The differences between two validated routes files; empty lists where nothing changed. */
export function diffRoutes(before: RoutesConfig, after: RoutesConfig): RoutesDiff {
  const routesBefore = new Map(before.routes.map((r) => [r.business, r]));
  const routesAfter = new Map(after.routes.map((r) => [r.business, r]));
  const diff: RoutesDiff = {
    routesAdded: [...routesAfter.keys()].filter((b) => !routesBefore.has(b)),
    routesRemoved: [...routesBefore.keys()].filter((b) => !routesAfter.has(b)),
    routesChanged: [...routesAfter].filter(([b, r]) => routesBefore.has(b) && !isDeepStrictEqual(routesBefore.get(b), r)).map(([b]) => b),
    poolsAdded: Object.keys(after.pools).filter((p) => !(p in before.pools)),
    poolsRemoved: Object.keys(before.pools).filter((p) => !(p in after.pools)),
    poolsChanged: [],
    endpointsAdded: [],
    endpointsRemoved: [],
    endpointsChanged: [],
  };
  for (const [name, pool] of Object.entries(after.pools)) {
    const old = before.pools[name];
    if (!old) continue;
    const { endpoints: newEndpoints, ...newSettings } = pool;
    const { endpoints: oldEndpoints, ...oldSettings } = old;
    if (!isDeepStrictEqual(oldSettings, newSettings)) diff.poolsChanged.push(name);
    const oldWeights = new Map(oldEndpoints.map((e) => [e.address, e.weight]));
    const newWeights = new Map(newEndpoints.map((e) => [e.address, e.weight]));
    for (const [address, weight] of newWeights) {
      if (!oldWeights.has(address)) diff.endpointsAdded.push(`${name}/${address}`);
      else if (oldWeights.get(address) !== weight) diff.endpointsChanged.push(`${name}/${address}`);
    }
    for (const address of oldWeights.keys()) if (!newWeights.has(address)) diff.endpointsRemoved.push(`${name}/${address}`);
  }
  return diff;
}

/** The diff without its empty lists, for a compact log line; `{}` when nothing routing-relevant changed. */
export function changesOnly(diff: RoutesDiff): Partial<RoutesDiff> {
  return Object.fromEntries(Object.entries(diff).filter(([, names]) => (names as string[]).length > 0));
}
