import { z } from 'zod';
import { parseHostPort } from '../config/load-yaml.js';

/**
 * What a proxy publishes about itself for dispatchers (docs/dispatch.md), one Redis string per proxy
 * that expires unless the proxy heartbeats, plus a per-cluster index of proxy ids:
 *
 *   livemux:dispatch:{<cluster>}:proxy:<id>   JSON ProxyRecord, PX = the registration's TTL
 *   livemux:dispatch:{<cluster>}:proxies      ZSET of ids (score: last heartbeat, proxy clock; informational)
 *
 * The string's TTL is the only liveness rule: an id in the index whose string has expired is a proxy
 * that stopped heartbeating (killed, partitioned) and is pruned by whoever reads it. The cluster name
 * is a Redis Cluster hash tag, so both keys of a cluster live on one shard.
 */
export interface ProxyRecord {
  /** The proxy's id (`proxy_id`), unique in the cluster. */
  readonly id: string;
  readonly cluster: string;
  /** `host:port` clients dial: the public address, not necessarily the listen address. */
  readonly address: string;
  /** Client connections open now, over all the proxy's workers. */
  readonly connections: number;
  /** Worker processes serving the address (1 without `--workers`); load compares connections per worker. */
  readonly workers: number;
  /** Event-loop delay, p99 over the last heartbeat interval, of the proxy's busiest worker, ms. */
  readonly eventLoopLagMs: number;
  /** GOAWAY sent to every client: takes no new connections. */
  readonly draining: boolean;
  /** When the proxy wrote this, ms since the epoch on its own clock (for people; liveness is the TTL). */
  readonly updatedAt: number;
}

/** Cluster names: what goes between the braces of the keys and in `?cluster=`. */
export const CLUSTER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

const recordSchema = z.strictObject({
  id: z.string().min(1).max(256),
  cluster: z.string().regex(CLUSTER_NAME),
  address: z.string().refine((a) => parseHostPort(a) !== null),
  connections: z.number().int().min(0),
  workers: z.number().int().min(1),
  eventLoopLagMs: z.number().min(0),
  draining: z.boolean(),
  updatedAt: z.number(),
});

/** Key of one proxy's record. */
export function recordKey(cluster: string, id: string): string {
  return `livemux:dispatch:{${cluster}}:proxy:${id}`;
}

/** Key of a cluster's index of proxy ids. */
export function indexKey(cluster: string): string {
  return `livemux:dispatch:{${cluster}}:proxies`;
}

export function encodeRecord(record: ProxyRecord): string {
  return JSON.stringify(record);
}

/** The record in `text`, or null when it is not one (another writer's garbage must not break dispatch). */
export function decodeRecord(text: string): ProxyRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = recordSchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}
