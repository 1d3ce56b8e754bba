/**
 * Prometheus metrics of one Chat backend (issue 4: every drop counted by reason and priority), in their
 * own registry like the proxy's (src/observability/metrics.ts), with the `livemux_chat_` prefix.
 *
 * One source of truth per number: message counters are the engine's `ChatStats`, copied into the
 * Prometheus counters only when scraped (nothing per message beyond the engine's own increment); rooms
 * and members online are read from the live rooms when scraped; the counters below that code increments
 * (history trims and gaps, presence expiries, moderation outcomes) have no other counting path.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../../observability/process-metrics.js';
import { PRIORITY_NAMES, type Priority } from '../../protocol/constants.js';
import { ModerateAction } from './chat-codec.js';
import type { ChatStats } from './chat-engine.js';
import type { Room } from './room.js';
import type { AttributeChange, ChatStore, HistoryLimits, LeaseGrant, Member, Page, StoredMessage } from './store.js';

/** What the scrape-time metrics read: the engine's counters and the rooms this process owns. */
export interface ChatMetricsSource {
  readonly stats: Readonly<ChatStats>;
  readonly rooms: ReadonlyMap<string, Room>;
}

/** Options of createChatMetrics. */
export interface ChatMetricsOptions {
  /** Also export Node process metrics (`livemux_chat_process_*`, `livemux_chat_nodejs_*`); default false. */
  readonly processMetrics?: boolean;
}

/**
 * The metrics of one Chat backend. Label values are bounded: priority names, drop reasons, moderation
 * action names, lease refusal reasons, and results (`ok` or a ChatErrorCode in lower case).
 *
 * Scrape-time views (not incremented by callers):
 * - livemux_chat_messages_accepted_total{priority}: room messages accepted (given a seq);
 * - livemux_chat_messages_dropped_total{reason,priority}: sends that did not become room messages, by
 *   DropReason: not_joined, too_large, system_denied (a member asking for system priority), user_rate,
 *   word (sensitive-word filter in reject mode), room_rate (upstream room limit), buffer_full (dropped
 *   from, or refused by, the room's full buffer), muted or not_owner (NOT_OWNER: no write lease);
 * - livemux_chat_messages_buffered{priority}: accepted messages waiting for a seq, summed over rooms;
 * - livemux_chat_messages_masked_total: messages accepted with sensitive words masked;
 * - livemux_chat_rooms: rooms held by this process (an empty one until its idle TTL drops it);
 * - livemux_chat_members_online: distinct users joined, summed over those rooms;
 * - livemux_chat_sessions_joined: joined chat sessions (a user may have several).
 */
export interface ChatMetrics {
  readonly registry: Registry;
  /** livemux_chat_history_trimmed_total: stored messages trimmed from room histories (length or age bound). */
  readonly historyTrimmed: Counter;
  /**
   * livemux_chat_history_gaps_total: history reads (recovery on join, or a history request) that found
   * messages after the reader's seq already trimmed, i.e. a gap the client is told about.
   */
  readonly historyGaps: Counter;
  /**
   * livemux_chat_presence_expired_total: members dropped from rooms because the presence they were
   * held under expired (their proxy died, or their owner died and their session never came back).
   */
  readonly presenceExpired: Counter;
  /** livemux_chat_moderation_actions_total{action,result}: moderate requests by action and result. */
  readonly moderationActions: Counter<'action' | 'result'>;
  /** livemux_chat_request_failures_total{kind}: requests answered INTERNAL (store unreachable, a bug). */
  readonly requestFailures: Counter<'kind'>;
  /**
   * livemux_chat_lease_refusals_total{reason}: writes answered NOT_OWNER because another backend held
   * the room's lease (`held`) or the store refused this backend's token as stale (`stale`).
   */
  readonly leaseRefusals: Counter<'reason'>;
}

/** Lower-case names of ModerateAction values, for the `action` label; unknown values are `unknown`. */
const ACTION_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ModerateAction).map(([name, value]) => [value, name.toLowerCase()]),
);

/** The `action` label of a ModerateRequest.action. */
export function moderationActionName(action: number): string {
  return ACTION_NAMES[action] ?? 'unknown';
}

