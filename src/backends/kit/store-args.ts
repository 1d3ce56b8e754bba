import { LivemuxError } from '../../protocol/errors.js';

/**
 * Argument checks for backend stores, so every implementation of a store interface rejects the same
 * inputs with the same code and message: `<subject> <what>: expected <expected> (<value>)`, code
 * ERR_INVALID_ARGUMENT. `subject` names the store ("inbox", "im store").
 */
export function invalidArgument(subject: string, what: string, expected: string, value: unknown): LivemuxError {
  return new LivemuxError('ERR_INVALID_ARGUMENT', `${subject} ${what}: expected ${expected} (${String(value)})`);
}

/** An integer ≥ `min` that a double represents exactly (seqs, times, counts). */
export function checkInteger(subject: string, what: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw invalidArgument(subject, what, `an integer >= ${min}`, value);
}

/** An id: a non-empty string of at most `maxBytes` bytes of UTF-8. */
export function checkId(subject: string, what: string, value: string, maxBytes: number): void {
  if (typeof value !== 'string' || value === '' || Buffer.byteLength(value) > maxBytes) {
    throw invalidArgument(subject, what, `a non-empty string of at most ${maxBytes} bytes`, JSON.stringify(String(value).slice(0, 64)));
  }
}
