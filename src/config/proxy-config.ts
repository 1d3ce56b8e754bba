import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { Defaults, HEADER_SIZE, MAX_CONTROL_PAYLOAD, MAX_WINDOW } from '../protocol/constants.js';
import { CLUSTER_NAME } from '../dispatch/proxy-record.js';
import {
  deepFreeze,
  hostPortSchema,
  hostSchema,
  isPlainMap,
  listenPortSchema,
  parseYaml,
  readConfigFile,
  validateConfig,
  type Locator,
} from './load-yaml.js';

/**
 * The proxy's own configuration (`livemux.yaml`, reference in docs/configuration.md). Every field
 * is optional in the file; defaults come from `Defaults` in protocol/constants.ts so the values the
 * server announces in WELCOME and the values it enforces cannot drift apart.
 */
export interface ProxyConfig {
  listen: { host: string; port: number };
  /** null = plain TCP. Paths are absolute (resolved against the config file's folder). */
  tls: { certFile: string; keyFile: string } | null;
  /** Expect a PROXY protocol v1/v2 header at the start of every connection. */
  proxyProtocol: boolean;
  /** null = no admin HTTP server. */
  admin: { host: string; port: number } | null;
  auth: {
    jwtSecret: string;
    issuer?: string;
    audience?: string;
    /** Identity bounds applied to every token, whichever verifier checked it (PROTOCOL.md §5.3). */
    maxTokenBytes: number;
    maxSubBytes: number;
    maxClaimsBytes: number;
    maxTokenLifetimeS: number;
    /** How long before expiry a client that accepts refresh is asked for a fresh token. */
    refreshWindowMs: number;
  };
  limits: {
    maxSessions: number;
    maxPayload: number;
    sessionWindow: number;
    connectionWindow: number;
    outboundQueueBytes: number;
    openResetRate: number;
    /** Low-priority DATA frames per second per connection; 0 = no cap. */
    lowPriorityRate: number;
    /** Most messages merged into one BATCH frame for a client that accepts batches. */
    lowPriorityMerge: number;
    /** PINGs and frames that earn a RESET, per second, before ERROR CONTROL_FLOOD. */
    replyRate: number;
    /** Largest HELLO payload. */
    maxHelloBytes: number;
    /** Bytes of frames a client may pipeline behind HELLO. */
    handshakeBytes: number;
  };
  /** Limits on connections across the whole server (PROTOCOL.md §11). */
  connections: {
    max: number;
    maxPerAddress: number;
    maxPerUser: number;
    maxHandshakes: number;
    handshakeBudgetBytes: number;
  };
  /** Per-user limits across the user's connections; shared through Redis when `redisUrl` is set. */
  users: { openRate: number; openBurst: number; redisUrl: string | null; redisKeyPrefix: string };
  /** Overload protection (docs/configuration.md). */
  overload: {
    /** Memory the process may use; 0 = the container's limit, else the machine's memory. */
    memoryLimitBytes: number;
    /** Fraction of the memory limit (or of V8's heap limit) from which new connections are refused. */
    stopAcceptingAt: number;
    /** Fraction from which the connections holding the most are closed. */
    shedAt: number;
    /** Event-loop lag from which new connections are refused; twice this sheds. 0 = not watched. */
    maxEventLoopLagMs: number;
    checkIntervalMs: number;
  };
  timeouts: {
    handshakeMs: number;
    heartbeatIntervalMs: number;
    heartbeatMisses: number;
    idleMs: number;
    drainMs: number;
    /** How long a backend has to end a session after the client's CLOSE (PROTOCOL.md §5.2). */
    halfCloseMs: number;
  };
  /** `host:port` sent in GOAWAY on drain; '' = none. */
  goawayReconnectAddress: string;
  /** Absolute path of the routes file. */
  routesFile: string;
  /** Reload the routes file when it changes on disk; false = only on SIGHUP. */
  routesWatch: boolean;
  logLevel: string;
  /** Identifies this process in logs, metrics and backend SessionOpened events. */
  proxyId: string;
  /** Registration with `livemux dispatch` through Redis (docs/dispatch.md); null = not registered. */
  dispatch: {
    redisUrl: string;
    cluster: string;
    /** `host:port` clients dial; null = the bound listen address (the host must not be a wildcard). */
    publicAddress: string | null;
    heartbeatMs: number;
    ttlMs: number;
  } | null;
}

/** Environment variable that overrides `auth.jwt_secret`, so the secret need not live in the file. */
export const JWT_SECRET_ENV = 'LIVEMUX_JWT_SECRET';

