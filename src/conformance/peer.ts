/**
 * One connection of a client under test, seen from the conformance server: the frames it sent, in
 * order, for a scenario to wait on, and the frames a scenario sends it. Nothing here is clever on
 * purpose: a scenario states exactly which bytes go out and which reaction it expects.
 */
import type { Socket } from 'node:net';
import { Code } from '../protocol/codes.js';
import { Defaults, FRAME_TYPE_NAMES, FrameType } from '../protocol/constants.js';
import { FrameDecoder } from '../protocol/decoder.js';
import { encodeFrame, encodeWindowUpdate } from '../protocol/encoder.js';
import { ProtocolError } from '../protocol/errors.js';
import { ReceiveCredit } from '../protocol/flow-control.js';
import { decodeHello, decodeOpen, decodeStatus, encodeStatus, encodeWelcome, type Hello, type Limits, type Status } from '../protocol/messages.js';

/** A frame the client sent, and when it arrived (performance.now()). */
export interface PeerFrame {
  readonly type: FrameType;
  readonly name: string;
  readonly flags: number;
  readonly sessionId: number;
  readonly payload: Buffer;
  readonly at: number;
}

/** Why a scenario failed: what the client did, against what PROTOCOL.md asks. */
export class ScenarioFailure extends Error {}

type Match = (f: PeerFrame) => boolean;

/** Limits a scenario's WELCOME announces unless it says otherwise. */
export const DEFAULT_LIMITS: Limits = {
  maxSessions: 16,
  maxPayload: Defaults.maxPayload,
  sessionWindow: Defaults.sessionWindow,
  connectionWindow: Defaults.connectionWindow,
  idleTimeoutMs: 0,
  maxOpenRate: 1000,
};

export class Peer {
  /** Frames received and not yet taken by `next`, in arrival order. */
  private readonly inbox: PeerFrame[] = [];
  /** Every frame received, never consumed (for reports). */
  readonly log: PeerFrame[] = [];
  private waiters: { match: Match; resolve: (f: PeerFrame) => void; gone?: () => void }[] = [];
  private readonly decoder: FrameDecoder;
  /** Set when the client's bytes broke the framing rules: the protocol error it made. */
  framingError: ProtocolError | null = null;
  readonly closed: Promise<void>;
  private isClosed = false;
  closedAt = 0;
  /** Credit returned for the client's DATA, so its sends flow unless a scenario withholds it. */
  autoCredit = true;
  private connectionCredit = new ReceiveCredit(Defaults.connectionWindow);
  private readonly sessionCredits = new Map<number, ReceiveCredit>();
  private sessionWindow = Defaults.sessionWindow;
  /** The HELLO, once it arrived. */
  hello: Hello | null = null;
  /** Time of the last frame this side wrote. */
  lastSentAt = performance.now();

