import type { PriorityName } from '../protocol/constants.js';
import { RequestFailedError } from './errors.js';

/** The fields every business Reply has (Chat's and IM's). */
export interface BusinessReply {
  requestId: number;
  ok: boolean;
  errorCode: string;
  errorMessage: string;
  retryAfterMs: number;
}

/** How a request leaves: the encoded request for a request id, and its DATA priority. */
export interface Outgoing {
  encode(requestId: number): Buffer;
  priority: PriorityName;
}

interface Pending<R> {
  readonly outgoing: Outgoing;
  /** Every id this request was sent under; a late Reply to an earlier attempt counts too. */
  readonly ids: number[];
  readonly resolve: (reply: R) => void;
  readonly reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
}

/**
 * Requests of a business protocol (Chat, IM) on one session: request ids, Replies matched to them, and
 * resends. A request without a Reply after `resendAfterMs` is sent again (a new request id, the same
 * request: business requests are idempotent, e.g. a send keeps its client_msg_id), and so is every
 * unanswered request when the session is reopened. A Reply with `ok: false` rejects with
 * RequestFailedError carrying its stable error code.
 */
export class RequestTracker<R extends BusinessReply> {
  private nextId = 1;
  private readonly byId = new Map<number, Pending<R>>();
  private readonly pending = new Set<Pending<R>>();
  private failed: Error | null = null;

  constructor(
    private readonly write: (payload: Buffer, priority: PriorityName) => Promise<void>,
    private readonly resendAfterMs: number,
  ) {}

  /** Requests waiting for a Reply. */
  get size(): number {
    return this.pending.size;
  }

  /** Sends a request and resolves with its ok Reply. */
  call(outgoing: Outgoing): Promise<R> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<R>((resolve, reject) => {
      const p: Pending<R> = { outgoing, ids: [], resolve, reject, timer: null };
      this.pending.add(p);
      this.attempt(p);
    });
  }

  /** A Reply arrived; false when it answers nothing pending (a duplicate answer, or request id 0). */
  replied(reply: R): boolean {
    const p = this.byId.get(reply.requestId);
    if (p === undefined) return false;
    this.settle(p);
    if (reply.ok) p.resolve(reply);
    else p.reject(new RequestFailedError(reply.errorCode, reply.errorMessage, reply.retryAfterMs));
    return true;
  }

  /** Sends every unanswered request again (after a reopen: their Replies went with the old session). */
  resendAll(): void {
    for (const p of this.pending) this.attempt(p);
  }

  /** Rejects every pending request with `err`, and every later one. */
  failAll(err: Error): void {
    this.failed = err;
    for (const p of [...this.pending]) {
      this.settle(p);
      p.reject(err);
    }
  }

  private attempt(p: Pending<R>): void {
    if (p.timer !== null) clearTimeout(p.timer);
    const id = this.nextId;
    // request_id is a uint32 and 0 means "no reply": wrap from 2^32 - 1 to 1.
    this.nextId = id === 0xffff_ffff ? 1 : id + 1;
    p.ids.push(id);
    this.byId.set(id, p);
    p.timer = setTimeout(() => this.attempt(p), this.resendAfterMs);
    p.timer.unref();
    this.write(p.outgoing.encode(id), p.outgoing.priority).catch(() => {
      // A write that failed (the session is detached) is resent by the reopen or the timer.
    });
  }

  private settle(p: Pending<R>): void {
    if (p.timer !== null) clearTimeout(p.timer);
    for (const id of p.ids) this.byId.delete(id);
    this.pending.delete(p);
  }
}
