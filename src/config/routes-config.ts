import { z } from 'zod';
import { DEFAULT_POLICY, policyNames } from '../routing/registry.js';
import { deepFreeze, describeValue, formatPath, hostPortSchema, isPlainMap, loadYamlConfig, readConfigFile } from './load-yaml.js';

/**
 * routes.yaml: which backend pool serves each business name, how sessions are spread over the pool,
 * and how the pool's endpoints are watched (reference: docs/routes.md). The file is snake_case; the
 * validated config is camelCase and deep-frozen. Every map is strict, so a misspelt key is an error
 * rather than a silently ignored option, and every default is filled in, so consumers never see a
 * missing field.
 */

/** Where a route's hash key comes from (`hash_key:` in routes.yaml). */
export type HashKeySource =
  | { readonly kind: 'metadata'; readonly field: string }
  | { readonly kind: 'user_id' }
  | { readonly kind: 'connection_id' }
  | { readonly kind: 'client_address' };

/** Route timeouts. */
export interface RouteTimeouts {
  /** tcp pools: upstream connect timeout per attempt. */
  readonly connectMs: number;
}

/** Retries when binding a session to an endpoint fails (tcp connect, failover). */
export interface RetryPolicy {
  /** Further endpoints tried after the first; 0 = no retry. */
  readonly attempts: number;
  readonly backoffMs: number;
}

/** Per-connection limits for one business; 0 = unlimited. */
export interface RouteLimits {
  readonly maxSessionsPerConnection: number;
  /** OPENs per second per connection for this business (OPEN_FAIL RATE_LIMITED beyond it). */
  readonly openRate: number;
}

/** One business name a client may OPEN, the pool that serves it and how. */
export interface RouteConfig {
  readonly business: string;
  readonly pool: string;
  /** A disabled route is known but refuses OPEN (BUSINESS_DISABLED 208); a reload closes its sessions. */
  readonly enabled: boolean;
  /** A registered policy name (routing/registry.ts). */
  readonly policy: string;
  readonly hashKey: HashKeySource;
  readonly timeouts: RouteTimeouts;
  readonly retry: RetryPolicy;
  readonly limits: RouteLimits;
}

/** A backend endpoint of a pool. */
export interface EndpointConfig {
  /** `host:port` of the backend (its gRPC server, or the TCP service of a tcp pool). */
  readonly address: string;
  readonly weight: number;
}

/** Active health checks: grpc.health.v1 Check for grpc pools, a TCP connect for tcp pools. */
export interface HealthCheckConfig {
  /** 0 = no active checks. */
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive failed checks that mark an endpoint unhealthy. */
  readonly unhealthyThreshold: number;
  /** Consecutive passed checks that mark it healthy again. */
  readonly healthyThreshold: number;
}

/** Per-endpoint circuit breaker (opossum options of the same names). */
export interface CircuitBreakerConfig {
  readonly errorThresholdPercentage: number;
  readonly volumeThreshold: number;
  readonly resetTimeoutMs: number;
  readonly rollingWindowMs: number;
}

/** Passive ejection. */
export interface OutlierDetectionConfig {
  /** Consecutive failures reported by links that open the endpoint's breaker. */
  readonly consecutiveFailures: number;
}

