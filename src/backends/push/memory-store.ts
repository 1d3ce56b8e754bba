import { LivemuxError } from '../../protocol/errors.js';
import { MapEviction } from '../../util/map-eviction.js';
import { MapSweeper } from '../../util/map-sweeper.js';
import { TokenBucket } from '../../util/token-bucket.js';
import { ALL_TOPIC, type AckEntry, type Claim, type PushRecord, type PushStatus, type PushStore } from './store.js';

/** Options of the in-memory store; every one has a default. */
export interface MemoryPushStoreOptions {
  /** Devices not seen for this long are forgotten with their topics (default 30 days). */
  readonly deviceRetentionMs?: number;
  /** Most pushes one topic log keeps, newest first (default 1000). */
  readonly topicLogLength?: number;
  /**
   * Most push records kept (default 100,000): beyond it the oldest are forgotten first, before their
   * retention. Without a bound a node taking 10,000 calls/s would hold a day's worth of records.
   */
  readonly maxRecords?: number;
  /** The store's clock for claim, node and record lapses (default Date.now). */
  readonly now?: () => number;
}

interface StoredPush {
  record: PushRecord;
  forgetAtMs: number;
  /**
   * Devices that acknowledged it / whose copy was replaced: made on the first, since a push to users
   * (counted by the kit's ledger) never has either, and it is kept a day past its expiry.
   */
  acked: Set<string> | null;
  replaced: Set<string> | null;
}

interface Device {
  seenAtMs: number;
  /** topic → subscribed at (ms), ALL_TOPIC included. */
  topics: Map<string, number>;
}

/** Entries of each collection examined per write (see `sweep`). */
const SWEEP_STEP = 4;

export const PUSH_STORE_DEFAULTS = {
  deviceRetentionMs: 30 * 24 * 3600_000,
  topicLogLength: 1000,
  maxRecords: 100_000,
} as const;

/**
 * PushStore in this process: the embedded default of a single Push backend (see store.ts for the
 * guarantees). Expired records, claims, devices and topic log entries are forgotten lazily, a few
 * examined per write (MapSweeper: bounded work per call, whatever the store holds), so memory follows
 * what is live; nodes when counted.
 */
export class MemoryPushStore implements PushStore {
  private readonly pushes = new Map<string, StoredPush>();
  /** id → when its claim lapses. */
  private readonly claims = new Map<string, number>();
  private readonly devices = new Map<string, Device>();
  /** topic → subscribed devices (ALL_TOPIC: every device). */
  private readonly subscribers = new Map<string, Set<string>>();
  /** topic → pushes with a TTL, oldest first. */
  private readonly logs = new Map<string, PushRecord[]>();
  /** node → (topic → online devices), with when the node lapses. */
  private readonly nodes = new Map<string, { counts: Map<string, number>; proxies: readonly string[]; lapsesAtMs: number }>();
  private readonly listeners = new Map<string, (message: string) => void>();
  private readonly allowances = new Map<string, TokenBucket>();
  private readonly deviceRetentionMs: number;
  private readonly topicLogLength: number;
  private readonly maxRecords: number;
  private readonly now: () => number;
  /** The time of the write that runs the sweepers (one clock read per write). */
  private sweepNow = 0;
  private readonly sweepers = [
    new MapSweeper(this.pushes, (stored) => stored.forgetAtMs <= this.sweepNow),
    new MapSweeper(this.claims, (lapse) => lapse <= this.sweepNow),
    new MapSweeper(this.devices, (d, device) => {
      if (d.seenAtMs + this.deviceRetentionMs > this.sweepNow) return false;
      for (const topic of d.topics.keys()) this.dropSubscriber(topic, device);
      return true;
    }),
  ];
  /** One topic log per write: each may hold topicLogLength records. */
  private readonly logSweeper = new MapSweeper(this.logs, (log) => {
    const kept = log.filter((r) => r.expiresAtMs > this.sweepNow);
    if (kept.length < log.length) log.splice(0, log.length, ...kept);
    return log.length === 0;
  });
  /** The oldest records first, beyond maxRecords (the Map keeps insertion order). */
  private readonly eviction = new MapEviction(this.pushes);
  private closed = false;

  constructor(options: MemoryPushStoreOptions = {}) {
    this.deviceRetentionMs = options.deviceRetentionMs ?? PUSH_STORE_DEFAULTS.deviceRetentionMs;
    this.topicLogLength = options.topicLogLength ?? PUSH_STORE_DEFAULTS.topicLogLength;
    this.maxRecords = options.maxRecords ?? PUSH_STORE_DEFAULTS.maxRecords;
    if (!Number.isSafeInteger(this.maxRecords) || this.maxRecords < 1) throw new LivemuxError('ERR_INVALID_ARGUMENT', `push store maxRecords: expected a positive integer (${this.maxRecords})`);
    this.now = options.now ?? Date.now;
  }

