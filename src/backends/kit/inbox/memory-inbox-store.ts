import { performance } from 'node:perf_hooks';
import { Deque } from '../../../util/deque.js';
import { MapEviction } from '../../../util/map-eviction.js';
import {
  checkAppend,
  checkId,
  checkInteger,
  checkReadLimit,
  inboxClosed,
  type CheckedAppend,
  resolveInboxOptions,
  type ResolvedInboxOptions,
} from './inbox-checks.js';
import type {
  AppendRequest,
  AppendResult,
  DeviceCursor,
  InboxEntry,
  InboxListener,
  InboxNotice,
  InboxPage,
  InboxStore,
  InboxStoreOptions,
  InboxWatch,
} from './inbox-store.js';

/** Everything the store holds about one user. */
class UserInbox {
  seq = 0;
  readonly log = new Deque<InboxEntry>();
  /** Collapse key → the newest retained entry with it. */
  readonly collapse = new Map<string, InboxEntry>();
  /** Dedupe key → the entry's seq and time, and when the key is forgotten (performance.now() ms); insertion = expiry order. */
  readonly dedupe = new Map<string, { seq: number; createdAtMs: number; forgetAt: number }>();
  /** Forgets dedupe keys oldest first: past their time, or beyond the count bound. */
  readonly dedupeEviction = new MapEviction(this.dedupe);
  readonly devices = new Map<string, { cursor: number; ackedAtMs: number }>();
}

/**
 * InboxStore in this process: the embedded default, for one backend process. Retention is exact (no
 * slack); dedupe keys are forgotten by this process's monotonic clock, and beyond `maxEntries` of them
 * per user (the oldest first: memory stays bounded whatever the rate); watchers are told in a
 * microtask after the append, in append order.
 */
export class MemoryInboxStore implements InboxStore {
  private readonly users = new Map<string, UserInbox>();
  private readonly watchers = new Map<string, Set<InboxListener>>();
  private readonly options: ResolvedInboxOptions;
  private closed = false;

  constructor(options: InboxStoreOptions = {}) {
    this.options = resolveInboxOptions(options);
  }

  async append(user: string, request: AppendRequest, nowMs: number): Promise<AppendResult> {
    this.ensureOpen('append');
    checkId('append user', user);
    const req = checkAppend(request, nowMs);
    const inbox = this.inbox(user, true)!;
    const now = performance.now();
    this.forgetDedupe(inbox, now);
    if (req.dedupeKey !== '') {
      const seen = inbox.dedupe.get(req.dedupeKey);
      if (seen !== undefined) return { entry: entryOf(seen.seq, seen.createdAtMs, req.body, req), duplicate: true, superseded: null };
    }
    // Built field by field, not spread from a common object: this runs for every message and push stored.
    const entry = entryOf(++inbox.seq, nowMs, owned(req.body), req);
    inbox.log.push(entry);
    let superseded: AppendResult['superseded'] = null;
    if (entry.collapseKey !== '') {
      const old = inbox.collapse.get(entry.collapseKey);
      if (old !== undefined) superseded = { seq: old.seq, ref: old.ref };
      inbox.collapse.set(entry.collapseKey, entry);
    }
    if (req.dedupeKey !== '') {
      inbox.dedupe.set(req.dedupeKey, { seq: entry.seq, createdAtMs: nowMs, forgetAt: now + this.options.dedupeTtlMs });
      // A key per append, kept a day: without a count bound a user sent thousands a second would keep
      // them all. As many as the log keeps entries: a retry older than that is a retry of the forgotten.
      inbox.dedupeEviction.trim(this.options.retention.maxEntries);
    }
    this.trim(inbox, nowMs);
    this.notify(user, { kind: 'entry', entry });
    return { entry, duplicate: false, superseded };
  }

  async read(user: string, afterSeq: number, limit: number, nowMs: number): Promise<InboxPage> {
    this.ensureOpen('read');
    checkId('read user', user);
    checkInteger('read afterSeq', afterSeq, 0);
    const count = checkReadLimit(limit);
    checkInteger('read nowMs', nowMs, 0);
    const inbox = this.inbox(user, false);
    if (inbox === undefined) return { entries: [], throughSeq: afterSeq, gap: null, lastSeq: 0 };
    const oldest = inbox.log.peek()?.seq ?? inbox.seq + 1;
    const gap = afterSeq < inbox.seq && oldest > afterSeq + 1 ? { fromSeq: afterSeq + 1, toSeq: oldest - 1 } : null;
    const start = inbox.log.lowerBound(afterSeq, (e) => e.seq);
    const examined = inbox.log.slice(start, start + count);
    const entries = examined.filter((e) => deliverable(inbox, e, nowMs));
    return { entries, throughSeq: examined.at(-1)?.seq ?? afterSeq, gap, lastSeq: inbox.seq };
  }

  async lastSeq(user: string): Promise<number> {
    this.ensureOpen('lastSeq');
    checkId('lastSeq user', user);
    return this.inbox(user, false)?.seq ?? 0;
  }

