import { LivemuxError } from '../protocol/errors.js';

/**
 * The three state machines of the client SDK. Every state change goes through {@link transition}, which
 * refuses a move the table does not list; entry actions live next to the single call site of each move.
 */

/**
 * Lifecycle of a {@link LivemuxClient} (across connections).
 *
 * ```mermaid
 * stateDiagram-v2
 *   [*] --> connecting: connect()
 *   connecting --> connected: WELCOME
 *   connected --> idle: GOAWAY
 *   connected --> reconnecting: connection lost (retryable)
 *   idle --> reconnecting: open() / reopen / drained
 *   reconnecting --> connected: WELCOME
 *   connecting --> closed
 *   connected --> closed
 *   idle --> closed
 *   reconnecting --> closed
 * ```
 */
export const ClientState = {
  /** First dial and handshake; `connect()` has not resolved yet. */
  CONNECTING: 'connecting',
  /** A connection is open for new sessions. */
  CONNECTED: 'connected',
  /** No connection takes new sessions (the server sent GOAWAY); the next one is dialed when needed. */
  IDLE: 'idle',
  /** Waiting out a backoff delay or dialing a replacement connection. */
  RECONNECTING: 'reconnecting',
  /** Terminal: closed by the application, or by a failure that must not be retried. */
  CLOSED: 'closed',
} as const;
export type ClientState = (typeof ClientState)[keyof typeof ClientState];

/**
 * Lifecycle of one TCP/TLS connection, client view.
 *
 * ```mermaid
 * stateDiagram-v2
 *   [*] --> handshaking: dial, HELLO sent
 *   handshaking --> open: WELCOME
 *   open --> draining: GOAWAY
 *   handshaking --> closed
 *   open --> closed
 *   draining --> closed
 * ```
 */
export const ConnectionState = {
  /** HELLO sent; only WELCOME or ERROR may arrive. */
  HANDSHAKING: 'handshaking',
  OPEN: 'open',
  /** GOAWAY received: sessions already open run to their end, no new OPEN is sent. */
  DRAINING: 'draining',
  CLOSED: 'closed',
} as const;
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

/**
 * Lifecycle of a {@link ClientSession}. The object outlives its connection when opened with
 * `reopen: true`: it then goes back to `detached` and `opening` on the next connection.
 *
 * ```mermaid
 * stateDiagram-v2
 *   [*] --> detached: open()
 *   detached --> opening: a connection is ready, OPEN sent
 *   opening --> open: OPEN_OK
 *   open --> closing: close(), CLOSE sent after queued DATA
 *   closing --> closed: peer's CLOSE
 *   open --> closed: peer's CLOSE (answered) / RESET / connection lost
 *   opening --> closed: OPEN_FAIL / RESET / connection lost
 *   open --> detached: connection lost or CLOSE GOING_AWAY, with reopen
 *   opening --> detached: connection lost with reopen, or OPEN_FAIL GOING_AWAY
 *   detached --> closed: client closed or gave up, close(), reset()
 * ```
 */
export const SessionState = {
  /**
   * Bound to no connection: waiting for one that takes new sessions (the first open while the client
   * reconnects, or a reopen after the connection ended). Sends queue meanwhile.
   */
  DETACHED: 'detached',
  /** OPEN sent, waiting for OPEN_OK or OPEN_FAIL. */
  OPENING: 'opening',
  OPEN: 'open',
  /** `close()` called: queued DATA is written, then CLOSE; waiting for the peer's CLOSE. */
  CLOSING: 'closing',
  /** Terminal; the session id is retired. */
  CLOSED: 'closed',
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

/** Legal moves of a state machine: `table[from]` lists every state reachable from `from`. */
export type TransitionTable<S extends string> = Readonly<Record<S, readonly S[]>>;

/** Legal moves of {@link ClientState}; the diagram above, as data. */
export const CLIENT_TRANSITIONS: TransitionTable<ClientState> = {
  connecting: ['connected', 'closed'],
  connected: ['idle', 'reconnecting', 'closed'],
  idle: ['reconnecting', 'closed'],
  reconnecting: ['connected', 'closed'],
  closed: [],
};

/** Legal moves of {@link ConnectionState}; the diagram above, as data. */
export const CONNECTION_TRANSITIONS: TransitionTable<ConnectionState> = {
  handshaking: ['open', 'closed'],
  open: ['draining', 'closed'],
  draining: ['closed'],
  closed: [],
};

/** Legal moves of {@link SessionState}; the diagram above, as data. */
export const SESSION_TRANSITIONS: TransitionTable<SessionState> = {
  detached: ['opening', 'closed'],
  opening: ['open', 'detached', 'closed'],
  open: ['closing', 'detached', 'closed'],
  closing: ['closed'],
  closed: [],
};

/** A state change the machine does not allow was attempted: always an SDK bug, never a peer fault. */
export class IllegalTransitionError extends LivemuxError {
  constructor(machine: string, from: string, to: string) {
    super('ERR_ILLEGAL_TRANSITION', `${machine}: illegal state transition (${from} -> ${to})`);
    this.name = 'IllegalTransitionError';
  }
}

/**
 * Returns `to` when `table` allows the move from `from`, so callers write `state = transition(...)`.
 * @throws IllegalTransitionError otherwise.
 */
export function transition<S extends string>(machine: string, table: TransitionTable<S>, from: S, to: S): S {
  if (!table[from].includes(to)) throw new IllegalTransitionError(machine, from, to);
  return to;
}