  async claim(id: string, claimTtlMs: number): Promise<Claim> {
    this.check();
    const stored = this.live(id);
    if (stored !== undefined) return { kind: 'done', record: stored.record };
    const lapse = this.claims.get(id);
    if (lapse !== undefined && lapse > this.now()) return { kind: 'pending' };
    this.claims.set(id, this.now() + claimTtlMs);
    return { kind: 'claimed' };
  }

  async complete(record: PushRecord, retentionMs: number): Promise<void> {
    this.check();
    this.sweep();
    this.claims.delete(record.id);
    this.pushes.set(record.id, { record, forgetAtMs: record.expiresAtMs + retentionMs, acked: null, replaced: null });
    this.eviction.trim(this.maxRecords);
    if (record.audience !== 'users' && record.ttlS > 0) {
      let log = this.logs.get(record.topic);
      if (log === undefined) this.logs.set(record.topic, (log = []));
      log.push(record);
      if (log.length > this.topicLogLength) log.splice(0, log.length - this.topicLogLength);
    }
  }

  async release(id: string): Promise<void> {
    this.check();
    this.claims.delete(id);
  }

  async status(id: string): Promise<PushStatus | null> {
    this.check();
    const stored = this.live(id);
    return stored === undefined ? null : { record: stored.record, delivered: stored.acked?.size ?? 0, replaced: stored.replaced?.size ?? 0 };
  }

  async ack(entries: readonly AckEntry[]): Promise<number> {
    this.check();
    let counted = 0;
    // A batch is mostly one push's acks (a push to all: every device, in a few turns): its record is
    // looked up once per run of the same id, not once per device.
    let id = '';
    let push: StoredPush | undefined;
    for (const { id: entryId, device } of entries) {
      if (entryId !== id) {
        id = entryId;
        push = this.live(id);
      }
      if (push === undefined || !this.sentTo(push, device)) continue;
      push.acked ??= new Set();
      if (push.acked.has(device)) continue;
      push.acked.add(device);
      counted++;
    }
    return counted;
  }

  async markReplaced(ids: readonly string[], device: string): Promise<void> {
    this.check();
    for (const id of ids) {
      const stored = this.targeting(id, device);
      if (stored !== undefined) (stored.replaced ??= new Set()).add(device);
    }
  }

  async touchDevice(device: string, nowMs: number): Promise<Map<string, number>> {
    this.check();
    let d = this.devices.get(device);
    if (d === undefined || d.seenAtMs + this.deviceRetentionMs <= nowMs) {
      if (d !== undefined) this.forgetDevice(device, d);
      this.sweep();
      d = { seenAtMs: nowMs, topics: new Map([[ALL_TOPIC, nowMs]]) };
      this.devices.set(device, d);
      this.subscribersOf(ALL_TOPIC).add(device);
    }
    d.seenAtMs = nowMs;
    return new Map(d.topics);
  }

  async subscribe(device: string, topics: readonly string[], nowMs: number, maxTopics: number): Promise<string[] | null> {
    this.check();
    const d = await this.touchDevice(device, nowMs).then(() => this.devices.get(device)!);
    const added = [...new Set(topics)].filter((t) => !d.topics.has(t));
    if (d.topics.size - 1 + added.length > maxTopics) return null;
    for (const topic of added) {
      d.topics.set(topic, nowMs);
      this.subscribersOf(topic).add(device);
    }
    return topicList(d.topics);
  }

  async unsubscribe(device: string, topics: readonly string[]): Promise<string[]> {
    this.check();
    const d = this.devices.get(device);
    if (d === undefined) return [];
    for (const topic of topics) {
      if (topic === ALL_TOPIC || !d.topics.delete(topic)) continue;
      this.dropSubscriber(topic, device);
    }
    return topicList(d.topics);
  }

  async subscriberCount(topic: string): Promise<number> {
    this.check();
    const horizon = this.now() - this.deviceRetentionMs;
    let count = 0;
    for (const device of this.subscribers.get(topic) ?? []) if ((this.devices.get(device)?.seenAtMs ?? 0) > horizon) count++;
    return count;
  }

  async backlog(device: string, topics: ReadonlyMap<string, number>, nowMs: number): Promise<PushRecord[]> {
    this.check();
    const owed: PushRecord[] = [];
    for (const [topic, since] of topics) {
      for (const record of this.logs.get(topic) ?? []) {
        if (record.sentAtMs < since || record.expiresAtMs <= nowMs) continue;
        // A record dropped by maxRecords before its expiry is still owed (its acks are no longer counted,
        // and the SDK drops a copy the device already had): the count bound must not lose pushes.
        const stored = this.live(record.id);
        if (stored?.acked?.has(device) === true || stored?.replaced?.has(device) === true) continue;
        owed.push(record);
      }
    }
    return owed.sort((a, b) => a.sentAtMs - b.sentAtMs);
  }

  async setOnline(node: string, counts: ReadonlyMap<string, number>, nodeTtlMs: number): Promise<void> {
    this.check();
    const entry = this.liveNode(node);
    for (const [topic, count] of counts) {
      if (count > 0) entry.counts.set(topic, count);
      else entry.counts.delete(topic);
    }
    entry.lapsesAtMs = this.now() + nodeTtlMs;
  }