  constructor(
    private readonly socket: Socket,
    /** Called once the HELLO arrived: the server hands the connection to its scenario. */
    private readonly onHello: (peer: Peer, hello: Hello) => void,
  ) {
    this.decoder = new FrameDecoder({ onFrame: (type, flags, sessionId, payload) => this.onFrame(type, flags, sessionId, payload) }, { maxPayload: MAX_FRAME, acceptBatch: false });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.framingError = err;
        this.wake();
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.closedAt = performance.now();
        this.wake();
        resolve();
      }),
    );
  }

  get ended(): boolean {
    return this.isClosed;
  }

  /** Sends WELCOME with `limits` over the defaults; the client's DATA is then credited against them. */
  welcome(limits: Partial<Limits> = {}, heartbeatIntervalMs = 60_000): Limits {
    const all = { ...DEFAULT_LIMITS, ...limits };
    this.sessionWindow = all.sessionWindow;
    this.connectionCredit = new ReceiveCredit(all.connectionWindow);
    this.send(encodeFrame(FrameType.WELCOME, 0, 0, encodeWelcome({ version: 1, connectionId: 'conformance', userId: 'sdk-under-test', heartbeatIntervalMs, limits: all })));
    return all;
  }

  /** Waits for OPEN of business `conformance`, answers OPEN_OK, and returns the session id. */
  async opened(timeoutMs = 5_000): Promise<number> {
    const open = await this.next((f) => f.type === FrameType.OPEN && businessOf(f) === 'conformance', timeoutMs, 'OPEN of business "conformance"');
    this.send(encodeFrame(FrameType.OPEN_OK, 0, open.sessionId));
    return open.sessionId;
  }

  send(frame: Buffer): void {
    this.lastSentAt = performance.now();
    if (!this.socket.destroyed) this.socket.write(frame);
  }

  data(sessionId: number, payload: Buffer | string, flags = 1): void {
    this.send(encodeFrame(FrameType.DATA, flags, sessionId, typeof payload === 'string' ? Buffer.from(payload) : payload));
  }

  status(type: FrameType, sessionId: number, code: number, reason = ''): void {
    this.send(encodeFrame(type, 0, sessionId, encodeStatus({ code, reason })));
  }

  /** Ends the connection from this side: ERROR `code`, then close. */
  end(code: number, reason: string): void {
    this.status(FrameType.ERROR, 0, code, reason);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The next frame matching `match` (taken from the inbox), or a failure naming `what` after `timeoutMs`. */
  next(match: Match, timeoutMs: number, what: string): Promise<PeerFrame> {
    const i = this.inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new ScenarioFailure(`expected ${what}; ${why}; received ${this.describeLog()}`));
      };
      const timer = setTimeout(() => fail(`nothing within ${timeoutMs} ms`), timeoutMs);
      const waiter = {
        match: (f: PeerFrame) => match(f),
        resolve: (f: PeerFrame) => {
          clearTimeout(timer);
          resolve(f);
        },
        gone: () => fail(this.framingError ? `the client broke framing (${this.framingError.message})` : 'the connection closed'),
      };
      this.waiters.push(waiter);
    });
  }

  /** Resolves if no frame matching `match` arrives within `ms`; fails naming `what` if one does. */
  async nothing(match: Match, ms: number, what: string): Promise<void> {
    const found = this.inbox.find(match);
    if (found) throw new ScenarioFailure(`${what}: got ${found.name} (received ${this.describeLog()})`);
    let seen: PeerFrame | null = null;
    await new Promise<void>((resolve) => {
      const waiter = {
        match,
        resolve: (f: PeerFrame) => {
          seen = f;
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      }, ms);
      this.waiters.push(waiter);
    });
    if (seen) throw new ScenarioFailure(`${what}: got ${(seen as PeerFrame).name} (received ${this.describeLog()})`);
  }

  /** The client's ERROR: its code, after which it must close; fails on anything else. */
  async error(code: number, timeoutMs = 3_000): Promise<void> {
    const f = await this.next((x) => x.type === FrameType.ERROR, timeoutMs, `ERROR ${codeLabel(code)}`);
    const status = decodeStatus('ERROR', f.payload);
    if (status.code !== code) throw new ScenarioFailure(`ERROR ${codeLabel(status.code)} (${status.reason}), expected ${codeLabel(code)}`);
    await this.closedWithin(timeoutMs, 'close after its ERROR');
  }

  /** Waits for the client to close the connection. */
  async closedWithin(timeoutMs: number, what: string): Promise<void> {
    if (this.isClosed) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([this.closed, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') throw new ScenarioFailure(`expected the client to ${what} within ${timeoutMs} ms; it did not`);
  }

  /** Decoded Status of a CLOSE, RESET, OPEN_FAIL or ERROR frame. */
  static status(f: PeerFrame): Status {
    return decodeStatus(f.name, f.payload);
  }

  describeLog(): string {
    const names = this.log.map((f) => (f.type === FrameType.ERROR || f.type === FrameType.RESET || f.type === FrameType.CLOSE ? `${f.name} ${codeLabel(Peer.status(f).code)}` : f.name));
    return `[${names.slice(-12).join(', ')}]${this.isClosed ? ', then the connection closed' : ''}`;
  }

  private onFrame(type: FrameType, flags: number, sessionId: number, payload: Buffer): void {
    const frame: PeerFrame = { type, name: FRAME_TYPE_NAMES[type]!, flags, sessionId, payload: Buffer.from(payload), at: performance.now() };
    this.log.push(frame);
    if (type === FrameType.HELLO && this.hello === null) {
      try {
        this.hello = decodeHello(payload);
      } catch (err) {
        this.framingError = err as ProtocolError;
        this.socket.destroy();
        return;
      }
      this.onHello(this, this.hello);
      return;
    }
    if (type === FrameType.DATA) this.credit(sessionId, payload.length);
    const waiter = this.waiters.find((w) => w.match(frame));
    if (waiter) {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      waiter.resolve(frame);
    } else this.inbox.push(frame);
  }

  /** Returns credit for the client's DATA by half windows, as a server does (PROTOCOL.md §7). */
  private credit(sessionId: number, bytes: number): void {
    if (!this.autoCredit || bytes === 0) return;
    let session = this.sessionCredits.get(sessionId);
    if (!session) this.sessionCredits.set(sessionId, (session = new ReceiveCredit(this.sessionWindow)));
    session.receive(bytes);
    this.connectionCredit.receive(bytes);
    const forSession = session.release(bytes);
    if (forSession > 0) this.send(encodeWindowUpdate(sessionId, forSession));
    const forConnection = this.connectionCredit.release(bytes);
    if (forConnection > 0) this.send(encodeWindowUpdate(0, forConnection));
  }

  private wake(): void {
    // Waiters for a frame learn nothing more will come; a `nothing` waiter just lets its timer run.
    for (const w of this.waiters.filter((x) => x.gone)) w.gone!();
  }
}

/** The conformance server reads any frame a client may legally send, whatever its own limits. */
const MAX_FRAME = 16 * 1024 * 1024;

/** The business an OPEN names ('' when its body does not decode). */
export function businessOf(f: PeerFrame): string {
  try {
    return decodeOpen(f.payload).business;
  } catch {
    return '';
  }
}

export function codeLabel(code: number): string {
  const name = Object.entries(Code).find(([, v]) => v === code)?.[0];
  return name ? `${name} (${code})` : String(code);
}
