import { SignJWT, decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { type AuthState, type Welcome, decodeAuthState, decodeWelcome, encodeHello, encodeRefresh } from '../../src/protocol/messages.js';
import { underAttack } from '../helpers/hostile.js';
import { metricValue } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, TEST_SECRET, startEchoStack, testToken } from '../helpers/processes.js';

/**
 * Issue 8, rows 6 and 9: a token's lifetime is enforced for the whole connection, with a notice
 * (AUTH_STATE) and a window to hand over a fresh token (REFRESH) without dropping sessions; and a token
 * is bounded in size and in time before anyone is let in. PROTOCOL.md §3.14–§3.15, §5.3.
 */

/** The proxy allows this much clock skew past `exp` (PROTOCOL.md §5.3). */
const SKEW_MS = 5_000;
/**
 * How late past its deadline the proxy may close an expired connection: the timer wheel's tolerance
 * (PROTOCOL.md §9.5: 1 s), plus room for a machine busy with other work.
 */
const CHECK_TOLERANCE_MS = 2_500;

let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack();
});

afterAll(() => stack?.stop());

/** An HS256 token for the test secret with exactly `claims` (no defaults added). */
function sign(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(TEST_SECRET));
}

const now = (): number => Math.floor(Date.now() / 1000);

const hello = (token: string): Buffer => encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token, acceptsRefresh: true }));
const refresh = (token: string): Buffer => encodeFrame(FrameType.REFRESH, 0, 0, encodeRefresh({ token }));

async function refusedWith(token: string): Promise<string> {
  const c = await RawClient.connect(stack.proxy.port);
  c.send(hello(token));
  return c.errorCode();
}

/**
 * A client that set accepts_refresh, with a token of `sub` lasting `ttlS`: WELCOMEd, its first AUTH_STATE
 * read (the token is within the refresh window at once), echo session 1 open.
 */
async function refreshingClient(sub: string, ttlS: number): Promise<{ c: RawClient; exp: number; welcome: Welcome; notice: AuthState }> {
  const token = await testToken(sub, ttlS);
  const c = await RawClient.connect(stack.proxy.port);
  onTestFinished(() => c.destroy());
  c.send(hello(token));
  const welcome = decodeWelcome((await c.next(FrameType.WELCOME)).payload);
  const notice = decodeAuthState((await c.next(FrameType.AUTH_STATE)).payload);
  c.open(1);
  await c.next(FrameType.OPEN_OK, 1);
  return { c, exp: decodeJwt(token).exp! * 1000, welcome, notice };
}

/** Sends `text` on session `id` of `c` and checks it is echoed. */
async function echoes(c: RawClient, id: number, text: string): Promise<void> {
  c.data(id, text);
  expect((await c.next(FrameType.DATA, id)).payload.toString()).toBe(text);
}

