import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { MAX_WINDOW } from '../protocol/constants.js';
import { ConfigError } from '../protocol/errors.js';
import type { ClientInfo } from '../protocol/messages.js';
import { PACKAGE_ROOT } from '../paths.js';

/** A connection (or reopened session) that stayed up this long resets its backoff (PROTOCOL.md §10). */
export const BACKOFF_RESET_AFTER_MS = 60_000;

/** Where the SDK logs. pino loggers fit as they are; the default discards everything. */
export interface ClientLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** Automatic reconnect settings (PROTOCOL.md, client reconnect guidance). */
export interface ReconnectOptions {
  /** Base of the first backoff delay when the failure's code brings none, ms. Default 500. */
  initialMs?: number;
  /** Cap of every backoff delay, ms. Default 30 000. */
  maxMs?: number;
  /** Consecutive dials that may fail to reach WELCOME before the client gives up. Default: no limit. */
  maxAttempts?: number;
}

/**
 * Options of {@link connect}. Where to connect comes from `dispatch`, `addresses` and `host`/`port`;
 * at least one of them must be given. Every dial (the first and each reconnect) asks the dispatcher
 * first and tries its addresses in its order, then the static ones (`host`/`port` first, then
 * `addresses`) in order; a dispatcher that cannot be reached or has no proxy leaves the static list.
 */
export interface ConnectOptions {
  host?: string;
  port?: number;
  /** More `host:port` addresses (IPv6 hosts in brackets), tried in order after `host`/`port`. */
  addresses?: readonly string[];
  /**
   * URL of a dispatcher's `GET /v1/dispatch?cluster=<name>` (`livemux dispatch`, docs/dispatch.md),
   * asked for the addresses to dial before every dial.
   */
  dispatch?: string;
  /** How long to wait for the dispatcher's answer, ms. Default 3 000. */
  dispatchTimeoutMs?: number;
  /** Authentication token sent in HELLO (a JWT by default). */
  token: string;
  /**
   * Called for a fresh token when the server says the connection's token is about to lapse (the token
   * then goes out in REFRESH, sessions untouched), and before reconnecting after AUTH_EXPIRED. Without
   * it the connection ends with AUTH_EXPIRED when its token lapses, and the client closes like after
   * any code that must not be retried.
   */
  getToken?: () => string | Promise<string>;
  /** `true` for TLS with default verification, or Node TLS options (e.g. `{ ca }`). Default plain TCP. */
  tls?: boolean | TlsConnectionOptions;
  /** Describes the app to the server (logs, metrics); merged over the SDK's own description. */
  clientInfo?: ClientInfo;
  /** `false` disables automatic reconnect. Default: enabled with the defaults of {@link ReconnectOptions}. */
  reconnect?: false | ReconnectOptions;
  /** Send PING after this long with nothing received. Default: the server's interval from WELCOME. */
  heartbeatIntervalMs?: number;
  /** Per-session window granted to the server for server→client DATA, bytes. Default 256 KiB. */
  sessionWindow?: number;
  /** Connection window granted to the server for server→client DATA, bytes. Default 1 MiB. */
  connectionWindow?: number;
  logger?: ClientLogger;
}

/** A dialable address. */
export interface Address {
  readonly host: string;
  readonly port: number;
}

/** {@link ConnectOptions} validated, with defaults applied; frozen. */
export interface ResolvedOptions {
  /** The static addresses, in the order they are tried (after the dispatcher's). */
  readonly addresses: readonly Address[];
  readonly dispatch: { readonly url: string; readonly timeoutMs: number } | null;
  readonly token: string;
  readonly getToken: (() => string | Promise<string>) | undefined;
  readonly tls: false | TlsConnectionOptions;
  readonly clientInfo: ClientInfo;
  /** Whether a lost connection is replaced automatically. */
  readonly reconnect: boolean;
  /** Backoff of reconnects and of session reopens (also set when reconnect is off: reopens use it). */
  readonly backoff: Readonly<Required<ReconnectOptions>>;
  readonly heartbeatIntervalMs: number | undefined;
  /** 0 = let the server apply its default (HELLO semantics). */
  readonly sessionWindow: number;
  readonly connectionWindow: number;
  readonly logger: ClientLogger;
}

const SILENT: ClientLogger = Object.freeze({ debug() {}, info() {}, warn() {} });

