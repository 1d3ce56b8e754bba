import type { PoolConfig, RouteConfig, RoutesConfig } from '../config/routes-config.js';

/**
 * Routing contracts: how the proxy turns the business name of an OPEN into a backend endpoint.
 * The proxy core depends only on these types; policies and the route table live beside them.
 */

/** What a routing decision may look at, taken from the authenticated connection and the OPEN. */
export interface RouteContext {
  userId: string;
  connectionId: string;
  /** The client's `ip:port` (IPv6 unbracketed, `::1:5000`, as the proxy formats it, or bracketed). */
  clientAddress: string;
  metadata: Readonly<Record<string, string>>;
}

/** How a pool's endpoints are spoken to: the livemux gRPC backend contract or a plain TCP tunnel. */
export type PoolProtocol = 'grpc' | 'tcp';

/**
 * Outcome of resolving a business name for a new session (or a session being moved).
 * - `ok`: `endpoint` is healthy by the `isHealthy` given; `key` is the route's hash key for this
 *   session (hash policies placed it by that key; round_robin ignored it). Keep `key` to move the
 *   session later exactly as a new session with the same key would be placed.
 * - `unknown_business`: no route (OPEN_FAIL UNKNOWN_BUSINESS).
 * - `disabled`: the route exists with `enabled: false` (OPEN_FAIL BUSINESS_DISABLED 208).
 * - `missing_key`: the route hashes on `metadata.<field>` and the OPEN lacks it (OPEN_FAIL
 *   MISSING_HASH_KEY 209, naming `field`).
 * - `unavailable`: no endpoint of the pool is healthy; `retryAfterMs` is the hint sent with
 *   OPEN_FAIL BACKEND_UNAVAILABLE 204.
 */
export type RouteDecision =
  | { kind: 'ok'; business: string; pool: string; protocol: PoolProtocol; endpoint: string; key: string; route: RouteConfig }
  | { kind: 'unknown_business' }
  | { kind: 'disabled' }
  | { kind: 'missing_key'; field: string }
  | { kind: 'unavailable'; retryAfterMs: number };

/** An endpoint the proxy must keep a link to (grpc) or may dial (tcp), with its pool's health settings. */
export interface EndpointSpec {
  readonly address: string;
  readonly protocol: PoolProtocol;
  /** The first pool (in file order) naming the address; its settings apply to the address. */
  readonly pool: string;
  readonly poolConfig: PoolConfig;
}

/**
 * An immutable snapshot of routes.yaml. A reload builds a new table and the proxy swaps it in one
 * assignment; the old table stays valid for anyone still holding it.
 */
export interface RouteTable {
  /** Increases with each reload, for logs and /status. */
  readonly version: number;
  /** The validated, frozen config the table was built from. */
  readonly config: RoutesConfig;
  /**
   * Picks an endpoint for a session of `business`. Never throws. `isHealthy` is asked about
   * candidates only, synchronously; failover = resolve again with an `isHealthy` that also refuses
   * the failed endpoint.
   */
  resolve(business: string, ctx: RouteContext, isHealthy: (endpoint: string) => boolean): RouteDecision;
  /** Every distinct endpoint address of every pool once, used by a route or not (frozen). */
  endpoints(): readonly EndpointSpec[];
}

/** One endpoint of a pool as a policy sees it. */
export interface WeightedEndpoint {
  readonly address: string;
  /** Relative share of sessions, an integer ≥ 1. */
  readonly weight: number;
}

/**
 * Chooses an endpoint of one pool (as grpc-js's Picker). Built by a policy for a fixed endpoint list
 * and replaced, never changed, when the list changes: everything a pick needs is computed when the
 * picker is built. Health is passed in per pick, so an endpoint going down needs no rebuild.
 */
export interface Picker {
  /**
   * An address among the endpoints for which `isHealthy` returns true, or null when there is none.
   * `key` is the session's hash key (hash policies place it by the key; round_robin ignores it).
   * `isHealthy` must be synchronous and must not pick from the same picker.
   */
  pick(key: string, isHealthy: (endpoint: string) => boolean): string | null;
}

/** A load-balancing policy, registered by the name used in routes.yaml (`policy: consistent_hash`). */
export interface PickerPolicy {
  readonly name: string;
  /**
   * Builds a picker for a non-empty list of endpoints with distinct addresses. The picker copies
   * what it needs: changing `endpoints` afterwards does not change it.
   */
  createPicker(endpoints: readonly WeightedEndpoint[]): Picker;
}
