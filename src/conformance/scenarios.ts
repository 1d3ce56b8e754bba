/**
 * The scenarios of the conformance kit (PROTOCOL.md §14). Each plays the server's part of one rule of
 * the protocol and checks the client's reaction, byte for byte and within the stated times; a failure
 * says what the client did and what PROTOCOL.md asks instead.
 *
 * The client under test runs the driver of §14: one session of business `conformance` at a time, every
 * message echoed with its priority ("close" closes the session, "reset" resets it), each ended session
 * reported with an OPEN of `conformance-report`, a new session opened after it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Code, codeInfo } from '../protocol/codes.js';
import { Defaults, FLAG_BATCH, FrameType, MAX_WINDOW, Priority } from '../protocol/constants.js';
import { encodeBatch } from '../protocol/batch.js';
import { encodeFrame, encodeWindowUpdate } from '../protocol/encoder.js';
import { encodeGoAway, encodeWelcome, type Limits } from '../protocol/messages.js';
import { PACKAGE_ROOT } from '../paths.js';
import { DEFAULT_LIMITS, Peer, type PeerFrame, ScenarioFailure, codeLabel } from './peer.js';
import type { ScenarioContext } from './server.js';

export interface Scenario {
  readonly name: string;
  /** What passing means, in one sentence citing PROTOCOL.md. */
  readonly checks: string;
  /** Longest the script may take from the client's first connection (default 20 s). */
  readonly timeoutMs?: number;
  run(ctx: ScenarioContext): Promise<void>;
}

/** The tolerance a client gets on its own timers (PROTOCOL.md §9.5 gives the server's). */
const CLIENT_TOLERANCE_MS = 1_000;
/** Loopback transit and scheduling slack on a busy machine. */
const SLACK_MS = 300;

interface Vector {
  name: string;
  hex: string;
  code?: string;
  receiver?: string;
}
const vectors = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'test', 'fixtures', 'protocol-vectors.json'), 'utf8')) as {
  invalid: Vector[];
  malformedBodies: Vector[];
};
const bytes = (v: Vector): Buffer => Buffer.from(v.hex, 'hex');
const vectorNamed = (list: Vector[], name: string): Vector => list.find((v) => v.name === name)!;

const fail = (why: string): never => {
  throw new ScenarioFailure(why);
};

/** The client's first connection: its HELLO checked (§4.1), WELCOME sent, its session opened. */
async function begin(ctx: ScenarioContext, limits: Partial<Limits> = {}, heartbeatIntervalMs?: number): Promise<{ peer: Peer; sid: number; limits: Limits }> {
  const peer = await ctx.connection(15_000, "the client's first connection");
  checkHello(peer);
  const announced = peer.welcome(limits, heartbeatIntervalMs);
  const sid = await peer.opened();
  return { peer, sid, limits: announced };
}

function checkHello(peer: Peer): void {
  const hello = peer.hello!;
  if (!hello.versions.includes(1)) fail(`HELLO versions [${hello.versions.join(',')}] lack version 1 (§4.1)`);
  for (const [field, value] of [['session_window', hello.sessionWindow], ['connection_window', hello.connectionWindow]] as const) {
    if ((value ?? 0) > MAX_WINDOW) fail(`HELLO ${field} ${value} is above 2^31-1 (§4.1)`);
  }
}

const isData = (sid: number) => (f: PeerFrame) => f.type === FrameType.DATA && f.sessionId === sid;

/** The echo of `text` at `priority` on session `sid`. */
async function echo(peer: Peer, sid: number, text: string, priority: number = Priority.HIGH, timeoutMs = 5_000): Promise<void> {
  const f = await peer.next(isData(sid), timeoutMs, `the echo of "${text.slice(0, 20)}" on session ${sid}`);
  if (f.payload.toString() !== text) fail(`echo on session ${sid} carried "${f.payload.toString().slice(0, 40)}", expected "${text.slice(0, 40)}" (messages of one priority keep their order, §8)`);
  if ((f.flags & 0x03) !== priority) fail(`echo of "${text.slice(0, 20)}" came with priority ${f.flags & 0x03}, sent with ${priority}`);
  if ((f.flags & FLAG_BATCH) !== 0) fail('a client set BATCH (0x04), which only a server sets (§2.3)');
}

