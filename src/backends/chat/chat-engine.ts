/**
 * The room engine of the Chat backend: what each request does to a room (docs/chat.md). Every operation
 * runs inside its room's serialized chain (Room.run), so the store's async calls never interleave two
 * operations of one room: sequence numbers, history appends and publishes happen in one order.
 * Operations either return the Reply's result or throw a ChatError; events (Joined, history, room
 * messages…) are delivered by the operation itself, before its Reply. A send is the exception to "all in
 * the chain": it is checked on arrival (admit), waits in the room's bounded buffer, and only its
 * sequencing (sequence) runs in the chain.
 */
import { Priority, PRIORITY_NAMES, type PriorityName } from '../../protocol/constants.js';
import { Code } from '../../protocol/codes.js';
import {
  WireRole,
  decodeChatEvent,
  encodeChatEvent,
  type ChatEvent,
  type HistoryRequest,
  type JoinRequest,
  type ListMembersRequest,
  type ModerateRequest,
  type Reply,
  type RoomMessage,
  type SendRequest,
  type SetAttributesRequest,
} from './chat-codec.js';
import { ChatError, ChatErrorCode } from './chat-errors.js';
import type { ProxyStreamContext } from '../kit/backend-server.js';
import type { ChatSession, Room } from './room.js';
import type { RoomLeases } from './room-leases.js';
import {
  MAX_HISTORY_READ,
  MAX_MEMBER_PAGE,
  type AttributeChange,
  type ChatStore,
  type HistoryLimits,
  type Role,
  type StoredMessage,
} from './store.js';
import { FOREVER, isModerator, moderate } from './moderation.js';
import type { WordFilter } from './word-filter.js';

/** Settings of the engine; every field has a default in chat-backend.ts. */
export interface ChatEngineConfig {
  readonly store: ChatStore;
  /** The room write leases: every ordered write runs under one. */
  readonly leases: RoomLeases;
  readonly wordFilter: WordFilter;
  /** Messages sent to a member joining with since_seq 0. */
  readonly joinHistory: number;
  readonly historyLimits: HistoryLimits;
  readonly userRate: number;
  readonly userBurst: number;
  readonly maxBodyBytes: number;
  /** Wall clock in ms (tests pass a fake one). */
  readonly now: () => number;
  /** The presence that members arriving on `ctx` are held under (presence.ts), started in the store. */
  readonly presenceOf: (ctx: ProxyStreamContext) => Promise<string>;
}

/**
 * Why a send did not become a room message: refused by a check on arrival (not_joined … room_rate),
 * dropped from the room's full buffer (buffer_full: the oldest low message, or a new high or system one
 * refused), or refused when its turn to be sequenced came (muted; not_owner: this backend did not hold
 * the room's write lease).
 */
