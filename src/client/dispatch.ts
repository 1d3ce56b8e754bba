import { LivemuxError } from '../protocol/errors.js';
import { type Address, parseAddress } from './options.js';

/** Most bytes of a dispatcher's answer read: it holds a short list of addresses. */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * Asks a dispatcher (`livemux dispatch`, docs/dispatch.md) where to connect: resolves with its
 * addresses in its order. Rejects with a LivemuxError `ERR_DISPATCH` when it cannot be reached before
 * `signal` aborts (a timeout), answers anything but 200 (503: no proxy available), or its answer is
 * not a list of `host:port`; the caller then falls back to its static addresses.
 */
export async function fetchDispatch(url: string, signal: AbortSignal): Promise<Address[]> {
  let body: string;
  try {
    const res = await fetch(url, { signal, headers: { accept: 'application/json' } });
    body = await res.text();
    if (res.status !== 200) throw new Error(`HTTP ${res.status}${body ? `: ${body.slice(0, 200)}` : ''}`);
  } catch (err) {
    throw new LivemuxError('ERR_DISPATCH', `dispatch ${url}: ${(err as Error).message}`, { cause: err });
  }
  if (body.length > MAX_ANSWER_BYTES) throw new LivemuxError('ERR_DISPATCH', `dispatch ${url}: answer too large (${body.length} bytes)`);
  let addresses: unknown;
  try {
    addresses = (JSON.parse(body) as { addresses?: unknown }).addresses;
  } catch {
    addresses = undefined;
  }
  const parsed = Array.isArray(addresses) ? addresses.map((a) => (typeof a === 'string' ? parseAddress(a) : null)) : [null];
  if (parsed.some((a) => a === null)) {
    throw new LivemuxError('ERR_DISPATCH', `dispatch ${url}: expected {"addresses": ["host:port", ...]}, got ${body.slice(0, 200)}`);
  }
  return parsed as Address[];
}