const SDK_INFO: ClientInfo = Object.freeze({
  sdk: 'livemux-node',
  sdkVersion: (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version,
  platform: `node ${process.version} ${process.platform}`,
});

/**
 * Validates `options` and applies defaults. Every problem is reported at once, each as
 * `field: expected …, got …`.
 * @throws ConfigError listing every invalid field.
 */
export function resolveOptions(options: ConnectOptions): ResolvedOptions {
  const problems: string[] = [];
  const check = (ok: boolean, field: string, expected: string, value: unknown): void => {
    if (!ok) problems.push(`${field}: expected ${expected}, got ${JSON.stringify(value) ?? String(value)}`);
  };
  const { host, port, addresses = [], dispatch, dispatchTimeoutMs = 3_000, token, getToken, tls, reconnect, heartbeatIntervalMs, sessionWindow, connectionWindow } = options;
  const direct = host !== undefined || port !== undefined;
  if (direct) {
    check(typeof host === 'string' && host.length > 0, 'host', 'a non-empty string', host);
    check(isPort(port), 'port', 'an integer 1..65535', port);
  }
  const parsed = Array.isArray(addresses) ? addresses.map((a) => (typeof a === 'string' ? parseAddress(a) : null)) : [];
  check(Array.isArray(addresses), 'addresses', 'an array of "host:port" strings', addresses);
  parsed.forEach((a, i) => check(a !== null, `addresses[${i}]`, 'a "host:port" string', addresses[i]));
  check(dispatch === undefined || isHttpUrl(dispatch), 'dispatch', 'an http:// or https:// URL', dispatch);
  check(isPositiveInt(dispatchTimeoutMs), 'dispatchTimeoutMs', 'a positive integer', dispatchTimeoutMs);
  check(direct || parsed.length > 0 || dispatch !== undefined, 'host', 'host and port, addresses or dispatch: somewhere to connect', host);
  check(typeof token === 'string' && token.length > 0, 'token', 'a non-empty string', token);
  check(getToken === undefined || typeof getToken === 'function', 'getToken', 'a function', typeof getToken);
  check(tls === undefined || typeof tls === 'boolean' || isObject(tls), 'tls', 'a boolean or TLS options', tls);
  check(heartbeatIntervalMs === undefined || isPositiveInt(heartbeatIntervalMs), 'heartbeatIntervalMs', 'a positive integer', heartbeatIntervalMs);
  check(sessionWindow === undefined || isWindow(sessionWindow), 'sessionWindow', `an integer 1..${MAX_WINDOW}`, sessionWindow);
  check(connectionWindow === undefined || isWindow(connectionWindow), 'connectionWindow', `an integer 1..${MAX_WINDOW}`, connectionWindow);
  check(reconnect === undefined || reconnect === false || isObject(reconnect), 'reconnect', 'false or an object', reconnect);

  // PROTOCOL.md §10: base 500 ms, cap 30 s.
  const { initialMs = 500, maxMs = 30_000, maxAttempts = Infinity } = isObject(reconnect) ? reconnect : {};
  check(isPositiveInt(initialMs), 'reconnect.initialMs', 'a positive integer', initialMs);
  check(isPositiveInt(maxMs) && maxMs >= initialMs, 'reconnect.maxMs', `an integer >= initialMs (${initialMs})`, maxMs);
  check(maxAttempts === Infinity || (Number.isInteger(maxAttempts) && maxAttempts >= 0), 'reconnect.maxAttempts', 'an integer >= 0', maxAttempts);
  if (problems.length > 0) throw new ConfigError('connect()', problems);

  const statics = [...(direct ? [{ host: host!, port: port! }] : []), ...(parsed as Address[])];
  return Object.freeze({
    addresses: Object.freeze(statics.map((a) => Object.freeze(a))),
    dispatch: dispatch === undefined ? null : Object.freeze({ url: dispatch, timeoutMs: dispatchTimeoutMs }),
    token,
    getToken,
    tls: tls === true ? {} : tls === undefined || tls === false ? false : tls,
    clientInfo: Object.freeze({ ...SDK_INFO, ...options.clientInfo }),
    reconnect: reconnect !== false,
    backoff: Object.freeze({ initialMs, maxMs, maxAttempts }),
    heartbeatIntervalMs,
    sessionWindow: sessionWindow ?? 0,
    connectionWindow: connectionWindow ?? 0,
    logger: options.logger ?? SILENT,
  });
}

/**
 * Parses a GOAWAY `reconnect_address` hint: `host:port`, with IPv6 hosts in brackets (`[::1]:7000`).
 * Returns null for anything else, so a bad hint falls back to the configured address.
 */
export function parseAddress(text: string): Address | null {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return null;
  const host = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (!isPort(port) || (match[1] !== undefined && isIP(host) !== 6)) return null;
  return { host, port };
}

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    const { protocol } = new URL(value);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65_535;
}

function isPositiveInt(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0;
}

function isWindow(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_WINDOW;
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}