export function createChatMetrics(source: ChatMetricsSource, options: ChatMetricsOptions = {}): ChatMetrics {
  const registry = new Registry();
  if (options.processMetrics === true) collectProcessMetrics(registry, 'livemux_chat_');
  const registers = [registry];
  const priorities = PRIORITY_NAMES;

  const accepted: Counter<'priority'> = new Counter({
    name: 'livemux_chat_messages_accepted_total',
    help: 'Room messages accepted (given a sequence number), by priority.',
    labelNames: ['priority'],
    registers,
    collect() {
      accepted.reset();
      for (const priority of priorities) accepted.inc({ priority }, source.stats.accepted[priority]);
    },
  });
  const dropped: Counter<'reason' | 'priority'> = new Counter({
    name: 'livemux_chat_messages_dropped_total',
    help: 'Sends that did not become room messages, by reason (not_joined, too_large, system_denied, user_rate, word, room_rate, buffer_full, muted, not_owner) and priority.',
    labelNames: ['reason', 'priority'],
    registers,
    collect() {
      dropped.reset();
      for (const [reason, byPriority] of Object.entries(source.stats.dropped)) {
        for (const priority of priorities) dropped.inc({ reason, priority }, byPriority[priority]);
      }
    },
  });
  const buffered: Gauge<'priority'> = new Gauge({
    name: 'livemux_chat_messages_buffered',
    help: 'Accepted room messages waiting for a sequence number (the store lagging), summed over rooms, by priority.',
    labelNames: ['priority'],
    registers,
    collect() {
      for (const [priority, name] of priorities.entries()) {
        let total = 0;
        for (const room of source.rooms.values()) total += room.buffer.waiting(priority as Priority);
        buffered.set({ priority: name }, total);
      }
    },
  });
  const masked: Counter = new Counter({
    name: 'livemux_chat_messages_masked_total',
    help: 'Room messages accepted with sensitive words masked.',
    registers,
    collect() {
      masked.reset();
      masked.inc(source.stats.masked);
    },
  });
  const rooms: Gauge = new Gauge({
    name: 'livemux_chat_rooms',
    help: 'Rooms held by this Chat backend (an empty room stays until its idle TTL expires).',
    registers,
    collect() {
      rooms.set(source.rooms.size);
    },
  });
  const members: Gauge = new Gauge({
    name: 'livemux_chat_members_online',
    help: 'Distinct users joined, summed over the rooms held by this Chat backend.',
    registers,
    collect() {
      let total = 0;
      for (const room of source.rooms.values()) total += new Set([...room.sessions].map((s) => s.userId)).size;
      members.set(total);
    },
  });
  const sessions: Gauge = new Gauge({
    name: 'livemux_chat_sessions_joined',
    help: 'Chat sessions joined to a room held by this Chat backend.',
    registers,
    collect() {
      let total = 0;
      for (const room of source.rooms.values()) total += room.sessions.size;
      sessions.set(total);
    },
  });

  return {
    registry,
    historyTrimmed: new Counter({
      name: 'livemux_chat_history_trimmed_total',
      help: 'Stored messages trimmed from room histories by their length or age bound.',
      registers,
    }),
    historyGaps: new Counter({
      name: 'livemux_chat_history_gaps_total',
      help: 'History reads (join recovery or history requests) that found messages after the reader already trimmed.',
      registers,
    }),
    presenceExpired: new Counter({
      name: 'livemux_chat_presence_expired_total',
      help: 'Members dropped from rooms because the presence of their proxy expired.',
      registers,
    }),
    moderationActions: new Counter({
      name: 'livemux_chat_moderation_actions_total',
      help: 'Moderate requests, by action and result (ok, or the error code in lower case, e.g. permission_denied).',
      labelNames: ['action', 'result'],
      registers,
    }),
    requestFailures: new Counter({
      name: 'livemux_chat_request_failures_total',
      help: 'Chat requests answered INTERNAL (e.g. the store unreachable), by request kind.',
      labelNames: ['kind'],
      registers,
    }),
    leaseRefusals: new Counter({
      name: 'livemux_chat_lease_refusals_total',
      help: 'Writes answered NOT_OWNER: the room lease held by another backend (held) or this backend\'s token refused as stale (stale).',
      labelNames: ['reason'],
      registers,
    }),
  };
}