/** A set of interchangeable backend endpoints and how they are watched. */
export interface PoolConfig {
  /** `grpc`: the livemux backend contract. `tcp`: DATA bytes tunnelled, one upstream TCP connection per session. */
  readonly protocol: 'grpc' | 'tcp';
  readonly endpoints: readonly EndpointConfig[];
  readonly healthCheck: HealthCheckConfig;
  readonly circuitBreaker: CircuitBreakerConfig;
  readonly outlierDetection: OutlierDetectionConfig;
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

const METADATA_FIELD = /^[A-Za-z0-9_.-]{1,64}$/;
const HASH_KEY_FORMS = 'metadata.<field>|user_id|connection_id|client_address';

/** Parses a `hash_key` value, or returns a description of what is wrong with it. */
export function parseHashKeySource(text: string): HashKeySource | string {
  if (text === 'user_id' || text === 'connection_id' || text === 'client_address') return { kind: text };
  if (text.startsWith('metadata.')) {
    const field = text.slice('metadata.'.length);
    if (METADATA_FIELD.test(field)) return { kind: 'metadata', field };
    return `expected a metadata field of 1-64 characters of A-Z a-z 0-9 _ . -, got ${describeValue(field)}`;
  }
  return `expected one of ${HASH_KEY_FORMS}, got ${describeValue(text)}`;
}

/** `hash_key` as written in routes.yaml (the inverse of {@link parseHashKeySource}). */
export function formatHashKeySource(source: HashKeySource): string {
  return source.kind === 'metadata' ? `metadata.${source.field}` : source.kind;
}

const hashKeySchema = z.string().superRefine((text, ctx) => {
  const parsed = parseHashKeySource(text);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
});

/**
 * An integer in [min, max]. Integrality is a plain refinement rather than zod's `.int()`, which aborts
 * the parse and so would hide the cross-checks' problems; it reports only in-range values, so -1.5 is
 * one problem (the bound), not two.
 */
const int = (min: number, max: number) =>
  z
    .number()
    .min(min)
    .max(max)
    .refine((n) => Number.isInteger(n) || n < min || n > max, {
      error: (issue) => `expected an integer, got ${describeValue(issue.input)}`,
    });

const routeSchema = z.strictObject({
  business: nameSchema,
  pool: z.string(),
  enabled: z.boolean().default(true),
  // Checked against the registry at parse time, so policies registered by plugins are accepted.
  policy: z
    .string()
    .refine((name) => policyNames().includes(name), {
      error: (issue) => `expected one of ${policyNames().join('|')}, got ${describeValue(issue.input)}`,
    })
    .default(DEFAULT_POLICY),
  hash_key: hashKeySchema.default('connection_id'),
  timeouts: z.strictObject({ connect_ms: int(1, 600_000).default(3000) }).prefault({}),
  retry: z.strictObject({ attempts: int(0, 10).default(2), backoff_ms: int(0, 60_000).default(100) }).prefault({}),
  limits: z
    .strictObject({
      max_sessions_per_connection: int(0, 1_000_000).default(0),
      open_rate: z.number().min(0).max(1_000_000).default(0),
    })
    .prefault({}),
});

const endpointSchema = z.strictObject({
  address: hostPortSchema,
  weight: int(1, MAX_WEIGHT).default(1),
});

const healthCheckSchema = z
  .strictObject({
    interval_ms: int(0, 3_600_000)
      .refine((ms) => ms === 0 || ms >= 100, { error: (issue) => `expected 0 (off) or >= 100, got ${describeValue(issue.input)}` })
      .default(5000),
    timeout_ms: int(1, 60_000).default(1000),
    unhealthy_threshold: int(1, 100).default(2),
    healthy_threshold: int(1, 100).default(1),
  })
  .superRefine((check, ctx) => {
    // A check that outlives its interval would overlap the next one.
    // An interval below 100 is reported by its own check.
    if (check.interval_ms >= 100 && check.timeout_ms > check.interval_ms) {
      ctx.addIssue({ code: 'custom', path: ['timeout_ms'], message: `expected <= interval_ms (${check.interval_ms}), got ${check.timeout_ms}` });
    }
  })
  .prefault({});

const circuitBreakerSchema = z
  .strictObject({
    error_threshold_percentage: int(1, 100).default(50),
    volume_threshold: int(0, 1_000_000).default(5),
    reset_timeout_ms: int(1, 3_600_000).default(5000),
    rolling_window_ms: int(100, 3_600_000).default(10_000),
  })
  .prefault({});

const outlierDetectionSchema = z.strictObject({ consecutive_failures: int(1, 1000).default(5) }).prefault({});

const poolSchema = z.strictObject({
  protocol: z.enum(['grpc', 'tcp']),
  endpoints: z.array(endpointSchema).min(1),
  health_check: healthCheckSchema,
  circuit_breaker: circuitBreakerSchema,
  outlier_detection: outlierDetectionSchema,
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

type RoutesFile = z.output<typeof routesFileSchema>;

/**
 * Cross-references no single field can check: unique business names, known pools, unique endpoints
 * per pool, one protocol per address across pools.
 */
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
  // address → the first pool naming it and that pool's protocol
  const protocolOf = new Map<string, { pool: string; protocol: unknown }>();
  for (const [name, pool] of Object.entries(pools ?? {})) {
    const seen = new Set<string>();
    const protocol: unknown = isPlainMap(pool) ? pool.protocol : undefined;
    const endpoints: unknown = isPlainMap(pool) ? pool.endpoints : null;
    (Array.isArray(endpoints) ? endpoints : []).forEach((endpoint: unknown, i) => {
      const address = isPlainMap(endpoint) ? endpoint.address : undefined;
      if (typeof address !== 'string') return;
      const path = ['pools', name, 'endpoints', i, 'address'];
      if (seen.has(address)) {
        ctx.addIssue({ code: 'custom', path, message: `duplicate endpoint "${address}" in pool "${name}"` });
      }
      seen.add(address);
      const first = protocolOf.get(address);
      if (!first) protocolOf.set(address, { pool: name, protocol });
      else if (first.pool !== name && typeof protocol === 'string' && typeof first.protocol === 'string' && first.protocol !== protocol) {
        ctx.addIssue({
          code: 'custom',
          path,
          message: `endpoint "${address}" is ${first.protocol} in pool "${first.pool}" but ${protocol} here (an address has one protocol)`,
        });
      }
    });
  }
}

function toRouteConfig(route: RoutesFile['routes'][number]): RouteConfig {
  return {
    business: route.business,
    pool: route.pool,
    enabled: route.enabled,
    policy: route.policy,
    hashKey: parseHashKeySource(route.hash_key) as HashKeySource,
    timeouts: { connectMs: route.timeouts.connect_ms },
    retry: { attempts: route.retry.attempts, backoffMs: route.retry.backoff_ms },
    limits: { maxSessionsPerConnection: route.limits.max_sessions_per_connection, openRate: route.limits.open_rate },
  };
}

function toPoolConfig(pool: RoutesFile['pools'][string]): PoolConfig {
  const { health_check: hc, circuit_breaker: cb } = pool;
  return {
    protocol: pool.protocol,
    endpoints: pool.endpoints.map((e) => ({ address: e.address, weight: e.weight })),
    healthCheck: {
      intervalMs: hc.interval_ms,
      timeoutMs: hc.timeout_ms,
      unhealthyThreshold: hc.unhealthy_threshold,
      healthyThreshold: hc.healthy_threshold,
    },
    circuitBreaker: {
      errorThresholdPercentage: cb.error_threshold_percentage,
      volumeThreshold: cb.volume_threshold,
      resetTimeoutMs: cb.reset_timeout_ms,
      rollingWindowMs: cb.rolling_window_ms,
    },
    outlierDetection: { consecutiveFailures: pool.outlier_detection.consecutive_failures },
  };
}

/** Parses and validates routes YAML text; throws {@link ConfigError} listing every problem with `file:line:col`. */
export function parseRoutesConfig(text: string, fileName: string): RoutesConfig {
  const file = loadYamlConfig(routesFileSchema, text, fileName);
  const pools = Object.create(null) as Record<string, PoolConfig>;
  for (const [name, pool] of Object.entries(file.pools)) pools[name] = toPoolConfig(pool);
  return deepFreeze({ version: file.version, routes: file.routes.map(toRouteConfig), pools });
}

/** Reads and validates a routes file (see {@link parseRoutesConfig}). */
export function loadRoutesConfig(file: string): RoutesConfig {
  return parseRoutesConfig(readConfigFile(file), file);
}