/** Largest `limits.max_payload`: one DATA frame must stay small enough not to starve other sessions. */
export const MAX_PAYLOAD_LIMIT = 16 * 1024 * 1024;

/** Largest delay Node's timers accept; a bigger value silently fires after 1 ms. */
const MAX_TIMER_MS = 0x7fff_ffff;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const positiveInt = (max: number) => z.number().int().min(1).max(max);

/** Every limit must be valid before they are compared; an invalid max_payload would only add noise. */
const limitsSchema = z
  .strictObject({
    max_sessions: positiveInt(65_535).default(Defaults.maxSessions),
    max_payload: positiveInt(MAX_PAYLOAD_LIMIT).default(Defaults.maxPayload),
    session_window: positiveInt(MAX_WINDOW).default(Defaults.sessionWindow),
    connection_window: positiveInt(MAX_WINDOW).default(Defaults.connectionWindow),
    outbound_queue_bytes: positiveInt(Number.MAX_SAFE_INTEGER).default(Defaults.outboundQueueBytes),
    open_reset_rate: positiveInt(1_000_000).default(Defaults.openResetRate),
    low_priority_rate: z.number().int().min(0).max(1_000_000).default(Defaults.lowPriorityRate),
    low_priority_merge: positiveInt(1_024).default(Defaults.lowPriorityMerge),
    reply_rate: positiveInt(1_000_000).default(Defaults.replyRate),
    max_hello_bytes: z.number().int().min(256).max(MAX_CONTROL_PAYLOAD).default(Defaults.maxHelloBytes),
    handshake_bytes: z.number().int().min(0).max(64 * 1024 * 1024).default(Defaults.handshakeBytes),
  })
  .superRefine(
    (limits, ctx) => {
      const minimum = limits.max_payload + HEADER_SIZE;
      if (limits.outbound_queue_bytes < minimum) {
        ctx.addIssue({
          code: 'custom',
          path: ['outbound_queue_bytes'],
          message: `must hold one full DATA frame (${limits.outbound_queue_bytes} vs max_payload + header = ${minimum})`,
        });
      }
    },
    { when: (payload) => payload.issues.length === 0 },
  );

const timeoutsSchema = z.strictObject({
  handshake_ms: positiveInt(MAX_TIMER_MS).default(Defaults.handshakeTimeoutMs),
  heartbeat_interval_ms: positiveInt(MAX_TIMER_MS).default(Defaults.heartbeatIntervalMs),
  heartbeat_misses: positiveInt(100).default(Defaults.heartbeatMisses),
  idle_ms: positiveInt(MAX_TIMER_MS).default(Defaults.idleTimeoutMs),
  drain_ms: positiveInt(MAX_TIMER_MS).default(Defaults.drainTimeoutMs),
  half_close_ms: positiveInt(MAX_TIMER_MS).default(Defaults.halfCloseTimeoutMs),
});

const connectionsSchema = z.strictObject({
  max: positiveInt(10_000_000).default(Defaults.maxConnections),
  max_per_address: positiveInt(10_000_000).default(Defaults.maxConnectionsPerAddress),
  max_per_user: positiveInt(10_000_000).default(Defaults.maxConnectionsPerUser),
  max_handshakes: positiveInt(10_000_000).default(Defaults.maxHandshakes),
  handshake_budget_bytes: positiveInt(Number.MAX_SAFE_INTEGER).default(Defaults.handshakeBudgetBytes),
});

const usersSchema = z.strictObject({
  open_rate: positiveInt(1_000_000).default(Defaults.userOpenRate),
  open_burst: positiveInt(1_000_000).default(Defaults.userOpenBurst),
  redis_url: z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL').optional(),
  redis_key_prefix: z.string().min(1).max(64).default('livemux:'),
});

const fraction = z.number().gt(0).max(1);
const overloadSchema = z
  .strictObject({
    memory_limit_bytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
    stop_accepting_at: fraction.default(0.85),
    shed_at: fraction.default(0.95),
    max_event_loop_lag_ms: z.number().int().min(0).max(MAX_TIMER_MS).default(1_000),
    check_interval_ms: z.number().int().min(50).max(60_000).default(500),
  })
  .superRefine((o, ctx) => {
    if (o.shed_at < o.stop_accepting_at) {
      ctx.addIssue({ code: 'custom', path: ['shed_at'], message: `must be at least stop_accepting_at (${o.shed_at} vs ${o.stop_accepting_at})` });
    }
  });

