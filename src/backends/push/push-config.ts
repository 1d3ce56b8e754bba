/**
 * The Push backend's configuration (`livemux push-backend --config push.yaml`; every key: docs/push.md
 * §Configuration). Every key is optional; the file is validated like the proxy's (every problem as
 * `file:line:col path: message`). API keys come from here — by environment variable (`key_env`) or,
 * for development, literally (`key`) — or from LIVEMUX_PUSH_API_KEY (one key named `dev`).
 */
import { z } from 'zod';
import { ConfigError } from '../../protocol/errors.js';
import { deepFreeze, hostSchema, listenPortSchema, loadYamlConfig, readConfigFile } from '../../config/load-yaml.js';
import type { ApiKeySpec } from './api-keys.js';

/** Environment variable holding one API key, named `dev` (what `livemux up` uses). */
export const DEV_API_KEY_ENV = 'LIVEMUX_PUSH_API_KEY';

export interface PushConfig {
  /** The SessionBackend gRPC listener proxies attach to. */
  listen: { host: string; port: number };
  /** The push HTTP API; null = none on this node. */
  http: { host: string; port: number } | null;
  /** /metrics, /healthz, /readyz, /status; null = none. */
  admin: { host: string; port: number } | null;
  /** `redis://…` for the shared store; null = in this process (one node). */
  redis: string | null;
  apiKeys: ApiKeySpec[];
  limits: {
    maxDataBytes: number;
    bodyLimitBytes: number;
    maxUsersPerPush: number;
    maxTtlS: number;
    maxTopicsPerDevice: number;
  };
  onlineAckWindowMs: number;
  recordRetentionMs: number;
  /** Most push records the in-memory store keeps (oldest dropped first); ignored with `redis`. */
  maxRecords: number;
  deviceRetentionMs: number;
  nodeTtlMs: number;
  logLevel: string;
}

const int = (min: number, max: number) => z.number().int().min(min).max(max);
const endpoint = (port: number) => z.strictObject({ host: hostSchema.default('127.0.0.1'), port: listenPortSchema.default(port) });
const KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/;

const apiKeySchema = z
  .strictObject({
    name: z.string().regex(KEY_NAME, { error: 'expected 1-64 characters of A-Z a-z 0-9 . _ -' }),
    key: z.string().min(16, { error: 'expected at least 16 characters' }).optional(),
    key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }).optional(),
    rate: z.number().positive().max(1_000_000).default(1000),
    burst: int(1, 1_000_000).optional(),
  })
  .refine((k) => (k.key === undefined) !== (k.key_env === undefined), { error: 'expected exactly one of key, key_env' });

const schema = z.strictObject({
  listen: endpoint(7103).prefault({}),
  http: endpoint(7180).nullable().prefault({}),
  admin: endpoint(9103).nullable().default(null),
  redis: z.string().regex(/^rediss?:\/\//, { error: 'expected a redis:// or rediss:// URL' }).nullable().default(null),
  api_keys: z.array(apiKeySchema).default([]),
  limits: z
    .strictObject({
      max_data_bytes: int(1, 1 << 20).default(4096),
      body_limit_bytes: int(1024, 16 << 20).default(256 * 1024),
      max_users_per_push: int(1, 100_000).default(1000),
      max_ttl_s: int(0, 28 * 24 * 3600).default(28 * 24 * 3600),
      max_topics_per_device: int(1, 10_000).default(64),
    })
    .prefault({}),
  online_ack_window_ms: int(1, 3_600_000).default(30_000),
  record_retention_ms: int(1, 30 * 24 * 3_600_000).default(24 * 3_600_000),
  max_records: int(1, 100_000_000).default(100_000),
  device_retention_ms: int(1, 365 * 24 * 3_600_000).default(30 * 24 * 3_600_000),
  node_ttl_ms: int(300, 600_000).default(15_000),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).prefault({}),
});

/**
 * Reads `file` (null: all defaults) and resolves API keys from `env`. Throws ConfigError listing every
 * problem, including a `key_env` naming an unset variable (the message names the variable, never a key).
 */
export function loadPushConfig(file: string | null, env: NodeJS.ProcessEnv = process.env): PushConfig {
  const name = file ?? '(defaults)';
  const raw = file === null ? schema.parse({}) : loadYamlConfig(schema, readConfigFile(file), file);
  const problems: string[] = [];
  const apiKeys: ApiKeySpec[] = [];
  const names = new Set<string>();
  raw.api_keys.forEach((k, i) => {
    const key = k.key ?? env[k.key_env!];
    if (names.has(k.name)) problems.push(`${name} api_keys[${i}].name: duplicate name "${k.name}"`);
    names.add(k.name);
    if (key === undefined || key.length < 16) {
      problems.push(`${name} api_keys[${i}].key_env: environment variable ${k.key_env} is unset or shorter than 16 characters`);
      return;
    }
    apiKeys.push({ name: k.name, key, rate: k.rate, burst: k.burst ?? Math.max(1, Math.ceil(k.rate)) });
  });
  const dev = env[DEV_API_KEY_ENV];
  if (dev !== undefined && dev !== '' && !names.has('dev')) apiKeys.push({ name: 'dev', key: dev, rate: 1000, burst: 1000 });
  if (problems.length > 0) throw new ConfigError(name, problems);
  return deepFreeze({
    listen: raw.listen,
    http: raw.http,
    admin: raw.admin,
    redis: raw.redis,
    apiKeys,
    limits: {
      maxDataBytes: raw.limits.max_data_bytes,
      bodyLimitBytes: raw.limits.body_limit_bytes,
      maxUsersPerPush: raw.limits.max_users_per_push,
      maxTtlS: raw.limits.max_ttl_s,
      maxTopicsPerDevice: raw.limits.max_topics_per_device,
    },
    onlineAckWindowMs: raw.online_ack_window_ms,
    recordRetentionMs: raw.record_retention_ms,
    maxRecords: raw.max_records,
    deviceRetentionMs: raw.device_retention_ms,
    nodeTtlMs: raw.node_ttl_ms,
    logLevel: raw.log.level,
  });
}
