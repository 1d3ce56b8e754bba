/**
 * The client SDK against the real thing: proxy and echo backend run as processes on loopback (the
 * test harness starts them from the built package), and every test talks to them through `connect`.
 * One `describe` per concern; processes are stopped in afterAll, clients closed after every test.
 */
import { once, type EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ClientState,
  Code,
  connect,
  OpenFailedError,
  PayloadTooLargeError,
  SessionClosedError,
  SessionState,
  type ClientSession,
  type ConnectOptions,
  type GoAway,
  type LivemuxClient,
  type PriorityName,
  type Welcome,
} from '../../src/client/index.js';
import { type RunningProcess, startEchoBackend, startProxy, testToken } from '../helpers/processes.js';
import { scrape } from '../helpers/metrics.js';

type Backend = Awaited<ReturnType<typeof startEchoBackend>>;
type Proxy = Awaited<ReturnType<typeof startProxy>>;

// ---------------------------------------------------------------------------------------------------
// Processes and clients
// ---------------------------------------------------------------------------------------------------

/** Every process started by this file, stopped in afterAll. */
const processes: RunningProcess[] = [];
/** Clients of the running test, closed after it whether it passed or not. */
const clients: LivemuxClient[] = [];

/** Shared by the tests that neither kill nor reconfigure anything. */
let backend: Backend;
let proxy: Proxy;
let token: string;

beforeAll(async () => {
  token = await testToken('sdk-user');
  backend = await spawnBackend();
  proxy = await spawnProxy([backend]);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await Promise.all(processes.map((p) => stopProcess(p)));
});

async function spawnBackend(): Promise<Backend> {
  const b = await startEchoBackend();
  processes.push(b);
  return b;
}

/** A proxy routing `echo` and `chat` to `backends`; `config` (snake_case) is merged over the harness defaults. */
async function spawnProxy(backends: Backend[], config: Record<string, unknown> = {}): Promise<Proxy> {
  const p = await startProxy({ backends: backends.map((b) => `127.0.0.1:${b.port}`), config });
  processes.push(p);
  return p;
}

/** The harness listens on port 0; a restart must take over the port its clients know. */
function restartProxyOnPort(port: number, backends: Backend[]): Promise<Proxy> {
  return spawnProxy(backends, { listen: { host: '127.0.0.1', port } });
}

/** SIGTERM, then SIGKILL if the process is still draining after `graceMs`. */
async function stopProcess(p: RunningProcess, graceMs = 5_000): Promise<number | string> {
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  try {
    return await p.stop('SIGTERM');
  } finally {
    clearTimeout(timer);
  }
}

async function connectClient(port: number, options: Partial<ConnectOptions> = {}): Promise<LivemuxClient> {
  const client = await connect({ host: '127.0.0.1', port, token, ...options });
  clients.push(client);
  return client;
}

