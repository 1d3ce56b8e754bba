import { Code } from '../protocol/codes.js';
import { TOKEN_SKEW_MS } from '../protocol/constants.js';
import { LimitError, ProtocolError } from '../protocol/errors.js';
import { type TokenVerifier, forwardedClaims } from './auth.js';

/** The bounds every identity must respect, whichever verifier vouched for it (PROTOCOL.md §5.3). */
export interface IdentityLimits {
  maxTokenBytes: number;
  maxSubBytes: number;
  maxClaimsBytes: number;
  maxTokenLifetimeS: number;
}

/** A client's identity as the proxy keeps it for the life of a connection. */
export interface Identity {
  userId: string;
  /** Forwarded claims (string-valued, non-registered), passed to backends in SessionOpened. */
  claims: Readonly<Record<string, string>>;
  /** When the connection must end unless a REFRESH is accepted: `exp` + TOKEN_SKEW_MS; Infinity without `exp`. */
  deadline: number;
}

// C0 controls and DEL: a user id goes into every log line and to every backend as it is.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/**
 * Verifies `token` with `verifier`, then holds the result to `limits`. The token's size is checked first,
 * before a byte of it is parsed; a `sub`, claims, `exp`, `iat` or `nbf` out of bounds is refused even when
 * the verifier accepted it, so a custom verifier cannot let an unbounded identity in.
 * @throws LimitError TOKEN_TOO_LARGE (token, `sub` or claims over their limit) or ProtocolError
 *   AUTH_FAILED / AUTH_EXPIRED, with a message saying which check failed.
 */
export async function verifyIdentity(
  verifier: TokenVerifier,
  token: string,
  limits: IdentityLimits,
  now = Date.now(),
): Promise<Identity> {
  const tokenBytes = Buffer.byteLength(token);
  if (tokenBytes > limits.maxTokenBytes) {
    throw new LimitError(Code.TOKEN_TOO_LARGE, `token: too large (${tokenBytes} vs ${limits.maxTokenBytes} bytes)`, 'auth.max_token_bytes');
  }
  const { userId, claims } = await verifier.verify(token);
  const subBytes = Buffer.byteLength(userId);
  if (subBytes > limits.maxSubBytes) {
    throw new LimitError(Code.TOKEN_TOO_LARGE, `token: "sub" too large (${subBytes} vs ${limits.maxSubBytes} bytes)`, 'auth.max_sub_bytes');
  }
  if (CONTROL_CHARACTERS.test(userId)) throw authFailed('token: "sub" contains control characters');
  const forwarded = forwardedClaims(claims);
  let claimsBytes = 0;
  for (const [name, value] of Object.entries(forwarded)) claimsBytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  if (claimsBytes > limits.maxClaimsBytes) {
    throw new LimitError(Code.TOKEN_TOO_LARGE, `token: forwarded claims too large (${claimsBytes} vs ${limits.maxClaimsBytes} bytes)`, 'auth.max_claims_bytes');
  }
  return { userId, claims: forwarded, deadline: checkTimes(claims, limits.maxTokenLifetimeS, now) };
}

/** Checks `exp`, `iat` and `nbf` (NumericDate seconds) for sanity; returns the connection's deadline. */
function checkTimes(claims: Record<string, unknown>, maxLifetimeS: number, now: number): number {
  const { exp, iat, nbf } = claims;
  for (const [name, value] of [['exp', exp], ['iat', iat], ['nbf', nbf]] as const) {
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      throw authFailed(`token: "${name}" must be a finite number of seconds (${JSON.stringify(value)})`);
    }
  }
  const skewS = TOKEN_SKEW_MS / 1000;
  const nowS = now / 1000;
  if (typeof iat === 'number' && iat > nowS + skewS) throw authFailed(`token: "iat" is in the future (${iso(iat)} vs now ${iso(nowS)})`);
  if (typeof nbf === 'number' && nbf > nowS + skewS) throw authFailed(`token: not valid yet ("nbf" ${iso(nbf)} vs now ${iso(nowS)})`);
  if (exp === undefined) return Infinity;
  const e = exp as number;
  if (typeof iat === 'number' && e <= iat) throw authFailed(`token: "exp" is not after "iat" (${iso(e)} vs ${iso(iat)})`);
  if (e > nowS + maxLifetimeS) {
    throw new LimitError(Code.AUTH_FAILED, `token: "exp" too far away (${iso(e)}, more than auth.max_token_lifetime_s ${maxLifetimeS} s from now)`, 'auth.max_token_lifetime_s');
  }
  if (e * 1000 + TOKEN_SKEW_MS <= now) throw new ProtocolError(Code.AUTH_EXPIRED, `token: expired (exp ${iso(e)} vs now ${iso(nowS)})`);
  return e * 1000 + TOKEN_SKEW_MS;
}

function authFailed(message: string): ProtocolError {
  return new ProtocolError(Code.AUTH_FAILED, message);
}

function iso(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? String(seconds) : date.toISOString();
}
