import { z } from 'zod';
import { DEFAULT_POLICY, policyNames } from '../routing/policies.js';
import { deepFreeze, describeValue, formatPath, hostPortSchema, isPlainMap, loadYamlConfig, readConfigFile } from './load-yaml.js';

/**
 * routes.yaml: which backend pool serves each business name (reference in docs/routes.md).
 * Every map is strict, so a misspelt key is an error rather than a silently ignored option; later
 * features (hash keys, retries, more policies) arrive as new optional keys on routes and pools.
 */

/** One business name a client may OPEN, and the pool that serves it. */
export interface RouteConfig {
  readonly business: string;
  readonly pool: string;
  /** A disabled route is known but refuses new sessions. */
  readonly enabled: boolean;
}

/** A backend endpoint of a pool. */
export interface EndpointConfig {
  /** `host:port` of the backend's gRPC server. */
  readonly address: string;
  readonly weight: number;
}

/** A set of interchangeable backend endpoints and the policy spreading sessions over them. */
export interface PoolConfig {
  readonly protocol: 'grpc';
  /** A registered policy name (routing/policies.ts). */
  readonly policy: string;
  readonly endpoints: readonly EndpointConfig[];
}

/** A validated, deep-frozen routes file. */
export interface RoutesConfig {
  readonly version: 1;
  readonly routes: readonly RouteConfig[];
  /** Pools by name. Has no prototype, so a pool named like an Object method cannot be confused with one. */
  readonly pools: Readonly<Record<string, PoolConfig>>;
}

/** Largest endpoint weight: enough for fine ratios, small enough that weights never overflow a sum. */
export const MAX_WEIGHT = 10_000;

const NAME = /^[a-z0-9_.-]{1,64}$/;
const nameSchema = z.string().regex(NAME, {
  error: (issue) => `expected 1-64 characters of a-z 0-9 _ . -, got ${describeValue(issue.input)}`,
});

const routeSchema = z.strictObject({
  business: nameSchema,
  pool: z.string(),
  enabled: z.boolean().default(true),
});

const endpointSchema = z.strictObject({
  address: hostPortSchema,
  weight: z.number().int().min(1).max(MAX_WEIGHT).default(1),
});

const poolSchema = z.strictObject({
  protocol: z.enum(['grpc']),
  // Checked against the registry at parse time, so policies registered by plugins are accepted.
  policy: z
    .string()
    .refine((name) => policyNames().includes(name), {
      error: (issue) => `expected one of ${policyNames().join('|')}, got ${describeValue(issue.input)}`,
    })
    .default(DEFAULT_POLICY),
  endpoints: z.array(endpointSchema).min(1),
});

const routesFileSchema = z
  .strictObject({
    version: z.literal(1),
    routes: z.array(routeSchema),
    pools: z.record(nameSchema, poolSchema),
  })
  // Runs even when fields above failed (so one pass reports everything) and therefore reads the
  // partly-validated value defensively: a failed field still holds its raw input.
  .superRefine(crossCheck, { when: () => true });

/** Cross-references no single field can check: unique business names, known pools, unique endpoints per pool. */
function crossCheck(file: { routes: unknown; pools: unknown }, ctx: z.RefinementCtx): void {
  const pools = isPlainMap(file.pools) ? file.pools : null;
  const firstUse = new Map<string, number>();
  (Array.isArray(file.routes) ? file.routes : []).forEach((route: unknown, i) => {
    if (!isPlainMap(route)) return;
    const { business, pool } = route;
    if (typeof business === 'string') {
      const first = firstUse.get(business);
      if (first === undefined) firstUse.set(business, i);
      else ctx.addIssue({ code: 'custom', path: ['routes', i, 'business'], message: `duplicate business "${business}" (also ${formatPath(['routes', first])})` });
    }
    if (pools && typeof pool === 'string' && !Object.hasOwn(pools, pool)) {
      const known = Object.keys(pools).join(', ') || 'none defined';
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'pool'], message: `unknown pool "${pool}" (pools: ${known})` });
    }
  });
  for (const [name, pool] of Object.entries(pools ?? {})) {
    const seen = new Set<string>();
    const endpoints: unknown = isPlainMap(pool) ? pool.endpoints : null;
    (Array.isArray(endpoints) ? endpoints : []).forEach((endpoint: unknown, i) => {
      const address = isPlainMap(endpoint) ? endpoint.address : undefined;
      if (typeof address !== 'string') return;
      if (seen.has(address)) {
        ctx.addIssue({ code: 'custom', path: ['pools', name, 'endpoints', i, 'address'], message: `duplicate endpoint "${address}" in pool "${name}"` });
      }
      seen.add(address);
    });
  }
}

/** Parses and validates routes YAML text; throws {@link ConfigError} listing every problem with `file:line:col`. */
export function parseRoutesConfig(text: string, fileName: string): RoutesConfig {
  const file = loadYamlConfig(routesFileSchema, text, fileName);
  return deepFreeze({
    version: file.version,
    routes: file.routes,
    pools: Object.assign(Object.create(null) as Record<string, PoolConfig>, file.pools),
  });
}

/** Reads and validates a routes file (see {@link parseRoutesConfig}). */
export function loadRoutesConfig(file: string): RoutesConfig {
  return parseRoutesConfig(readConfigFile(file), file);
}
