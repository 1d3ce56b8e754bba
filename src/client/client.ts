import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, codeInfo, type RetryAdvice } from '../protocol/codes.js';
import { SUPPORTED_VERSIONS } from '../protocol/constants.js';
import { LivemuxError, ProtocolError } from '../protocol/errors.js';
import type { GoAway, Welcome } from '../protocol/messages.js';
import { Backoff } from '../util/backoff.js';
import { BACKOFF_RESET_AFTER_MS } from './options.js';
import { ClientSession, type OpenOptions, type SessionHost } from './client-session.js';
import { ClientConnection, type ConnectionListener } from './connection.js';
import { fetchDispatch } from './dispatch.js';
import { ClientClosedError, ServerError, WireCodeError } from './errors.js';
import { parseAddress, resolveOptions, type Address, type ConnectOptions, type ResolvedOptions } from './options.js';
import { CLIENT_TRANSITIONS, ClientState, transition } from './states.js';

/** Payload of the `'reconnecting'` event. */
export interface ReconnectingInfo {
  /** 1 for the first dial after a failure, counting up until a dial reaches WELCOME. */
  attempt: number;
  /** Wait before this dial, ms (0 for the first dial when a session waits or the code says 'immediate'). */
  delayMs: number;
  /** Why the previous connection or dial ended. */
  error: LivemuxError;
}

/** Events of a {@link LivemuxClient}. */
export type ClientEvents = {
  /** The server is draining this connection; new sessions go to a new connection. */
  goaway: [goAway: GoAway];
  /** A replacement connection is about to be dialed. */
  reconnecting: [info: ReconnectingInfo];
  /** A replacement connection completed its handshake; `client.welcome` is updated. */
  reconnected: [welcome: Welcome];
  /** The client is closed for good: `error` is why, undefined when the application called `close()`. */
  close: [error: LivemuxError | undefined];
  /** The server accepted a fresh token from `getToken` on a live connection; it lasts `expiresInMs`. */
  refreshed: [expiresInMs: number];
};

/**
 * Connects to a livemux proxy and resolves once the server's WELCOME arrived.
 * The first dial is not retried: it rejects with {@link ServerError} (the ERROR code, e.g.
 * AUTH_FAILED), {@link ConnectionLostError} (refused, timed out), or `ConfigError` for bad options.
 * Automatic reconnect covers the connections after it.
 */
export function connect(options: ConnectOptions): Promise<LivemuxClient> {
  return LivemuxClient.connect(options);
}

/**
 * A client of one livemux proxy: one multiplexed connection at a time (two while one drains after
 * GOAWAY), any number of sessions on it.
 *
 * Guarantees:
 * - Session ids count up from 1 on every connection, strictly increasing.
 * - Limits from WELCOME are honoured locally: max sessions (open() fails with TOO_MANY_SESSIONS), max
 *   payload and windows (sends wait or fail with PayloadTooLargeError), max OPEN/RESET rate (paced).
 * - After a connection fails, the client reconnects with exponential backoff and full jitter, unless
 *   reconnect is disabled, the failure's code says 'never', or AUTH_EXPIRED arrives without `getToken`;
 *   then it closes, emitting `'close'` with the error.
 * - On GOAWAY, sessions already open finish on the draining connection; the next `open()` dials a new
 *   connection at once (to the GOAWAY's address hint, if any), and so does the end of the last session,
 *   unless the server went away for idleness.
 * - Every event is emitted synchronously from socket or timer callbacks; no `'error'` events exist, so
 *   an unobserved failure never throws.
 */
export class LivemuxClient extends EventEmitter<ClientEvents> {
  private stateValue: ClientState = ClientState.CONNECTING;
  /** The connection new sessions go to; null unless CONNECTED. */
  private current: ClientConnection | null = null;
  /** Connections that got GOAWAY and still carry sessions. */
  private readonly draining = new Set<ClientConnection>();
  /** The connection being dialed, until it is adopted or fails. */
  private dialing: ClientConnection | null = null;
  /** The dial or reconnect in progress (CONNECTING, RECONNECTING). */
  private pending: Promise<ClientConnection> | null = null;
  private welcomeValue: Welcome | null = null;
  private connectedAt = 0;
  private token: string;
  /** GOAWAY's address hint, used by the next dial only. */
  private hintedAddress: Address | null = null;
  private lastGoAway: GoAway | null = null;
  /** Why the client closed, for callers that arrive afterwards. */
  private closeError: LivemuxError | null = null;
  private readonly backoff: Backoff;
  /** Cancels a backoff sleep when the client closes. */
  private readonly stop = new AbortController();
  private readonly sessionHost: SessionHost;
  private readonly connectionListener: ConnectionListener;