  async ack(user: string, device: string, seq: number, nowMs: number): Promise<number> {
    this.ensureOpen('ack');
    checkId('ack user', user);
    checkId('ack device', device);
    checkInteger('ack seq', seq, 0);
    checkInteger('ack nowMs', nowMs, 0);
    const inbox = this.inbox(user, true)!;
    let state = inbox.devices.get(device);
    if (state === undefined) {
      if (inbox.devices.size >= this.options.maxDevices) evictLeastRecent(inbox.devices);
      inbox.devices.set(device, (state = { cursor: 0, ackedAtMs: nowMs }));
    }
    state.cursor = Math.max(state.cursor, Math.min(seq, inbox.seq));
    state.ackedAtMs = nowMs;
    return state.cursor;
  }

  async cursor(user: string, device: string): Promise<number | null> {
    this.ensureOpen('cursor');
    checkId('cursor user', user);
    checkId('cursor device', device);
    return this.inbox(user, false)?.devices.get(device)?.cursor ?? null;
  }

  async devices(user: string): Promise<DeviceCursor[]> {
    this.ensureOpen('devices');
    checkId('devices user', user);
    return [...(this.inbox(user, false)?.devices ?? [])].map(([device, s]) => ({ device, cursor: s.cursor, ackedAtMs: s.ackedAtMs }));
  }

  async forgetDevice(user: string, device: string): Promise<void> {
    this.ensureOpen('forgetDevice');
    checkId('forgetDevice user', user);
    checkId('forgetDevice device', device);
    this.inbox(user, false)?.devices.delete(device);
  }

  async publish(user: string, payload: Buffer): Promise<void> {
    this.ensureOpen('publish');
    checkId('publish user', user);
    this.notify(user, { kind: 'transient', payload });
  }

  watch(user: string, listener: InboxListener): InboxWatch {
    this.ensureOpen('watch');
    checkId('watch user', user);
    let set = this.watchers.get(user);
    if (set === undefined) this.watchers.set(user, (set = new Set()));
    // A listener registered twice would be told twice; wrap it so each watch is its own registration.
    const registration: InboxListener = (notice) => listener(notice);
    set.add(registration);
    return {
      ready: Promise.resolve(),
      close: () => {
        const current = this.watchers.get(user);
        if (current?.delete(registration) && current.size === 0) this.watchers.delete(user);
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
  }

  private inbox(user: string, create: boolean): UserInbox | undefined {
    let inbox = this.users.get(user);
    if (inbox === undefined && create) this.users.set(user, (inbox = new UserInbox()));
    return inbox;
  }

  /** Removes the oldest entries beyond the count bound, then those older than the age bound (never the newest). */
  private trim(inbox: UserInbox, nowMs: number): void {
    const { maxEntries, maxAgeMs } = this.options.retention;
    const cutoff = nowMs - maxAgeMs;
    for (let head = inbox.log.peek(); head !== undefined && inbox.log.length > 1; head = inbox.log.peek()) {
      if (inbox.log.length <= maxEntries && head.createdAtMs >= cutoff) break;
      inbox.log.shift();
      if (head.collapseKey !== '' && inbox.collapse.get(head.collapseKey) === head) inbox.collapse.delete(head.collapseKey);
    }
  }

  private forgetDedupe(inbox: UserInbox, now: number): void {
    inbox.dedupeEviction.trim(Number.POSITIVE_INFINITY, (seen) => seen.forgetAt <= now);
  }

  private notify(user: string, notice: InboxNotice): void {
    const set = this.watchers.get(user);
    if (set === undefined || set.size === 0) return;
    const listeners = [...set];
    queueMicrotask(() => {
      // A watch closed meanwhile hears nothing more.
      for (const listener of listeners) if (set.has(listener)) listener(notice);
    });
  }

  private ensureOpen(method: string): void {
    if (this.closed) throw inboxClosed(method);
  }
}

function entryOf(seq: number, createdAtMs: number, body: Buffer, req: CheckedAppend): InboxEntry {
  return { seq, createdAtMs, body, ref: req.ref, collapseKey: req.collapseKey, expiresAtMs: req.expiresAtMs, origin: req.origin };
}

function deliverable(inbox: UserInbox, entry: InboxEntry, nowMs: number): boolean {
  if (entry.expiresAtMs !== 0 && entry.expiresAtMs <= nowMs) return false;
  return entry.collapseKey === '' || inbox.collapse.get(entry.collapseKey) === entry;
}

function evictLeastRecent(devices: Map<string, { ackedAtMs: number }>): void {
  let oldest: string | undefined;
  let oldestAt = Number.POSITIVE_INFINITY;
  for (const [device, state] of devices) {
    if (state.ackedAtMs < oldestAt) {
      oldest = device;
      oldestAt = state.ackedAtMs;
    }
  }
  if (oldest !== undefined) devices.delete(oldest);
}

/**
 * `body` in memory of its own: the store keeps it until retention drops it, and a slice of a larger
 * buffer (Node's shared 8 KiB pool, a received frame) would keep all of that alive. A buffer that is
 * its whole memory already (e.g. IM's inboxMessageBody, appended to two inboxes) is kept as it is.
 */
function owned(body: Buffer): Buffer {
  if (body.byteOffset === 0 && body.byteLength === body.buffer.byteLength) return body;
  const copy = Buffer.allocUnsafeSlow(body.length);
  body.copy(copy);
  return copy;
}