// ---------------------------------------------------------------------------------------------------
// Waiting, receiving, scraping
// ---------------------------------------------------------------------------------------------------

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** The arguments of the next `event` emitted by `emitter`. Call it before the action that emits. */
function nextEvent<T extends unknown[]>(emitter: EventEmitter, event: string, timeoutMs = 5_000): Promise<T> {
  const next = withTimeout(once(emitter, event) as Promise<T>, timeoutMs, `'${event}' event`);
  // A test that fails before awaiting it must not leave an unhandled rejection to a later test.
  next.catch(() => {});
  return next;
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Records every message of a session through a `'data'` listener. */
class Received {
  readonly messages: { text: string; priority: PriorityName }[] = [];
  private waiters: { text: string; resolve: () => void }[] = [];

  constructor(session: ClientSession) {
    session.on('data', (payload, priority) => {
      const text = payload.toString();
      this.messages.push({ text, priority });
      for (const w of this.waiters.filter((w) => w.text === text)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    });
  }

  get texts(): string[] {
    return this.messages.map((m) => m.text);
  }

  count(text: string): number {
    return this.texts.filter((t) => t === text).length;
  }

  priorityOf(text: string): PriorityName | undefined {
    return this.messages.find((m) => m.text === text)?.priority;
  }

  /** Resolves once `text` has arrived (at once if it already has). */
  waitFor(text: string, timeoutMs = 5_000): Promise<void> {
    if (this.texts.includes(text)) return Promise.resolve();
    const arrived = new Promise<void>((resolve) => this.waiters.push({ text, resolve }));
    return withTimeout(arrived, timeoutMs, `"${text}" (received so far: ${JSON.stringify(this.texts.slice(-5))})`);
  }
}

/** Sends `text` and waits for its echo. */
async function echoed(session: ClientSession, received: Received, text: string): Promise<void> {
  await session.send(text);
  await received.waitFor(text);
}

let fences = 0;

/**
 * Round-trips a unique echo. The backend handles a session's messages in order, and the proxy writes a
 * session's DATA in order, so whatever the backend produced for the session before it (subscriptions,
 * publishes) has been applied or has arrived once the fence is back.
 */
function fence(session: ClientSession, received: Received): Promise<void> {
  fences += 1;
  return echoed(session, received, `fence-${fences}`);
}

/** Collects messages by async iteration until `last` arrives (or the session ends). */
async function readByIteration(session: ClientSession, last: string): Promise<string[]> {
  const texts: string[] = [];
  for await (const message of session) {
    const text = message.payload.toString();
    texts.push(text);
    if (text === last) break;
  }
  return texts;
}

/** Collects messages with a `'data'` listener until `last` arrives. */
function readByEvents(session: ClientSession, last: string): Promise<string[]> {
  const texts: string[] = [];
  return new Promise((resolve) => {
    const onData = (payload: Buffer): void => {
      const text = payload.toString();
      texts.push(text);
      if (text === last) {
        session.off('data', onData);
        resolve(texts);
      }
    };
    session.on('data', onData);
  });
}

/** The value of the sample `name` whose label set is exactly `labels`; undefined when there is none. */
function sample(metrics: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of metrics.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    const keys = Object.keys(labels);
    if (Object.keys(found).length === keys.length && keys.every((k) => found[k] === labels[k])) return Number(match[3]);
  }
  return undefined;
}

async function status(adminPort: number, path: '/healthz' | '/readyz'): Promise<number> {
  return (await fetch(`http://127.0.0.1:${adminPort}${path}`)).status;
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

describe('many sessions on one connection', () => {
  it('16 interleaved sessions each receive exactly their own 200 messages, in order', async () => {
    const SESSIONS = 16;
    const MESSAGES = 200;
    const client = await connectClient(proxy.port);
    const sessions = await Promise.all(
      Array.from({ length: SESSIONS }, (_, i) =>
        i % 2 === 0 ? client.open('echo', { room_id: `room-${i}` }) : client.open('chat', { room_id: `room-${i}`, nick: `user-${i}` }),
      ),
    );
    expect(new Set(sessions.map((s) => s.id)).size).toBe(SESSIONS);
    for (const s of sessions) expect(s.connectionId).toBe(client.welcome.connectionId);
    expect(sessions.map((s) => s.business)).toEqual(sessions.map((_, i) => (i % 2 === 0 ? 'echo' : 'chat')));

    const expected = sessions.map((_, i) => Array.from({ length: MESSAGES }, (_, j) => `s${i}/m${j}`));
    // Both reading styles, each on echo and chat sessions: 0,1 iterate; 2,3 listen; 4,5 iterate; …
    const received = sessions.map((s, i) =>
      i % 4 < 2 ? readByIteration(s, expected[i]!.at(-1)!) : readByEvents(s, expected[i]!.at(-1)!),
    );
    // Round-robin over the sessions without waiting, so their frames interleave on the wire.
    const sends: Promise<void>[] = [];
    for (let j = 0; j < MESSAGES; j++) {
      for (let i = 0; i < SESSIONS; i++) sends.push(sessions[i]!.send(expected[i]![j]!));
    }
    await withTimeout(Promise.all(sends), 10_000, 'all sends to be written');
    const got = await withTimeout(Promise.all(received), 10_000, 'every session to receive its last message');
    got.forEach((texts, i) => expect(texts, `session ${i} (${sessions[i]!.business})`).toEqual(expected[i]));

    await Promise.all(sessions.map((s) => s.close()));
    expect(sessions.every((s) => s.state === SessionState.CLOSED)).toBe(true);
  });
});

describe('flow control', () => {
  it('send() waits for credit under a 16 KiB session window; 2 MiB come back intact and in order', async () => {
    const WINDOW = 16_384;
    const CHUNK = 8_192;
    const COUNT = (2 * 1024 * 1024) / CHUNK;
    const narrow = await spawnProxy([backend], { limits: { session_window: WINDOW, max_payload: CHUNK } });
    const client = await connectClient(narrow.port);
    expect(client.welcome.limits).toMatchObject({ sessionWindow: WINDOW, maxPayload: CHUNK });
    const session = await client.open('echo');

    const chunks = Array.from({ length: COUNT }, (_, i) => patternChunk(i, CHUNK));
    const echoes: Buffer[] = [];
    const allBack = new Promise<void>((resolve) =>
      session.on('data', (payload) => {
        echoes.push(payload);
        if (echoes.length === COUNT) resolve();
      }),
    );

    // trySend never waits: it spends the window that is there, then refuses without sending.
    let next = 0;
    let refusals = 0;
    while (next < COUNT) {
      if (!session.trySend(chunks[next]!)) {
        refusals += 1;
        break;
      }
      next += 1;
    }
    expect(refusals).toBe(1);
    expect(next).toBe(WINDOW / CHUNK);

    // send() queues the rest and writes each as WINDOW_UPDATEs return credit.
    await withTimeout(Promise.all(chunks.slice(next).map((c) => session.send(c))), 15_000, 'sends of 2 MiB');
    await withTimeout(allBack, 15_000, `${COUNT} echoes (got ${echoes.length})`);
    expect(echoes.length).toBe(COUNT);
    expect(echoes.findIndex((payload, i) => !payload.equals(chunks[i]!))).toBe(-1);
    expect(session.state).toBe(SessionState.OPEN);

    // A message is never split: one over max_payload is refused locally, nothing is sent.
    expect(() => session.trySend(Buffer.alloc(CHUNK + 1))).toThrow(PayloadTooLargeError);
    await expect(session.send(Buffer.alloc(CHUNK + 1))).rejects.toBeInstanceOf(PayloadTooLargeError);
  });
});

/** `size` bytes: the index (u32 BE), then a byte pattern that differs from chunk to chunk. */
function patternChunk(index: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(index, 0);
  for (let k = 4; k < size; k++) b[k] = (index * 7 + k) & 0xff;
  return b;
}

describe('priorities', () => {
  it('system, high and low DATA come back with the priority they were sent with, publishes too', async () => {
    const client = await connectClient(proxy.port);
    const session = await client.open('echo');
    const received = new Received(session);
    // The proxy orders a client's DATA by priority, so only the pairing is checked, not the order.
    await Promise.all([
      session.send('as-system', { priority: 'system' }),
      session.send('as-high', { priority: 'high' }),
      session.send('as-low', { priority: 'low' }),
      session.send('as-default'),
    ]);
    await Promise.all(['as-system', 'as-high', 'as-low', 'as-default'].map((t) => received.waitFor(t)));
    expect(received.priorityOf('as-system')).toBe('system');
    expect(received.priorityOf('as-high')).toBe('high');
    expect(received.priorityOf('as-low')).toBe('low');
    expect(received.priorityOf('as-default')).toBe('high');

    // The echo backend publishes at the priority of the DATA that carried /pub.
    await session.send('/sub prio-topic');
    await fence(session, received);
    await session.send('/pub prio-topic urgent', { priority: 'system' });
    await session.send('/pub prio-topic bulk', { priority: 'low' });
    await Promise.all([received.waitFor('urgent'), received.waitFor('bulk')]);
    expect(received.priorityOf('urgent')).toBe('system');
    expect(received.priorityOf('bulk')).toBe('low');
  });
});

describe('edge fan-out across proxies', () => {
  it('a publish reaches every subscriber on both proxies exactly once; after /unsub, none', async () => {
    const second = await spawnProxy([backend]);
    const topic = 'room-1';
    const [c1, c2, c3] = await Promise.all([connectClient(proxy.port), connectClient(proxy.port), connectClient(second.port)]);
    // Two subscribers on the first proxy (two connections), two on the second (one connection).
    const subscribers = [
      await c1.open('chat', { room_id: topic }),
      await c2.open('chat', { room_id: topic }),
      await c3.open('chat', { room_id: topic }),
      await c3.open('echo', { room_id: topic }),
    ];
    const inboxes = subscribers.map((s) => new Received(s));
    await Promise.all(
      subscribers.map(async (s, i) => {
        await s.send(`/sub ${topic}`);
        await fence(s, inboxes[i]!);
      }),
    );

    // Published through the first proxy; the publisher is a subscriber too (the backend excludes nobody).
    await subscribers[0]!.send(`/pub ${topic} hello`);
    await Promise.all(inboxes.map((r) => r.waitFor('hello')));
    await Promise.all(subscribers.map((s, i) => fence(s, inboxes[i]!)));
    expect(inboxes.map((r) => r.count('hello'))).toEqual([1, 1, 1, 1]);

    // One subscriber on each proxy leaves; the next publish goes through the second proxy.
    const [stays1, leaves1, leaves2, stays2] = subscribers as [ClientSession, ClientSession, ClientSession, ClientSession];
    for (const [s, r] of [
      [leaves1, inboxes[1]!],
      [leaves2, inboxes[2]!],
    ] as const) {
      await s.send(`/unsub ${topic}`);
      await fence(s, r);
    }
    await stays2.send(`/pub ${topic} after-unsub`);
    await Promise.all([inboxes[0]!.waitFor('after-unsub'), inboxes[3]!.waitFor('after-unsub')]);
    // Each proxy fans a publish out in one pass, before the later fence echo is written, so a copy for a
    // session that left would be here by the time its fence is.
    await fence(leaves1, inboxes[1]!);
    await fence(leaves2, inboxes[2]!);
    await fence(stays1, inboxes[0]!);
    await fence(stays2, inboxes[3]!);
    expect(inboxes.map((r) => r.count('after-unsub'))).toEqual([1, 0, 0, 1]);
    expect(inboxes.map((r) => r.count('hello'))).toEqual([1, 1, 1, 1]);
  });
});

describe('backend-initiated close', () => {
  it('/close 205 bye ends that session with code and reason; the connection and other sessions go on', async () => {
    const client = await connectClient(proxy.port);
    const reconnects: unknown[] = [];
    client.on('reconnecting', (info) => reconnects.push(info));
    const [before, doomed, after] = await Promise.all([
      client.open('echo'),
      client.open('chat', { room_id: 'r-close' }),
      client.open('echo'),
    ]);
    const inboxBefore = new Received(before);
    const inboxAfter = new Received(after);
    const closed = nextEvent<[number, string]>(doomed, 'close');
    const iteration = readByIteration(doomed, 'never sent');

    await doomed.send('/close 205 bye');
    expect(await closed).toEqual([Code.BACKEND_CLOSED, 'bye']);
    await expect(iteration).rejects.toMatchObject({ name: 'SessionClosedError', wireCode: Code.BACKEND_CLOSED });
    expect(doomed.state).toBe(SessionState.CLOSED);
    await expect(doomed.send('too late')).rejects.toBeInstanceOf(SessionClosedError);

    await echoed(before, inboxBefore, 'still here');
    await echoed(after, inboxAfter, 'me too');
    const fresh = await client.open('echo');
    await echoed(fresh, new Received(fresh), 'new session, same connection');
    expect(fresh.connectionId).toBe(before.connectionId);
    expect(client.state).toBe(ClientState.CONNECTED);
    expect(reconnects).toEqual([]);
  });
});

describe('max_payload and small windows (PROTOCOL.md §7)', () => {
  it('a client granting an 8 KiB window gets max_payload 4 KiB, and max_payload messages never wait for credit that is not coming', async () => {
    const client = await connectClient(proxy.port, { sessionWindow: 8_192 });
    expect(client.welcome.limits.maxPayload).toBe(4_096);
    const session = await client.open('echo');
    const inbox = new Received(session);
    await echoed(session, inbox, 'small');
    for (let i = 0; i < 6; i++) await echoed(session, inbox, String(i).repeat(4_096));
    await expect(session.send('x'.repeat(4_097))).rejects.toBeInstanceOf(PayloadTooLargeError);
  });
});

describe('half-close (PROTOCOL.md §5.2)', () => {
  it('close() right after send(): every reply arrives before close() resolves, and the close is NORMAL', async () => {
    const client = await connectClient(proxy.port);
    const session = await client.open('echo');
    const inbox = new Received(session);
    const closed = nextEvent<[number, string]>(session, 'close');
    const sends = ['one', 'two', 'three'].map((text) => session.send(text));
    await session.close();
    await Promise.all(sends);
    expect(inbox.texts).toEqual(['one', 'two', 'three']);
    expect(await closed).toEqual([Code.NORMAL, '']);
  });
});

describe('automatic reconnect', () => {
  it('after the proxy is killed and restarted on its port, the client reconnects and reopens its session', async () => {
    const doomed = await spawnProxy([backend]);
    const client = await connectClient(doomed.port, { reconnect: { initialMs: 50, maxMs: 250 } });
    const events: string[] = [];
    client.on('reconnecting', () => events.push('reconnecting'));
    client.on('reconnected', () => events.push('reconnected'));
    const durable = await client.open('chat', { room_id: 'r-durable' }, { reopen: true });
    const plain = await client.open('echo');
    const inbox = new Received(durable);
    await echoed(durable, inbox, 'before the crash');
    const firstConnection = client.welcome.connectionId;

    const plainClosed = nextEvent<[number, string]>(plain, 'close');
    const reopened = nextEvent<[]>(durable, 'reopened', 20_000);
    const reconnected = nextEvent<[Welcome]>(client, 'reconnected', 20_000);
    doomed.child.kill('SIGKILL');
    expect(await doomed.exited).toBe('SIGKILL');

    // The session without reopen ends ("presumed dead"); the durable one waits, queuing sends.
    const [code] = await plainClosed;
    expect(code).toBe(Code.HEARTBEAT_TIMEOUT);
    expect(plain.state).toBe(SessionState.CLOSED);
    expect(durable.state).toBe(SessionState.DETACHED);
    expect(events[0]).toBe('reconnecting');
    const queued = durable.send('queued while detached');

    const restarted = await restartProxyOnPort(doomed.port, [backend]);
    expect(restarted.port).toBe(doomed.port);
    const [welcome] = await reconnected;
    await reopened;
    expect(welcome.connectionId).not.toBe(firstConnection);
    expect(client.welcome.connectionId).toBe(welcome.connectionId);
    expect(durable.connectionId).toBe(welcome.connectionId);
    expect(durable.state).toBe(SessionState.OPEN);
    expect(client.state).toBe(ClientState.CONNECTED);
    expect(events.lastIndexOf('reconnecting')).toBeLessThan(events.indexOf('reconnected'));

    await withTimeout(queued, 5_000, 'the queued send');
    await inbox.waitFor('queued while detached');
    await echoed(durable, inbox, 'after the restart');
    expect(inbox.texts).toEqual(['before the crash', 'queued while detached', 'after the restart']);
  });
});

describe('GOAWAY with a reconnect address', () => {
  it('on SIGTERM the next open() lands on the hinted proxy; the old session finishes, then the old proxy exits 0', async () => {
    const target = await spawnProxy([backend]);
    const leaving = await spawnProxy([backend], {
      goaway_reconnect_address: `127.0.0.1:${target.port}`,
      timeouts: { drain_ms: 10_000 },
    });
    const client = await connectClient(leaving.port);
    const old = await client.open('echo');
    const oldInbox = new Received(old);
    const firstConnection = client.welcome.connectionId;

    const goaway = nextEvent<[GoAway]>(client, 'goaway');
    leaving.child.kill('SIGTERM');
    const [g] = await goaway;
    expect(g).toMatchObject({ code: Code.GOING_AWAY, lastSessionId: old.id, reconnectAddress: `127.0.0.1:${target.port}` });
    expect(client.state).toBe(ClientState.IDLE);

    const moved = await client.open('echo');
    expect(moved.connectionId).not.toBe(firstConnection);
    expect(client.welcome.connectionId).toBe(moved.connectionId);
    const movedInbox = new Received(moved);
    await echoed(moved, movedInbox, 'on the new proxy');
    expect(sample(await scrape(target.adminPort), 'livemux_sessions', { business: 'echo' })).toBe(1);

    // The draining proxy still serves the session it accepted, and leaves once that one ends.
    await echoed(old, oldInbox, 'still served while draining');
    expect(leaving.child.exitCode).toBeNull();
    await old.close();
    expect(await withTimeout(leaving.exited, 5_000, 'the drained proxy to exit')).toBe(0);
    await echoed(moved, movedInbox, 'unaffected by the old proxy leaving');
    expect(client.state).toBe(ClientState.CONNECTED);
  });
});

describe('backend down', () => {
  it('its sessions close with BACKEND_UNAVAILABLE; open() then rejects with 204 and a retry hint', async () => {
    const lonely = await spawnBackend();
    const isolated = await spawnProxy([lonely]);
    const client = await connectClient(isolated.port);
    const sessions = await Promise.all([client.open('echo'), client.open('chat', { room_id: 'r-down' })]);
    const closes = sessions.map((s) => nextEvent<[number, string]>(s, 'close', 10_000));

    expect(await stopProcess(lonely)).toBe(0);
    for (const [code] of await Promise.all(closes)) expect(code).toBe(Code.BACKEND_UNAVAILABLE);

    const error: unknown = await client.open('echo').then(
      () => new Error('open() resolved with the backend down'),
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(OpenFailedError);
    const refused = error as OpenFailedError;
    expect(refused.wireCode).toBe(Code.BACKEND_UNAVAILABLE);
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retry).toBe('backoff');
    // Only the sessions failed: the connection is up, and readiness follows the backend.
    expect(client.state).toBe(ClientState.CONNECTED);
    expect(await status(isolated.adminPort, '/readyz')).toBe(503);
    expect(await status(isolated.adminPort, '/healthz')).toBe(200);
  });
});

describe('admin endpoints', () => {
  it('healthz, readyz through a drain, session and backend gauges in /metrics', async () => {
    const observed = await spawnProxy([backend], { timeouts: { drain_ms: 10_000 } });
    expect(await status(observed.adminPort, '/healthz')).toBe(200);
    expect(await status(observed.adminPort, '/readyz')).toBe(200);

    const client = await connectClient(observed.port);
    const echoes = await Promise.all([client.open('echo'), client.open('echo'), client.open('echo')]);
    const chats = await Promise.all([client.open('chat', { room_id: 'a' }), client.open('chat', { room_id: 'b' })]);
    const metrics = await scrape(observed.adminPort);
    expect(sample(metrics, 'livemux_sessions', { business: 'echo' })).toBe(3);
    expect(sample(metrics, 'livemux_sessions', { business: 'chat' })).toBe(2);
    const endpoint = `127.0.0.1:${backend.port}`;
    expect(sample(metrics, 'livemux_backend_stream_state', { endpoint, state: 'ready' })).toBe(1);
    expect(sample(metrics, 'livemux_backend_stream_state', { endpoint, state: 'down' })).toBe(0);

    await echoes[0]!.close();
    const echoSessions = async (): Promise<number | undefined> => sample(await scrape(observed.adminPort), 'livemux_sessions', { business: 'echo' });
    await until(async () => (await echoSessions()) === 2, 3_000, 'livemux_sessions{business="echo"} to drop to 2');

    // Draining: not ready any more (GOAWAY is sent after the flag is set), still alive.
    const goaway = nextEvent<[GoAway]>(client, 'goaway');
    observed.child.kill('SIGTERM');
    await goaway;
    expect(await status(observed.adminPort, '/readyz')).toBe(503);
    expect(await status(observed.adminPort, '/healthz')).toBe(200);
    expect(await echoSessions()).toBe(2);

    await Promise.all([...echoes.slice(1), ...chats].map((s) => s.close()));
    expect(await withTimeout(observed.exited, 5_000, 'the drained proxy to exit')).toBe(0);
  });
});