  async renewNode(node: string, nodeTtlMs: number): Promise<boolean> {
    this.check();
    const entry = this.nodes.get(node);
    if (entry === undefined || entry.lapsesAtMs <= this.now()) return false;
    entry.lapsesAtMs = this.now() + nodeTtlMs;
    return true;
  }

  async onlineCount(topic: string): Promise<number> {
    this.check();
    let count = 0;
    for (const [node, entry] of this.nodes) {
      if (entry.lapsesAtMs <= this.now()) this.nodes.delete(node);
      else count += entry.counts.get(topic) ?? 0;
    }
    return count;
  }

  async removeNode(node: string): Promise<void> {
    this.check();
    this.nodes.delete(node);
  }

  async setProxies(node: string, proxies: readonly string[], nodeTtlMs: number): Promise<void> {
    this.check();
    const entry = this.liveNode(node);
    entry.proxies = [...proxies];
    entry.lapsesAtMs = this.now() + nodeTtlMs;
  }

  async proxyNodes(): Promise<Map<string, string[]>> {
    this.check();
    const out = new Map<string, string[]>();
    for (const [node, entry] of [...this.nodes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (entry.lapsesAtMs <= this.now()) continue;
      for (const proxy of entry.proxies) out.set(proxy, [...(out.get(proxy) ?? []), node]);
    }
    return out;
  }

  async forward(node: string, message: string): Promise<void> {
    this.check();
    const listener = this.listeners.get(node);
    // Asynchronous, as across processes: the caller never runs the listener's work inline.
    if (listener !== undefined) setImmediate(() => listener(message));
  }

  async listen(node: string, onMessage: (message: string) => void): Promise<void> {
    this.check();
    this.listeners.set(node, onMessage);
  }

  async takeCall(keyName: string, rate: number, burst: number): Promise<number> {
    this.check();
    let bucket = this.allowances.get(keyName);
    if (bucket === undefined || bucket.ratePerSecond !== rate || bucket.burst !== burst) this.allowances.set(keyName, (bucket = new TokenBucket(rate, burst)));
    return bucket.take() ? 0 : Math.ceil(1000 / rate);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
  }

  private check(): void {
    if (this.closed) throw new LivemuxError('ERR_STORE_CLOSED', 'push store: closed');
  }

  /** The push under `id` unless it is past its retention (then it is forgotten now). */
  private live(id: string): StoredPush | undefined {
    const stored = this.pushes.get(id);
    if (stored !== undefined && stored.forgetAtMs <= this.now()) {
      this.pushes.delete(id);
      return undefined;
    }
    return stored;
  }

  /** The topic push `id` if `device` was subscribed to its topic when it was sent (it was sent to it). */
  private targeting(id: string, device: string): StoredPush | undefined {
    const stored = this.live(id);
    return stored !== undefined && this.sentTo(stored, device) ? stored : undefined;
  }

  /** Whether topic push `stored` was sent to `device` (subscribed to its topic when it was sent). */
  private sentTo(stored: StoredPush, device: string): boolean {
    if (stored.record.topic === '') return false;
    const since = this.devices.get(device)?.topics.get(stored.record.topic);
    return since !== undefined && since <= stored.record.sentAtMs;
  }

  /** The node's entry, fresh (no counts, no proxies) when it had lapsed. */
  private liveNode(node: string): { counts: Map<string, number>; proxies: readonly string[]; lapsesAtMs: number } {
    let entry = this.nodes.get(node);
    if (entry === undefined || entry.lapsesAtMs <= this.now()) this.nodes.set(node, (entry = { counts: new Map(), proxies: [], lapsesAtMs: 0 }));
    return entry;
  }

  private subscribersOf(topic: string): Set<string> {
    let set = this.subscribers.get(topic);
    if (set === undefined) this.subscribers.set(topic, (set = new Set()));
    return set;
  }

  private dropSubscriber(topic: string, device: string): void {
    const set = this.subscribers.get(topic);
    if (set !== undefined && set.delete(device) && set.size === 0) this.subscribers.delete(topic);
  }

  private forgetDevice(device: string, d: Device): void {
    this.devices.delete(device);
    for (const topic of d.topics.keys()) this.dropSubscriber(topic, device);
  }

  /**
   * Before each write (so that a write never sweeps what it adds, whatever clock its caller keeps),
   * examines the next few entries of each collection and forgets the dead ones: a write adds at most
   * one entry to each, so SWEEP_STEP > 1 keeps up with any write rate, and the work per call stays
   * bounded (one topic log per write: a log is at most topicLogLength records).
   */
  private sweep(): void {
    this.sweepNow = this.now();
    for (const sweeper of this.sweepers) sweeper.step(SWEEP_STEP);
    this.logSweeper.step(1);
  }
}

/** A device's topics as a sorted list without ALL_TOPIC. */
function topicList(topics: ReadonlyMap<string, number>): string[] {
  return [...topics.keys()].filter((t) => t !== ALL_TOPIC).sort();
}
