import { TickBatcher } from '../util/tick-batcher.js';
import { FrameType, HEADER_SIZE, Priority } from '../protocol/constants.js';
import { writeHeader } from '../protocol/encoder.js';
import { flushQueuedWrites } from '../proxy/outbound-queue.js';
import type { HistogramSeries } from '../observability/histogram.js';
import type { ProxySession } from './proxy-session.js';

/** A backend command held until this turn's fan-out: a Publish, or a Deliver that must stay behind one. */
interface Held {
  /** The Publish's topic; null for a Deliver. */
  topic: string | null;
  /** The Deliver's session; null for a Publish. */
  target: ProxySession | null;
  /** The session ref a Publish skips (0: none). */
  exclude: number;
  payload: Buffer;
  priority: Priority;
  /** When a Publish arrived (performance.now()), for livemux_fanout_delay_seconds; 0 when not measured. */
  at: number;
}

/** The most bytes one run may spend on its encodings, summed over session ids (see FrameRun). */
const RUN_ENCODING_BUDGET = 4 * 1024 * 1024;

/**
 * The system or high messages one topic got in one turn, encoded as whole DATA frames back to back,
 * once per distinct session id: every member whose session has that id shares one buffer. SDKs number
 * their sessions alike, so a room of thousands usually needs one or two encodings. Should the ids be
 * scattered, every encoding is a copy of the run: past `budget` bytes of them, `framesFor` answers null
 * and those members get the messages one by one (a header each, the payloads shared), so memory stays
 * bounded whatever ids clients choose.
 */
export class FrameRun {
  readonly payloadBytes: number;
  /** The largest payload of the run (a session whose client takes less gets them one by one). */
  readonly largest: number;
  private readonly byId = new Map<number, Buffer>();
  private spent = 0;

  constructor(
    readonly payloads: readonly Buffer[],
    readonly priority: Priority,
    private readonly budget = RUN_ENCODING_BUDGET,
  ) {
    let bytes = 0;
    let largest = 0;
    for (const p of payloads) {
      bytes += p.length;
      if (p.length > largest) largest = p.length;
    }
    this.payloadBytes = bytes;
    this.largest = largest;
  }

  /** The run's frames for `sessionId`, or null once the encodings would exceed the budget. */
  framesFor(sessionId: number): Buffer | null {
    let frames = this.byId.get(sessionId);
    if (frames) return frames;
    const size = this.payloadBytes + HEADER_SIZE * this.payloads.length;
    if (this.spent + size > this.budget) return null;
    this.spent += size;
    frames = Buffer.allocUnsafe(size);
    let at = 0;
    for (const p of this.payloads) {
      writeHeader(frames, at, FrameType.DATA, this.priority, sessionId, p.length);
      p.copy(frames, at + HEADER_SIZE);
      at += HEADER_SIZE + p.length;
    }
    this.byId.set(sessionId, frames);
    return frames;
  }
}

/**
 * Edge fan-out that scales with load the way a hand-written broadcast server does: Publishes are held
 * until the end of the event-loop turn, and then each topic's messages of that turn reach each member
 * as ONE queue entry holding all of them (a {@link FrameRun}), so a member costs one entry and one socket
 * write per turn however many messages the turn brought. The busier the room, the more messages share
 * each write, instead of every message costing every member an entry, a header and a write.
 *
 * What stays exact (docs/backend-contract.md §3, PROTOCOL.md §8):
 * - per stream, commands still apply in order: a Deliver arriving while Publishes are held is held
 *   behind them, and every other command (subscribe, close, ...) first fans out what is held
 *   ({@link flush});
 * - a member that cannot take a run whole (credit, queue bound, closing) gets its messages one by one,
 *   through the same path as any single frame: waiting for credit, dropped and counted, or closed as a
 *   slow consumer;
 * - low messages always go one by one, through the connection's low-priority cap;
 * - members that got a held Deliver, that a Publish excludes, or that are in several topics get this
 *   turn's messages one by one in command order, so nothing is reordered for them.
 */
export class TopicFanOut {
  private readonly held = new TickBatcher<Held>((held) => this.fanOut(held), Infinity);

  constructor(
    private readonly members: (topic: string) => ReadonlySet<ProxySession> | undefined,
    /** Per Publish, arrival → queued for every member: one clock read per Publish, one per turn. */
    private readonly delay?: HistogramSeries,
  ) {}

  publish(topic: string, payload: Buffer, priority: Priority, excludeRef: number): void {
    this.held.push({ topic, target: null, exclude: excludeRef, payload, priority, at: this.delay ? performance.now() : 0 }, 0);
  }

  /** Delivers to one session now, or behind this turn's held Publishes when there are any. */
  deliver(session: ProxySession, payload: Buffer, priority: Priority): void {
    if (this.held.pending === 0) session.deliver(payload, priority);
    else this.held.push({ topic: null, target: session, exclude: 0, payload, priority, at: 0 }, 0);
  }

  /** Fans out what is held, now. Called before any command that changes who gets what. */
  flush(): void {
    this.held.flush();
  }

  private fanOut(held: Held[]): void {
    const oneByOne = new Set<ProxySession>();
    const excluded = new Set<number>();
    const byTopic = new Map<string, Buffer[][]>();
    for (const h of held) {
      if (h.target) {
        oneByOne.add(h.target);
        continue;
      }
      if (h.exclude !== 0) excluded.add(h.exclude);
      let lanes = byTopic.get(h.topic!);
      if (!lanes) byTopic.set(h.topic!, (lanes = [[], [], []]));
      lanes[h.priority]!.push(h.payload);
    }
    /** Per topic, its members served one by one below. */
    const slow = new Map<string, ProxySession[]>();
    for (const [topic, lanes] of byTopic) {
      const members = this.members(topic);
      if (!members) continue;
      const runs = [Priority.SYSTEM, Priority.HIGH].filter((p) => lanes[p]!.length > 0).map((p) => new FrameRun(lanes[p]!, p));
      const low = lanes[Priority.LOW]!;
      const topicSlow: ProxySession[] = [];
      for (const s of members) {
        if (oneByOne.has(s) || excluded.has(s.ref) || s.topics!.size > 1) {
          oneByOne.add(s);
          topicSlow.push(s);
          continue;
        }
        for (const run of runs) {
          const frames = run.framesFor(s.id);
          if (frames && s.deliverRun(frames, run.payloads.length, run.payloadBytes, run.largest, run.priority)) continue;
          for (const p of run.payloads) if (isIn(s, topic)) s.deliver(p, run.priority);
        }
        for (const p of low) if (isIn(s, topic)) s.deliver(p, Priority.LOW);
      }
      if (topicSlow.length > 0) slow.set(topic, topicSlow);
    }
    for (const h of held) {
      if (h.target) h.target.deliver(h.payload, h.priority);
      else for (const s of slow.get(h.topic!) ?? []) if (s.ref !== h.exclude && isIn(s, h.topic!)) s.deliver(h.payload, h.priority);
    }
    if (this.delay) {
      const done = performance.now();
      for (const h of held) if (h.topic !== null) this.delay.observe((done - h.at) / 1000);
    }
    flushQueuedWrites();
  }
}

/**
 * Whether `s` is still subscribed: delivering one message may end it (a slow consumer's connection is
 * closed and its sessions leave their topics), and the rest of the turn is then no longer its to get,
 * exactly as when every Publish was fanned out on arrival.
 */
function isIn(s: ProxySession, topic: string): boolean {
  return s.topics?.has(topic) === true;
}
