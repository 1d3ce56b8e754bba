import { LivemuxError } from '../../protocol/errors.js';
import { checkId, checkInteger } from '../kit/store-args.js';
import type { NewMessage } from './store.js';

/** Argument checks shared by the ImStore implementations, so both reject the same inputs the same way. */

export const SUBJECT = 'im store';
/** Longest user id, in UTF-8 bytes (the same bound as the inbox's). */
export const MAX_USER_ID_BYTES = 256;

export function imStoreClosed(method: string): LivemuxError {
  return new LivemuxError('ERR_STORE_CLOSED', `${SUBJECT} ${method}: store is closed`);
}

export function checkUser(what: string, user: string): void {
  checkId(SUBJECT, what, user, MAX_USER_ID_BYTES);
}

export function checkCount(what: string, value: number, min: number): void {
  checkInteger(SUBJECT, what, value, min);
}

/** Largest clientMsgId, in UTF-8 bytes. */
export const MAX_CLIENT_MSG_ID_BYTES = 64;
/** Largest device id, in UTF-8 bytes. */
export const MAX_DEVICE_ID_BYTES = 128;

export function checkMessage(m: NewMessage): void {
  checkUser('storeMessage sender', m.sender);
  checkUser('storeMessage recipient', m.recipient);
  checkId(SUBJECT, 'storeMessage serverId', m.serverId, 64);
  checkId(SUBJECT, 'storeMessage clientMsgId', m.clientMsgId, MAX_CLIENT_MSG_ID_BYTES);
  checkId(SUBJECT, 'storeMessage senderDevice', m.senderDevice, MAX_DEVICE_ID_BYTES);
  checkCount('storeMessage sentAtMs', m.sentAtMs, 0);
  if (!Buffer.isBuffer(m.body)) throw new LivemuxError('ERR_INVALID_ARGUMENT', `${SUBJECT} storeMessage body: expected a Buffer (${typeof m.body})`);
}

export function checkSession(user: string, sessionKey: string, ttlMs: number, nowMs: number): void {
  checkUser('session user', user);
  checkId(SUBJECT, 'session key', sessionKey, MAX_USER_ID_BYTES);
  checkCount('session ttlMs', ttlMs, 1);
  checkCount('session nowMs', nowMs, 0);
}
