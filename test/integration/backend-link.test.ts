import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { createBackendServer, type ListeningBackend, type ProxyStreamContext } from '../../src/backends/kit/backend-server.js';
import {
  SessionBackendService,
  type BackendBatch,
  type BackendCommand,
  type ProxyBatch,
} from '../../src/contract/backend-contract.js';
import { createEchoHandlers } from '../../src/backends/echo/echo-backend.js';
import { GrpcBackendLink } from '../../src/proxy/upstream/grpc-link.js';
import { HealthService, ServingStatus } from '../../src/contract/health.js';
import { LinkState, type BackendCommandSink, type BackendLink } from '../../src/proxy/upstream/link.js';
import type { SessionOpenInfo } from '../../src/contract/backend-contract.js';
import { Priority } from '../../src/protocol/constants.js';

const FAST_RECONNECT = { initialMs: 40, maxMs: 200 };

/** A BackendCommandSink that records every call, as the proxy's session registry would receive them. */
class RecordingSink implements BackendCommandSink {
  readonly deliveries: { session: number; text: string; priority: Priority }[] = [];
  readonly closes: { session: number; code: number; reason: string }[] = [];
  readonly subscribes: { session: number; topic: string }[] = [];
  readonly unsubscribes: { session: number; topic: string }[] = [];
  readonly publishes: { topic: string; text: string; priority: Priority; excludeSession: number }[] = [];
  readonly linkDowns: string[] = [];
  /** When set, `deliver` throws for this payload (a buggy sink must not kill the link). */
  throwOn: string | null = null;

  deliver(session: number, payload: Buffer, priority: Priority): void {
    const text = payload.toString();
    if (text === this.throwOn) throw new Error('sink failure (test)');
    this.deliveries.push({ session, text, priority });
  }
  close(session: number, code: number, reason: string): void {
    this.closes.push({ session, code, reason });
  }
  subscribe(session: number, topic: string): void {
    this.subscribes.push({ session, topic });
  }
  unsubscribe(session: number, topic: string): void {
    this.unsubscribes.push({ session, topic });
  }
  publish(topic: string, payload: Buffer, priority: Priority, excludeSession: number): void {
    this.publishes.push({ topic, text: payload.toString(), priority, excludeSession });
  }
  unreachable(): void {
    throw new Error('a gRPC link never reports a session unreachable');
  }
  linkDown(_link: BackendLink, reason: string): void {
    this.linkDowns.push(reason);
  }
  canDeliver(): boolean {
    return true;
  }
  onDeliverable(_session: number, fn: () => void): void {
    fn();
  }
}

/** The echo backend, plus what the server side saw (contexts, opens, closes). */
function echoBackend() {
  const echo = createEchoHandlers();
  const seen = {
    contexts: new Set<ProxyStreamContext>(),
    opens: [] as { proxyId: string; session: number; info: SessionOpenInfo }[],
    closes: [] as { proxyId: string; session: number; code: number; reason: string }[],
    gone: [] as string[],
    attached: [] as string[],
  };
  const server = createBackendServer({
    onAttach(ctx) {
      seen.attached.push(ctx.proxyId);
    },
    onOpen(ctx, session, info) {
      seen.contexts.add(ctx);
      seen.opens.push({ proxyId: ctx.proxyId, session, info });
      echo.onOpen(ctx, session, info);
    },
    onData: (ctx, session, payload, priority) => echo.onData(ctx, session, payload, priority),
    onClose(ctx, session, code, reason) {
      seen.closes.push({ proxyId: ctx.proxyId, session, code, reason });
      echo.onClose(ctx, session, code, reason);
    },
    onProxyGone(ctx, reason) {
      seen.gone.push(ctx.proxyId);
      echo.onProxyGone?.(ctx, reason);
    },
  });
  return { server, seen };
}

function info(userId: string, extra: Partial<SessionOpenInfo> = {}): SessionOpenInfo {
  return {
    userId,
    business: 'echo',
    metadata: {},
    clientAddress: '10.0.0.1:5555',
    connectionId: 'conn-1',
    clientSessionId: 1,
    reattach: false,
    claims: { role: 'member' },
    maxPayload: 65_536,
    ...extra,
  };
}

