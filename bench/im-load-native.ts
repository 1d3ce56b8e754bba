import { encodeImRequest } from '../src/backends/im/im-codec.js';
import { FrameType, Priority } from '../src/protocol/constants.js';
import { encodeData, encodeFrame } from '../src/protocol/encoder.js';
import { encodeHello, encodeOpen } from '../src/protocol/messages.js';
import { LatencyHistogram } from './broadcast-protocol.js';
import { ACK_DELAY_MS, ACK_EVERY, type LoadEngine, type LoadOptions, type StepPlan, type StepStats } from './im-load-engine.js';
import { buildNative } from './native.js';
import { BenchProcess } from './processes.js';

/** Longer than any step's own waits: a step line later than this means the engine is stuck. */
const ANSWER_SLACK_MS = 60_000;
/**
 * The engine's nap after an epoll_wait that did not fill its batch (bench/native/im-load.c): each wakeup
 * then reads many sockets, and the proxy's writes seldom wake a sleeping generator (a wakeup a phone on
 * a network never costs it). BENCH_IM_NAP_US overrides it (0: none); it adds at most that to latencies.
 */
const NAP_US = 1_000;

/**
 * The IM load in bench/native/im-load.c (the default engine): one child process, one thread, epoll.
 * Node mints the tokens and encodes each user's opening frames (HELLO + OPEN, then the Sync on
 * OPEN_OK), so the C side needs no JWT and no protobuf beyond the send, the ack and the events it reads.
 * Commands go down its stdin, one JSON line per step comes back (the protocol is in its header).
 */
export class NativeLoadEngine implements LoadEngine {
  private constructor(
    private readonly child: BenchProcess,
    private readonly maxBehindS: number,
  ) {}

  static async start(options: LoadOptions): Promise<NativeLoadEngine> {
    const { users, business } = options;
    // Sends in flight per user stay below what a step offers while at most maxBehindS behind; twice that, a power of 2.
    const ring = 2 ** Math.ceil(Math.log2(Math.max(64, (4 * options.maxRate * options.maxBehindS) / users.length)));
    const args = ['--port', String(options.port), '--business', business, '--size', String(options.bodyBytes), '--ring', String(ring)];
    args.push('--ack-every', String(ACK_EVERY), '--ack-delay-ms', String(ACK_DELAY_MS), '--nap-us', process.env.BENCH_IM_NAP_US ?? String(NAP_US));
    const child = new BenchProcess(buildNative('im-load'), args, {}, { native: true, input: true });
    const metadata: Record<string, string> = business === 'im' ? { device_id: 'bench' } : {};
    const open = encodeFrame(FrameType.OPEN, 0, 1, encodeOpen({ business, metadata }));
    const sync = business === 'im' ? encodeData(1, Priority.HIGH, encodeImRequest({ requestId: 0, sync: { afterSeq: 0 } })).toString('hex') : '-';
    for (const u of users) {
      const hello = encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token: u.token }));
      child.send(`user ${u.name} ${u.partner} ${Buffer.concat([hello, open]).toString('hex')} ${sync}`);
    }
    const ready = child.next((l) => l.event === 'ready', 120_000);
    child.send('connect');
    await ready;
    return new NativeLoadEngine(child, options.maxBehindS);
  }

  get pids(): readonly number[] {
    return [this.child.pid];
  }

  async step(plan: StepPlan): Promise<StepStats> {
    const answer = this.child.next((l) => 'sent' in l, plan.ms + plan.settleMs + plan.deliverMs + ANSWER_SLACK_MS);
    this.child.send(`step ${plan.step} ${plan.rate} ${plan.ms} ${plan.settleMs} ${plan.deliverMs} ${this.maxBehindS}`);
    const l = await answer;
    const pair = (v: unknown): { sum: number; n: number } => ({ sum: (v as number[])[0]!, n: (v as number[])[1]! });
    return {
      sent: l.sent as number,
      acked: l.acked as number,
      delivered: l.delivered as number,
      overrun: l.overrun as boolean,
      ack: new LatencyHistogram(l.ack as number[]),
      recipient: new LatencyHistogram(l.recipient as number[]),
      early: pair(l.early),
      late: pair(l.late),
      cpuUs: l.cpuUs as number,
    };
  }

  async drain(ms: number, quietMs: number): Promise<void> {
    const answer = this.child.next((l) => 'drained' in l, ms + quietMs + ANSWER_SLACK_MS);
    this.child.send(`drain ${ms} ${quietMs}`);
    await answer;
  }

  close(): void {
    this.child.stop();
  }
}
