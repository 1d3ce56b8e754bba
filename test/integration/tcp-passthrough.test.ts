import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ClientSession, type LivemuxClient, connect } from '../../src/client/index.js';
import { startProxy, testToken } from '../helpers/processes.js';
import { freePort } from '../helpers/free-port.js';
import { scrape } from '../helpers/metrics.js';

// A legacy plain-TCP echo service behind a tcp pool whose first endpoint is dead: the proxy must retry
// the sessions that land there on the live endpoint, bytes intact and in order.
let legacy: net.Server;
let legacyConnections = 0;
let deadAddress: string;
let proxy: Awaited<ReturnType<typeof startProxy>>;
let client: LivemuxClient;

const tcpPool = (endpoints: string[]): Record<string, unknown> => ({
  protocol: 'tcp',
  endpoints: endpoints.map((address) => ({ address })),
  health_check: { interval_ms: 0 }, // only the retry path is under test here
  outlier_detection: { consecutive_failures: 1000 },
});

beforeAll(async () => {
  legacy = net.createServer((socket) => {
    legacyConnections++;
    socket.pipe(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => legacy.listen(0, '127.0.0.1', r));
  const live = `127.0.0.1:${(legacy.address() as net.AddressInfo).port}`;
  deadAddress = `127.0.0.1:${await freePort()}`;
  proxy = await startProxy({
    backends: [],
    routes: {
      version: 1,
      routes: [
        { business: 'legacy', pool: 'legacy', retry: { attempts: 2, backoff_ms: 20 } },
        { business: 'doomed', pool: 'dead', retry: { attempts: 2, backoff_ms: 20 } },
      ],
      pools: { legacy: tcpPool([deadAddress, live]), dead: tcpPool([deadAddress]) },
    },
  });
  client = await connect({ host: '127.0.0.1', port: proxy.port, token: await testToken(), reconnect: false });
});

afterAll(async () => {
  await client?.close();
  await proxy?.stop();
  await new Promise((r) => legacy?.close(r));
});

async function collect(s: ClientSession, bytes: number): Promise<string> {
  let text = '';
  for await (const { payload } of s) {
    text += payload.toString();
    if (text.length >= bytes) break;
  }
  return text;
}

it('tunnels each session over its own upstream connection, retrying a dead endpoint without losing a byte', async () => {
  const sessions = await Promise.all(Array.from({ length: 4 }, () => client.open('legacy')));
  const expected = sessions.map((_, i) => Array.from({ length: 20 }, (_, j) => `s${i}-m${j};`).join(''));
  // Sent at once, before any upstream connect can have finished (or failed).
  await Promise.all(sessions.map((s, i) => s.send(expected[i]!)));
  const echoed = await Promise.all(sessions.map((s, i) => collect(s, expected[i]!.length)));
  expect(echoed).toEqual(expected);
  expect(legacyConnections).toBe(4);
  const metrics = await scrape(proxy.adminPort);
  expect(metrics).toMatch(/livemux_sessions_relocated_total\{reason="connect_failed",result="moved"\} [1-9]/);
});

it('closes a session BACKEND_UNAVAILABLE once its route\'s retry attempts are used up', async () => {
  const s = await client.open('doomed');
  const closed = new Promise<number>((resolve) => s.on('close', (code) => resolve(code)));
  await s.send('lost with a documented code, not silently');
  expect(await closed).toBe(204);
});
