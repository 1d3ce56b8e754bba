/**
 * PROTOCOL.md §4.8 and §5.2 over raw sockets and through the SDK: what GOAWAY's last_session_id means
 * when OPENs were refused, and what happens when a connection uses up its session ids.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type GoAway, type LivemuxClient } from '../../src/client/index.js';
import { Code } from '../../src/protocol/codes.js';
import { FrameType, MAX_SESSION_ID } from '../../src/protocol/constants.js';
import { decodeGoAway } from '../../src/protocol/messages.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoFleet, useEchoFleet } from '../helpers/processes.js';

const fleet = useEchoFleet();
let token: string;
const clients: LivemuxClient[] = [];
beforeAll(() => {
  token = fleet.token;
});
afterAll(() => Promise.all(clients.map((c) => c.close())));

const proxy = (config: Record<string, unknown> = {}): ReturnType<EchoFleet['proxy']> => fleet.proxy(config);

describe('§4.8 GOAWAY last_session_id', () => {
  it('is the highest id of an OPEN the server handled, refused ones included; a later OPEN gets OPEN_FAIL GOING_AWAY', async () => {
    const p = await proxy({ timeouts: { drain_ms: 10_000 } });
    const c = await RawClient.handshake(p.port, token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    for (let id = 3; id <= 10; id++) c.open(id, 'no-such-business');
    for (let id = 3; id <= 10; id++) expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, id))).toBe('UNKNOWN_BUSINESS');
    void p.stop('SIGTERM');
    const goAway = decodeGoAway((await c.next(FrameType.GOAWAY)).payload);
    expect(goAway).toMatchObject({ code: Code.GOING_AWAY, lastSessionId: 10 });
    c.open(11);
    expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, 11))).toBe('GOING_AWAY');
    // Session 1 is at or below last_session_id: it goes on until it ends, then the connection closes.
    c.data(1, 'still served');
    expect((await c.next(FrameType.DATA, 1)).payload.toString()).toBe('still served');
    c.close(1);
    await c.next(FrameType.CLOSE, 1);
    await c.closed;
    expect(await p.exited).toBe(0);
  });
});

describe('§5.2 the last session id', () => {
  it('an OPEN with 2^32-1 is answered, then GOAWAY SESSION_IDS_EXHAUSTED; the session goes on', async () => {
    const p = await proxy();
    const c = await RawClient.handshake(p.port, token);
    c.open(MAX_SESSION_ID);
    await c.next(FrameType.OPEN_OK, MAX_SESSION_ID);
    const goAway = decodeGoAway((await c.next(FrameType.GOAWAY)).payload);
    expect(goAway).toMatchObject({ code: Code.SESSION_IDS_EXHAUSTED, lastSessionId: MAX_SESSION_ID });
    c.data(MAX_SESSION_ID, 'last id');
    expect((await c.next(FrameType.DATA, MAX_SESSION_ID)).payload.toString()).toBe('last id');
    c.close(MAX_SESSION_ID);
    await c.next(FrameType.CLOSE, MAX_SESSION_ID);
    await c.closed;
  });

  it('the SDK opens the session with the last id, then takes new sessions to a new connection', async () => {
    const p = await proxy();
    const client = await connect({ host: '127.0.0.1', port: p.port, token });
    clients.push(client);
    const goAways: GoAway[] = [];
    client.on('goaway', (g) => goAways.push(g));
    // 4 billion OPENs would take years: start the counter just below the end.
    (client as unknown as { current: { lastSessionId: number } }).current.lastSessionId = MAX_SESSION_ID - 1;
    const last = await client.open('echo');
    expect(last.id).toBe(MAX_SESSION_ID);
    expect(goAways.map((g) => g.code)).toEqual([Code.SESSION_IDS_EXHAUSTED]);
    const next = await client.open('echo');
    expect(next.id).toBe(1);
    expect(next.connectionId).not.toBe(last.connectionId);
    const echoed = new Promise<string>((resolve) => last.once('data', (d) => resolve(d.toString())));
    await last.send('still on the old connection');
    expect(await echoed).toBe('still on the old connection');
    await last.close();
    // The server's own GOAWAY confirmed the client's: the application heard of it once.
    expect(goAways).toHaveLength(1);
  });
});