/** DATA `text` to the client and its echo back. */
async function roundTrip(peer: Peer, sid: number, text: string): Promise<void> {
  peer.data(sid, text);
  await echo(peer, sid, text);
}

/** The client's answering CLOSE on `sid`, with nothing it may not send before it. */
async function closeAnswer(peer: Peer, sid: number, timeoutMs = 3_000): Promise<PeerFrame> {
  const f = await peer.next((x) => (x.type === FrameType.CLOSE || x.type === FrameType.RESET) && x.sessionId === sid, timeoutMs, `CLOSE on session ${sid}`);
  if (f.type === FrameType.RESET) fail(`RESET ${codeLabel(Peer.status(f).code)} on session ${sid} where a CLOSE answers the server's (§5.2)`);
  return f;
}

/** After a verdict-worthy exchange, the client's connection must still answer PING. */
async function stillAlive(peer: Peer): Promise<void> {
  peer.send(encodeFrame(FrameType.PING, 0, 0, Buffer.from('alive?')));
  const pong = await peer.next((f) => f.type === FrameType.PONG, 3_000, 'PONG (the connection should go on)');
  if (pong.payload.toString() !== 'alive?') fail(`PONG carried "${pong.payload.toString()}", not the PING's bytes (§3.10)`);
}

/** A sent report: the SDK's code for the ended session and what the application got on it. */
async function reportOf(ctx: ScenarioContext): Promise<{ code: number; received: string[] }> {
  return ctx.report(5_000);
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

const handshake: Scenario = {
  name: 'handshake',
  checks: 'HELLO lists version 1 and windows within 2^31-1; after WELCOME the client opens a session and its DATA flows (§4.1, §5.1).',
  async run(ctx) {
    const { peer, sid } = await begin(ctx);
    await roundTrip(peer, sid, 'ping');
  },
};

const vectorsValid: Scenario = {
  name: 'vectors-valid',
  checks: 'every S→C vector of §12.1 is understood: DATA of each priority, empty DATA, BATCH unpacked (if the client accepts batches), PING answered, WINDOW_UPDATEs taken.',
  async run(ctx) {
    const { peer, sid } = await begin(ctx);
    const batch = peer.hello!.acceptsBatch === true;
    const sent: [string, number][] = [['sys', Priority.SYSTEM], ['hello', Priority.HIGH], ['gift', Priority.LOW], ['', Priority.HIGH]];
    for (const [text, priority] of sent) peer.data(sid, text, priority);
    if (batch) peer.send(encodeFrame(FrameType.DATA, Priority.LOW | FLAG_BATCH, sid, encodeBatch([Buffer.from('hi'), Buffer.from('abc')])));
    peer.send(Buffer.from('4c01090000000000000000080001020304050607', 'hex'));
    peer.send(encodeWindowUpdate(sid, 131_072));
    peer.send(encodeWindowUpdate(0, 524_288));
    const pong = await peer.next((f) => f.type === FrameType.PONG, 3_000, 'PONG to the PING vector');
    if (pong.payload.toString('hex') !== '0001020304050607') fail(`PONG carried ${pong.payload.toString('hex')}, not the PING's bytes (§3.10)`);
    const expected = [...sent, ...(batch ? ([['hi', Priority.LOW], ['abc', Priority.LOW]] as [string, number][]) : [])];
    const echoes: string[] = [];
    for (let i = 0; i < expected.length; i++) {
      const f = await peer.next(isData(sid), 5_000, `${expected.length} echoes (got ${echoes.length})`);
      if ((f.flags & FLAG_BATCH) !== 0) fail('a client set BATCH (0x04), which only a server sets (§2.3)');
      echoes.push(`${f.flags & 0x03}:${f.payload.toString()}`);
    }
    // Different priorities may be reordered (§8); within one priority, order holds.
    const want = expected.map(([t, p]) => `${p}:${t}`);
    for (const p of [Priority.SYSTEM, Priority.HIGH, Priority.LOW]) {
      const got = echoes.filter((e) => e.startsWith(`${p}:`));
      const exp = want.filter((e) => e.startsWith(`${p}:`));
      if (got.join('|') !== exp.join('|')) fail(`echoes at priority ${p} were [${got.join(', ')}], expected [${exp.join(', ')}]`);
    }
  },
};

/**
 * The server sends what the client must refuse: `send` runs right after OPEN_OK (or, `beforeWelcome`,
 * in place of WELCOME), and the client must answer ERROR `code` and close.
 */
function refused(name: string, checks: string, code: number, send: (peer: Peer, sid: number) => void, beforeWelcome = false): Scenario {
  return {
    name,
    checks,
    async run(ctx) {
      const { peer, sid } = beforeWelcome ? { peer: await ctx.connection(15_000, "the client's first connection"), sid: 0 } : await begin(ctx);
      send(peer, sid);
      await peer.error(code);
    },
  };
}

/** One scenario per §12.2 vector a client must refuse: the header alone, right after OPEN_OK. */
const invalidHeaders: Scenario[] = vectors.invalid
  .filter((v) => v.receiver !== 'server')
  .map((v) =>
    refused(
      `invalid-header-${slug(v.name)}`,
      `the §12.2 vector "${v.name}" from the server gets ERROR ${v.code} and a close, as soon as its header is read (§2.5).`,
      Code[v.code as keyof typeof Code],
      (peer) => peer.send(bytes(v)),
    ),
  );

const malformedWelcome = refused(
  'malformed-welcome',
  'the §12.3 vector "WELCOME without limits" gets ERROR MALFORMED_PAYLOAD (§4.3).',
  Code.MALFORMED_PAYLOAD,
  (peer) => peer.send(bytes(vectorNamed(vectors.malformedBodies, 'WELCOME without limits'))),
  true,
);

const malformedBody = refused(
  'malformed-close-body',
  'a CLOSE whose Status body is truncated protobuf gets ERROR MALFORMED_PAYLOAD (§4).',
  Code.MALFORMED_PAYLOAD,
  (peer, sid) => peer.send(encodeFrame(FrameType.CLOSE, 0, sid, Buffer.from('1205636861', 'hex'))),
);

const malformedUtf8 = refused(
  'malformed-utf8',
  'a Status whose reason is not UTF-8 gets ERROR MALFORMED_PAYLOAD (§4).',
  Code.MALFORMED_PAYLOAD,
  (peer, sid) => peer.send(encodeFrame(FrameType.CLOSE, 0, sid, Buffer.from('08cd011202c328', 'hex'))),
);

const unknownFields: Scenario = {
  name: 'unknown-fields',
  checks: 'a WELCOME with unknown fields and a field of the wrong wire type is read as the reference protobuf runtimes read it: they are skipped (§4).',
  async run(ctx) {
    const peer = await ctx.connection(15_000, "the client's first connection");
    checkHello(peer);
    const welcome = encodeWelcome({ version: 1, connectionId: 'conformance', userId: 'sdk-under-test', heartbeatIntervalMs: 60_000, limits: DEFAULT_LIMITS });
    // field 3 (user_id) as a varint: skipped; field 99 varint and field 100 bytes: unknown, skipped.
    const odd = Buffer.concat([Buffer.from('1805', 'hex'), welcome, Buffer.from('980601a206026869', 'hex')]);
    peer.send(encodeFrame(FrameType.WELCOME, 0, 0, odd));
    await roundTrip(peer, await peer.opened(), 'still fine');
  },
};

const unexpectedBeforeWelcome = refused(
  'unexpected-before-welcome',
  'a frame other than WELCOME or ERROR before WELCOME (here OPEN_OK) gets ERROR UNEXPECTED_FRAME (§5.1).',
  Code.UNEXPECTED_FRAME,
  (peer) => peer.send(encodeFrame(FrameType.OPEN_OK, 0, 1)),
  true,
);

const secondWelcome = refused('unexpected-second-welcome', 'a second WELCOME gets ERROR UNEXPECTED_FRAME (§5.1).', Code.UNEXPECTED_FRAME, (peer) => peer.welcome());

const respectsWindow: Scenario = {
  name: 'flow-respects-window',
  checks: 'the client never sends more DATA than the session window WELCOME announced, and resumes on WINDOW_UPDATE (§7).',
  async run(ctx) {
    const peer = await ctx.connection(15_000, "the client's first connection");
    checkHello(peer);
    peer.autoCredit = false;
    peer.welcome({ sessionWindow: 1_024, connectionWindow: 1 << 20, maxPayload: 512 });
    const sid = await peer.opened();
    const texts = 'abcdef'.split('').map((c) => c.repeat(400));
    for (const t of texts) peer.data(sid, t);
    // Two echoes fit the 1 024-byte window; the third must wait for credit.
    await echo(peer, sid, texts[0]!);
    await echo(peer, sid, texts[1]!);
    await peer.nothing(isData(sid), 800, 'no DATA beyond the 1024-byte session window before WINDOW_UPDATE');
    peer.send(encodeWindowUpdate(sid, 2_048));
    for (const t of texts.slice(2)) await echo(peer, sid, t);
  },
};

const returnsCredit: Scenario = {
  name: 'flow-returns-credit',
  checks: 'the client returns credit as it consumes: three windows of DATA at max_payload reach it, the server never exceeding its grant (§7).',
  timeoutMs: 30_000,
  async run(ctx) {
    const peer = await ctx.connection(15_000, "the client's first connection");
    checkHello(peer);
    const hello = peer.hello!;
    const sessionWindow = hello.sessionWindow || Defaults.sessionWindow;
    const connectionWindow = hello.connectionWindow || Defaults.connectionWindow;
    const maxPayload = Math.min(16 * 1024, Math.floor(Math.min(sessionWindow, connectionWindow) / 2));
    peer.welcome({ maxPayload });
    const sid = await peer.opened();
    let sessionCredit = sessionWindow;
    let connCredit = connectionWindow;
    const total = 3 * sessionWindow;
    let sent = 0;
    let echoed = 0;
    for (let i = 0; sent < total; i++) {
      while (sessionCredit < maxPayload || connCredit < maxPayload) {
        const update = await peer.next((f) => f.type === FrameType.WINDOW_UPDATE, 5_000, `WINDOW_UPDATE after ${sent} bytes (the client must return credit by half windows, §7)`);
        const increment = update.payload.readUInt32BE(0);
        if (update.sessionId === 0) connCredit += increment;
        else if (update.sessionId === sid) sessionCredit += increment;
      }
      peer.data(sid, Buffer.alloc(maxPayload, 0x41 + (i % 26)));
      sent += maxPayload;
      sessionCredit -= maxPayload;
      connCredit -= maxPayload;
      // Echoes are taken as they come so they never pile up unread.
      while (peer.log.filter(isData(sid)).length > echoed) {
        await peer.next(isData(sid), 1_000, 'an echo');
        echoed++;
      }
    }
    while (echoed < sent / maxPayload) {
      await peer.next(isData(sid), 10_000, `echo ${echoed + 1} of ${sent / maxPayload}`);
      echoed++;
    }
  },
};

/** WELCOME lets frames larger than the client's own windows through the framing, to overrun them. */
function overrun(name: string, which: 'session' | 'connection'): Scenario {
  return {
    name,
    checks:
      which === 'session'
        ? 'DATA beyond the session window the client granted gets RESET SESSION_FLOW_CONTROL; the connection goes on (§7).'
        : 'DATA beyond both windows the client granted gets ERROR FLOW_CONTROL_ERROR, the connection check first (§7).',
    async run(ctx) {
      const peer = await ctx.connection(15_000, "the client's first connection");
      checkHello(peer);
      const hello = peer.hello!;
      const sessionWindow = hello.sessionWindow || Defaults.sessionWindow;
      const connectionWindow = hello.connectionWindow || Defaults.connectionWindow;
      const size = (which === 'session' ? sessionWindow : Math.max(sessionWindow, connectionWindow)) + 1;
      peer.welcome({ maxPayload: Math.min(size, 16 * 1024 * 1024) });
      const sid = await peer.opened();
      peer.data(sid, Buffer.alloc(size, 0x42));
      if (which === 'connection' || size > connectionWindow) return peer.error(Code.FLOW_CONTROL_ERROR);
      const reset = await peer.next((f) => f.sessionId === sid && (f.type === FrameType.RESET || f.type === FrameType.DATA), 3_000, `RESET SESSION_FLOW_CONTROL on session ${sid}`);
      if (reset.type !== FrameType.RESET || Peer.status(reset).code !== Code.SESSION_FLOW_CONTROL) fail(`${reset.name} on session ${sid}, expected RESET SESSION_FLOW_CONTROL`);
      await stillAlive(peer);
    },
  };
}

const zeroIncrement = refused('flow-zero-increment', 'a WINDOW_UPDATE of 0 gets ERROR FLOW_CONTROL_ERROR (§7).', Code.FLOW_CONTROL_ERROR, (peer) =>
  peer.send(encodeWindowUpdate(0, 0)),
);

const windowOverflow = refused(
  'flow-window-overflow',
  'a WINDOW_UPDATE growing a window past 2^31-1 gets ERROR FLOW_CONTROL_ERROR (§7).',
  Code.FLOW_CONTROL_ERROR,
  (peer) => peer.send(encodeWindowUpdate(0, MAX_WINDOW)),
);

const maxPayload: Scenario = {
  name: 'flow-max-payload',
  checks: 'DATA above the max_payload WELCOME announced gets ERROR FRAME_TOO_LARGE from its header alone (§2.4), and the client sends nothing larger itself.',
  async run(ctx) {
    const { peer, sid } = await begin(ctx, { maxPayload: 100 });
    await roundTrip(peer, sid, 'x'.repeat(100));
    peer.send(Buffer.concat([Buffer.from('4c010601', 'hex'), u32(sid), u32(101)]));
    await peer.error(Code.FRAME_TOO_LARGE);
  },
};

const goAway: Scenario = {
  name: 'goaway-drain',
  checks: 'after GOAWAY GOING_AWAY with a reconnect address, the client opens no session on the old connection and opens its next one on a new connection at once; a server CLOSE is answered (§9.4, §10).',
  async run(ctx) {
    const { peer, sid } = await begin(ctx);
    await roundTrip(peer, sid, 'before');
    const { host, port } = ctx.address;
    peer.send(encodeFrame(FrameType.GOAWAY, 0, 0, encodeGoAway({ lastSessionId: sid, code: Code.GOING_AWAY, reason: 'conformance drain', reconnectAddress: `${host}:${port}` })));
    peer.status(FrameType.CLOSE, sid, Code.GOING_AWAY, 'drain deadline');
    await closeAnswer(peer, sid);
    const started = performance.now();
    const next = await ctx.connection(1_000 + SLACK_MS, 'a new connection at once after GOAWAY GOING_AWAY (immediate, §10)');
    checkHello(next);
    next.welcome();
    await next.opened();
    await peer.nothing((f) => f.type === FrameType.OPEN, 200, 'no OPEN on a connection after its GOAWAY');
    if (peer.log.some((f) => f.type === FrameType.OPEN && f.at > started)) fail('an OPEN went to the connection that sent GOAWAY (§9.4)');
  },
};

const heartbeatPings: Scenario = {
  name: 'heartbeat-client-pings',
  checks: 'with heartbeat_interval_ms 1000 and nothing received, the client sends PING after one interval, not before and within 1 s (§9.1).',
  async run(ctx) {
    const { peer } = await begin(ctx, {}, 1_000);
    const quietFrom = peer.lastSentAt;
    const ping = await peer.next((f) => f.type === FrameType.PING, 1_000 + CLIENT_TOLERANCE_MS + SLACK_MS, 'a PING after 1000 ms of silence');
    const after = ping.at - quietFrom;
    if (after < 1_000) fail(`PING after ${Math.round(after)} ms of silence, before the 1000 ms interval (§9.1)`);
    peer.send(encodeFrame(FrameType.PONG, 0, 0, ping.payload));
  },
};

const heartbeatGivesUp: Scenario = {
  name: 'heartbeat-client-gives-up',
  checks: 'with heartbeat_interval_ms 1000 and nothing received at all, the client closes after 2 intervals (not before, within 1 s) and reconnects (§9.1, §10).',
  timeoutMs: 15_000,
  async run(ctx) {
    const { peer } = await begin(ctx, {}, 1_000);
    const quietFrom = peer.lastSentAt;
    await peer.closedWithin(2_000 + CLIENT_TOLERANCE_MS + SLACK_MS, 'close the silent connection after 2 heartbeat intervals');
    const after = peer.closedAt - quietFrom;
    if (after < 2_000 - SLACK_MS) fail(`closed after ${Math.round(after)} ms of silence, before 2 intervals (§9.1)`);
    await ctx.connection(5_000, 'a reconnect after the heartbeat failure');
  },
};

/** The server ends the connection with ERROR `code`; the client must reconnect per the code (§10). */
function reconnectAfter(name: string, code: number, withinMs: number | null): Scenario {
  return {
    name,
    checks:
      withinMs === null
        ? `after ERROR ${codeLabel(code)}, retry never, the client does not reconnect (§10).`
        : `after ERROR ${codeLabel(code)}, retry ${codeInfo(code).retry}, the client reconnects within ${withinMs} ms (§6, §10).`,
    async run(ctx) {
      const { peer } = await begin(ctx);
      peer.end(code, 'conformance');
      if (withinMs === null) return ctx.noConnection(3_000, `after ERROR ${codeLabel(code)}, which is never retried`);
      await ctx.connection(withinMs + SLACK_MS, `a reconnect within ${withinMs} ms of ERROR ${codeLabel(code)}`);
    },
  };
}

const halfCloseServerFirst: Scenario = {
  name: 'half-close-server-first',
  checks: "DATA then CLOSE BACKEND_CLOSED from the server: the DATA reaches the application, the client answers CLOSE (no RESET, no DATA after its CLOSE) and the session ends with 205 (§5.2).",
  async run(ctx) {
    const { peer, sid } = await begin(ctx);
    peer.data(sid, 'bye');
    peer.status(FrameType.CLOSE, sid, Code.BACKEND_CLOSED, 'done');
    const answer = await closeAnswer(peer, sid);
    await peer.nothing((f) => f.sessionId === sid && f.at > answer.at, 300, `nothing on session ${sid} after the client's CLOSE`);
    const report = await reportOf(ctx);
    if (report.code !== Code.BACKEND_CLOSED) fail(`the application saw the session end with ${codeLabel(report.code)}, expected BACKEND_CLOSED (205)`);
    if (!report.received.includes('bye')) fail(`the application did not get the DATA sent before CLOSE (got [${report.received.join(', ')}])`);
  },
};

const halfCloseClientFirst: Scenario = {
  name: 'half-close-client-first',
  checks: "after the client's CLOSE the server's direction stays open: DATA sent then reaches the application, and the server's CLOSE ends the session (§5.2).",
  async run(ctx) {
    const { peer, sid } = await begin(ctx);
    peer.data(sid, 'close');
    await closeAnswer(peer, sid);
    peer.data(sid, 'late');
    peer.status(FrameType.CLOSE, sid, Code.NORMAL);
    await peer.nothing((f) => (f.type === FrameType.RESET && f.sessionId === sid) || f.type === FrameType.ERROR, 300, `no RESET or ERROR for DATA after the client's own CLOSE`);
    const report = await reportOf(ctx);
    if (!report.received.includes('late')) fail(`the application did not get the DATA sent after its CLOSE (got [${report.received.join(', ')}])`);
  },
};

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** Every scenario, in the order a report lists them. */
export const SCENARIOS: readonly Scenario[] = [
  handshake,
  vectorsValid,
  ...invalidHeaders,
  malformedWelcome,
  malformedBody,
  malformedUtf8,
  unknownFields,
  unexpectedBeforeWelcome,
  secondWelcome,
  respectsWindow,
  returnsCredit,
  overrun('flow-session-overrun', 'session'),
  overrun('flow-connection-overrun', 'connection'),
  zeroIncrement,
  windowOverflow,
  maxPayload,
  goAway,
  heartbeatPings,
  heartbeatGivesUp,
  reconnectAfter('reconnect-immediate', Code.HEARTBEAT_TIMEOUT, 1_000),
  reconnectAfter('reconnect-backoff', Code.SLOW_CONSUMER, 2_000),
  reconnectAfter('reconnect-never', Code.PROTOCOL_ERROR, null),
  halfCloseServerFirst,
  halfCloseClientFirst,
];
