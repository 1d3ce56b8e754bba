/**
 * Routing contracts: how the proxy turns the business name of an OPEN into a backend endpoint.
 * The proxy core depends only on these types; policies and the route table live beside them.
 */

/** What a routing decision may look at, taken from the authenticated connection and the OPEN. */
export interface RouteContext {
  userId: string;
  connectionId: string;
  clientAddress: string;
  metadata: Readonly<Record<string, string>>;
}

/**
 * Outcome of resolving a business name. `unavailable` means the route exists but no endpoint of its
 * pool is healthy; `retryAfterMs` is the hint sent in OPEN_FAIL BACKEND_UNAVAILABLE.
 */
export type RouteDecision =
  | { kind: 'ok'; business: string; pool: string; endpoint: string }
  | { kind: 'unknown_business' }
  | { kind: 'disabled' }
  | { kind: 'unavailable'; retryAfterMs: number };

/**
 * An immutable snapshot of routes.yaml. A reload builds a new table and swaps it in one assignment;
 * sessions already bound keep their endpoint.
 */
export interface RouteTable {
  /** Increases with each reload, for logs and /status. */
  readonly version: number;
  /** Picks an endpoint for a new session. Never throws; `isHealthy` is asked about candidates only. */
  resolve(business: string, ctx: RouteContext, isHealthy: (endpoint: string) => boolean): RouteDecision;
  /** Every distinct endpoint address of every pool: the backends the proxy keeps links to. */
  endpoints(): readonly string[];
}

/** One endpoint of a pool as a policy sees it. */
export interface WeightedEndpoint {
  readonly address: string;
  /** Relative share of new sessions, ≥ 1. */
  readonly weight: number;
}

/**
 * Chooses an endpoint of one pool for a new session (as grpc-js's Picker). Built by a policy for a
 * fixed endpoint list and replaced, never mutated, when the list changes. Health is passed in per
 * pick so a link going down needs no rebuild.
 */
export interface Picker {
  /** An address among the pool's endpoints for which `isHealthy` is true, or null if there is none. */
  pick(ctx: RouteContext, isHealthy: (endpoint: string) => boolean): string | null;
}

/** A load-balancing policy, registered by the name used in routes.yaml (`policy: round_robin`). */
export interface PickerPolicy {
  readonly name: string;
  /** Builds a picker for a non-empty endpoint list. */
  createPicker(endpoints: readonly WeightedEndpoint[]): Picker;
}
