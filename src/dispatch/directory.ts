import type { Redis } from 'ioredis';
import { type ProxyRecord, decodeRecord, indexKey, recordKey } from './proxy-record.js';

/** A cluster's records as read at one time, with what was handed out since. */
export interface ClusterSnapshot {
  readonly records: readonly ProxyRecord[];
  /** Connections handed to each proxy id since the read (see RankOptions.assigned). */
  readonly assigned: Map<string, number>;
}

/** Most clusters whose snapshots are kept; clusters are named by clients, so the cache is bounded. */
const MAX_CACHED_CLUSTERS = 1024;
/** Most proxies read for one cluster. */
const MAX_PROXIES = 10_000;

/**
 * The dispatcher's view of the registrations in Redis. A cluster is read at most once per `refreshMs`
 * (callers in between share the snapshot, and concurrent callers share one read), so a reconnect storm
 * of clients costs Redis one read per cluster per interval. Ids whose record has expired are pruned
 * from the index as they are found.
 */
export class ProxyDirectory {
  private readonly cache = new Map<string, { snapshot: ClusterSnapshot; readAt: number }>();
  private readonly reads = new Map<string, Promise<ClusterSnapshot>>();
  /** Records that were not valid ProxyRecords (another writer's data), skipped. */
  malformed = 0;

  constructor(
    private readonly redis: Redis,
    private readonly refreshMs: number,
  ) {}

  /** The cluster's live records (draining ones included; ranking leaves them out). */
  async snapshot(cluster: string): Promise<ClusterSnapshot> {
    const cached = this.cache.get(cluster);
    if (cached && performance.now() - cached.readAt < this.refreshMs) return cached.snapshot;
    let read = this.reads.get(cluster);
    if (!read) {
      read = this.read(cluster).finally(() => this.reads.delete(cluster));
      this.reads.set(cluster, read);
    }
    return read;
  }

  private async read(cluster: string): Promise<ClusterSnapshot> {
    const ids = await this.redis.zrange(indexKey(cluster), '0', String(MAX_PROXIES - 1));
    const texts = ids.length > 0 ? await this.redis.mget(ids.map((id) => recordKey(cluster, id))) : [];
    const records: ProxyRecord[] = [];
    const expired: string[] = [];
    texts.forEach((text, i) => {
      if (text === null) return void expired.push(ids[i]!);
      const record = decodeRecord(text);
      if (record && record.id === ids[i] && record.cluster === cluster) records.push(record);
      else this.malformed++;
    });
    if (expired.length > 0) await this.redis.zrem(indexKey(cluster), ...expired);
    const snapshot: ClusterSnapshot = { records, assigned: new Map() };
    // Unknown clusters are not cached: clients name them, and only real ones deserve memory.
    if (records.length > 0) {
      this.cache.delete(cluster);
      if (this.cache.size >= MAX_CACHED_CLUSTERS) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(cluster, { snapshot, readAt: performance.now() });
    }
    return snapshot;
  }
}