const authSchema = z.strictObject({
  jwt_secret: z
    .string({
      error: (issue) =>
        issue.input === undefined ? `required: set it in the file or in the ${JWT_SECRET_ENV} environment variable` : undefined,
    })
    .min(1),
  issuer: z.string().min(1).optional(),
  audience: z.string().min(1).optional(),
  max_token_bytes: z.number().int().min(64).max(MAX_CONTROL_PAYLOAD).default(Defaults.maxTokenBytes),
  max_sub_bytes: positiveInt(MAX_CONTROL_PAYLOAD).default(Defaults.maxSubBytes),
  max_claims_bytes: z.number().int().min(0).max(MAX_CONTROL_PAYLOAD).default(Defaults.maxClaimsBytes),
  // AUTH_STATE and WELCOME carry the remaining lifetime as a u32 of milliseconds (≤ 49.7 days).
  max_token_lifetime_s: positiveInt(45 * 86_400).default(Defaults.maxTokenLifetimeS),
  refresh_window_ms: z.number().int().min(0).max(MAX_TIMER_MS).default(Defaults.refreshWindowMs),
});

const dispatchSchema = z
  .strictObject({
    redis: z.string().regex(/^rediss?:\/\/./, { message: 'expected a redis:// or rediss:// URL' }),
    cluster: z.string().regex(CLUSTER_NAME, { message: 'expected 1-64 characters of A-Z a-z 0-9 _ . -' }),
    public_address: hostPortSchema.optional(),
    heartbeat_ms: positiveInt(MAX_TIMER_MS).default(2_000),
    ttl_ms: positiveInt(MAX_TIMER_MS).default(6_000),
  })
  .refine((d) => d.ttl_ms >= 2 * d.heartbeat_ms, {
    path: ['ttl_ms'],
    message: 'must be at least twice heartbeat_ms, so one late heartbeat does not drop the proxy from dispatch',
  });

const adminSchema = z.strictObject({ host: hostSchema.default('127.0.0.1'), port: listenPortSchema.default(9090) });

/** The file as written (snake_case). Sections whose keys all have defaults may be absent (`prefault`). */
const proxyFileSchema = z.strictObject({
  listen: z.strictObject({ host: hostSchema.default('0.0.0.0'), port: listenPortSchema.default(7000) }).prefault({}),
  tls: z.strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) }).optional(),
  proxy_protocol: z.boolean().default(false),
  admin: z.union([z.literal(false), adminSchema]).prefault({}),
  auth: authSchema,
  limits: limitsSchema.prefault({}),
  connections: connectionsSchema.prefault({}),
  users: usersSchema.prefault({}),
  overload: overloadSchema.prefault({}),
  timeouts: timeoutsSchema.prefault({}),
  goaway_reconnect_address: hostPortSchema.optional(),
  routes: z.string().min(1).default('./routes.yaml'),
  routes_watch: z.boolean().default(true),
  log: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
  proxy_id: z.string().min(1).max(128).optional(),
  dispatch: dispatchSchema.optional(),
})
  .refine((file) => !file.dispatch || file.dispatch.public_address !== undefined || !WILDCARD_HOSTS.has(file.listen.host), {
    path: ['dispatch', 'public_address'],
    message: 'required when listen.host is a wildcard address: clients need an address they can dial',
  });

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]']);

type ProxyFile = z.output<typeof proxyFileSchema>;

/**
 * Loads and validates the proxy config file. `file` null means "no file": every default, routes
 * `./routes.yaml` in the working directory. Throws {@link ConfigError} listing every problem.
 * The result is deep-frozen.
 */
export function loadProxyConfig(file: string | null, env: NodeJS.ProcessEnv = process.env): ProxyConfig {
  if (file === null) return proxyConfigFromObject({}, '(defaults)', process.cwd(), env);
  const { data, locate } = parseYaml(readConfigFile(file), file);
  return buildProxyConfig(data, file, dirname(resolve(file)), env, locate);
}

/**
 * Validates an already-parsed config object (tests, embedding). Relative paths resolve against
 * `baseDir`; problems are reported against `sourceName` without line numbers.
 */
export function proxyConfigFromObject(
  obj: unknown,
  sourceName: string,
  baseDir: string,
  env: NodeJS.ProcessEnv = process.env,
): ProxyConfig {
  return buildProxyConfig(obj, sourceName, baseDir, env);
}

