import { LivemuxError } from '../protocol/errors.js';
import { consistentHashPolicy } from './policies/consistent-hash.js';
import { moduloHashPolicy } from './policies/modulo-hash.js';
import { roundRobinPolicy } from './policies/round-robin.js';
import type { PickerPolicy } from './types.js';

/**
 * Registry of load-balancing policies by name (as grpc-js's `registerLoadBalancerType`). routes.yaml
 * validation accepts exactly the names registered here, so a new policy is one module in
 * `policies/` plus one `registerPolicy` call; test/unit/policy-conformance.test.ts then runs the shared
 * suite against it.
 */
const POLICIES = new Map<string, PickerPolicy>(
  [roundRobinPolicy, moduloHashPolicy, consistentHashPolicy].map((policy) => [policy.name, policy]),
);

/** The policy of a route that names none. */
export const DEFAULT_POLICY = roundRobinPolicy.name;

/** Adds a policy; a second policy under the same name is refused so one cannot silently replace another. */
export function registerPolicy(policy: PickerPolicy): void {
  if (POLICIES.has(policy.name)) {
    throw new LivemuxError('ERR_POLICY_EXISTS', `policy ${policy.name}: already registered`);
  }
  POLICIES.set(policy.name, policy);
}

/** The policy registered under `name`, or undefined. */
export function getPolicy(name: string): PickerPolicy | undefined {
  return POLICIES.get(name);
}

/** Names of every registered policy, in registration order (round_robin, hash, consistent_hash, ...). */
export function policyNames(): readonly string[] {
  return [...POLICIES.keys()];
}