async function waitUntil(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Everything a test starts, stopped after it whatever its outcome.
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function listen(server: ReturnType<typeof createBackendServer>, port = 0): Promise<ListeningBackend> {
  const listening = await server.listen('127.0.0.1', port);
  cleanups.push(() => listening.close());
  return listening;
}

function link(port: number, sink: BackendCommandSink, proxyId: string, states: LinkState[] = []): GrpcBackendLink {
  const l = new GrpcBackendLink(`127.0.0.1:${port}`, sink, {
    proxyId,
    reconnect: FAST_RECONNECT,
    onStateChange: (s) => states.push(s),
  });
  cleanups.push(() => l.close());
  return l;
}

async function readyLink(port: number, sink: BackendCommandSink, proxyId: string, states?: LinkState[]) {
  const l = link(port, sink, proxyId, states);
  await waitUntil('the link is READY', () => l.state === LinkState.READY);
  return l;
}

describe('GrpcBackendLink ↔ echo backend', () => {
  it('tells the backend of each proxy as it attaches, before any session, and when it is gone', async () => {
    const { server, seen } = echoBackend();
    const { port } = await listen(server);
    const l = await readyLink(port, new RecordingSink(), 'proxy-quiet');
    await waitUntil('the backend saw the attach', () => seen.attached.length === 1);
    expect(seen.attached).toEqual(['proxy-quiet']);
    expect(seen.opens).toEqual([]);
    l.close();
    await waitUntil('the backend saw the proxy go', () => seen.gone.includes('proxy-quiet'));
  });

  it('round trip: open reaches the backend intact, data is echoed, closes travel both ways', async () => {
    const { server, seen } = echoBackend();
    const { port } = await listen(server);
    const sink = new RecordingSink();
    const l = await readyLink(port, sink, 'proxy-a');

    const opened = info('alice', { metadata: { room: '42', lang: 'en' }, clientSessionId: 7, reattach: true });
    l.open(1, opened);
    l.data(1, Buffer.from('hello'), Priority.HIGH);
    l.data(1, Buffer.from('whisper'), Priority.LOW);
    await waitUntil('two echoes', () => sink.deliveries.length === 2);

    expect(seen.opens).toEqual([{ proxyId: 'proxy-a', session: 1, info: opened }]);
    expect(sink.deliveries).toEqual([
      { session: 1, text: 'hello', priority: Priority.HIGH },
      { session: 1, text: 'whisper', priority: Priority.LOW },
    ]);

    // The proxy closes session 2: the backend hears of it.
    l.open(2, info('bob'));
    l.closed(2, 0, 'client left');
    await waitUntil('the backend saw the close', () => seen.closes.length === 1);
    expect(seen.closes).toEqual([{ proxyId: 'proxy-a', session: 2, code: 0, reason: 'client left' }]);

    // The backend closes session 1: the proxy hears of it, and the session is over on both sides, so DATA
    // that crossed the close in flight is dropped by the backend library (no onData, no onClose).
    l.data(1, Buffer.from('/close 205 kicked by moderator'), Priority.HIGH);
    l.data(1, Buffer.from('in flight'), Priority.HIGH);
    await waitUntil('the backend close', () => sink.closes.length === 1);
    expect(sink.closes).toEqual([{ session: 1, code: 205, reason: 'kicked by moderator' }]);
    const [ctx] = [...seen.contexts];
    expect(ctx!.stats.staleEvents).toBe(1);
    expect(ctx!.sessions.size).toBe(0);
    expect(sink.deliveries).toHaveLength(2);
    expect(seen.closes).toHaveLength(1);
    expect(l.stats.malformedCommands).toBe(0);
    expect(sink.linkDowns).toEqual([]);
  });

  it('half-close: SessionHalfClosed reaches the backend; the library ends the session after the replies already issued', async () => {
    const halfCloses: { session: number; code: number; reason: string }[] = [];
    const echo = createEchoHandlers();
    const late = createBackendServer({
      ...echo,
      // Session 2's handler still delivers after the client's CLOSE, then ends it with its own code.
      onHalfClose(ctx, session, code, reason) {
        halfCloses.push({ session, code, reason });
        if (session !== 2) return echo.onHalfClose!(ctx, session, code, reason);
        ctx.deliver(session, Buffer.from('one more thing'), Priority.HIGH);
        ctx.close(session, 205, 'done talking');
      },
    });
    const { port } = await listen(late);
    const sink = new RecordingSink();
    const l = await readyLink(port, sink, 'proxy-h');
    l.open(1, info('alice'));
    l.data(1, Buffer.from('last words'), Priority.HIGH);
    l.halfClosed(1, 0, 'client done');
    l.open(2, info('bob'));
    l.halfClosed(2, 7, '');
    await waitUntil('both sessions ended', () => sink.closes.length === 2);
    expect(halfCloses).toEqual([
      { session: 1, code: 0, reason: 'client done' },
      { session: 2, code: 7, reason: '' },
    ]);
    expect(sink.deliveries).toEqual([
      { session: 1, text: 'last words', priority: Priority.HIGH },
      { session: 2, text: 'one more thing', priority: Priority.HIGH },
    ]);
    expect(sink.closes).toEqual([
      { session: 1, code: 0, reason: '' },
      { session: 2, code: 205, reason: 'done talking' },
    ]);
  });

  it('half-close without an onHalfClose handler: the library ends the session with code 0', async () => {
    const plain = createBackendServer({
      onOpen() {},
      onData(ctx, session, payload, priority) {
        ctx.deliver(session, payload, priority);
      },
      onClose() {},
    });
    const { port } = await listen(plain);
    const sink = new RecordingSink();
    const l = await readyLink(port, sink, 'proxy-d');
    l.open(1, info('carol'));
    l.data(1, Buffer.from('echo me'), Priority.LOW);
    l.halfClosed(1, 0, '');
    await waitUntil('the session ended', () => sink.closes.length === 1);
    expect(sink.deliveries).toEqual([{ session: 1, text: 'echo me', priority: Priority.LOW }]);
    expect(sink.closes).toEqual([{ session: 1, code: 0, reason: '' }]);
  });

  it('batching: everything offered in one tick travels in one ProxyBatch, and the echoes in one BackendBatch', async () => {
    const { server, seen } = echoBackend();
    const { port } = await listen(server);
    const sink = new RecordingSink();
    const l = await readyLink(port, sink, 'proxy-a');
    l.open(1, info('warmup'));
    await waitUntil('the stream context exists', () => seen.contexts.size === 1);
    const [ctx] = [...seen.contexts];
    const batchesIn = ctx!.stats.batchesReceived;
    const batchesBack = l.stats.batchesReceived;

    for (let s = 2; s <= 101; s++) l.open(s, info(`user-${s}`));
    for (let i = 0; i < 1_000; i++) l.data(2 + (i % 100), Buffer.from(`m${i}`), Priority.HIGH);
    await waitUntil('1000 echoes', () => sink.deliveries.length === 1_000);

    expect(ctx!.stats.batchesReceived - batchesIn).toBe(1);
    expect(l.stats.batchesReceived - batchesBack).toBe(1);
    // Per-session order is kept.
    const session2 = sink.deliveries.filter((d) => d.session === 2).map((d) => d.text);
    expect(session2).toEqual(Array.from({ length: 10 }, (_, k) => `m${k * 100}`));
  });

  it('batching: a tick producing more than ~1 MiB is split into several ProxyBatches, in order', async () => {
    const { server, seen } = echoBackend();
    const { port } = await listen(server);
    const sink = new RecordingSink();
    const l = await readyLink(port, sink, 'proxy-a');
    l.open(1, info('bulk'));
    await waitUntil('the stream context exists', () => seen.contexts.size === 1);
    const [ctx] = [...seen.contexts];
    const batchesIn = ctx!.stats.batchesReceived;

    const chunk = 600 * 1024;
    for (const fill of ['a', 'b', 'c']) l.data(1, Buffer.alloc(chunk, fill), Priority.LOW);
    await waitUntil('three echoes', () => sink.deliveries.length === 3);

    expect(ctx!.stats.batchesReceived - batchesIn).toBe(3);
    expect(sink.deliveries.map((d) => [d.text.length, d.text[0]])).toEqual([
      [chunk, 'a'],
      [chunk, 'b'],
      [chunk, 'c'],
    ]);
  });

  it('topic fan-out: a publish reaches each proxy with subscribers exactly once, however many subscribe there', async () => {
    const { server } = echoBackend();
    const { port } = await listen(server);
    const sinkA = new RecordingSink();
    const sinkB = new RecordingSink();
    const a = await readyLink(port, sinkA, 'proxy-a');
    const b = await readyLink(port, sinkB, 'proxy-b');
    const sinkC = new RecordingSink();
    const c = await readyLink(port, sinkC, 'proxy-c'); // no subscriber of the topic

    a.open(1, info('a1'));
    a.open(2, info('a2'));
    b.open(1, info('b1'));
    c.open(1, info('c1'));
    a.data(1, Buffer.from('/sub room'), Priority.HIGH);
    a.data(2, Buffer.from('/sub room'), Priority.HIGH);
    b.data(1, Buffer.from('/sub room'), Priority.HIGH);
    c.data(1, Buffer.from('/sub lobby'), Priority.HIGH);
    await waitUntil('subscriptions reached the proxies', () => sinkA.subscribes.length === 2 && sinkB.subscribes.length === 1);
    expect(sinkA.subscribes).toEqual([
      { session: 1, topic: 'room' },
      { session: 2, topic: 'room' },
    ]);
    expect(sinkA.deliveries).toEqual([]); // commands are consumed, not echoed

    a.data(1, Buffer.from('/pub room hello everyone'), Priority.LOW);
    await waitUntil('publishes arrived', () => sinkA.publishes.length === 1 && sinkB.publishes.length === 1);
    await sleep(50); // nothing more is coming
    const published = { topic: 'room', text: 'hello everyone', priority: Priority.LOW, excludeSession: 0 };
    expect(sinkA.publishes).toEqual([published]);
    expect(sinkB.publishes).toEqual([published]);
    expect(sinkC.publishes).toEqual([]);

    // Once proxy-b has no subscriber left, it gets nothing.
    b.data(1, Buffer.from('/unsub room'), Priority.HIGH);
    await waitUntil('the unsubscribe reached proxy-b', () => sinkB.unsubscribes.length === 1);
    a.data(2, Buffer.from('/pub room second'), Priority.HIGH);
    await waitUntil('the second publish reached proxy-a', () => sinkA.publishes.length === 2);
    await sleep(50);
    expect(sinkB.publishes).toHaveLength(1);

    // A closed session leaves its topics: after both of proxy-a's sessions close, proxy-a gets nothing either.
    a.closed(1, 0, '');
    a.closed(2, 0, '');
    b.data(1, Buffer.from('/sub room'), Priority.HIGH);
    await waitUntil('proxy-b subscribed again', () => sinkB.subscribes.length === 2);
    b.data(1, Buffer.from('/pub room third'), Priority.HIGH);
    await waitUntil('the third publish reached proxy-b', () => sinkB.publishes.length === 2);
    await sleep(50);
    expect(sinkA.publishes).toHaveLength(2);
  });

  it('goes DOWN and calls linkDown once when the backend stops, retries while DOWN, and is READY again when it returns', async () => {
    const { server, seen } = echoBackend();
    const first = await server.listen('127.0.0.1', 0);
    const sink = new RecordingSink();
    const states: LinkState[] = [];
    const l = await readyLink(first.port, sink, 'proxy-a', states);
    l.open(1, info('alice'));
    await waitUntil('the backend saw the open', () => seen.opens.length === 1);

    await first.close();
    await waitUntil('the link is DOWN', () => l.state === LinkState.DOWN);
    expect(seen.gone).toEqual(['proxy-a']);
    await sleep(400); // several retries at 40..200 ms, all failing
    expect(l.state).toBe(LinkState.DOWN);
    expect(sink.linkDowns).toHaveLength(1);

    const dropped = l.stats.eventsDropped;
    l.data(1, Buffer.from('lost'), Priority.HIGH);
    expect(l.stats.eventsDropped).toBe(dropped + 1);

    await listen(server, first.port);
    await waitUntil('the link is READY again', () => l.state === LinkState.READY);
    expect(states).toEqual([LinkState.READY, LinkState.DOWN, LinkState.READY]);
    expect(sink.linkDowns).toHaveLength(1);

    l.open(2, info('bob'));
    l.data(2, Buffer.from('back'), Priority.HIGH);
    await waitUntil('the echo after reconnecting', () => sink.deliveries.length === 1);
    expect(sink.deliveries).toEqual([{ session: 2, text: 'back', priority: Priority.HIGH }]);
    expect(seen.opens.map((o) => o.proxyId)).toEqual(['proxy-a', 'proxy-a']);
  });

  /**
   * A bare HTTP/2 server standing in for a gRPC server at the transport level: `onStream` decides what
   * each Attach call gets (the n-th, from 1). The connection itself stays up throughout.
   */
  async function rawHttp2Backend(onStream: (stream: http2.ServerHttp2Stream, n: number) => void) {
    let n = 0;
    const server = http2.createServer();
    server.on('stream', (stream) => {
      stream.on('error', () => {}); // a refused or cancelled stream errors on our side too
      onStream(stream, ++n);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return { port: (server.address() as { port: number }).port, streams: () => n };
  }

  it('stays DOWN, one linkDown, while the connection is up but every new stream is refused (a draining backend)', async () => {
    // The first Attach is accepted (headers) and then ended, as a backend starting to drain does; every
    // retry is refused with RST_STREAM(REFUSED_STREAM) over the same, still READY, connection.
    const backend = await rawHttp2Backend((stream, n) => {
      if (n > 1) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end();
    });
    const sink = new RecordingSink();
    const states: LinkState[] = [];
    const l = link(backend.port, sink, 'proxy-a', states);
    await waitUntil('five retries were refused', () => backend.streams() >= 6);
    expect(states).toEqual([LinkState.READY, LinkState.DOWN]);
    expect(sink.linkDowns).toHaveLength(1);
    expect(l.state).toBe(LinkState.DOWN);
  });

  it('is READY with a backend that accepts the stream but sends no headers until it has something to say', async () => {
    const backend = await rawHttp2Backend(() => {}); // holds every stream open, silent
    const states: LinkState[] = [];
    const l = link(backend.port, new RecordingSink(), 'proxy-a', states);
    await waitUntil('the link is READY', () => l.state === LinkState.READY);
    expect(states).toEqual([LinkState.READY]);
    expect(backend.streams()).toBe(1);
  });

  it('is DOWN (not stuck CONNECTING) when the endpoint is unreachable from the start', async () => {
    const { server } = echoBackend();
    const probe = await server.listen('127.0.0.1', 0);
    await probe.close(); // a port on which nothing listens now
    const sink = new RecordingSink();
    const states: LinkState[] = [];
    const l = link(probe.port, sink, 'proxy-a', states);
    expect(l.state).toBe(LinkState.CONNECTING);
    await waitUntil('the link is DOWN', () => l.state === LinkState.DOWN);
    await sleep(300);
    expect(states).toEqual([LinkState.DOWN]);
    expect(sink.linkDowns).toHaveLength(1);
  });

  it('close(): flushes, ends the stream, reports linkDown once, and drops later events', async () => {
    const { server, seen } = echoBackend();
    const { port } = await listen(server);
    const sink = new RecordingSink();
    const l = await readyLink(port, sink, 'proxy-a');
    l.open(1, info('alice'));
    l.closed(1, 0, 'bye');
    l.close(); // same tick: the pending events are flushed before the stream ends
    expect(l.state).toBe(LinkState.CLOSED);
    expect(sink.linkDowns).toEqual(['closed by the proxy']);
    await waitUntil('the backend saw the proxy go', () => seen.gone.length === 1);
    expect(seen.closes).toEqual([{ proxyId: 'proxy-a', session: 1, code: 0, reason: 'bye' }]);
    l.data(1, Buffer.from('late'), Priority.HIGH);
    l.close();
    expect(sink.linkDowns).toHaveLength(1);
  });
});

describe('GrpcBackendLink ↔ a raw backend', () => {
  /** A SessionBackend written directly against the service definition: it sends whatever the test says. */
  async function rawBackend(reply: (batch: ProxyBatch) => BackendCommand[] | null) {
    const firstBatches: ProxyBatch[] = [];
    const server = new grpc.Server();
    server.addService(SessionBackendService, {
      Attach(call: grpc.ServerDuplexStream<ProxyBatch, BackendBatch>) {
        let first = true;
        call.on('data', (batch: ProxyBatch) => {
          if (first) firstBatches.push(batch);
          first = false;
          const commands = reply(batch);
          if (commands) call.write({ commands });
        });
        call.on('end', () => call.end());
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    cleanups.push(() => server.forceShutdown());
    return { port, firstBatches };
  }

  it('writable turns false when the backend stops reading, and onDrain fires once it reads again', async () => {
    let attached: grpc.ServerDuplexStream<ProxyBatch, BackendBatch> | null = null;
    const server = new grpc.Server();
    server.addService(SessionBackendService, {
      Attach(call: grpc.ServerDuplexStream<ProxyBatch, BackendBatch>) {
        attached = call; // not read until the test says so: HTTP/2 flow control pushes back
        call.sendMetadata(new grpc.Metadata());
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    cleanups.push(() => server.forceShutdown());
    const l = await readyLink(port, new RecordingSink(), 'proxy-a');
    l.open(1, info('bulk'));
    const chunk = Buffer.alloc(256 * 1024, 'x');
    for (let tick = 0; tick < 200 && l.isWritable(1); tick++) {
      l.data(1, chunk, Priority.LOW);
      await new Promise((r) => setImmediate(r));
    }
    expect(l.isWritable(1)).toBe(false);

    let drained = 0;
    l.onDrain(1, () => drained++);
    expect(drained).toBe(0);
    attached!.on('data', () => {});
    await waitUntil('drain', () => drained === 1);
    expect(l.isWritable(1)).toBe(true);
    l.onDrain(1, () => drained++); // already writable: at once
    expect(drained).toBe(2);
  });

  it('sends ProxyHello in the first batch of the stream, even with no event to carry', async () => {
    const { port, firstBatches } = await rawBackend(() => null);
    await readyLink(port, new RecordingSink(), 'proxy-hello');
    await waitUntil('the first batch', () => firstBatches.length === 1);
    expect(firstBatches[0]).toEqual({ hello: { proxyId: 'proxy-hello', contractVersion: 1 }, events: [] });
  });

  it('malformed and stale commands are counted and skipped; a throwing sink is survived; the link stays READY', async () => {
    const payload = (text: string) => Buffer.from(text);
    const { port } = await rawBackend((batch) =>
      batch.events.length === 0
        ? null
        : [
            {}, // no oneof member
            { deliver: { session: 0, payload: payload('no session'), priority: Priority.HIGH } },
            { deliver: { session: 5, payload: payload('bad priority'), priority: 7 as Priority } },
            { subscribe: { session: 5, topic: '' } },
            { publish: { topic: '', payload: payload('no topic'), priority: Priority.LOW, excludeSession: 0 } },
            { deliver: { session: 5, payload: payload('boom'), priority: Priority.HIGH } },
            { deliver: { session: 5, payload: payload('ok'), priority: Priority.SYSTEM } },
            { deliver: { session: 6, payload: payload('not opened on this stream'), priority: Priority.HIGH } },
            { close: { session: 6, code: 205, reason: 'not opened on this stream' } },
            { publish: { topic: 't', payload: payload('fan'), priority: Priority.LOW, excludeSession: 5 } },
          ],
    );
    const sink = new RecordingSink();
    sink.throwOn = 'boom';
    const l = await readyLink(port, sink, 'proxy-a');
    l.open(5, info('alice'));
    await waitUntil('the good commands', () => sink.publishes.length === 1);

    expect(sink.deliveries).toEqual([{ session: 5, text: 'ok', priority: Priority.SYSTEM }]);
    expect(sink.subscribes).toEqual([]);
    expect(sink.publishes).toEqual([{ topic: 't', text: 'fan', priority: Priority.LOW, excludeSession: 5 }]);
    expect(sink.closes).toEqual([]);
    expect(l.stats.malformedCommands).toBe(5);
    expect(l.stats.staleCommands).toBe(2);
    expect(l.stats.commandsReceived).toBe(10);
    expect(l.state).toBe(LinkState.READY);
    expect(sink.linkDowns).toEqual([]);
  });
});

describe('backend server', () => {
  it('refuses a stream whose first batch has no ProxyHello, and serves grpc.health.v1', async () => {
    const { server, seen } = echoBackend();
    const { port } = await listen(server);
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());

    const attach = SessionBackendService['Attach']!;
    const call = client.makeBidiStreamRequest(attach.path, attach.requestSerialize, attach.responseDeserialize);
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    call.on('data', () => {});
    call.write({ events: [{ session: 1, opened: info('mallory') }] });
    expect((await status).code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(seen.opens).toEqual([]);

    const check = HealthService['Check']!;
    const ask = (service: string) =>
      new Promise<{ status: number } | grpc.ServiceError>((resolve) =>
        client.makeUnaryRequest(check.path, check.requestSerialize, check.responseDeserialize, { service }, (err, res) =>
          resolve(err ?? (res as { status: number })),
        ),
      );
    expect(await ask('')).toEqual({ status: ServingStatus.SERVING });
    expect(await ask('livemux.v1.SessionBackend')).toEqual({ status: ServingStatus.SERVING });
    expect(((await ask('nope')) as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);

    const watch = HealthService['Watch']!;
    const stream = client.makeServerStreamRequest(watch.path, watch.requestSerialize, watch.responseDeserialize, {
      service: '',
    });
    stream.on('error', () => {});
    stream.on('data', () => {});
    const watchStatus = await new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
    expect(watchStatus.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});
