import type { Priority } from '../../protocol/constants.js';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';

/**
 * The proxy's side of a backend link: where commands received from a backend are delivered.
 * Implemented by the proxy's session registry; `session` is the id the proxy assigned when it opened
 * the session on the link.
 */
export interface BackendCommandSink {
  deliver(session: number, payload: Buffer, priority: Priority): void;
  close(session: number, code: number, reason: string): void;
  subscribe(session: number, topic: string): void;
  unsubscribe(session: number, topic: string): void;
  publish(topic: string, payload: Buffer, priority: Priority, excludeSession: number): void;
  /**
   * The endpoint could not take the session at all (a tcp connect failed), so the backend never saw it.
   * `unsent` holds the session's bytes the link had not yet delivered, in order, so nothing is lost if
   * the proxy binds the session elsewhere.
   */
  unreachable(session: number, reason: string, unsent: readonly Buffer[]): void;
  /** The link failed or closed: every session bound to it is gone on the backend side. */
  linkDown(link: BackendLink, reason: string): void;
  /**
   * False while `session`'s client is not taking what it was sent: its DATA waits for the client's
   * credit, or fills the connection's outbound queue past the session's share. A link that can stop
   * its source for one session (a tcp upstream) stops reading until {@link onDeliverable}; a stream
   * shared by many sessions must not, and relies on the credit waits and the queue's bound instead.
   * True for a session the sink no longer has.
   */
  canDeliver(session: number): boolean;
  /** Calls `fn` once `session` can take DATA again or has ended; at once if it can now. */
  onDeliverable(session: number, fn: () => void): void;
  /**
   * True only when nothing the link delivered to `session` is still referenced by the proxy: every
   * payload has been written to the client's socket and the kernel took it. A link may then reuse the
   * memory of what it delivered (a tcp link's read buffer). False whenever that cannot be told.
   */
  released?(session: number): boolean;
}

export const LinkState = {
  CONNECTING: 'connecting',
  READY: 'ready',
  DOWN: 'down',
  CLOSED: 'closed',
} as const;
export type LinkState = (typeof LinkState)[keyof typeof LinkState];

/**
 * One long bidirectional stream from this proxy to one backend endpoint, multiplexing every session
 * routed there. Events are batched: calls made in the same tick travel in one message.
 */
export interface BackendLink {
  readonly endpoint: string;
  readonly state: LinkState;
  /**
   * False while `session`'s path to the backend is over its high-water mark (the shared stream for
   * gRPC, the session's own socket for TCP passthrough); wait for `onDrain`.
   */
  isWritable(session: number): boolean;
  open(session: number, info: SessionOpenInfo): void;
  data(session: number, payload: Buffer, priority: Priority): void;
  /** The proxy ended the session: nothing more is said about it either way. */
  closed(session: number, code: number, reason: string): void;
  /**
   * The client ended its direction (CLOSE): no more `data` follows, but the backend may still send until
   * it ends the session (`sink.close`). PROTOCOL.md §5.2, docs/backend-contract.md §4.
   */
  halfClosed(session: number, code: number, reason: string): void;
  /** Calls `fn` once `session` is writable again (immediately if it already is). */
  onDrain(session: number, fn: () => void): void;
  /** Ends the stream; sessions still bound get `linkDown`. */
  close(): void;
  /**
   * Messages carried so far (for `livemux_backend_messages_total`): `out` to the backend (stream events,
   * or DATA payloads for tcp), `in` from it (commands, or chunks read for tcp). Monotonic.
   */
  messageCounts(): { out: number; in: number };
}
