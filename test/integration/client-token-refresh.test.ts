import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ClientSession, type LivemuxClient, type LivemuxError } from '../../src/client/index.js';
import { type EchoStack, startEchoStack, testToken } from '../helpers/processes.js';

/**
 * The SDK's side of token lifetime (PROTOCOL.md §5.3): with `getToken`, the server's AUTH_STATE notice
 * is answered with REFRESH and the connection and its sessions live on past the first token's expiry;
 * without it, the connection ends with AUTH_EXPIRED when the token lapses.
 */

let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack();
});

afterAll(() => stack?.stop());

/** Sends `text` on `session` and resolves with the echo. */
async function echo(session: ClientSession, text: string): Promise<string> {
  const answer = once(session, 'data');
  await session.send(text);
  return String((await answer)[0]);
}

describe('token refresh through getToken', () => {
  it('refreshes before expiry without reconnecting; the session keeps working past the first token', async () => {
    const first = await testToken('sdk-refresh', 3);
    const deadline = Date.now() + 3_000 + 5_000;
    let calls = 0;
    const client: LivemuxClient = await connect({
      host: '127.0.0.1',
      port: stack.proxy.port,
      token: first,
      getToken: async () => {
        calls++;
        return testToken('sdk-refresh', 3_600);
      },
    });
    const connectionId = client.welcome.connectionId;
    let reconnected = false;
    client.on('reconnecting', () => (reconnected = true));
    const refreshed = once(client, 'refreshed');
    const session = await client.open('echo');
    const [expiresInMs] = (await refreshed) as [number];
    expect(expiresInMs).toBeGreaterThan(3_500_000);
    expect(calls).toBe(1);
    while (Date.now() < deadline + 2_500) expect(await echo(session, 'ping')).toBe('ping');
    expect(await echo(session, 'after the first token')).toBe('after the first token');
    expect(reconnected).toBe(false);
    expect(client.welcome.connectionId).toBe(connectionId);
    await client.close();
  }, 30_000);

  it('without getToken, the connection ends with AUTH_EXPIRED when the token lapses and the client closes', async () => {
    const client = await connect({ host: '127.0.0.1', port: stack.proxy.port, token: await testToken('sdk-no-refresh', 1) });
    const [error] = (await once(client, 'close')) as [LivemuxError];
    expect(error.code).toBe('ERR_AUTH_EXPIRED');
  }, 30_000);
});
