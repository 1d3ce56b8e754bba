import { parseArgs } from 'node:util';
import { decodeImEvent, encodeImRequest } from '../src/backends/im/im-codec.js';
import { mintToken } from '../src/proxy/auth.js';
import { Priority } from '../src/protocol/constants.js';
import { encodeData, encodeWindowUpdate } from '../src/protocol/encoder.js';
import { ReceiveCredit } from '../src/protocol/flow-control.js';
import { BenchConnection } from './bench-connection.js';
import { LatencyHistogram } from './broadcast-protocol.js';

/**
 * IM load (issue 10's bench): `users` users in pairs, each on its own connection with one `im` session
 * (device_id `bench`), speaking the IM protocol directly (no SDK logic in the way).
 *
 * With `--business echo` the same users, connections, step search and pace rule drive the proxy's echo
 * backend instead: each send is a 64-byte DATA on the user's one `echo` session and its echo is both
 * its ack and its delivery. That is the echo round-trip rate with the IM load's shape (one session per
 * connection, open-loop offered rate), the like-for-like baseline of the IM memory target. The generator
 * offers sends at a fixed total rate, spread round-robin over the users, each to its pair partner,
 * and measures per step: sends acknowledged per second, send→ack latency (to the sender's Reply) and
 * send→recipient latency (to the recipient's Entries event), both on this process's clock, since
 * sender and recipient live here. Recipients acknowledge their inbox as the SDK's ImClient does
 * (cumulative Acks, once 64 entries are unacknowledged or a second after the first) and return
 * flow-control credit.
 *
 * After a warm-up step at `start`, the peak search doubles the rate from `start` until a step does not keep pace (twice in a
 * row: see judgeStep), then bisects `refinements` times; then one step at half the peak measures latency. Prints one JSON line per step
 * (`{"step":…}`) and a last one with the result (`{"peak":…}`).
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    users: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '4' },
    start: { type: 'string', default: '250' },
    refinements: { type: 'string', default: '2' },
    'max-rate': { type: 'string', default: '64000' },
    size: { type: 'string', default: '64' },
    business: { type: 'string', default: 'im' },
  },
});
const ECHO = values.business === 'echo';
const port = Number(values.port);
const USERS = Number(values.users) & ~1;
const STEP_MS = Number(values.seconds) * 1000;
const BODY_BYTES = Math.max(16, Number(values.size));
/** A step keeps pace when every send of it was acknowledged within this long after the step ended… */
const SETTLE_MS = 2_000;
/** …and the mean ack latency of its last second exceeds that of its second second by at most this… */
const PACE_SLACK_MS = 200;
/** …and its median ack latency is at most this: a queue standing longer is a system at its limit. */
const MAX_MEDIAN_ACK_MS = 100;
/** The ImClient's ack policy (src/client/im-client.ts): entries acknowledged at once, else within this. */
const ACK_EVERY = 64;
const ACK_DELAY_MS = 1_000;
const TICK_MS = 2;
/** A step stops offering once more than this many seconds of its sends are unacknowledged. */
const MAX_BEHIND_S = 2;
/** Longest wait for a step's backlog to clear before the next step. */
const DRAIN_MS = 60_000;
const secret = process.env.LIVEMUX_JWT_SECRET ?? '';

interface User {
  readonly name: string;
  readonly partner: string;
  readonly conn: BenchConnection;
  /** Sends waiting for their Reply: request id → when sent, and in which step. */
  readonly sentAt: Map<number, { at: number; step: number }>;
  nextRequestId: number;
  /** Highest inbox seq received and not acknowledged yet, and how many entries that covers. */
  ackSeq: number;
  unacked: number;
}

interface StepStats {
  sent: number;
  acked: number;
  delivered: number;
  ack: LatencyHistogram;
  recipient: LatencyHistogram;
  /** Ack latency sums of the step's second and last seconds, for the pace check. */
  early: { sum: number; n: number };
  late: { sum: number; n: number };
}

let step: StepStats | null = null;
/** Numbers the steps, so that replies and deliveries of an earlier step's backlog are not counted in a later one. */
let stepNo = 0;
let stepStart = 0;
/** Acknowledged sends and recipient deliveries over the whole run, to tell when a backlog is worked off. */
let totalAcked = 0;
let totalDelivered = 0;
const newStep = (): StepStats => ({ sent: 0, acked: 0, delivered: 0, ack: new LatencyHistogram(), recipient: new LatencyHistogram(), early: { sum: 0, n: 0 }, late: { sum: 0, n: 0 } });