export const DropReason = {
  NOT_JOINED: 'not_joined',
  TOO_LARGE: 'too_large',
  SYSTEM_DENIED: 'system_denied',
  USER_RATE: 'user_rate',
  WORD: 'word',
  ROOM_RATE: 'room_rate',
  BUFFER_FULL: 'buffer_full',
  MUTED: 'muted',
  NOT_OWNER: 'not_owner',
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

/** A send that passed its checks on arrival (ChatEngine.admit) and waits in its room's buffer for a seq. */
export interface PendingSend {
  readonly session: ChatSession;
  /** 0: the sender asked for no Reply. */
  readonly requestId: number;
  readonly priority: Priority;
  /** The body after the word filter. */
  readonly body: Buffer;
  readonly clientMsgId: string;
  /** The backend's clock at acceptance: the RoomMessage's `sent_at_ms`. */
  readonly acceptedAtMs: number;
}

/** Counters of the engine; drops by reason and priority (issue 4: every drop is counted). */
export interface ChatStats {
  accepted: Record<PriorityName, number>;
  dropped: Record<DropReason, Record<PriorityName, number>>;
  masked: number;
}

/** The Reply result of a successful request (the fields of Reply beyond the status). */
export type ReplyResult = Pick<Reply, 'sent' | 'members' | 'history' | 'attributes'>;

const ROLE_TO_WIRE: Readonly<Record<Role, number>> = { member: WireRole.MEMBER, host: WireRole.HOST, admin: WireRole.ADMIN, whitelisted: WireRole.WHITELISTED };
const WIRE_TO_ROLE: Readonly<Record<number, Role>> = { 1: 'member', 2: 'host', 3: 'admin', 4: 'whitelisted' };
const MAX_KEY_LENGTH = 128;
const MAX_VALUE_LENGTH = 4096;
const MAX_ATTRIBUTE_CHANGES = 100;
const DEFAULT_PAGE = 100;
const DEFAULT_HISTORY_PAGE = 50;
/** Bytes of a history Reply besides its messages (tags, request id, oldest seq), and per message (tag, length). */
const REPLY_OVERHEAD = 64;
const MESSAGE_OVERHEAD = 8;
const MAX_HISTORY_PAGE = 1000;

const zeroByPriority = (): Record<PriorityName, number> => ({ system: 0, high: 0, low: 0 });

/** The role a token grants: its `role` claim when that is host or admin, else member. */
export function claimedRole(claims: Readonly<Record<string, string>>): Role {
  const role = claims.role;
  return role === 'host' || role === 'admin' ? role : 'member';
}

/**
 * The role a Join gets: `requested` (wire value) if the token or room grants it, the highest granted
 * for UNSPECIFIED. Throws PERMISSION_DENIED for a role not granted, BAD_REQUEST for an unknown one.
 */
export function resolveRole(granted: Role, whitelisted: boolean, requested: number): Role {
  const highest: Role = granted !== 'member' ? granted : whitelisted ? 'whitelisted' : 'member';
  if (requested === WireRole.UNSPECIFIED) return highest;
  const role = WIRE_TO_ROLE[requested];
  if (role === undefined) throw new ChatError(ChatErrorCode.BAD_REQUEST, `join.role: unknown role ${requested}`);
  const allowed = role === 'member' || role === granted || (role === 'whitelisted' && whitelisted);
  if (!allowed) throw new ChatError(ChatErrorCode.PERMISSION_DENIED, `join.role: ${role} is not granted to this user (token role ${granted})`);
  return role;
}

export class ChatEngine {
  readonly stats: ChatStats = {
    accepted: zeroByPriority(),
    dropped: {
      not_joined: zeroByPriority(),
      too_large: zeroByPriority(),
      system_denied: zeroByPriority(),
      user_rate: zeroByPriority(),
      word: zeroByPriority(),
      room_rate: zeroByPriority(),
      buffer_full: zeroByPriority(),
      muted: zeroByPriority(),
      not_owner: zeroByPriority(),
    },
    masked: 0,
  };

  constructor(private readonly config: ChatEngineConfig) {}

  /**
   * Join: ban check, role, expired members purged, store membership under the session's presence,
   * then (synchronously, so no publish slips in between) subscribe, Joined, a HistoryGap if messages were
   * trimmed, the history, and a MemberJoined for the others unless the user was already present or the
   * session was moved here (`reattach`).
   */
  async join(room: Room, s: ChatSession, req: JoinRequest, announce: boolean): Promise<ReplyResult> {
    const { store } = this.config;
    const now = this.config.now();
    const ban = await store.banUntil(room.id, s.userId, now);
    if (ban > 0) throw new ChatError(ChatErrorCode.BANNED, `join: ${s.userId} is banned from room ${room.id}`, retryAfter(ban, now));
    const role = resolveRole(claimedRole(s.info.claims), room.whitelist.has(s.userId), req.role);
    const presence = await this.config.presenceOf(s.ctx);
    await this.purgeExpired(room);
    await store.join(room.id, { userId: s.userId, role, joinedAtMs: now, presence });
    await this.refreshLastSeq(room);
    const attributes = await store.attributes(room.id);
    const onlineCount = await store.memberCount(room.id);
    const { gap, messages } = await this.missed(room, req.sinceSeq);

    // The session ended while the store answered: undo its membership unless the user has another.
    if (s.ended) {
      if (room.sessionsOf(s.userId).length === 0) await store.leave(room.id, s.userId, presence);
      return {};
    }
    const present = room.sessionsOf(s.userId).some((other) => other !== s);
    s.presence = presence;
    s.role = role;
    s.joined = true;
    room.add(s);
    s.ctx.subscribe(s.session, room.topic);
    this.deliver(s, {
      joined: { seq: room.lastSeq, onlineCount, attributes: attributes.values, attributesVersion: attributes.version, role: ROLE_TO_WIRE[role] },
    });
    if (gap !== null) this.deliver(s, { gap });
    // History travels at high priority, like Joined before it: same priority, same order on the wire.
    for (const m of messages) s.ctx.deliver(s.session, m.body, Priority.HIGH);
    if (announce && !present) {
      room.publish(encodeChatEvent({ memberJoined: { userId: s.userId, role: ROLE_TO_WIRE[role], onlineCount } }), Priority.LOW, s);
    }
    return {};
  }

  /**
   * A session the proxy moved here (`reattach`): back into its room without any event or announcement
   * (docs/chat.md: the client notices missed messages by a seq jump), its record re-tagged under this
   * backend's presence so that it outlives the previous owner's. A banned user is removed instead.
   */
  async rejoin(room: Room, s: ChatSession, onRemoved: (target: ChatSession) => void): Promise<ReplyResult> {
    const { store } = this.config;
    const now = this.config.now();
    const ban = await store.banUntil(room.id, s.userId, now);
    if (ban > 0) {
      this.deliver(s, { banned: { reason: 'banned', by: '', untilMs: ban >= FOREVER ? 0 : ban } });
      s.ctx.close(s.session, Code.BACKEND_CLOSED, 'banned');
      onRemoved(s);
      return {};
    }
    const role = resolveRole(claimedRole(s.info.claims), room.whitelist.has(s.userId), WireRole.UNSPECIFIED);
    const presence = await this.config.presenceOf(s.ctx);
    await store.join(room.id, { userId: s.userId, role, joinedAtMs: now, presence });
    await this.refreshLastSeq(room);
    if (s.ended) {
      if (room.sessionsOf(s.userId).length === 0) await store.leave(room.id, s.userId, presence);
      return {};
    }
    s.presence = presence;
    s.role = role;
    s.joined = true;
    room.add(s);
    s.ctx.subscribe(s.session, room.topic);
    return {};
  }

  /**
   * Reads the room's latest seq from the store unless this backend holds the lease (then its own
   * writes are the latest): without it, another backend may be writing the room.
   */
  private async refreshLastSeq(room: Room): Promise<void> {
    if (room.lastSeq < 0 || !this.config.leases.holds(room)) room.lastSeq = (await this.config.store.latestHistory(room.id, 1))[0]?.seq ?? 0;
  }

  /**
   * Drops the members whose presence expired (their proxy died, or their owner died and their session
   * never came back here) and tells the others, one MemberLeft each with the count after. A purged user
   * with a live session here lost this backend's own presence (it stalled past the TTL): it is put back
   * at once under the current presence, without an event.
   */
  async purgeExpired(room: Room): Promise<void> {
    const { store } = this.config;
    const purged = await store.purgeExpired(room.id);
    if (purged.length === 0) return;
    const gone: string[] = [];
    for (const userId of purged) {
      const here = room.sessionsOf(userId).find((x) => !x.ended);
      if (here === undefined) {
        gone.push(userId);
        continue;
      }
      here.presence = await this.config.presenceOf(here.ctx);
      await store.join(room.id, { userId, role: here.role, joinedAtMs: this.config.now(), presence: here.presence });
    }
    if (gone.length === 0) return;
    const onlineCount = await store.memberCount(room.id);
    for (const userId of gone) room.publish(encodeChatEvent({ memberLeft: { userId, onlineCount } }), Priority.LOW);
  }

  /**
   * `sessions` (joined, of one proxy) are now held under `presence`, their proxy's previous one having
   * expired: their records are re-tagged, and a user whose record was purged meanwhile is announced again.
   */
  async retag(room: Room, sessions: readonly ChatSession[], presence: string): Promise<void> {
    const { store } = this.config;
    const done = new Set<string>();
    for (const s of sessions) {
      if (!s.joined || s.ended) continue;
      s.presence = presence;
      if (done.has(s.userId)) continue;
      done.add(s.userId);
      const record = await store.member(room.id, s.userId);
      if (!(await store.join(room.id, { userId: s.userId, role: s.role, joinedAtMs: record?.joinedAtMs ?? this.config.now(), presence }))) continue;
      const onlineCount = await store.memberCount(room.id);
      room.publish(encodeChatEvent({ memberJoined: { userId: s.userId, role: ROLE_TO_WIRE[s.role], onlineCount } }), Priority.LOW, s);
    }
  }

  /** What a member who saw `sinceSeq` missed: the retained messages after it, and the gap before them. */
  private async missed(room: Room, sinceSeq: number): Promise<{ gap: { fromSeq: number; toSeq: number } | null; messages: StoredMessage[] }> {
    const { store } = this.config;
    // since 0, or a seq from before the room was dropped and recreated (Joined.seq < since_seq tells).
    if (sinceSeq === 0 || sinceSeq > room.lastSeq) return { gap: null, messages: await store.latestHistory(room.id, this.config.joinHistory) };
    if (sinceSeq === room.lastSeq) return { gap: null, messages: [] };
    const { messages, oldestSeq } = await store.readHistory(room.id, sinceSeq, MAX_HISTORY_READ);
    const firstKept = oldestSeq ?? room.lastSeq + 1;
    const gap = firstKept > sinceSeq + 1 ? { fromSeq: sinceSeq + 1, toSeq: firstKept - 1 } : null;
    return { gap, messages };
  }

  /**
   * The checks of a send made when it arrives (joined, size, system priority, per-user rate, word
   * filter, room rate), all without the store so that a slow store cannot hold them up. Returns the
   * accepted message, to be buffered and sequenced later; throws a ChatError, counted, otherwise.
   */
  admit(room: Room, s: ChatSession, req: SendRequest, priority: Priority, requestId: number): PendingSend {
    if (!s.joined) throw this.refuse(DropReason.NOT_JOINED, priority, new ChatError(ChatErrorCode.NOT_JOINED, `session has not joined room ${s.roomId}`));
    if (req.body.length > this.config.maxBodyBytes) {
      throw this.refuse(DropReason.TOO_LARGE, priority, new ChatError(ChatErrorCode.BAD_REQUEST, `send.body: too large (${req.body.length} bytes vs limit ${this.config.maxBodyBytes})`));
    }
    const privileged = s.role !== 'member' || room.whitelist.has(s.userId);
    if (priority === Priority.SYSTEM && !privileged) {
      throw this.refuse(DropReason.SYSTEM_DENIED, priority, new ChatError(ChatErrorCode.PERMISSION_DENIED, 'send: system priority is for host, admin and whitelisted members'));
    }
    if (!privileged && !room.userBucket(s.userId, this.config.userRate, this.config.userBurst).take()) {
      throw this.refuse(DropReason.USER_RATE, priority, new ChatError(ChatErrorCode.RATE_LIMITED, `send: ${s.userId} exceeds ${this.config.userRate} messages/s`, Math.ceil(1000 / this.config.userRate)));
    }
    const filtered = this.config.wordFilter.apply(Buffer.from(req.body));
    if (filtered.kind === 'rejected') {
      throw this.refuse(DropReason.WORD, priority, new ChatError(ChatErrorCode.REJECTED_WORD, 'send.body: contains a word on the room\'s sensitive-word list'));
    }
    if (!room.limiter.admit(priority, privileged)) {
      throw this.refuse(DropReason.ROOM_RATE, priority, new ChatError(ChatErrorCode.RATE_LIMITED, `send: room ${room.id} exceeds ${room.limiter.ratePerSecond} messages/s`));
    }
    if (filtered.kind === 'masked') this.stats.masked++;
    return { session: s, requestId, priority, body: filtered.body, clientMsgId: req.clientMsgId, acceptedAtMs: this.config.now() };
  }

  /**
   * Gives an accepted message its seq, in the room's chain: the room's write lease (NOT_OWNER without
   * it), the mute check, the next seq, the history append, and ONE publish per proxy with members. Both
   * writes carry the lease token, checked by the store inside each write, so a message buffered while
   * this backend held the room is not written once another backend took it over. The sender may have
   * left meanwhile: what it sent before leaving still goes out.
   */
  async sequence(room: Room, pending: PendingSend): Promise<ReplyResult> {
    const { store, leases } = this.config;
    const { session: s, priority } = pending;
    let token: number;
    try {
      token = await leases.token(room);
    } catch (err) {
      throw this.refuseNotOwner(err, priority);
    }
    const now = this.config.now();
    const muted = await store.muteUntil(room.id, s.userId, now);
    if (muted > 0) throw this.refuse(DropReason.MUTED, priority, new ChatError(ChatErrorCode.MUTED, `send: ${s.userId} is muted in room ${room.id}`, retryAfter(muted, now)));
    const sentAtMs = pending.acceptedAtMs;
    let seq: number;
    let body: Buffer;
    try {
      seq = await store.nextSeq(room.id, token);
      const message: RoomMessage = { seq, senderId: s.userId, priority, body: pending.body, sentAtMs, clientMsgId: pending.clientMsgId };
      body = encodeChatEvent({ message });
      await store.appendHistory(room.id, token, { seq, priority, senderId: s.userId, sentAtMs, body }, this.config.historyLimits, now);
    } catch (err) {
      throw this.refuseNotOwner(leases.refusal(room, err), priority);
    }
    room.lastSeq = seq;
    this.stats.accepted[PRIORITY_NAMES[priority]]++;
    room.publish(body, priority);
    return { sent: { seq } };
  }

  /** Counts a send dropped for `reason` at `priority`; returns `error` (the sender's Reply, if any) to throw. */
  refuse(reason: DropReason, priority: Priority, error: ChatError): ChatError {
    this.stats.dropped[reason][PRIORITY_NAMES[priority]]++;
    return error;
  }

  /** `err` to throw for a send; a NOT_OWNER refusal is counted as a drop like every other. */
  private refuseNotOwner(err: unknown, priority: Priority): unknown {
    return err instanceof ChatError && err.code === ChatErrorCode.NOT_OWNER ? this.refuse(DropReason.NOT_OWNER, priority, err) : err;
  }

  /**
   * Leave (the request, a close, or a kick): unsubscribe, store, MemberLeft when the user is gone; the
   * room's write lease is released when its last session here leaves. Only the record held under this
   * session's presence is removed: one a new owner re-tagged is not this owner's.
   */
  async leave(room: Room, s: ChatSession, announce: boolean): Promise<ReplyResult> {
    requireJoined(s);
    s.joined = false;
    if (!s.ended) s.ctx.unsubscribe(s.session, room.topic);
    if (!room.remove(s)) {
      await this.keepRecordAlive(room, s);
      return {};
    }
    const removed = await this.config.store.leave(room.id, s.userId, s.presence);
    // Nobody left here to write for: another backend serving the room may take it at once.
    if (room.sessions.size === 0) await this.config.leases.release(room);
    if (announce && removed) {
      const onlineCount = await this.config.store.memberCount(room.id);
      room.publish(encodeChatEvent({ memberLeft: { userId: s.userId, onlineCount } }), Priority.LOW);
    }
    return {};
  }

  /**
   * `s` left but its user has other sessions here: if the record is held under `s`'s presence and
   * another session is on another proxy, it moves to that one's presence, so it does not expire with
   * `s`'s proxy.
   */
  private async keepRecordAlive(room: Room, s: ChatSession): Promise<void> {
    const other = room.sessionsOf(s.userId).find((o) => !o.ended && o.presence !== s.presence);
    if (other === undefined) return;
    const record = await this.config.store.member(room.id, s.userId);
    if (record?.presence === s.presence) await this.config.store.join(room.id, { ...record, presence: other.presence });
  }

  async listMembers(room: Room, s: ChatSession, req: ListMembersRequest): Promise<ReplyResult> {
    requireJoined(s);
    await this.purgeExpired(room);
    const limit = Math.min(req.limit === 0 ? DEFAULT_PAGE : req.limit, MAX_MEMBER_PAGE);
    let page;
    try {
      page = await this.config.store.members(room.id, req.cursor === '' ? null : req.cursor, limit);
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BAD_CURSOR') throw new ChatError(ChatErrorCode.BAD_REQUEST, 'list_members.cursor: not a cursor of this room');
      throw err;
    }
    const onlineCount = await this.config.store.memberCount(room.id);
    const members = page.items.map((m) => ({ userId: m.userId, role: ROLE_TO_WIRE[m.role], joinedAtMs: m.joinedAtMs }));
    return { members: { members, nextCursor: page.next ?? '', onlineCount } };
  }

  async history(room: Room, s: ChatSession, req: HistoryRequest): Promise<ReplyResult> {
    requireJoined(s);
    const limit = Math.min(req.limit === 0 ? DEFAULT_HISTORY_PAGE : req.limit, MAX_HISTORY_PAGE);
    const { messages, oldestSeq } = await this.config.store.readHistory(room.id, req.afterSeq, limit);
    // The Reply is one message to the client, so the page holds what fits its max_payload (PROTOCOL.md
    // §7): the client pages on from the last seq it got. The first message always goes, so paging moves.
    let budget = s.info.maxPayload - REPLY_OVERHEAD;
    const fitting = messages.filter((m, i) => (budget -= m.body.length + MESSAGE_OVERHEAD) >= 0 || i === 0);
    // Stored bodies are encoded ChatEvents: decode them to put the messages in the page.
    const page = fitting.map((m) => decodeChatEvent(m.body).message).filter((m): m is RoomMessage => m !== undefined);
    return { history: { messages: page, oldestSeq: oldestSeq ?? 0 } };
  }

  /** Host/admin only; applies the changes atomically and publishes one AttributesChanged. */
  async setAttributes(room: Room, s: ChatSession, req: SetAttributesRequest): Promise<ReplyResult> {
    requireJoined(s);
    requireModerator(s, 'set_attributes');
    const changes: Record<string, string | null> = {};
    for (const [key, value] of Object.entries(req.set)) {
      checkKey(key);
      if (value.length > MAX_VALUE_LENGTH) throw new ChatError(ChatErrorCode.BAD_REQUEST, `set_attributes.set["${key}"]: value too long (${value.length} vs limit ${MAX_VALUE_LENGTH})`);
      changes[key] = value;
    }
    for (const key of req.delete) {
      checkKey(key);
      if (key in changes) throw new ChatError(ChatErrorCode.BAD_REQUEST, `set_attributes: "${key}" is both set and deleted`);
      changes[key] = null;
    }
    if (Object.keys(changes).length > MAX_ATTRIBUTE_CHANGES) {
      throw new ChatError(ChatErrorCode.BAD_REQUEST, `set_attributes: too many changes (${Object.keys(changes).length} vs limit ${MAX_ATTRIBUTE_CHANGES})`);
    }
    const { leases } = this.config;
    const token = await leases.token(room);
    let applied: AttributeChange[];
    try {
      applied = await this.config.store.setAttributes(room.id, token, changes);
    } catch (err) {
      throw leases.refusal(room, err);
    }
    if (applied.length === 0) return { attributes: { version: (await this.config.store.attributes(room.id)).version } };
    const set: Record<string, string> = {};
    const deleted: string[] = [];
    for (const c of applied) {
      if (c.value === null) deleted.push(c.key);
      else set[c.key] = c.value;
    }
    const version = applied[applied.length - 1]!.version;
    const previousVersion = applied[0]!.version - 1;
    room.publish(encodeChatEvent({ attributesChanged: { version, previousVersion, set, deleted, by: s.userId } }), Priority.HIGH);
    return { attributes: { version } };
  }

  /** Host/admin only (an admin target needs an admin); see moderation.ts. */
  moderate(room: Room, s: ChatSession, req: ModerateRequest, onRemoved: (target: ChatSession) => void): Promise<ReplyResult> {
    requireJoined(s);
    requireModerator(s, 'moderate');
    return moderate(this, this.config, room, s, req, onRemoved);
  }

  /** Delivers one event to one session, at high priority. */
  deliver(s: ChatSession, event: ChatEvent): void {
    s.ctx.deliver(s.session, encodeChatEvent(event), Priority.HIGH);
  }
}

export function requireJoined(s: ChatSession): void {
  if (!s.joined) throw new ChatError(ChatErrorCode.NOT_JOINED, `session has not joined room ${s.roomId}`);
}

export function requireModerator(s: ChatSession, what: string): void {
  if (!isModerator(s.role)) throw new ChatError(ChatErrorCode.PERMISSION_DENIED, `${what}: only host and admin may do this (role ${s.role})`);
}

function checkKey(key: string): void {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new ChatError(ChatErrorCode.BAD_REQUEST, `set_attributes: key length ${key.length} outside 1..${MAX_KEY_LENGTH}`);
  }
}

export function retryAfter(untilMs: number, now: number): number {
  return untilMs >= FOREVER ? 0 : Math.max(0, untilMs - now);
}
