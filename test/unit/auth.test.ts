import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createJwtVerifier, mintToken } from '../../src/proxy/auth.js';
import { Code } from '../../src/protocol/codes.js';
import { ProtocolError } from '../../src/protocol/errors.js';

const secret = 'unit-test-secret-of-at-least-32-bytes!';
const key = new TextEncoder().encode(secret);
const now = (): number => Math.floor(Date.now() / 1000);
const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** The ProtocolError a verification rejects with. */
async function rejection(promise: Promise<unknown>): Promise<ProtocolError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error('expected a rejection');
}

describe('createJwtVerifier', () => {
  const verifier = createJwtVerifier({ secret });

  it('accepts a valid token and returns sub and claims', async () => {
    const token = await mintToken({ secret, sub: 'user-42', claims: { tier: 'gold' } });
    const result = await verifier.verify(token);
    expect(result.userId).toBe('user-42');
    expect(result.claims).toMatchObject({ sub: 'user-42', tier: 'gold' });
    expect(result.claims.exp).toBe((result.claims.iat as number) + 86_400);
  });

  it('rejects an expired token with AUTH_EXPIRED', async () => {
    const err = await rejection(verifier.verify(await mintToken({ secret, sub: 'u', ttlSeconds: -60 })));
    expect(err.wireCode).toBe(Code.AUTH_EXPIRED);
    expect(err.message).toMatch(/^token: expired \(exp \d{4}-\d\d-\d\dT.* vs now /);
  });

  it('tolerates 5 s of clock skew', async () => {
    await expect(verifier.verify(await mintToken({ secret, sub: 'u', ttlSeconds: -2 }))).resolves.toMatchObject({ userId: 'u' });
  });

  it('rejects a token signed with another secret', async () => {
    const err = await rejection(verifier.verify(await mintToken({ secret: 'another-secret', sub: 'u' })));
    expect(err.wireCode).toBe(Code.AUTH_FAILED);
    expect(err.message).toBe('token: bad signature');
  });

  it('rejects alg none', async () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'u', exp: now() + 60 })}.`;
    const err = await rejection(verifier.verify(token));
    expect(err.wireCode).toBe(Code.AUTH_FAILED);
    expect(err.message).toBe('token: algorithm "none" not allowed (HS256 only)');
  });

  it('rejects another HMAC algorithm even with the right secret', async () => {
    const token = await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'HS512' }).setExpirationTime('1h').sign(key);
    expect((await rejection(verifier.verify(token))).message).toBe('token: algorithm "HS512" not allowed (HS256 only)');
  });

  it('rejects a token without sub', async () => {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key);
    const err = await rejection(verifier.verify(token));
    expect(err.wireCode).toBe(Code.AUTH_FAILED);
    expect(err.message).toBe('token: no "sub" claim');
  });

  it('rejects an empty sub', async () => {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('').setExpirationTime('1h').sign(key);
    expect((await rejection(verifier.verify(token))).message).toBe('token: "sub" claim must be a non-empty string (the user id)');
  });

  it('rejects a token without exp', async () => {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').sign(key);
    expect((await rejection(verifier.verify(token))).message).toBe('token: no "exp" claim');
  });

  it('rejects a token that is not valid yet', async () => {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setNotBefore(now() + 3600).setExpirationTime('2h').sign(key);
    expect((await rejection(verifier.verify(token))).message).toBe('token: not valid yet ("nbf" is in the future)');
  });

  // The rest of PROTOCOL.md §5.3, claim by claim.
  it('accepts nbf up to 5 s ahead and exp up to 5 s behind the server clock; not beyond', async () => {
    const sign = (claims: object): Promise<string> => new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256' }).setSubject('u').sign(key);
    await expect(verifier.verify(await sign({ nbf: now() + 3, exp: now() + 60 }))).resolves.toMatchObject({ userId: 'u' });
    await expect(verifier.verify(await sign({ exp: now() - 3 }))).resolves.toMatchObject({ userId: 'u' });
    expect((await rejection(verifier.verify(await sign({ nbf: now() + 30, exp: now() + 60 })))).wireCode).toBe(Code.AUTH_FAILED);
    expect((await rejection(verifier.verify(await sign({ exp: now() - 30 })))).wireCode).toBe(Code.AUTH_EXPIRED);
  });

  it('does not check iat beyond its type: in the future is fine, a string is AUTH_FAILED', async () => {
    const sign = (iat: unknown): Promise<string> => new SignJWT({ iat } as Record<string, unknown>).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime('1h').sign(key);
    await expect(verifier.verify(await sign(now() + 3600))).resolves.toMatchObject({ userId: 'u' });
    expect((await rejection(verifier.verify(await sign('yesterday')))).wireCode).toBe(Code.AUTH_FAILED);
  });

  it.each([
    ['empty', '', 'token: missing'],
    ['garbage', 'not-a-token', /^token: malformed \(/],
    ['three garbage parts', 'a.b.c', /^token: malformed \(/],
    ['payload not JSON', `${b64({ alg: 'HS256' })}.${Buffer.from('{{').toString('base64url')}.sig`, /^token: /],
  ])('rejects a %s token with AUTH_FAILED', async (_name, token, message) => {
    const err = await rejection(verifier.verify(token));
    expect(err.wireCode).toBe(Code.AUTH_FAILED);
    expect(err.message).toMatch(message);
  });
});

describe('issuer and audience', () => {
  const verifier = createJwtVerifier({ secret, issuer: 'https://auth.example', audience: 'livemux' });

  it('accepts matching iss and aud', async () => {
    const token = await mintToken({ secret, sub: 'u', issuer: 'https://auth.example', audience: 'livemux' });
    await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 'u' });
  });

  it('rejects a wrong issuer', async () => {
    const err = await rejection(verifier.verify(await mintToken({ secret, sub: 'u', issuer: 'evil', audience: 'livemux' })));
    expect(err.wireCode).toBe(Code.AUTH_FAILED);
    expect(err.message).toBe('token: wrong issuer ("evil" vs "https://auth.example")');
  });

  it('rejects a wrong audience', async () => {
    const err = await rejection(verifier.verify(await mintToken({ secret, sub: 'u', issuer: 'https://auth.example', audience: 'other' })));
    expect(err.message).toBe('token: wrong audience ("other" vs "livemux")');
  });

  it('accepts an aud array that contains the audience', async () => {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setIssuer('https://auth.example').setAudience(['web', 'livemux']).setExpirationTime('1h').sign(key);
    await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 'u' });
  });

  it('rejects a missing issuer', async () => {
    const err = await rejection(verifier.verify(await mintToken({ secret, sub: 'u', audience: 'livemux' })));
    expect(err.message).toBe('token: no "iss" claim');
  });
});