describe('row 6: a token that expires while connected', () => {
  it('as measured: a client that knows nothing of REFRESH keeps using the connection; it is closed with AUTH_EXPIRED at exp + 5 s', async () => {
    const token = await testToken('expiring', 4);
    const exp = decodeJwt(token).exp! * 1000;
    const c = await RawClient.handshake(stack.proxy.port, token);
    onTestFinished(() => c.destroy());
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    let lastEcho = 0;
    await underAttack(stack.proxy, async () => {
      // Echo after echo, as the row's client did (it was served 21.7 s past expiry), until the ERROR.
      while (!c.frames.some((f) => f.type === FrameType.ERROR) && Date.now() < exp + SKEW_MS + CHECK_TOLERANCE_MS + 5_000) {
        c.data(1, 'still here?');
        const answer = await Promise.race([c.next(FrameType.DATA, 1, 3_000).then(() => 'echo'), c.closed.then(() => 'closed')]).catch(() => 'none');
        if (answer === 'echo') lastEcho = Date.now();
        else break;
        await new Promise((r) => setTimeout(r, 100));
      }
    });
    expect(await c.errorCode(Math.max(1_000, exp + SKEW_MS + CHECK_TOLERANCE_MS - Date.now()))).toBe('AUTH_EXPIRED');
    expect(lastEcho).toBeGreaterThan(exp);
    expect(lastEcho).toBeLessThanOrEqual(exp + SKEW_MS + CHECK_TOLERANCE_MS);
    expect(c.frames.filter((f) => f.type === FrameType.AUTH_STATE)).toEqual([]);
  }, 30_000);

  it('is told at once (AUTH_STATE refresh) and, without a REFRESH, closed with AUTH_EXPIRED at exp + 5 s', async () => {
    const { c, exp, welcome, notice } = await refreshingClient('short', 4);
    expect(welcome.expiresInMs).toBeGreaterThan(0);
    expect(welcome.expiresInMs).toBeLessThanOrEqual(4_000 + SKEW_MS + 1_000);
    expect(notice.refresh).toBe(true);
    await echoes(c, 1, 'still fine');
    expect(await c.errorCode(exp + SKEW_MS + CHECK_TOLERANCE_MS + 1_000 - Date.now())).toBe('AUTH_EXPIRED');
    const closedAt = Date.now();
    expect(closedAt).toBeGreaterThanOrEqual(exp + SKEW_MS - 100);
    expect(closedAt).toBeLessThanOrEqual(exp + SKEW_MS + CHECK_TOLERANCE_MS);
  }, 30_000);

  it('a REFRESH with a fresh token of the same user keeps the connection and its sessions past the old deadline', async () => {
    const { c, exp, notice } = await refreshingClient('refresher', 3);
    expect(notice.refresh).toBe(true);
    c.send(refresh(await testToken('refresher', 3600)));
    const ack = decodeAuthState((await c.next(FrameType.AUTH_STATE)).payload);
    expect(ack.refresh).toBe(false);
    expect(ack.expiresInMs).toBeGreaterThan(3_500_000);
    // Past the first token's deadline, with margin for the periodic check (paced: the echoes use up the
    // session credit this raw client never returns).
    while (Date.now() < exp + SKEW_MS + CHECK_TOLERANCE_MS) {
      await echoes(c, 1, `t${Date.now()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await echoes(c, 1, 'after the old deadline');
    expect(c.frames.filter((f) => f.type === FrameType.ERROR)).toEqual([]);
    c.destroy();
  }, 30_000);

  it('a REFRESH for another user → ERROR AUTH_FAILED', async () => {
    const c = await RawClient.handshake(stack.proxy.port, await testToken('alice'), { acceptsRefresh: true });
    c.send(refresh(await testToken('mallory')));
    expect(await c.errorCode()).toBe('AUTH_FAILED');
  });

  it('a REFRESH with an expired token → ERROR AUTH_EXPIRED', async () => {
    const c = await RawClient.handshake(stack.proxy.port, await testToken('bob'), { acceptsRefresh: true });
    c.send(refresh(await testToken('bob', -60)));
    expect(await c.errorCode()).toBe('AUTH_EXPIRED');
  });

  it('a REFRESH before HELLO → ERROR UNEXPECTED_FRAME', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(refresh(stack.token));
    expect(await c.errorCode()).toBe('UNEXPECTED_FRAME');
  });

  it('a client that did not set accepts_refresh gets no AUTH_STATE, and its REFRESH → ERROR UNEXPECTED_FRAME', async () => {
    const c = await RawClient.handshake(stack.proxy.port, await testToken('old-sdk', 3));
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    await echoes(c, 1, 'hello');
    expect(c.frames.filter((f) => f.type === FrameType.AUTH_STATE)).toEqual([]);
    c.send(refresh(await testToken('old-sdk')));
    expect(await c.errorCode()).toBe('UNEXPECTED_FRAME');
  });

  it('REFRESH floods → ERROR RATE_LIMITED', async () => {
    const c = await RawClient.handshake(stack.proxy.port, await testToken('flood'), { acceptsRefresh: true });
    const fresh = await testToken('flood');
    for (let i = 0; i < 50; i++) c.send(refresh(fresh));
    expect(await c.errorCode()).toBe('RATE_LIMITED');
  });
});

describe('row 9: identities are bounded before anyone is let in', () => {
  it('the row as measured (an 11 KB sub, 11 KB of claims, exp = 1e300, each alone): the HELLO is over limits.max_hello_bytes → FRAME_TOO_LARGE', async () => {
    // Each fits the 16 KiB control-frame limit, and each was welcomed before.
    await underAttack(stack.proxy, async () => {
      for (const claims of [{ sub: 'u'.repeat(11_000), exp: now() + 60 }, { sub: 'u', exp: now() + 60, blob: 'c'.repeat(11_000) }]) {
        expect(await refusedWith(await sign(claims))).toBe('FRAME_TOO_LARGE');
      }
    });
  });

  const cases: [string, () => Promise<string>, string][] = [
    ['a 5,000-byte token (over auth.max_token_bytes 4096)', () => sign({ sub: 'u', exp: now() + 60, pad: 'p'.repeat(3_700) }), 'TOKEN_TOO_LARGE'],
    ['a 300-byte sub (over auth.max_sub_bytes 256)', () => sign({ sub: 's'.repeat(300), exp: now() + 60 }), 'TOKEN_TOO_LARGE'],
    ['2,100 bytes of forwarded claims (over auth.max_claims_bytes 2048)', () => sign({ sub: 'u', exp: now() + 60, a: 'x'.repeat(1_050), b: 'y'.repeat(1_050) }), 'TOKEN_TOO_LARGE'],
    ['exp = 1e300', () => sign({ sub: 'u', exp: 1e300 }), 'AUTH_FAILED'],
    ['exp a year away (over auth.max_token_lifetime_s)', () => sign({ sub: 'u', exp: now() + 366 * 86_400 }), 'AUTH_FAILED'],
    ['iat an hour in the future', () => sign({ sub: 'u', exp: now() + 7_200, iat: now() + 3_600 }), 'AUTH_FAILED'],
    ['exp before iat', () => sign({ sub: 'u', exp: now() + 60, iat: now() + 120 }), 'AUTH_FAILED'],
    ['nbf in the future', () => sign({ sub: 'u', exp: now() + 7_200, nbf: now() + 3_600 }), 'AUTH_FAILED'],
    ['a sub with control characters', () => sign({ sub: 'line\nbreak', exp: now() + 60 }), 'AUTH_FAILED'],
    ['no exp', () => sign({ sub: 'u' }), 'AUTH_FAILED'],
  ];
  it('each out of bounds alone, beside a canary: refused with its code', async () => {
    const got = await underAttack(stack.proxy, async () => {
      const codes: Record<string, string> = {};
      for (const [name, token] of cases) codes[name] = await refusedWith(await token());
      return codes;
    });
    expect(got).toEqual(Object.fromEntries(cases.map(([name, , code]) => [name, code])));
  });

  it('a token within every bound is welcomed, and the refusals were counted by limit', async () => {
    const ok = await sign({ sub: 's'.repeat(256), exp: now() + 30 * 86_400, iat: now(), room: 'r'.repeat(1_000) });
    (await RawClient.handshake(stack.proxy.port, ok)).destroy();
    for (const limit of ['auth.max_token_bytes', 'auth.max_sub_bytes', 'auth.max_claims_bytes']) {
      expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', `limit="${limit}"`)).toBeGreaterThanOrEqual(1);
    }
  });
});