async function connectUser(i: number): Promise<User> {
  const name = `u${i}`;
  const partner = `u${i ^ 1}`;
  const connCredit = new ReceiveCredit(1 << 20);
  const sessionCredit = new ReceiveCredit(256 * 1024);
  let user: User | null = null;
  const conn = await BenchConnection.connect(port, (_id, payload) => {
    sessionCredit.receive(payload.length);
    connCredit.receive(payload.length);
    const s = sessionCredit.release(payload.length);
    const cc = connCredit.release(payload.length);
    if (s > 0) conn.socket.write(encodeWindowUpdate(1, s));
    if (cc > 0) conn.socket.write(encodeWindowUpdate(0, cc));
    if (user !== null) onEvent(user, payload);
  });
  await conn.hello(await mintToken({ secret, sub: name }));
  const { refused } = await conn.open(ECHO ? 'echo' : 'im', 1, 1, ECHO ? {} : { device_id: 'bench' });
  if (refused > 0) throw new Error(`${name}: OPEN refused`);
  user = { name, partner, conn, sentAt: new Map(), nextRequestId: 1, ackSeq: 0, unacked: 0 };
  if (!ECHO) conn.socket.write(encodeData(1, Priority.HIGH, encodeImRequest({ requestId: 0, sync: { afterSeq: 0 } })));
  return user;
}

function onEvent(user: User, payload: Buffer): void {
  if (ECHO) return onEcho(user, payload);
  const event = decodeImEvent(payload);
  const now = performance.now();
  const reply = event.reply;
  if (reply !== undefined) {
    // A refusal of a send forgotten after its step (sentAt cleared) is ignored, as its ack would be.
    if (!reply.ok && user.sentAt.has(reply.requestId)) throw new Error(`${user.name}: send refused: ${reply.errorCode} ${reply.errorMessage}`);
    onAck(user, reply.requestId, now);
    return;
  }
  const items = event.entries?.items;
  if (items === undefined || items.length === 0) return;
  for (const item of items) {
    const m = item.message;
    // Each message also reaches its sender's own inbox: only the recipient's copy is a delivery.
    if (m === undefined || m.recipient !== user.name) continue;
    totalDelivered++;
    if (step === null) continue;
    const body = Buffer.from(m.body);
    if (body.readUInt32LE(8) !== stepNo) continue;
    step.delivered++;
    step.recipient.add(now - body.readDoubleLE(0));
  }
  user.ackSeq = items.at(-1)!.inboxSeq;
  user.unacked += items.length;
  if (user.unacked >= ACK_EVERY) flushAck(user);
  else if (!unackedUsers.has(user)) unackedUsers.set(user, now);
}

/** The sender's ack of send `requestId` arrived (the IM Reply, or the echo). */
function onAck(user: User, requestId: number, now: number): void {
  const sent = user.sentAt.get(requestId);
  if (sent === undefined) return;
  user.sentAt.delete(requestId);
  totalAcked++;
  if (step !== null && sent.step === stepNo) {
    const sentAt = sent.at;
    const ms = now - sentAt;
    step.acked++;
    step.ack.add(ms);
    const second = Math.floor((sentAt - stepStart) / 1000);
    if (second === 1) (step.early.sum += ms), step.early.n++;
    if (second === Math.floor(STEP_MS / 1000) - 1) (step.late.sum += ms), step.late.n++;
  }
}

/** An echo round trip is over: the echoed body is the send's ack and its delivery at once. */
function onEcho(user: User, body: Buffer): void {
  const now = performance.now();
  onAck(user, body.readUInt32LE(12), now);
  totalDelivered++;
  if (step === null || body.readUInt32LE(8) !== stepNo) return;
  step.delivered++;
  step.recipient.add(now - body.readDoubleLE(0));
}

/**
 * Users with entries not acknowledged yet → when the first of them came (insertion order, so the
 * oldest first): each acknowledges ACK_DELAY_MS after its first, as the SDK's timer does, not all at
 * once on one clock (a burst of 2,000 Acks every period would be a load of the generator's making).
 */
const unackedUsers = new Map<User, number>();
setInterval(() => {
  const due = performance.now() - ACK_DELAY_MS;
  for (const [user, firstAt] of unackedUsers) {
    if (firstAt > due) break;
    flushAck(user);
  }
}, TICK_MS * 10);

function flushAck(user: User): void {
  unackedUsers.delete(user);
  if (user.unacked === 0) return;
  user.unacked = 0;
  user.conn.socket.write(encodeData(1, Priority.HIGH, encodeImRequest({ requestId: 0, ack: { inboxSeq: user.ackSeq } })));
}

function send(user: User): void {
  const requestId = user.nextRequestId++;
  const body = Buffer.alloc(BODY_BYTES, 0x61);
  const now = performance.now();
  body.writeDoubleLE(now, 0);
  body.writeUInt32LE(stepNo, 8);
  user.sentAt.set(requestId, { at: now, step: stepNo });
  if (ECHO) {
    body.writeUInt32LE(requestId, 12);
    user.conn.socket.write(encodeData(1, Priority.HIGH, body));
    return;
  }
  const request = encodeImRequest({ requestId, send: { to: user.partner, body, clientMsgId: `${user.name}-${requestId}` } });
  user.conn.socket.write(encodeData(1, Priority.HIGH, request));
}

