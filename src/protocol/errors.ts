import { Code, codeName } from './codes.js';

/**
 * Base of every error livemux throws on purpose. `code` is a stable string (`ERR_*`) for programs;
 * the message reads `subject: what is wrong (value vs limit)` for people.
 */
export class LivemuxError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LivemuxError';
  }
}

/**
 * A violation of the wire protocol. `wireCode` is the code sent to the peer (PROTOCOL.md §6);
 * `sessionId` is set when the fault is confined to one session (answered with RESET), and 0 when the
 * whole connection is at fault (answered with ERROR and close).
 */
export class ProtocolError extends LivemuxError {
  constructor(
    readonly wireCode: Code,
    message: string,
    readonly sessionId = 0,
  ) {
    super(`ERR_${codeName(wireCode)}`, message);
    this.name = 'ProtocolError';
  }

  /** True when only one session is affected and the connection may continue. */
  get sessionScoped(): boolean {
    return this.sessionId !== 0;
  }
}

/** A configuration file or option is invalid; `problems` lists every issue found, one per line. */
export class ConfigError extends LivemuxError {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super('ERR_CONFIG', `${file}: invalid configuration\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * A protocol error caused by a configured limit. `limit` is the limit's path in livemux.yaml (e.g.
 * `connections.max_per_user`): the operator's knob, and the label of `livemux_limit_hits_total`.
 */
export class LimitError extends ProtocolError {
  constructor(
    wireCode: Code,
    message: string,
    readonly limit: string,
  ) {
    super(wireCode, message);
    this.name = 'LimitError';
  }
}