  private constructor(private readonly options: ResolvedOptions) {
    super();
    this.token = options.token;
    this.backoff = new Backoff(options.backoff);
    const client = this;
    this.sessionHost = {
      connection: () => client.connection(),
      get closed(): boolean {
        return client.isClosed();
      },
      signal: this.stop.signal,
      backoff: options.backoff,
    };
    this.connectionListener = {
      goAway: (conn, goAway) => this.onGoAway(conn, goAway),
      drained: (conn) => conn.close(new ServerError('GOAWAY', conn.goAway?.code ?? Code.GOING_AWAY, 'drained')),
      authState: (conn, state) => {
        if (state.refresh) void this.refreshToken(conn);
        else this.emit('refreshed', state.expiresInMs);
      },
      ended: (conn, cause) => this.onConnectionEnded(conn, cause),
    };
  }

  /** See {@link connect}. */
  static async connect(options: ConnectOptions): Promise<LivemuxClient> {
    const client = new LivemuxClient(resolveOptions(options));
    const dialed = client.dialAny();
    client.pending = dialed;
    dialed.catch(() => {}); // observed below
    let conn: ClientConnection;
    try {
      conn = await dialed;
    } catch (err) {
      client.terminate(err as LivemuxError);
      throw err;
    }
    client.adopt(conn);
    return client;
  }

  /** WELCOME of the latest connection: connection id, user id, heartbeat interval, limits. */
  get welcome(): Welcome {
    return this.welcomeValue!;
  }

  /** Where the client is in its lifecycle (see {@link ClientState}). */
  get state(): ClientState {
    return this.stateValue;
  }

