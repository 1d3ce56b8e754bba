import { describe, expect, it } from 'vitest';
import { Code } from '../../src/protocol/codes.js';
import { TOKEN_SKEW_MS } from '../../src/protocol/constants.js';
import { LimitError, ProtocolError } from '../../src/protocol/errors.js';
import type { TokenVerifier } from '../../src/proxy/auth.js';
import { type IdentityLimits, verifyIdentity } from '../../src/proxy/identity.js';

/** A verifier that vouches for anything: the identity rules must hold without the JWT verifier's help. */
const trusting = (claims: Record<string, unknown>): TokenVerifier => ({
  verify: async () => ({ userId: String(claims.sub), claims }),
});

const limits: IdentityLimits = { maxTokenBytes: 100, maxSubBytes: 8, maxClaimsBytes: 20, maxTokenLifetimeS: 3_600 };
const NOW = Date.UTC(2026, 0, 1);
const s = NOW / 1000;

async function refusal(claims: Record<string, unknown>, token = 't'): Promise<ProtocolError> {
  try {
    await verifyIdentity(trusting(claims), token, limits, NOW);
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error('expected a refusal');
}

describe('verifyIdentity', () => {
  it('returns the user, the forwarded claims and the deadline (exp + skew)', async () => {
    const id = await verifyIdentity(trusting({ sub: 'u1', exp: s + 60, iat: s, room: 'r1', n: 5 }), 't', limits, NOW);
    expect(id).toEqual({ userId: 'u1', claims: { room: 'r1' }, deadline: NOW + 60_000 + TOKEN_SKEW_MS });
  });

  it('a token without exp never lapses (a custom verifier may issue such)', async () => {
    expect((await verifyIdentity(trusting({ sub: 'u1' }), 't', limits, NOW)).deadline).toBe(Infinity);
  });

  it('refuses a token over max_token_bytes before the verifier sees it', async () => {
    let called = false;
    const verifier: TokenVerifier = { verify: async () => ((called = true), { userId: 'u', claims: {} }) };
    const err = await verifyIdentity(verifier, 'x'.repeat(101), limits, NOW).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LimitError);
    expect(err).toMatchObject({ wireCode: Code.TOKEN_TOO_LARGE, limit: 'auth.max_token_bytes' });
    expect(called).toBe(false);
  });

  it.each([
    ['a sub over max_sub_bytes (in UTF-8 bytes)', { sub: 'ééééé', exp: s + 60 }, Code.TOKEN_TOO_LARGE, 'auth.max_sub_bytes'],
    ['claims over max_claims_bytes', { sub: 'u', exp: s + 60, a: 'x'.repeat(20) }, Code.TOKEN_TOO_LARGE, 'auth.max_claims_bytes'],
    ['exp past max_token_lifetime_s', { sub: 'u', exp: s + 3_601 }, Code.AUTH_FAILED, 'auth.max_token_lifetime_s'],
  ])('%s → its code, counted by its limit', async (_, claims, code, limit) => {
    const err = await refusal(claims);
    expect(err).toBeInstanceOf(LimitError);
    expect(err).toMatchObject({ wireCode: code, limit });
  });

  it.each([
    ['a sub with a control character', { sub: 'a\u0007b', exp: s + 60 }, Code.AUTH_FAILED],
    ['exp not a finite number', { sub: 'u', exp: 'tomorrow' }, Code.AUTH_FAILED],
    ['exp = 1e300', { sub: 'u', exp: 1e300 }, Code.AUTH_FAILED],
    ['iat in the future beyond the skew', { sub: 'u', exp: s + 600, iat: s + 10 }, Code.AUTH_FAILED],
    ['nbf in the future beyond the skew', { sub: 'u', exp: s + 600, nbf: s + 10 }, Code.AUTH_FAILED],
    ['exp not after iat', { sub: 'u', exp: s + 1, iat: s + 1 }, Code.AUTH_FAILED],
    ['exp + skew already past', { sub: 'u', exp: s - 6 }, Code.AUTH_EXPIRED],
  ])('%s → %s', async (_, claims, code) => {
    expect((await refusal(claims)).wireCode).toBe(code);
  });

  it('allows the skew: iat and nbf a few seconds ahead, exp a few seconds past', async () => {
    await expect(verifyIdentity(trusting({ sub: 'u', exp: s + 60, iat: s + 4, nbf: s + 4 }), 't', limits, NOW)).resolves.toBeDefined();
    expect((await verifyIdentity(trusting({ sub: 'u', exp: s - 4 }), 't', limits, NOW)).deadline).toBe(NOW + 1_000);
  });
});
