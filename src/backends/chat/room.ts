/**
 * One live room as its owning Chat backend holds it: the sessions joined to it (on every proxy stream),
 * its whitelist, upstream limiter and per-user send buckets, the bounded buffer of accepted messages
 * waiting for a seq, and the promise chain that serializes everything done to it, so that async store
 * calls never reorder its messages.
 */
import type { Priority } from '../../protocol/constants.js';
import { TokenBucket } from '../../util/token-bucket.js';
import type { ProxyStreamContext } from '../kit/backend-server.js';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';
import type { PendingSend } from './chat-engine.js';
import { RoomBuffer, type RoomBufferBounds } from './room-buffer.js';
import { RoomRateLimiter } from './room-rate-limiter.js';
import type { Role } from './store.js';

/** A chat session: one client session bound to this backend, for one room. */
export interface ChatSession {
  readonly ctx: ProxyStreamContext;
  readonly session: number;
  readonly info: SessionOpenInfo;
  readonly userId: string;
  readonly roomId: string;
  /** The role granted at the last Join; meaningful while `joined`. */
  role: Role;
  /** The presence its membership is held under (presence.ts); meaningful while `joined`. */
  presence: string;
  joined: boolean;
  /**
   * Sends of this session waiting in the room's chain to be checked (sent before its Join completed):
   * while there are any, later sends queue behind them so the session's order holds.
   */
  sendsInChain: number;
  /** Set when the session ended (closed by either side, or its stream ended). */
  ended: boolean;
  /** Requests received and not answered yet (a Reply, or nothing for request id 0, is the answer). */
  unanswered: number;
  /** The client sent CLOSE: the session ends once every request it sent has been answered. */
  halfClosed: boolean;
}

/** Orders proxy streams by age, so a proxy holding two streams is published to on its newest only. */
export type StreamRank = (ctx: ProxyStreamContext) => number;

export class Room {
  readonly topic: string;
  /** Joined sessions, in join order. */
  readonly sessions = new Set<ChatSession>();
  /** Joined sessions by user, and the number of joined sessions per proxy stream (publish targets). */
  private readonly byUser = new Map<string, Set<ChatSession>>();
  private readonly streams = new Map<ProxyStreamContext, number>();
  readonly whitelist = new Set<string>();
  /** The latest seq stored for this room; -1 until read from the store at the first join. */
  lastSeq = -1;
  readonly limiter: RoomRateLimiter;
  /** Accepted messages waiting for their seq (room-buffer.ts). */
  readonly buffer: RoomBuffer<PendingSend>;
  /** Set while a step that sequences the next buffered message is queued in the chain or running. */
  draining = false;
  /** Set once the room was dropped for idleness: a new Room object serves later requests. */
  dropped = false;
  private readonly userBuckets = new Map<string, TokenBucket>();
  private chain: Promise<void>;
  private queued = 0;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly id: string,
    ratePerSecond: number,
    private readonly rank: StreamRank,
    bufferBounds: RoomBufferBounds,
    after: Promise<void> = Promise.resolve(),
  ) {
    this.chain = after;
    this.topic = `chat:${id}`;
    this.limiter = new RoomRateLimiter(ratePerSecond);
    this.buffer = new RoomBuffer(bufferBounds);
  }

  /**
   * Runs `task` after the room's previous incarnation was dropped (`after`) and every task queued before it finished (whether it succeeded or not). The result is
   * the task's; a failure does not break the chain.
   */
  run<T>(task: () => Promise<T>): Promise<T> {
    this.queued++;
    const result = this.chain.then(task);
    this.chain = result.then(
      () => void this.queued--,
      () => void this.queued--,
    );
    return result;
  }

  /** Tasks queued or running (the one asking included, when called from a task). */
  get pending(): number {
    return this.queued;
  }

  /** The send bucket of `userId`, created full on first use. */
  userBucket(userId: string, ratePerSecond: number, burst: number): TokenBucket {
    let bucket = this.userBuckets.get(userId);
    if (bucket === undefined) this.userBuckets.set(userId, (bucket = new TokenBucket(ratePerSecond, burst)));
    return bucket;
  }

  /** Joined sessions of `userId`. */
  sessionsOf(userId: string): ChatSession[] {
    return [...(this.byUser.get(userId) ?? [])];
  }

  add(s: ChatSession): void {
    this.cancelIdle();
    if (this.sessions.has(s)) return;
    this.sessions.add(s);
    let mine = this.byUser.get(s.userId);
    if (mine === undefined) this.byUser.set(s.userId, (mine = new Set()));
    mine.add(s);
    this.streams.set(s.ctx, (this.streams.get(s.ctx) ?? 0) + 1);
  }

  /** Removes `s`; true when it was its user's last session here (the user left the room). */
  remove(s: ChatSession): boolean {
    if (!this.sessions.delete(s)) return false;
    const left = this.streams.get(s.ctx)! - 1;
    if (left === 0) this.streams.delete(s.ctx);
    else this.streams.set(s.ctx, left);
    const mine = this.byUser.get(s.userId)!;
    mine.delete(s);
    if (mine.size > 0) return false;
    this.byUser.delete(s.userId);
    this.userBuckets.delete(s.userId);
    return true;
  }

  /**
   * Edge fan-out: `payload` is published once per proxy that has joined sessions of this room (on its
   * newest stream), never once per member. `exclude` is left out (if it is on that stream).
   */
  publish(payload: Buffer, priority: Priority, exclude?: ChatSession): void {
    // Cost per message: one step per proxy stream with members, not per member.
    const targets = new Map<string, ProxyStreamContext>();
    for (const ctx of this.streams.keys()) {
      if (ctx.gone) continue;
      const current = targets.get(ctx.proxyId);
      if (current === undefined || this.rank(ctx) > this.rank(current)) targets.set(ctx.proxyId, ctx);
    }
    for (const ctx of targets.values()) {
      ctx.publish(this.topic, payload, priority, exclude !== undefined && exclude.ctx === ctx ? exclude.session : undefined);
    }
  }

  /** Calls `fn` after `ms` unless a session joins first. */
  scheduleIdle(ms: number, fn: () => void): void {
    this.cancelIdle();
    this.idleTimer = setTimeout(fn, ms);
    this.idleTimer.unref();
  }

  cancelIdle(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}