  /**
   * Opens a session and resolves at OPEN_OK. While the client reconnects, waits for the connection.
   * Rejects with {@link OpenFailedError} carrying the OPEN_FAIL code and `retryAfterMs` (also for
   * TOO_MANY_SESSIONS, checked locally against WELCOME's limit), or {@link ClientClosedError}.
   */
  async open(business: string, metadata: Record<string, string> = {}, options: OpenOptions = {}): Promise<ClientSession> {
    if (typeof business !== 'string' || business.length === 0) {
      throw new LivemuxError('ERR_INVALID_ARGUMENT', `open: business must be a non-empty string (${JSON.stringify(business)})`);
    }
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new LivemuxError('ERR_INVALID_ARGUMENT', `open: metadata.${key} must be a string (${typeof value})`);
      }
    }
    if (this.isClosed()) throw this.closeError ?? new ClientClosedError();
    const session = new ClientSession(this.sessionHost, business, Object.freeze({ ...metadata }), options.reopen ?? false);
    return session.start();
  }

  /**
   * Closes every connection (frames already written are flushed; sessions end with CANCELLED and the
   * server closes them towards their backends), cancels a pending reconnect, emits `'close'` without an
   * error, and resolves once the sockets are closed. Idempotent.
   */
  async close(): Promise<void> {
    const connections = [this.current, this.dialing, ...this.draining].filter((c): c is ClientConnection => c !== null);
    if (this.stateValue !== ClientState.CLOSED) this.terminate(undefined);
    await Promise.all(connections.map((c) => c.closed));
  }

  /** Resolves with a connection that takes new sessions; dials one when IDLE. */
  private connection(): Promise<ClientConnection> {
    switch (this.stateValue) {
      case ClientState.CONNECTED:
        return Promise.resolve(this.current!);
      case ClientState.CONNECTING:
      case ClientState.RECONNECTING:
        return this.pending!;
      case ClientState.IDLE:
        // Someone is waiting for it: dial at once.
        return this.startReconnect(this.goAwayError(), false);
      case ClientState.CLOSED:
        return Promise.reject(this.closeError ?? new ClientClosedError());
    }
  }

  /**
   * Dials the candidates in order — the dispatcher's addresses, then the static ones — until one
   * reaches WELCOME and takes sessions. A failure whose code says never retry, or refresh the token,
   * ends the search (every proxy would answer the same); anything else moves on to the next address.
   * Rejects with the last failure.
   */
  private async dialAny(): Promise<ClientConnection> {
    const candidates = await this.candidates();
    let lastError: LivemuxError = new LivemuxError('ERR_DISPATCH', 'connect: no address to dial');
    for (const address of candidates) {
      if (this.isClosed()) throw this.closeError ?? new ClientClosedError();
      try {
        return await this.dialOne(address);
      } catch (err) {
        lastError = err as LivemuxError;
        const advice = retryAdvice(lastError);
        if (advice === 'never' || advice === 'refresh_token') break;
      }
    }
    throw lastError;
  }

  /** The addresses to try: the dispatcher's then the static ones, or the static ones if it fails. */
  private async candidates(): Promise<Address[]> {
    const { dispatch, addresses, logger } = this.options;
    if (!dispatch) return [...addresses];
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(dispatch.timeoutMs), this.stop.signal]);
      const dispatched = await fetchDispatch(dispatch.url, signal);
      const seen = new Set<string>();
      return [...dispatched, ...addresses].filter((a) => !seen.has(`${a.host}:${a.port}`) && seen.add(`${a.host}:${a.port}`));
    } catch (err) {
      if (this.isClosed()) throw this.closeError ?? new ClientClosedError();
      if (addresses.length === 0) throw err;
      logger.warn({ err: (err as Error).message }, 'livemux client: dispatcher unavailable; dialing the static addresses');
      return [...addresses];
    }
  }

  /** Dials `address`; resolves once WELCOME arrived on a connection that takes sessions. */
  private async dialOne(address: Address): Promise<ClientConnection> {
    const conn = this.dial(address);
    await conn.ready;
    // GOAWAY right behind WELCOME: that server is draining (its address hint is recorded).
    if (!conn.acceptsSessions) throw this.goAwayError(conn.goAway);
    return conn;
  }

  private dial(address: Address): ClientConnection {
    const { options } = this;
    const conn = new ClientConnection(
      {
        address,
        tls: options.tls,
        hello: {
          versions: [...SUPPORTED_VERSIONS],
          token: this.token,
          client: options.clientInfo,
          sessionWindow: options.sessionWindow,
          connectionWindow: options.connectionWindow,
          acceptsBatch: true,
          // Without getToken there is nothing to refresh with: the server then just ends the connection
          // with AUTH_EXPIRED when the token lapses.
          acceptsRefresh: options.getToken !== undefined,
        },
        heartbeatIntervalMs: options.heartbeatIntervalMs,
        logger: options.logger,
      },
      this.connectionListener,
    );
    this.dialing = conn;
    return conn;
  }

  private adopt(conn: ClientConnection): void {
    this.dialing = null;
    this.current = conn;
    this.welcomeValue = conn.welcome;
    this.connectedAt = performance.now();
    this.stateValue = transition('client', CLIENT_TRANSITIONS, this.stateValue, ClientState.CONNECTED);
  }

  /**
   * The server asked for a fresh token before the connection's lapses (PROTOCOL.md §5.3): `getToken`'s
   * token goes out in REFRESH, and is kept for later reconnects. If `getToken` fails, the connection
   * ends with AUTH_EXPIRED at the deadline and the reconnect loop asks `getToken` again.
   */
  private async refreshToken(conn: ClientConnection): Promise<void> {
    let token: string;
    try {
      token = await this.options.getToken!();
    } catch (err) {
      this.options.logger.warn({ message: (err as Error).message }, 'livemux client: getToken failed; the connection ends when its token lapses');
      return;
    }
    this.token = token;
    conn.refresh(token);
  }

  private onGoAway(conn: ClientConnection, goAway: GoAway): void {
    if (goAway.reconnectAddress) {
      this.hintedAddress = parseAddress(goAway.reconnectAddress);
      if (!this.hintedAddress) {
        this.options.logger.warn({ reconnectAddress: goAway.reconnectAddress }, 'livemux client: ignoring malformed GOAWAY address');
      }
    }
    if (conn === this.current) {
      this.current = null;
      this.draining.add(conn);
      this.lastGoAway = goAway;
      this.stateValue = transition('client', CLIENT_TRANSITIONS, this.stateValue, ClientState.IDLE);
    }
    this.emit('goaway', goAway);
  }

  private onConnectionEnded(conn: ClientConnection, cause: LivemuxError): void {
    if (this.draining.delete(conn)) {
      // Drained as the server asked. Sessions that still ride on it (reopen) dial on their own; otherwise
      // reconnect now so the next open() finds a connection, unless the server wanted us idle.
      if (this.stateValue === ClientState.IDLE && this.lastGoAway?.code !== Code.IDLE_TIMEOUT) {
        void this.startReconnect(cause, true);
      }
      return;
    }
    if (conn !== this.current) return; // a dial that failed: the reconnect loop sees it through `ready`
    this.current = null;
    if (this.stateValue === ClientState.CLOSED) return;
    this.options.logger.info({ cause: cause.message }, 'livemux client: connection lost');
    const advice = retryAdvice(cause);
    if (!this.options.reconnect || advice === 'never' || (advice === 'refresh_token' && !this.options.getToken)) {
      this.terminate(cause);
      return;
    }
    void this.startReconnect(cause, true);
  }

  /**
   * Starts the reconnect loop and returns its promise (also kept in `pending` for every caller of
   * `connection()`). The loop ends in adopt() or terminate(); the rejection is handled by those awaiting.
   */
  private startReconnect(cause: LivemuxError, delayFirst: boolean): Promise<ClientConnection> {
    this.stateValue = transition('client', CLIENT_TRANSITIONS, this.stateValue, ClientState.RECONNECTING);
    if (performance.now() - this.connectedAt >= BACKOFF_RESET_AFTER_MS) this.backoff.reset();
    const pending = this.reconnect(cause, delayFirst);
    // Nobody may be waiting (no session to reopen): failure is already handled by terminate().
    pending.catch(() => {});
    this.pending = pending;
    return pending;
  }

  /**
   * Dials until a connection reaches WELCOME. The first dial goes at once when someone waits for it
   * (`delayFirst` false) or the cause's code says 'immediate'; every other dial waits its backoff delay.
   */
  private async reconnect(cause: LivemuxError, delayFirst: boolean): Promise<ClientConnection> {
    const limits = this.options.backoff;
    let lastError = cause;
    let needToken = retryAdvice(cause) === 'refresh_token';
    const immediate = !delayFirst || retryAdvice(cause) === 'immediate';
    for (let attempt = 1; ; attempt += 1) {
      if (attempt > limits.maxAttempts || (needToken && !this.options.getToken)) return this.giveUp(lastError);
      const backoffMs = this.backoff.next(baseDelay(lastError, limits.initialMs));
      const delayMs = attempt === 1 && immediate ? 0 : backoffMs;
      this.emit('reconnecting', { attempt, delayMs, error: lastError });
      if (delayMs > 0) {
        try {
          // Ref'd, like a socket: a client that is reconnecting keeps the process alive until close().
          await sleep(delayMs, undefined, { signal: this.stop.signal });
        } catch {
          throw this.closeError ?? new ClientClosedError();
        }
      }
      if (this.isClosed()) throw this.closeError ?? new ClientClosedError();
      if (needToken) {
        try {
          this.token = await this.options.getToken!();
          needToken = false;
        } catch (err) {
          lastError = new LivemuxError('ERR_TOKEN_REFRESH', `getToken: ${(err as Error).message}`, { cause: err });
          continue;
        }
      }
      const hinted = this.hintedAddress;
      this.hintedAddress = null;
      let conn: ClientConnection;
      try {
        conn = hinted ? await this.dialOne(hinted) : await this.dialAny();
      } catch (err) {
        if (this.isClosed()) throw this.closeError ?? new ClientClosedError();
        lastError = err as LivemuxError;
        const advice = retryAdvice(lastError);
        if (advice === 'never') return this.giveUp(lastError);
        needToken ||= advice === 'refresh_token';
        continue;
      }
      if (this.isClosed()) throw this.closeError ?? new ClientClosedError();
      this.adopt(conn);
      this.options.logger.info({ connectionId: conn.welcome.connectionId, attempt }, 'livemux client: reconnected');
      this.emit('reconnected', conn.welcome);
      return conn;
    }
  }

  /** A call, not a property read: TypeScript would keep a narrowed `stateValue` across awaits. */
  private isClosed(): boolean {
    return this.stateValue === ClientState.CLOSED;
  }

  private giveUp(error: LivemuxError): never {
    this.terminate(error);
    throw error;
  }

  /** The one exit to CLOSED: closes every connection with `error` (or ClientClosedError) and emits 'close'. */
  private terminate(error: LivemuxError | undefined): void {
    this.stateValue = transition('client', CLIENT_TRANSITIONS, this.stateValue, ClientState.CLOSED);
    this.closeError = error ?? null;
    this.stop.abort();
    const cause = error ?? new ClientClosedError();
    for (const conn of [this.current, this.dialing, ...this.draining]) conn?.close(cause);
    this.current = null;
    this.dialing = null;
    this.draining.clear();
    if (error) this.options.logger.warn({ code: error.code, message: error.message }, 'livemux client: closed');
    this.emit('close', error);
  }

  private goAwayError(goAway: GoAway | null = this.lastGoAway): ServerError {
    return new ServerError('GOAWAY', goAway?.code ?? Code.GOING_AWAY, goAway?.reason ?? '');
  }
}

/** What the protocol advises after `err`: its code's advice; backoff for failures without a code. */
function retryAdvice(err: LivemuxError): RetryAdvice {
  if (err instanceof WireCodeError) return err.retry;
  if (err instanceof ProtocolError) return codeInfo(err.wireCode).retry;
  return 'backoff';
}

/** Base of the backoff after `err`: the server's hint, else the code's delay, else `initialMs`. */
function baseDelay(err: LivemuxError, initialMs: number): number {
  if (err instanceof WireCodeError) return err.retryAfterMs || codeInfo(err.wireCode).delayMs || initialMs;
  return initialMs;
}