/** Offers `rate` sends/s for one step, waits for it to settle, and judges whether it kept pace. */
async function runStep(users: User[], rate: number, kind: 'step' | 'half' | 'warmup' = 'step'): Promise<{ rate: number; ok: boolean; ackedPerSecond: number; stats: StepStats }> {
  const stats = newStep();
  step = stats;
  stepNo++;
  stepStart = performance.now();
  const cpuBefore = process.cpuUsage();
  let next = 0;
  let overrun = false;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - stepStart;
      const due = Math.floor((Math.min(elapsed, STEP_MS) / 1000) * rate);
      for (; stats.sent < due; stats.sent++) send(users[next++ % users.length]!);
      // Far behind: the step has failed; offering the rest would only build a backlog the proxy ends
      // by closing these connections as slow readers (its protection), and the next steps would pay.
      overrun = stats.sent - stats.acked > rate * MAX_BEHIND_S;
      if (elapsed >= STEP_MS || overrun) {
        clearInterval(timer);
        resolve();
      }
    }, TICK_MS);
  });
  const sendingEnded = performance.now();
  const deadline = sendingEnded + SETTLE_MS;
  while (stats.acked < stats.sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  // Recipients get the message after the sender's ack is sent: let the last deliveries land too.
  const delivered = performance.now() + 500;
  while (stats.delivered < stats.sent && performance.now() < delivered) await new Promise((r) => setTimeout(r, 20));
  step = null;
  const cpu = process.cpuUsage(cpuBefore);
  const ackedPerSecond = stats.acked / ((performance.now() - stepStart) / 1000);
  const growth = stats.late.n > 0 && stats.early.n > 0 ? stats.late.sum / stats.late.n - stats.early.sum / stats.early.n : 0;
  const ok = !overrun && stats.acked === stats.sent && stats.delivered === stats.sent && growth <= PACE_SLACK_MS && stats.ack.quantile(0.5) <= MAX_MEDIAN_ACK_MS;
  const line = {
    [kind]: rate,
    ok,
    sent: stats.sent,
    acked: stats.acked,
    delivered: stats.delivered,
    ackP50Ms: stats.ack.quantile(0.5),
    ackP99Ms: stats.ack.quantile(0.99),
    recipientP50Ms: stats.recipient.quantile(0.5),
    recipientP99Ms: stats.recipient.quantile(0.99),
    latencyGrowthMs: Math.round(growth),
    // What this generator itself spent per send (sending, decoding replies and deliveries, acking): it
    // shares the cores with what it measures.
    generatorCpuUsPerSend: Math.round((cpu.user + cpu.system) / Math.max(1, stats.sent)),
  };
  console.log(JSON.stringify(line));
  // A step that fell behind leaves a backlog: let the system work it off before the next step measures.
  const drained = performance.now() + DRAIN_MS;
  while ((users.some((u) => u.sentAt.size > 0) || totalDelivered < totalAcked) && performance.now() < drained) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  for (const u of users) u.sentAt.clear();
  return { rate, ok, ackedPerSecond: ok ? stats.acked / (STEP_MS / 1000) : ackedPerSecond, stats };
}

const users: User[] = [];
for (let i = 0; i < USERS; i += 100) users.push(...(await Promise.all(Array.from({ length: Math.min(100, USERS - i) }, (_, j) => connectUser(i + j)))));
await new Promise((r) => setTimeout(r, 1000)); // every Sync answered, feeds attached
// The first seconds of traffic are slow (JIT, first reads of every inbox, pools warming up): not measured.
await runStep(users, Number(values.start), 'warmup');

let best: Awaited<ReturnType<typeof runStep>> | null = null;
let failed: number | null = null;
/**
 * A step that acknowledged every send but too slowly is run once more before it counts as failed: this
 * machine is shared, and another process's burst of seconds (a compile, a test run) must not end the
 * search. One that left sends unacknowledged was beyond the system's rate: running it again would only
 * pile up a backlog that the next steps pay for.
 */
async function judgeStep(rate: number): Promise<Awaited<ReturnType<typeof runStep>>> {
  const first = await runStep(users, rate);
  return first.ok || first.stats.acked < first.stats.sent ? first : runStep(users, rate);
}

for (let rate = Number(values.start); rate <= Number(values['max-rate']); rate *= 2) {
  const result = await judgeStep(rate);
  if (!result.ok) {
    failed = rate;
    break;
  }
  best = result;
}
for (let i = 0; i < Number(values.refinements) && best !== null && failed !== null; i++) {
  const rate = Math.round((best.rate + failed) / 2);
  const result = await judgeStep(rate);
  if (result.ok) best = result;
  else failed = rate;
}
const peak = best?.rate ?? 0;
const half = peak > 0 ? await runStep(users, Math.round(peak / 2), 'half') : null;
console.log(
  JSON.stringify({
    peak,
    ackedPerSecondAtPeak: best?.ackedPerSecond ?? 0,
    half: half && {
      rate: half.rate,
      ok: half.ok,
      ackP50Ms: half.stats.ack.quantile(0.5),
      ackP99Ms: half.stats.ack.quantile(0.99),
      recipientP50Ms: half.stats.recipient.quantile(0.5),
      recipientP99Ms: half.stats.recipient.quantile(0.99),
    },
  }),
);
process.exit(0);
