import type { Redis } from 'ioredis';
import { RedisHandle, quit, type RedisConnectionOptions } from '../redis/redis-handle.js';
import {
  checkAppend,
  checkId,
  checkInteger,
  checkReadLimit,
  inboxClosed,
  resolveInboxOptions,
  type CheckedAppend,
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
import { ACK, APPEND, READ } from './redis-inbox-scripts.js';

export interface RedisInboxStoreOptions extends RedisConnectionOptions, InboxStoreOptions {
  /** Prepended to every key and channel (default `livemux:inbox:`), so several deployments or businesses share one Redis. */
  readonly keyPrefix?: string;
}

type Part = 'seq' | 'log' | 'collapse' | 'devices' | 'notify' | 'oldest';

/** The users watched on this process: their channel, listeners, and the SUBSCRIBE that makes them ready. */
interface Watched {
  readonly listeners: Set<InboxListener>;
  ready: Promise<void>;
}

/**
 * InboxStore on Redis (6.2 or later), so any backend process appends to any user and reaches that
 * user's devices wherever their sessions are. Per user, under `<prefix>{<user>}:`:
 *
 * | key            | type   | holds |
 * |----------------|--------|-------|
 * | seq            | string | last seq (INCR); never expires, so a user's seq never restarts |
 * | log            | stream | entries, ID `<seq>-0`, fields t x r k b o (see redis-inbox-scripts.ts) |
 * | collapse       | hash   | collapse key → `<seq> <ref>` of its newest entry |
 * | devices        | hash   | device → `<cursor> <ackedAtMs>` |
 * | dedupe:<key>   | string | `<seq> <createdAtMs>` with PX = dedupeTtlMs |
 * | oldest         | string | a lower bound of the oldest entry's createdAtMs, so most appends skip the age check |
 *
 * Notices travel by Redis pub/sub on the channel `<prefix>{<user>}:notify`, published by the append
 * script itself (so they leave in seq order, atomically with the append). Why pub/sub and not a
 * blocking XREAD on the log: a node follows only the users with a device on it, which changes with
 * every session; SUBSCRIBE/UNSUBSCRIBE on one connection follow that cheaply, while XREAD BLOCK takes
 * its key list per call and would be re-issued at every change. Pub/sub is at-most-once, so the log is
 * the truth: a lost notice is followed by a `resync` (the subscriber connection came back), and the
 * reader's seq order shows any hole. The subscriber connection is this store's own (a duplicate of the
 * main one), opened at the first `watch`.
 */
export class RedisInboxStore implements InboxStore {
  private readonly handle: RedisHandle;
  private readonly prefix: string;
  private readonly options: ResolvedInboxOptions;
  private readonly onError: ((err: Error) => void) | undefined;
  private subscriber: Redis | null = null;
  /** By channel name. */
  private readonly watched = new Map<string, Watched>();

  constructor(options: RedisInboxStoreOptions = {}) {
    this.prefix = options.keyPrefix ?? 'livemux:inbox:';
    this.options = resolveInboxOptions(options);
    this.handle = new RedisHandle(options, inboxClosed);
    this.onError = options.onError;
  }

  private get redis(): Redis {
    return this.handle.redis;
  }

  async append(user: string, request: AppendRequest, nowMs: number): Promise<AppendResult> {
    this.handle.ensureOpen('append');
    const call = this.appendCall(user, request, nowMs);
    return appendResult(await this.handle.io(APPEND.run(this.redis, call.keys, call.args)), call.request, nowMs);
  }

  /**
   * What a backend script that appends atomically with its own writes (INBOX_APPEND_LUA's
   * `inbox_append` on INBOX_KEYS_LUA's keys) needs besides the entries: this store's key prefix and
   * retention. The IM send takes its users' keys from here, not from `appendCall`: names built by the
   * script cost the client no argument per key.
   */
  get scriptSettings(): { readonly keyPrefix: string; readonly maxEntries: number; readonly maxAgeMs: number } {
    return { keyPrefix: this.prefix, ...this.options.retention };
  }

  /**
   * The KEYS and ARGV of one append as INBOX_APPEND_LUA's `inbox_append` takes them (5 keys, 11
   * arguments), for a script that appends atomically with its own writes on the same Redis. Checks
   * the arguments as `append` does. `appendResult` reads that function's reply.
   */
  appendCall(user: string, request: AppendRequest, nowMs: number): { keys: string[]; args: (string | number | Buffer)[]; request: CheckedAppend } {
    checkId('append user', user);
    const req = checkAppend(request, nowMs);
    const { maxEntries, maxAgeMs } = this.options.retention;
    const cutoff = maxAgeMs === Number.POSITIVE_INFINITY ? '' : String(nowMs - maxAgeMs);
    return {
      keys: [this.key(user, 'seq'), this.key(user, 'log'), this.key(user, 'collapse'), `${this.userPrefix(user)}dedupe:${req.dedupeKey}`, this.key(user, 'oldest')],
      args: [
        maxEntries,
        cutoff,
        nowMs,
        req.expiresAtMs,
        req.ref,
        req.collapseKey,
        req.body,
        this.options.dedupeTtlMs,
        this.key(user, 'notify'),
        req.dedupeKey === '' ? '' : '1',
        req.origin,
      ],
      request: req,
    };
  }

  async read(user: string, afterSeq: number, limit: number, nowMs: number): Promise<InboxPage> {
    this.handle.ensureOpen('read');
    checkId('read user', user);
    checkInteger('read afterSeq', afterSeq, 0);
    const count = checkReadLimit(limit);
    checkInteger('read nowMs', nowMs, 0);
    const keys = [this.key(user, 'seq'), this.key(user, 'log'), this.key(user, 'collapse')];
    const reply = (await this.handle.io(READ.runBuffer(this.redis, keys, [afterSeq, count, nowMs]))) as [number, number, number, ...ReadEntry[]];
    const [lastSeq, oldest, throughSeq] = reply;
    const gap = afterSeq < lastSeq && oldest > afterSeq + 1 ? { fromSeq: afterSeq + 1, toSeq: oldest - 1 } : null;
    const entries: InboxEntry[] = [];
    for (let i = 3; i < reply.length; i++) entries.push(toEntry(reply[i] as ReadEntry));
    return { entries, throughSeq, gap, lastSeq };
  }

  async lastSeq(user: string): Promise<number> {
    this.handle.ensureOpen('lastSeq');
    checkId('lastSeq user', user);
    return Number((await this.handle.io(this.redis.get(this.key(user, 'seq')))) ?? 0);
  }

  async ack(user: string, device: string, seq: number, nowMs: number): Promise<number> {
    this.handle.ensureOpen('ack');
    checkId('ack user', user);
    checkId('ack device', device);
    checkInteger('ack seq', seq, 0);
    checkInteger('ack nowMs', nowMs, 0);
    const keys = [this.key(user, 'devices'), this.key(user, 'seq')];
    return (await this.handle.io(ACK.run(this.redis, keys, [device, seq, nowMs, this.options.maxDevices]))) as number;
  }

  async cursor(user: string, device: string): Promise<number | null> {
    this.handle.ensureOpen('cursor');
    checkId('cursor user', user);
    checkId('cursor device', device);
    const record = await this.handle.io(this.redis.hget(this.key(user, 'devices'), device));
    return record === null ? null : parseDevice(device, record).cursor;
  }

  async devices(user: string): Promise<DeviceCursor[]> {
    this.handle.ensureOpen('devices');
    checkId('devices user', user);
    const records = await this.handle.io(this.redis.hgetall(this.key(user, 'devices')));
    return Object.entries(records).map(([device, record]) => parseDevice(device, record));
  }

  async forgetDevice(user: string, device: string): Promise<void> {
    this.handle.ensureOpen('forgetDevice');
    checkId('forgetDevice user', user);
    checkId('forgetDevice device', device);
    await this.handle.io(this.redis.hdel(this.key(user, 'devices'), device));
  }

  async publish(user: string, payload: Buffer): Promise<void> {
    this.handle.ensureOpen('publish');
    checkId('publish user', user);
    await this.handle.io(this.redis.publish(this.key(user, 'notify'), Buffer.concat([TRANSIENT, payload])));
  }

  watch(user: string, listener: InboxListener): InboxWatch {
    this.handle.ensureOpen('watch');
    checkId('watch user', user);
    const channel = this.key(user, 'notify');
    let entry = this.watched.get(channel);
    if (entry === undefined) {
      const created: Watched = { listeners: new Set(), ready: Promise.resolve() };
      created.ready = this.subscribe(channel).catch((err: unknown) => {
        // The next watch of the user tries again; these watchers learn it from `ready`.
        if (this.watched.get(channel) === created) this.watched.delete(channel);
        throw err;
      });
      this.watched.set(channel, (entry = created));
    }
    const watched = entry;
    const registration: InboxListener = (notice) => listener(notice);
    watched.listeners.add(registration);
    return {
      ready: watched.ready,
      close: () => {
        if (!watched.listeners.delete(registration) || watched.listeners.size > 0) return;
        if (this.watched.get(channel) !== watched) return;
        this.watched.delete(channel);
        // Commands on one connection run in order: a later SUBSCRIBE of the same channel wins.
        if (this.subscriber !== null && !this.handle.closed) this.subscriber.unsubscribe(channel).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    if (this.handle.closed) return;
    const subscriber = this.subscriber;
    this.subscriber = null;
    this.watched.clear();
    await Promise.all([this.handle.close(), subscriber === null ? undefined : quit(subscriber)]);
  }

  /** SUBSCRIBEs `channel` on the subscriber connection (opened on first use); resolves once the server confirmed. */
  private async subscribe(channel: string): Promise<void> {
    const subscriber = (this.subscriber ??= this.openSubscriber());
    await this.handle.io(subscriber.subscribe(channel));
  }

  private openSubscriber(): Redis {
    const subscriber = this.redis.duplicate();
    if (this.onError) subscriber.on('error', this.onError);
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel.toString(), message));
    let connectedBefore = false;
    subscriber.on('ready', () => {
      if (!connectedBefore) {
        connectedBefore = true;
        return;
      }
      // Reconnected: ioredis subscribes again by itself; once the server confirmed (a SUBSCRIBE of the
      // same channels is idempotent and answered in order), tell every watcher to read what it missed.
      const channels = [...this.watched.keys()];
      if (channels.length === 0) return;
      subscriber.subscribe(...channels).then(
        () => {
          for (const channel of channels) this.dispatch(channel, { kind: 'resync' });
        },
        () => undefined,
      );
    });
    return subscriber;
  }

  private onMessage(channel: string, message: Buffer): void {
    const notice = decodeNotice(message);
    if (notice !== null) this.dispatch(channel, notice);
  }

  private dispatch(channel: string, notice: InboxNotice): void {
    const watched = this.watched.get(channel);
    if (watched === undefined) return;
    for (const listener of [...watched.listeners]) listener(notice);
  }

  private userPrefix(user: string): string {
    return `${this.prefix}{${user}}:`;
  }

  private key(user: string, part: Part): string {
    return `${this.userPrefix(user)}${part}`;
  }
}

/** An AppendResult from `inbox_append`'s reply (see APPEND) for the checked request it ran. */
export function appendResult(reply: unknown, req: CheckedAppend, nowMs: number): AppendResult {
  const [duplicate, seq, extra] = reply as [0 | 1, number, (number | string)?];
  const fields = { body: req.body, ref: req.ref, collapseKey: req.collapseKey, expiresAtMs: req.expiresAtMs, origin: req.origin };
  if (duplicate === 1) return { entry: { seq, createdAtMs: extra as number, ...fields }, duplicate: true, superseded: null };
  const old = extra as string | undefined;
  const space = old?.indexOf(' ') ?? -1;
  const superseded = old === undefined ? null : { seq: Number(old.slice(0, space)), ref: old.slice(space + 1) };
  return { entry: { seq, createdAtMs: nowMs, ...fields }, duplicate: false, superseded };
}

type ReadEntry = [seq: number, createdAt: Buffer, expiresAt: Buffer, ref: Buffer, collapseKey: Buffer, body: Buffer, origin: Buffer];

function toEntry([seq, createdAt, expiresAt, ref, collapseKey, body, origin]: ReadEntry): InboxEntry {
  return {
    seq,
    createdAtMs: Number(createdAt.toString()),
    expiresAtMs: Number(expiresAt.toString()),
    ref: ref.toString(),
    collapseKey: collapseKey.toString(),
    body,
    origin: origin.toString(),
  };
}

function parseDevice(device: string, record: string): DeviceCursor {
  const space = record.indexOf(' ');
  return { device, cursor: Number(record.slice(0, space)), ackedAtMs: Number(record.slice(space + 1)) };
}

const TRANSIENT = Buffer.from('t');
const ENTRY_TAG = 0x65; // 'e'
const TRANSIENT_TAG = 0x74; // 't'
const NEWLINE = 0x0a;
const SPACE = 0x20;
/** Digits of the longest number a notice header may hold (a safe integer has at most 16). */
const MAX_DIGITS = 16;
/** decodeNotice's header numbers, parsed in place: a notice arrives per entry, often two per message. */
const header = [0, 0, 0, 0, 0, 0];

/**
 * A notice as the append script publishes it: `e<seq> <createdAt> <expiresAt> <refLen> <keyLen>
 * <originLen>\n` then ref, key, origin and body bytes; or `t` then a transient payload. Anything else
 * (another writer on the channel) is ignored. The header's numbers are read from the bytes, without
 * making strings of them.
 */
function decodeNotice(message: Buffer): InboxNotice | null {
  if (message[0] === TRANSIENT_TAG) return { kind: 'transient', payload: message.subarray(1) };
  if (message[0] !== ENTRY_TAG) return null;
  let at = 1;
  for (let i = 0; i < header.length; i++) {
    const start = at;
    let value = 0;
    for (let c = message[at]; c !== undefined && c >= 0x30 && c <= 0x39; c = message[++at]) value = value * 10 + (c - 0x30);
    if (at === start || at - start > MAX_DIGITS || !Number.isSafeInteger(value) || message[at] !== (i === header.length - 1 ? NEWLINE : SPACE)) return null;
    header[i] = value;
    at++;
  }
  const [seq, createdAtMs, expiresAtMs, refLength, keyLength, originLength] = header as [number, number, number, number, number, number];
  const refEnd = at + refLength;
  const keyEnd = refEnd + keyLength;
  const originEnd = keyEnd + originLength;
  if (originEnd > message.length) return null;
  return {
    kind: 'entry',
    entry: {
      seq,
      createdAtMs,
      expiresAtMs,
      ref: refLength === 0 ? '' : message.toString('utf8', at, refEnd),
      collapseKey: keyLength === 0 ? '' : message.toString('utf8', refEnd, keyEnd),
      origin: originLength === 0 ? '' : message.toString('utf8', keyEnd, originEnd),
      body: message.subarray(originEnd),
    },
  };
}
