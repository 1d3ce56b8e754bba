import { isIPv6 } from 'node:net';
import type { ProxyConfig } from '../config/proxy-config.js';
import { Code } from '../protocol/codes.js';
import { LimitError } from '../protocol/errors.js';

/** A connection in the handshake, as the gate sees it: it can be asked to give way. */
export interface HandshakingConnection {
  /** Closes the connection with ERROR `err` (it gave way to a newer one). */
  shutOut(err: LimitError): void;
}

/**
 * The server's connection limits, in one place (PROTOCOL.md §11, docs/configuration.md `connections`):
 * - every connection counts from accept until its socket is gone (lingering after ERROR included)
 *   against `max` and against `max_per_address` of its client address;
 * - a connection not yet WELCOMEd counts against `max_handshakes`, and the bytes it holds (partial
 *   frames, frames pipelined behind HELLO) against `handshake_budget_bytes` shared by all of them;
 * - a WELCOMEd connection counts against `max_per_user` of its user until it closes.
 *
 * Over `max_handshakes`, the connection longest in the handshake gives way (ERROR SERVER_FULL) rather
 * than the newcomer being refused: a legitimate client finishes its handshake in a round trip or two,
 * so the oldest is the likeliest to be a slowloris, and an attacker cannot lock newcomers out by
 * holding handshakes open.
 */
export class ConnectionGate {
  private total = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly perUser = new Map<string, number>();
  /** Connections in the handshake, oldest first (Map keeps insertion order), with the bytes each holds. */
  private readonly handshaking = new Map<HandshakingConnection, number>();
  private handshakeBytes = 0;

  constructor(private readonly limits: ProxyConfig['connections']) {}

  /** Connections open now (in the handshake and lingering included). */
  get connections(): number {
    return this.total;
  }

  /** Connections not yet WELCOMEd. */
  get handshakes(): number {
    return this.handshaking.size;
  }

  /** Bytes held for connections not yet WELCOMEd. */
  get handshakeBytesHeld(): number {
    return this.handshakeBytes;
  }

  /** A new connection from `ip`: null when admitted (then {@link released} must follow), else why not. */
  admit(ip: string): LimitError | null {
    const { max, maxPerAddress } = this.limits;
    if (this.total >= max) return new LimitError(Code.SERVER_FULL, `server: ${this.total} connections (connections.max ${max})`, 'connections.max');
    const key = addressKey(ip);
    const fromIp = this.perAddress.get(key) ?? 0;
    if (fromIp >= maxPerAddress) {
      return new LimitError(Code.ADDRESS_LIMIT, `server: ${fromIp} connections from ${key} (connections.max_per_address ${maxPerAddress})`, 'connections.max_per_address');
    }
    this.total++;
    this.perAddress.set(key, fromIp + 1);
    return null;
  }

  /** The socket of a connection admitted from `ip` is gone. */
  released(ip: string): void {
    this.total--;
    const key = addressKey(ip);
    const n = (this.perAddress.get(key) ?? 1) - 1;
    if (n > 0) this.perAddress.set(key, n);
    else this.perAddress.delete(key);
  }

  /** `c` starts its handshake; if that makes one too many, the oldest gives way. */
  handshakeStarted(c: HandshakingConnection): void {
    const max = this.limits.maxHandshakes;
    if (this.handshaking.size >= max) {
      const oldest = this.handshaking.keys().next().value!;
      this.handshakeEnded(oldest);
      oldest.shutOut(new LimitError(Code.SERVER_FULL, `handshake: gave way to a newer connection (connections.max_handshakes ${max})`, 'connections.max_handshakes'));
    }
    this.handshaking.set(c, 0);
  }

  /**
   * `c`, still in the handshake, now holds `bytes`. Null while all handshakes together stay within the
   * budget; otherwise the error to close `c` with (its bytes are then no longer counted).
   */
  handshakeHolds(c: HandshakingConnection, bytes: number): LimitError | null {
    const before = this.handshaking.get(c);
    if (before === undefined) return null;
    this.handshakeBytes += bytes - before;
    this.handshaking.set(c, bytes);
    const budget = this.limits.handshakeBudgetBytes;
    if (this.handshakeBytes <= budget) return null;
    this.handshakeEnded(c);
    return new LimitError(
      Code.SERVER_FULL,
      `handshake: unauthenticated connections hold ${this.handshakeBytes + bytes} bytes (connections.handshake_budget_bytes ${budget})`,
      'connections.handshake_budget_bytes',
    );
  }

  /** `c` left the handshake (WELCOME, or closed). Idempotent. */
  handshakeEnded(c: HandshakingConnection): void {
    const bytes = this.handshaking.get(c);
    if (bytes === undefined) return;
    this.handshakeBytes -= bytes;
    this.handshaking.delete(c);
  }

  /** A connection of `userId` is about to be WELCOMEd: null when within `max_per_user` (then {@link userLeft} must follow). */
  userJoined(userId: string): LimitError | null {
    const max = this.limits.maxPerUser;
    const n = this.perUser.get(userId) ?? 0;
    if (n >= max) return new LimitError(Code.USER_LIMIT, `server: ${n} connections of this user (connections.max_per_user ${max})`, 'connections.max_per_user');
    this.perUser.set(userId, n + 1);
    return null;
  }

  userLeft(userId: string): void {
    const n = (this.perUser.get(userId) ?? 1) - 1;
    if (n > 0) this.perUser.set(userId, n);
    else this.perUser.delete(userId);
  }
}

/**
 * What a client address counts as for `max_per_address`: an IPv4 address itself (IPv4-mapped IPv6
 * included), an IPv6 address its /64. A /64 is what one subscriber, host or LAN is given, so a client
 * spreading connections over the 2^64 addresses of its prefix is still one address here.
 */
export function addressKey(ip: string): string {
  if (!isIPv6(ip)) return ip;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = groups(head!);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
