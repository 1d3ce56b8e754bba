import { LivemuxError } from '../../../protocol/errors.js';
import { INBOX_DEFAULTS, MAX_INBOX_ID_BYTES, MAX_INBOX_READ, type AppendRequest, type InboxStoreOptions, type RetentionLimits } from './inbox-store.js';

/**
 * Argument checks shared by the inbox stores and ledgers, so every implementation rejects the same
 * inputs with the same codes (the conformance suite holds them to it).
 */

/** Every call after `close()`. */
export function inboxClosed(method: string): LivemuxError {
  return new LivemuxError('ERR_STORE_CLOSED', `inbox ${method}: store is closed`);
}

function invalid(what: string, expected: string, value: unknown): LivemuxError {
  return new LivemuxError('ERR_INVALID_ARGUMENT', `inbox ${what}: expected ${expected} (${String(value)})`);
}

/** An integer ≥ `min` that a double represents exactly (seqs, times, counts). */
export function checkInteger(what: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw invalid(what, `an integer >= ${min}`, value);
}

/** A user or device id: 1..MAX_INBOX_ID_BYTES bytes of UTF-8. */
export function checkId(what: string, value: string): void {
  if (typeof value !== 'string' || value === '' || Buffer.byteLength(value) > MAX_INBOX_ID_BYTES) {
    throw invalid(what, `a non-empty string of at most ${MAX_INBOX_ID_BYTES} bytes`, JSON.stringify(String(value).slice(0, 64)));
  }
}

/** An optional id (ref, collapse key, dedupe key): '' or a string of at most MAX_INBOX_ID_BYTES bytes. */
export function checkOptionalId(what: string, value: string | undefined): string {
  if (value === undefined || value === '') return '';
  checkId(what, value);
  return value;
}

/** An append request with its optional fields defaulted. */
export interface CheckedAppend {
  readonly body: Buffer;
  readonly ref: string;
  readonly collapseKey: string;
  readonly expiresAtMs: number;
  readonly dedupeKey: string;
}

export function checkAppend(request: AppendRequest, nowMs: number): CheckedAppend {
  if (!Buffer.isBuffer(request.body)) throw invalid('append body', 'a Buffer', typeof request.body);
  checkInteger('append nowMs', nowMs, 0);
  const expiresAtMs = request.expiresAtMs ?? 0;
  checkInteger('append expiresAtMs', expiresAtMs, 0);
  return {
    body: request.body,
    ref: checkOptionalId('append ref', request.ref),
    collapseKey: checkOptionalId('append collapseKey', request.collapseKey),
    expiresAtMs,
    dedupeKey: checkOptionalId('append dedupeKey', request.dedupeKey),
  };
}

/** A read `limit`: an integer ≥ 1, capped at MAX_INBOX_READ. */
export function checkReadLimit(limit: number): number {
  checkInteger('read limit', limit, 1);
  return Math.min(limit, MAX_INBOX_READ);
}

/** The store options with defaults, checked. */
export interface ResolvedInboxOptions {
  readonly retention: RetentionLimits;
  readonly dedupeTtlMs: number;
  readonly maxDevices: number;
}

export function resolveInboxOptions(options: InboxStoreOptions): ResolvedInboxOptions {
  const retention = {
    maxEntries: options.retention?.maxEntries ?? INBOX_DEFAULTS.maxEntries,
    maxAgeMs: options.retention?.maxAgeMs ?? INBOX_DEFAULTS.maxAgeMs,
  };
  checkInteger('retention.maxEntries', retention.maxEntries, 1);
  if (retention.maxAgeMs !== Number.POSITIVE_INFINITY) checkInteger('retention.maxAgeMs', retention.maxAgeMs, 1);
  const dedupeTtlMs = options.dedupeTtlMs ?? INBOX_DEFAULTS.dedupeTtlMs;
  checkInteger('dedupeTtlMs', dedupeTtlMs, 1);
  const maxDevices = options.maxDevices ?? INBOX_DEFAULTS.maxDevices;
  checkInteger('maxDevices', maxDevices, 1);
  return Object.freeze({ retention: Object.freeze(retention), dedupeTtlMs, maxDevices });
}
