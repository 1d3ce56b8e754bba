import { decodeImEvent, encodeImRequest } from '../src/backends/im/im-codec.js';
import { Priority } from '../src/protocol/constants.js';
import { encodeData, encodeWindowUpdate } from '../src/protocol/encoder.js';
import { ReceiveCredit } from '../src/protocol/flow-control.js';
import { BenchConnection } from './bench-connection.js';
import { ACK_DELAY_MS, ACK_EVERY, type LoadEngine, type LoadOptions, type LoadUser, type StepPlan, type StepStats, newStepStats } from './im-load-engine.js';

const TICK_MS = 2;

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

/**
 * The IM load in this Node process (`BENCH_IM_GENERATOR=node`): each user a BenchConnection, the IM
 * protocol spoken directly (no SDK logic in the way). The native engine does the same work in C.
 */
export class NodeLoadEngine implements LoadEngine {
  readonly pids = [process.pid];
  private readonly users: User[] = [];
  private stats: StepStats | null = null;
  /** Numbers the steps, so that replies and deliveries of an earlier step's backlog are not counted in a later one. */
  private stepNo = 0;
  private stepStart = 0;
  private stepMs = 0;
  /** Acknowledged sends and recipient deliveries over the whole run, to tell when a backlog is worked off. */
  private totalAcked = 0;
  private totalDelivered = 0;
  /**
   * Users with entries not acknowledged yet → when the first of them came (insertion order, so the
   * oldest first): each acknowledges ACK_DELAY_MS after its first, as the SDK's timer does, not all at
   * once on one clock (a burst of 2,000 Acks every period would be a load of the generator's making).
   */
  private readonly unackedUsers = new Map<User, number>();
  private readonly ackTimer: NodeJS.Timeout;

  private constructor(private readonly options: LoadOptions) {
    this.ackTimer = setInterval(() => {
      const due = performance.now() - ACK_DELAY_MS;
      for (const [user, firstAt] of this.unackedUsers) {
        if (firstAt > due) break;
        this.flushAck(user);
      }
    }, TICK_MS * 10);
  }

  static async start(options: LoadOptions): Promise<NodeLoadEngine> {
    const engine = new NodeLoadEngine(options);
    const { users } = options;
    for (let i = 0; i < users.length; i += 100) engine.users.push(...(await Promise.all(users.slice(i, i + 100).map((u) => engine.connectUser(u)))));
    // This engine does not watch for each Sync's answer (the native one waits for every Synced): a
    // second lets them arrive and the users' feeds attach before the warm-up.
    await new Promise((r) => setTimeout(r, 1000));
    return engine;
  }

  private get echo(): boolean {
    return this.options.business === 'echo';
  }

  private async connectUser({ name, partner, token }: LoadUser): Promise<User> {
    const connCredit = new ReceiveCredit(1 << 20);
    const sessionCredit = new ReceiveCredit(256 * 1024);
    let user: User | null = null;
    const conn = await BenchConnection.connect(this.options.port, (_id, payload) => {
      sessionCredit.receive(payload.length);
      connCredit.receive(payload.length);
      const s = sessionCredit.release(payload.length);
      const cc = connCredit.release(payload.length);
      if (s > 0) conn.socket.write(encodeWindowUpdate(1, s));
      if (cc > 0) conn.socket.write(encodeWindowUpdate(0, cc));
      if (user !== null) this.onEvent(user, payload);
    });
    await conn.hello(token);
    const { refused } = await conn.open(this.options.business, 1, 1, this.echo ? {} : { device_id: 'bench' });
    if (refused > 0) throw new Error(`${name}: OPEN refused`);
    user = { name, partner, conn, sentAt: new Map(), nextRequestId: 1, ackSeq: 0, unacked: 0 };
    if (!this.echo) conn.socket.write(encodeData(1, Priority.HIGH, encodeImRequest({ requestId: 0, sync: { afterSeq: 0 } })));
    return user;
  }

  private onEvent(user: User, payload: Buffer): void {
    if (this.echo) return this.onEcho(user, payload);
    const event = decodeImEvent(payload);
    const now = performance.now();
    const reply = event.reply;
    if (reply !== undefined) {
      // A refusal of a send forgotten after its step (sentAt cleared) is ignored, as its ack would be.
      if (!reply.ok && user.sentAt.has(reply.requestId)) throw new Error(`${user.name}: send refused: ${reply.errorCode} ${reply.errorMessage}`);
      this.onAck(user, reply.requestId, now);
      return;
    }
    const items = event.entries?.items;
    if (items === undefined || items.length === 0) return;
    for (const item of items) {
      const m = item.message;
      // Each message also reaches its sender's own inbox: only the recipient's copy is a delivery.
      if (m === undefined || m.recipient !== user.name) continue;
      this.onDelivery(Buffer.from(m.body), now);
    }
    user.ackSeq = items.at(-1)!.inboxSeq;
    user.unacked += items.length;
    if (user.unacked >= ACK_EVERY) this.flushAck(user);
    else if (!this.unackedUsers.has(user)) this.unackedUsers.set(user, now);
  }