/**
 * A ChatStore that counts what the store reports on the way through: history trims (the count
 * `appendHistory` resolves with), history gaps (a `readHistory` whose oldest retained seq is past the
 * reader's next one) and members dropped by `purgeExpired`. Every other call is passed through
 * unchanged; the wrapped store stays the owner of all state, and `close` closes it.
 */
export class MeteredChatStore implements ChatStore {
  constructor(
    private readonly inner: ChatStore,
    private readonly metrics: Pick<ChatMetrics, 'historyTrimmed' | 'historyGaps' | 'presenceExpired'>,
  ) {}

  async purgeExpired(room: string): Promise<string[]> {
    const purged = await this.inner.purgeExpired(room);
    if (purged.length > 0) this.metrics.presenceExpired.inc(purged.length);
    return purged;
  }

  async appendHistory(room: string, token: number, message: StoredMessage, limits: HistoryLimits, nowMs: number): Promise<number> {
    const trimmed = await this.inner.appendHistory(room, token, message, limits, nowMs);
    if (trimmed > 0) this.metrics.historyTrimmed.inc(trimmed);
    return trimmed;
  }

  async readHistory(room: string, afterSeq: number, limit: number): Promise<{ messages: StoredMessage[]; oldestSeq: number | null }> {
    const read = await this.inner.readHistory(room, afterSeq, limit);
    if (read.oldestSeq !== null && read.oldestSeq > afterSeq + 1) this.metrics.historyGaps.inc();
    return read;
  }

  acquireLease(room: string, holder: string, ttlMs: number): Promise<LeaseGrant> {
    return this.inner.acquireLease(room, holder, ttlMs);
  }
  renewLease(room: string, token: number, ttlMs: number): Promise<boolean> {
    return this.inner.renewLease(room, token, ttlMs);
  }
  releaseLease(room: string, token: number): Promise<void> {
    return this.inner.releaseLease(room, token);
  }
  nextSeq(room: string, token: number): Promise<number> {
    return this.inner.nextSeq(room, token);
  }
  latestHistory(room: string, limit: number): Promise<StoredMessage[]> {
    return this.inner.latestHistory(room, limit);
  }
  join(room: string, member: Member): Promise<boolean> {
    return this.inner.join(room, member);
  }
  leave(room: string, userId: string, presence?: string): Promise<boolean> {
    return this.inner.leave(room, userId, presence);
  }
  member(room: string, userId: string): Promise<Member | null> {
    return this.inner.member(room, userId);
  }
  members(room: string, cursor: string | null, limit: number): Promise<Page<Member>> {
    return this.inner.members(room, cursor, limit);
  }
  memberCount(room: string): Promise<number> {
    return this.inner.memberCount(room);
  }
  startPresence(presence: string, ttlMs: number): Promise<void> {
    return this.inner.startPresence(presence, ttlMs);
  }
  renewPresence(presence: string, ttlMs: number): Promise<boolean> {
    return this.inner.renewPresence(presence, ttlMs);
  }
  endPresence(presence: string): Promise<void> {
    return this.inner.endPresence(presence);
  }
  setMute(room: string, userId: string, untilMs: number): Promise<void> {
    return this.inner.setMute(room, userId, untilMs);
  }
  setBan(room: string, userId: string, untilMs: number): Promise<void> {
    return this.inner.setBan(room, userId, untilMs);
  }
  muteUntil(room: string, userId: string, nowMs: number): Promise<number> {
    return this.inner.muteUntil(room, userId, nowMs);
  }
  banUntil(room: string, userId: string, nowMs: number): Promise<number> {
    return this.inner.banUntil(room, userId, nowMs);
  }
  setWhitelisted(room: string, userId: string, on: boolean): Promise<void> {
    return this.inner.setWhitelisted(room, userId, on);
  }
  isWhitelisted(room: string, userId: string): Promise<boolean> {
    return this.inner.isWhitelisted(room, userId);
  }
  setAttributes(room: string, token: number, changes: Readonly<Record<string, string | null>>): Promise<AttributeChange[]> {
    return this.inner.setAttributes(room, token, changes);
  }
  attributes(room: string): Promise<{ values: Record<string, string>; version: number }> {
    return this.inner.attributes(room);
  }
  attributeChanges(room: string, afterVersion: number): Promise<AttributeChange[] | null> {
    return this.inner.attributeChanges(room, afterVersion);
  }
  dropRoom(room: string, token: number): Promise<void> {
    return this.inner.dropRoom(room, token);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