function buildProxyConfig(data: unknown, sourceName: string, baseDir: string, env: NodeJS.ProcessEnv, locate?: Locator): ProxyConfig {
  const file = validateConfig(proxyFileSchema, prepare(data, env), sourceName, locate);
  return deepFreeze(toProxyConfig(file, baseDir));
}

/**
 * Prepares the raw file for validation:
 * - a top-level key with no value (only commented-out keys under it, as in the reference file)
 *   counts as absent, i.e. all defaults;
 * - an empty `auth` map is supplied when there is none and a non-empty LIVEMUX_JWT_SECRET is put in
 *   it, so one rule ("auth.jwt_secret is required") covers a missing map, a missing key and the
 *   environment.
 * Malformed shapes are left for the schema to report.
 */
function prepare(data: unknown, env: NodeJS.ProcessEnv): unknown {
  if (!isPlainMap(data)) return data;
  const present = Object.fromEntries(Object.entries(data).filter(([, value]) => value !== null));
  const auth = present.auth ?? {};
  if (!isPlainMap(auth)) return present;
  const secret = env[JWT_SECRET_ENV];
  return { ...present, auth: secret ? { ...auth, jwt_secret: secret } : auth };
}

function toProxyConfig(file: ProxyFile, baseDir: string): ProxyConfig {
  const { limits, timeouts, auth, connections, users, overload } = file;
  return {
    listen: { host: file.listen.host, port: file.listen.port },
    tls: file.tls ? { certFile: resolve(baseDir, file.tls.cert_file), keyFile: resolve(baseDir, file.tls.key_file) } : null,
    proxyProtocol: file.proxy_protocol,
    admin: file.admin === false ? null : { host: file.admin.host, port: file.admin.port },
    auth: {
      jwtSecret: auth.jwt_secret,
      ...(auth.issuer !== undefined && { issuer: auth.issuer }),
      ...(auth.audience !== undefined && { audience: auth.audience }),
      maxTokenBytes: auth.max_token_bytes,
      maxSubBytes: auth.max_sub_bytes,
      maxClaimsBytes: auth.max_claims_bytes,
      maxTokenLifetimeS: auth.max_token_lifetime_s,
      refreshWindowMs: auth.refresh_window_ms,
    },
    limits: {
      maxSessions: limits.max_sessions,
      maxPayload: limits.max_payload,
      sessionWindow: limits.session_window,
      connectionWindow: limits.connection_window,
      outboundQueueBytes: limits.outbound_queue_bytes,
      openResetRate: limits.open_reset_rate,
      lowPriorityRate: limits.low_priority_rate,
      lowPriorityMerge: limits.low_priority_merge,
      replyRate: limits.reply_rate,
      maxHelloBytes: limits.max_hello_bytes,
      handshakeBytes: limits.handshake_bytes,
    },
    connections: {
      max: connections.max,
      maxPerAddress: connections.max_per_address,
      maxPerUser: connections.max_per_user,
      maxHandshakes: connections.max_handshakes,
      handshakeBudgetBytes: connections.handshake_budget_bytes,
    },
    users: {
      openRate: users.open_rate,
      openBurst: users.open_burst,
      redisUrl: users.redis_url ?? null,
      redisKeyPrefix: users.redis_key_prefix,
    },
    overload: {
      memoryLimitBytes: overload.memory_limit_bytes,
      stopAcceptingAt: overload.stop_accepting_at,
      shedAt: overload.shed_at,
      maxEventLoopLagMs: overload.max_event_loop_lag_ms,
      checkIntervalMs: overload.check_interval_ms,
    },
    timeouts: {
      handshakeMs: timeouts.handshake_ms,
      heartbeatIntervalMs: timeouts.heartbeat_interval_ms,
      heartbeatMisses: timeouts.heartbeat_misses,
      idleMs: timeouts.idle_ms,
      drainMs: timeouts.drain_ms,
      halfCloseMs: timeouts.half_close_ms,
    },
    goawayReconnectAddress: file.goaway_reconnect_address ?? '',
    routesFile: resolve(baseDir, file.routes),
    routesWatch: file.routes_watch,
    logLevel: file.log.level,
    proxyId: file.proxy_id ?? `${hostname()}-${process.pid}`,
    dispatch: file.dispatch
      ? {
          redisUrl: file.dispatch.redis,
          cluster: file.dispatch.cluster,
          publicAddress: file.dispatch.public_address ?? null,
          heartbeatMs: file.dispatch.heartbeat_ms,
          ttlMs: file.dispatch.ttl_ms,
        }
      : null,
  };
}