  /** The sender's ack of send `requestId` arrived (the IM Reply, or the echo). */
  private onAck(user: User, requestId: number, now: number): void {
    const sent = user.sentAt.get(requestId);
    if (sent === undefined) return;
    user.sentAt.delete(requestId);
    this.totalAcked++;
    const step = this.stats;
    if (step === null || sent.step !== this.stepNo) return;
    const ms = now - sent.at;
    step.acked++;
    step.ack.add(ms);
    const second = Math.floor((sent.at - this.stepStart) / 1000);
    if (second === 1) (step.early.sum += ms), step.early.n++;
    if (second === Math.floor(this.stepMs / 1000) - 1) (step.late.sum += ms), step.late.n++;
  }

  /** A recipient got the send whose body is `body`. */
  private onDelivery(body: Buffer, now: number): void {
    this.totalDelivered++;
    const step = this.stats;
    if (step === null || body.readUInt32LE(8) !== this.stepNo) return;
    step.delivered++;
    step.recipient.add(now - body.readDoubleLE(0));
  }

  /** An echo round trip is over: the echoed body is the send's ack and its delivery at once. */
  private onEcho(user: User, body: Buffer): void {
    const now = performance.now();
    this.onAck(user, body.readUInt32LE(12), now);
    this.onDelivery(body, now);
  }

  private flushAck(user: User): void {
    this.unackedUsers.delete(user);
    if (user.unacked === 0) return;
    user.unacked = 0;
    user.conn.socket.write(encodeData(1, Priority.HIGH, encodeImRequest({ requestId: 0, ack: { inboxSeq: user.ackSeq } })));
  }

  private send(user: User): void {
    const requestId = user.nextRequestId++;
    const body = Buffer.alloc(this.options.bodyBytes, 0x61);
    const now = performance.now();
    body.writeDoubleLE(now, 0);
    body.writeUInt32LE(this.stepNo, 8);
    user.sentAt.set(requestId, { at: now, step: this.stepNo });
    if (this.echo) {
      body.writeUInt32LE(requestId, 12);
      user.conn.socket.write(encodeData(1, Priority.HIGH, body));
      return;
    }
    const request = encodeImRequest({ requestId, send: { to: user.partner, body, clientMsgId: `${user.name}-${requestId}` } });
    user.conn.socket.write(encodeData(1, Priority.HIGH, request));
  }

  async step(plan: StepPlan): Promise<StepStats> {
    const stats = newStepStats();
    this.stats = stats;
    this.stepNo = plan.step;
    this.stepMs = plan.ms;
    this.stepStart = performance.now();
    const cpuBefore = process.cpuUsage();
    const { rate, ms } = plan;
    let next = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = performance.now() - this.stepStart;
        const due = Math.floor((Math.min(elapsed, ms) / 1000) * rate);
        for (; stats.sent < due; stats.sent++) this.send(this.users[next++ % this.users.length]!);
        // Far behind: the step has failed; offering the rest would only build a backlog the proxy ends
        // by closing these connections as slow readers (its protection), and the next steps would pay.
        stats.overrun = stats.sent - stats.acked > rate * this.options.maxBehindS;
        if (elapsed >= ms || stats.overrun) {
          clearInterval(timer);
          resolve();
        }
      }, TICK_MS);
    });
    await until(() => stats.acked >= stats.sent, plan.settleMs);
    // Recipients get the message after the sender's ack is sent: let the last deliveries land too.
    await until(() => stats.delivered >= stats.sent, plan.deliverMs);
    this.stats = null;
    const cpu = process.cpuUsage(cpuBefore);
    stats.cpuUs = cpu.user + cpu.system;
    return stats;
  }

  async drain(ms: number, quietMs: number): Promise<void> {
    await until(() => this.users.every((u) => u.sentAt.size === 0) && this.totalDelivered >= this.totalAcked, ms, 50);
    await new Promise((r) => setTimeout(r, quietMs));
    for (const u of this.users) u.sentAt.clear();
  }

  close(): void {
    clearInterval(this.ackTimer);
    for (const u of this.users) u.conn.close();
  }
}

/** Resolves once `done()` holds or `ms` have passed, polling every `everyMs`. */
async function until(done: () => boolean, ms: number, everyMs = 20): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done() && performance.now() < deadline) await new Promise((r) => setTimeout(r, everyMs));
}
