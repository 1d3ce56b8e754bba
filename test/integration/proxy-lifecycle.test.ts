import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { decodeGoAway } from '../../src/protocol/messages.js';
import { mintToken } from '../../src/proxy/auth.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/proxy/proxy-protocol.js';
import { RawClient } from '../helpers/raw-client.js';
import { type RunningProcess, TEST_SECRET, startEchoBackend, startProxy, testToken } from '../helpers/processes.js';
import { selfSignedCert } from '../helpers/tls-cert.js';

let backend: RunningProcess & { port: number };
let token: string;
const proxies: RunningProcess[] = [];

beforeAll(async () => {
  backend = await startEchoBackend();
  token = await testToken();
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await backend?.stop();
});

async function proxyWith(config: Record<string, unknown>): ReturnType<typeof startProxy> {
  const p = await startProxy({ backends: [`127.0.0.1:${backend.port}`], config });
  proxies.push(p);
  return p;
}

async function echoOnce(c: RawClient, session: number, text: string): Promise<void> {
  c.data(session, text);
  expect((await c.next(FrameType.DATA, session)).payload.toString()).toBe(text);
}

describe('heartbeats and idle timeout', () => {
  it('a client that never answers PING is closed with HEARTBEAT_TIMEOUT; one that answers stays', async () => {
    const proxy = await proxyWith({ timeouts: { heartbeat_interval_ms: 150, heartbeat_misses: 2 } });
    const silent = await RawClient.handshake(proxy.port, token);
    const polite = await RawClient.handshake(proxy.port, token);
    const answer = setInterval(() => {
      for (const f of polite.frames.splice(0)) {
        if (f.type === FrameType.PING) polite.send(encodeFrame(FrameType.PONG, 0, 0, f.payload));
      }
    }, 20);
    try {
      expect(await silent.errorCode(3_000)).toBe('HEARTBEAT_TIMEOUT');
      await new Promise((r) => setTimeout(r, 300));
      polite.send(encodeFrame(FrameType.PING, 0, 0, Buffer.from('x')));
      await polite.next(FrameType.PONG);
    } finally {
      clearInterval(answer);
      polite.destroy();
    }
  });

  it('a connection without sessions is sent GOAWAY IDLE_TIMEOUT after idle_ms', async () => {
    // Heartbeats well apart from the idle timeout: a silent client would otherwise meet HEARTBEAT_TIMEOUT first.
    const proxy = await proxyWith({ timeouts: { idle_ms: 300, heartbeat_interval_ms: 5_000 } });
    // Our clock starts before the connection exists, so the proxy's idle clock starts after it, however
    // late a busy machine runs either side: the GOAWAY cannot come before idle_ms.
    const started = Date.now();
    const c = await RawClient.handshake(proxy.port, token);
    expect(RawClient.codeOf(await c.next(FrameType.GOAWAY, undefined, 15_000))).toBe('IDLE_TIMEOUT');
    await c.closed;
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});

describe('graceful drain on SIGTERM', () => {
  it('sends GOAWAY, refuses new sessions, lets open ones finish, then exits 0', async () => {
    const proxy = await proxyWith({ goaway_reconnect_address: '127.0.0.1:7999', timeouts: { drain_ms: 10_000 } });
    const c = await RawClient.handshake(proxy.port, token);
    const idle = await RawClient.handshake(proxy.port, token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    proxy.child.kill('SIGTERM');
    const goaway = decodeGoAway((await c.next(FrameType.GOAWAY)).payload);
    expect(goaway).toMatchObject({ code: 405, lastSessionId: 1, reconnectAddress: '127.0.0.1:7999' });
    await idle.closed; // no sessions: closed right after its GOAWAY
    c.open(2);
    expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, 2))).toBe('GOING_AWAY');
    await echoOnce(c, 1, 'still served while draining');
    c.close(1);
    await c.next(FrameType.CLOSE, 1);
    await c.closed;
    expect(await proxy.exited).toBe(0);
  });

  it('closes sessions still open at the drain deadline with CLOSE GOING_AWAY and exits 0', async () => {
    const proxy = await proxyWith({ timeouts: { drain_ms: 400 } });
    const c = await RawClient.handshake(proxy.port, token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    proxy.child.kill('SIGTERM');
    await c.next(FrameType.GOAWAY);
    expect(RawClient.codeOf(await c.next(FrameType.CLOSE, 1, 3_000))).toBe('GOING_AWAY');
    await c.closed;
    expect(await proxy.exited).toBe(0);
  });
});

describe('listeners', () => {
  it('serves TLS with a certificate from config', async () => {
    const { certFile, keyFile, cert } = selfSignedCert();
    const proxy = await proxyWith({ tls: { cert_file: certFile, key_file: keyFile } });
    const c = await (await RawClient.connectTls(proxy.port, cert)).hello(token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    await echoOnce(c, 1, 'over tls');
    c.destroy();
  });

  it('takes the client address and port from the socket without a PROXY header', async () => {
    // The server reads them once and drops the copy Node caches on the socket (server.ts peerOf).
    const proxy = await proxyWith({});
    const c = await RawClient.connect(proxy.port, '127.0.0.1', '127.0.0.5');
    await c.hello(token);
    await proxy.waitFor((l) => l.msg === 'connection authenticated' && /^(::ffff:)?127\.0\.0\.5:[1-9]\d*$/.test(String(l.addr)));
    c.destroy();
  });

  it('takes the client address from a PROXY protocol v1 or v2 header, also in front of TLS', async () => {
    const { certFile, keyFile, cert } = selfSignedCert();
    const plain = await proxyWith({ proxy_protocol: true });
    const v1 = await RawClient.connect(plain.port);
    v1.send(encodeProxyV1({ address: '203.0.113.7', port: 5555 }, { address: '127.0.0.1', port: plain.port }));
    await v1.hello(token);
    await plain.waitFor((l) => l.msg === 'connection authenticated' && l.addr === '203.0.113.7:5555');
    v1.destroy();

    const v2 = await RawClient.connect(plain.port);
    v2.send(encodeProxyV2({ address: '2001:db8::1', port: 443 }, { address: '2001:db8::2', port: 7000 }));
    await v2.hello(token);
    await plain.waitFor((l) => l.msg === 'connection authenticated' && l.addr === '2001:db8::1:443');
    v2.destroy();

    const missing = await RawClient.connect(plain.port);
    missing.send(encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(0)));
    await missing.closed;

    const secured = await proxyWith({ proxy_protocol: true, tls: { cert_file: certFile, key_file: keyFile } });
    const raw = await import('node:net');
    const tls = await import('node:tls');
    const socket = raw.connect({ port: secured.port, host: '127.0.0.1' });
    await new Promise((r) => socket.once('connect', r));
    socket.write(encodeProxyV1({ address: '198.51.100.9', port: 4242 }, { address: '127.0.0.1', port: secured.port }));
    const tlsSocket = tls.connect({ socket, ca: cert, servername: 'localhost' });
    await new Promise((r) => tlsSocket.once('secureConnect', r));
    const c = await RawClient.fromSocket(tlsSocket).hello(token);
    await secured.waitFor((l) => l.msg === 'connection authenticated' && l.addr === '198.51.100.9:4242');
    c.destroy();
  });
});

describe('identity', () => {
  it('gives the backend the user id and the token\'s string claims, never the registered ones', async () => {
    const proxy = await proxyWith({});
    const token = await mintToken({ secret: TEST_SECRET, sub: 'carol', claims: { role: 'host', tier: 3, jti: 'id-1' } });
    const c = await RawClient.handshake(proxy.port, token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    c.data(1, '/whoami');
    const me = JSON.parse((await c.next(FrameType.DATA, 1)).payload.toString()) as { userId: string; claims: object };
    expect(me.userId).toBe('carol');
    expect(me.claims).toEqual({ role: 'host' });
    c.destroy();
  });
});
