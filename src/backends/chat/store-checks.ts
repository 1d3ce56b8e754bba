import { LivemuxError } from '../../protocol/errors.js';
import { PRIORITY_NAMES, type Priority } from '../../protocol/constants.js';
import type { HistoryLimits, Member, Role, StoredMessage } from './store.js';

/**
 * Argument checks and errors shared by the ChatStore implementations, so both reject the same inputs
 * with the same codes (the conformance suite holds them to it).
 */

/** Every call after `close()`. */
export function storeClosed(method: string): LivemuxError {
  return new LivemuxError('ERR_STORE_CLOSED', `chat store ${method}: store is closed`);
}

/** An ordered write by a caller whose lease `token` is not the room's current one. */
export function staleOwner(method: string, room: string, token: number, cause?: unknown): LivemuxError {
  return new LivemuxError(
    'ERR_STALE_OWNER',
    `chat store ${method}: room ${JSON.stringify(room)} lease token ${token} is not the current one (the lease lapsed or another holder took it)`,
    { cause },
  );
}

/** A lease holder name: non-empty, without spaces (the Redis store keeps `<token> <holder>`). */
export function checkHolder(holder: string): void {
  if (typeof holder !== 'string' || holder === '' || /\s/.test(holder)) throw invalid('acquireLease holder', 'a non-empty string without whitespace', JSON.stringify(holder));
}

/** An append whose seq is not above the highest already appended to the room (`highest` when known). */
export function historyOrderError(room: string, seq: number, highest: number | null, cause?: unknown): LivemuxError {
  const than = highest === null ? '' : ` (${seq} vs ${highest})`;
  return new LivemuxError(
    'ERR_HISTORY_ORDER',
    `chat store appendHistory: room ${JSON.stringify(room)} seq is not above the highest already appended${than}`,
    { cause },
  );
}

export function badCursor(cursor: string): LivemuxError {
  return new LivemuxError('ERR_BAD_CURSOR', `chat store members: cursor ${JSON.stringify(cursor.slice(0, 64))} was not issued by this store`);
}

function invalid(what: string, expected: string, value: unknown): LivemuxError {
  return new LivemuxError('ERR_INVALID_ARGUMENT', `chat store ${what}: expected ${expected} (${String(value)})`);
}

/** An integer ≥ `min` that a double represents exactly (seqs, versions, times, counts). */
export function checkInteger(what: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw invalid(what, `an integer >= ${min}`, value);
}

/** A read `limit`: an integer ≥ 1, capped at `cap`. */
export function checkLimit(what: string, limit: number, cap: number): number {
  checkInteger(what, limit, 1);
  return Math.min(limit, cap);
}

export function checkLimits(limits: HistoryLimits): void {
  checkInteger('appendHistory limits.maxLength', limits.maxLength, 1);
  if (limits.maxAgeMs !== Number.POSITIVE_INFINITY) checkInteger('appendHistory limits.maxAgeMs', limits.maxAgeMs, 1);
}

export function checkMessage(message: StoredMessage): void {
  checkInteger('appendHistory message.seq', message.seq, 1);
  checkInteger('appendHistory message.sentAtMs', message.sentAtMs, 0);
  if (PRIORITY_NAMES[message.priority] === undefined) throw invalid('appendHistory message.priority', '0|1|2', message.priority);
}

const ROLES: ReadonlySet<string> = new Set<Role>(['member', 'host', 'admin', 'whitelisted']);

export function checkUserId(userId: string, what = 'join member.userId'): void {
  if (typeof userId !== 'string' || userId === '') throw invalid(what, 'a non-empty string', JSON.stringify(userId));
}

/** A presence ID: a non-empty string. */
export function checkPresence(presence: string, what: string): void {
  if (typeof presence !== 'string' || presence === '') throw invalid(what, 'a non-empty presence ID', JSON.stringify(presence));
}

/** Everything `join` stores about a member, checked. */
export function checkMember(member: Member): void {
  checkUserId(member.userId);
  checkRole(member.role);
  checkInteger('join member.joinedAtMs', member.joinedAtMs, 0);
  if (member.presence !== undefined) checkPresence(member.presence, 'join member.presence');
}

export function checkRole(role: string): void {
  if (!ROLES.has(role)) throw invalid('join member.role', 'one of member|host|admin|whitelisted', JSON.stringify(role));
}

/** Narrows a stored priority back to the type (stores only ever write checked values). */
export function toPriority(value: number): Priority {
  if (PRIORITY_NAMES[value] === undefined) throw new LivemuxError('ERR_STORE_CORRUPT', `chat store: stored priority ${value} is not 0|1|2`);
  return value as Priority;
}

/** Narrows a stored role back to the type. */
export function toRole(value: unknown): Role {
  if (typeof value !== 'string' || !ROLES.has(value)) throw new LivemuxError('ERR_STORE_CORRUPT', `chat store: stored role ${String(value)} is unknown`);
  return value as Role;
}

/** The entries of a `setAttributes` argument, in key order, each value a string or null. */
export function checkAttributeChanges(changes: Readonly<Record<string, string | null>>): [string, string | null][] {
  const entries = Object.entries(changes);
  for (const [key, value] of entries) {
    if (value !== null && typeof value !== 'string') throw invalid(`setAttributes changes[${JSON.stringify(key)}]`, 'a string or null', typeof value);
  }
  return entries;
}
