import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { Defaults, HEADER_SIZE, MAX_WINDOW } from '../protocol/constants.js';
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
  auth: { jwtSecret: string; issuer?: string; audience?: string };
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

const authSchema = z.strictObject({
  jwt_secret: z
    .string({
      error: (issue) =>
        issue.input === undefined ? `required: set it in the file or in the ${JWT_SECRET_ENV} environment variable` : undefined,
    })
    .min(1),
  issuer: z.string().min(1).optional(),
  audience: z.string().min(1).optional(),
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
  timeouts: timeoutsSchema.prefault({}),
  goaway_reconnect_address: hostPortSchema.optional(),
  routes: z.string().min(1).default('./routes.yaml'),
  routes_watch: z.boolean().default(true),
  log: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
  proxy_id: z.string().min(1).max(128).optional(),
});

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
  const { limits, timeouts, auth } = file;
  return {
    listen: { host: file.listen.host, port: file.listen.port },
    tls: file.tls ? { certFile: resolve(baseDir, file.tls.cert_file), keyFile: resolve(baseDir, file.tls.key_file) } : null,
    proxyProtocol: file.proxy_protocol,
    admin: file.admin === false ? null : { host: file.admin.host, port: file.admin.port },
    auth: {
      jwtSecret: auth.jwt_secret,
      ...(auth.issuer !== undefined && { issuer: auth.issuer }),
      ...(auth.audience !== undefined && { audience: auth.audience }),
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
  };
}
