import type { HistogramSeries } from '../observability/histogram.js';
import { FrameType, HEADER_SIZE, Priority } from '../protocol/constants.js';
import { writeHeader } from '../protocol/encoder.js';
import { type WholeWrite, writeScheduler } from '../proxy/outbound-queue.js';
import { type SlicedTask, type SliceScheduler, runClock } from '../util/slice-scheduler.js';
import { TickBatcher } from '../util/tick-batcher.js';
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
/** Members walked between two looks at the clock. */
const CLOCK_EVERY = 64;

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
  /** The last answer: members of a room mostly share one session id, and come one after the other. */
  private lastId = -1;
  private lastFrames: Buffer | null = null;

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
    if (sessionId === this.lastId) return this.lastFrames;
    const frames = this.byId.get(sessionId) ?? this.encode(sessionId);
    this.lastId = sessionId;
    this.lastFrames = frames;
    return frames;
  }

  private encode(sessionId: number): Buffer | null {
    const size = this.payloadBytes + HEADER_SIZE * this.payloads.length;
    if (this.spent + size > this.budget) return null;
    this.spent += size;
    const frames = Buffer.allocUnsafe(size);
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

/** One turn's messages to one topic: the system and the high ones as runs (null when none), the low ones. */
interface Turn {
  runs: [FrameRun | null, FrameRun | null];
  low: Buffer[];
  /** When each of its Publishes arrived, for livemux_fanout_delay_seconds; null when not measured. */
  arrivals: number[] | null;
}

/**
 * One topic: its members, and a short log of the turns not yet given to every member. Each member in
 * this topic alone holds its position in the log (`topicSeq`: the turns it has been given); a walk goes
 * through the members in slices of the proxy's write scheduler and brings each up to date with ONE write
 * of everything it lacks, then the log forgets what every member has.
 *
 * Why a log rather than a queue entry per member per turn: the walk touches each member once, and
 * writes it at once when its connection has nothing queued (OutboundQueue.writeNow). Turns that arrive
 * while a walk is under way reach the members not walked yet in the same write as the earlier ones (the
 * turns' frames back to back, one writev), and the others in the next walk, which follows at once: what
 * a relay coalescing per round does, with nothing per member between two visits.
 */
export class Topic implements SlicedTask {
  readonly members = new Set<ProxySession>();
  /** Members in other topics too: they get this topic's messages one by one as published (TopicFanOut). */
  readonly multi = new Set<ProxySession>();
  /** Turn `base + i` is log[i]. Never changed in place: forgetting makes a new array. */
  private log: Turn[] = [];
  private base = 0;
  private scheduled = false;
  private walk: Iterator<ProxySession> | null = null;
  /** The head when the current walk started: at its end every member has at least that. */
  private walkFrom = 0;
  /** Whether some turn in the log has low messages. */
  private hasLow = false;
  /** The last answer of wholeFor, and its question. */
  private lastFrom = -1;
  private lastHead = -1;
  private lastId = -1;
  private lastWhole: WholeWrite | null = null;

  constructor(
    private readonly scheduler: Pick<SliceScheduler, 'schedule'>,
    /** Per Publish, its arrival to the end of the walk that brought it to every member. */
    private readonly delay?: HistogramSeries,
  ) {}

  /** Turns appended so far. */
  get head(): number {
    return this.base + this.log.length;
  }

  /** Turns some member has not been given yet. */
  get pending(): number {
    return this.log.length;
  }

  /**
   * Adds a turn (its messages by priority, and when each Publish arrived when measured) and makes sure
   * a walk will bring it to the members.
   */
  append(lanes: [Buffer[], Buffer[], Buffer[]], arrivals: number[] | null = null): void {
    const run = (p: Priority): FrameRun | null => (lanes[p].length > 0 ? new FrameRun(lanes[p], p) : null);
    this.log.push({ runs: [run(Priority.SYSTEM), run(Priority.HIGH)], low: lanes[Priority.LOW], arrivals });
    if (lanes[Priority.LOW].length > 0) this.hasLow = true;
    if (this.scheduled) return;
    this.scheduled = true;
    this.scheduler.schedule(this);
  }

  /**
   * Gives `s` (in this topic alone) every turn it lacks: in one write when its state, credit, queue's
   * bound and socket allow (ProxySession.writeRuns); else each turn's runs as queue entries, or message
   * by message through the path any single frame takes (waiting for credit, dropped and counted, or
   * closing the connection as a slow consumer). Low messages go one by one, through the low cap.
   */
  catchUp(s: ProxySession): void {
    const from = s.topicSeq;
    const head = this.head;
    if (from >= head) return;
    // Before anything is delivered: delivering may end the session and bring it back here.
    s.topicSeq = head;
    // Delivering may also append turns, or end a walk that forgets some: this array and these indices stay.
    const log = this.log;
    const first = from - this.base;
    const end = head - this.base;
    const whole = this.wholeFor(from, head, s.id);
    if (whole === null || !(whole.size === 0 || s.writeRuns(whole))) {
      for (let i = first; i < end; i++) {
        for (const run of log[i]!.runs) {
          if (!run) continue;
          const frames = run.framesFor(s.id);
          if (frames && s.deliverRun(frames, run.payloads.length, run.payloadBytes, run.largest, run.priority)) continue;
          for (const p of run.payloads) if (s.walkedTopic === this) s.deliver(p, run.priority);
        }
      }
    }
    if (this.hasLow) for (let i = first; i < end; i++) for (const p of log[i]!.low) if (s.walkedTopic === this) s.deliver(p, Priority.LOW);
  }

  /**
   * The system and high frames of turns `from`..`head` for session id `id`, as one write; null when some
   * run has no encoding left for `id` (FrameRun's budget). A walk asks the same question member after
   * member (they lack the same turns and mostly share an id), so the last answer is kept: nothing is
   * gathered or allocated per member.
   *
   * Several turns are several buffers, written as one writev; once a second member asks for the same
   * ones, they are joined into one buffer for it and every member after: a busy room's walk brings each
   * member a dozen turns or more, and a writev costs per buffer (Node reads each from the array through
   * its C++ API, the kernel copies each apart), where one buffer costs one copy per walk. A member alone
   * with its answer (scattered session ids) keeps the writev: joining for one write would only copy.
   */
  private wholeFor(from: number, head: number, id: number): WholeWrite | null {
    if (from === this.lastFrom && head === this.lastHead && id === this.lastId) {
      const last = this.lastWhole;
      if (last === null || Buffer.isBuffer(last.data)) return last;
      return (this.lastWhole = { ...last, data: Buffer.concat(last.data as readonly Buffer[], last.size) });
    }
    const whole = gatherWhole(this.log, from - this.base, head - this.base, id);
    this.lastFrom = from;
    this.lastHead = head;
    this.lastId = id;
    this.lastWhole = whole;
    return whole;
  }

  /** Walks the members until done or `deadline`; a turn appended meanwhile starts the next walk. */
  runUntil(deadline: number): boolean {
    for (;;) {
      if (this.walk === null) {
        if (this.head === this.walkFrom || this.members.size === 0) break;
        this.walk = this.members.values();
        this.walkFrom = this.head;
      }
      for (let n = 1; ; n++) {
        const next = this.walk.next();
        if (next.done) break;
        const s = next.value;
        if (s.walkedTopic === this && s.topicSeq < this.head) this.catchUp(s);
        if (n % CLOCK_EVERY === 0 && runClock.set(performance.now()) > deadline) return true;
      }
      this.walk = null;
      this.forget(this.walkFrom);
    }
    this.walk = null;
    this.forget(this.head);
    this.scheduled = false;
    return false;
  }

  /** Drops the turns before `seq`: every member has them, so each of their Publishes is fanned out. */
  private forget(seq: number): void {
    const gone = seq - this.base;
    if (this.delay && gone > 0) {
      const now = performance.now();
      for (let i = 0; i < gone; i++) for (const at of this.log[i]!.arrivals ?? []) this.delay.observe((now - at) / 1000);
    }
    this.log = this.log.slice(gone);
    this.base = seq;
    if (this.log.length === 0) {
      this.hasLow = false;
      // Nobody lacks anything: the last write's buffers need not stay alive.
      this.lastFrom = -1;
      this.lastWhole = null;
    }
    this.walkFrom = Math.max(this.walkFrom, seq);
  }
}

/** The system and high frames of turns `first`..`end` of `log`, system first, for session id `id` (see Topic.wholeFor). */
function gatherWhole(log: readonly Turn[], first: number, end: number, id: number): WholeWrite | null {
  const parts: Buffer[] = [];
  let size = 0;
  let system = 0;
  let high = 0;
  let payloadBytes = 0;
  let largest = 0;
  for (const lane of [Priority.SYSTEM, Priority.HIGH] as const) {
    for (let i = first; i < end; i++) {
      const run = log[i]!.runs[lane];
      if (!run) continue;
      const frames = run.framesFor(id);
      if (!frames) return null;
      parts.push(frames);
      size += frames.length;
      if (lane === Priority.SYSTEM) system += run.payloads.length;
      else high += run.payloads.length;
      payloadBytes += run.payloadBytes;
      if (run.largest > largest) largest = run.largest;
    }
  }
  return { data: parts.length === 1 ? parts[0]! : parts, size, system, high, payloadBytes, largest };
}

/**
 * Edge fan-out that scales with load the way a hand-written broadcast server does. Publishes are held
 * until the end of the event-loop turn; each topic's messages of that turn are then appended to its log
 * as one turn ({@link Topic}), and walks bring every member up to date in slices, one write per member
 * per walk however many messages and turns it brought. The busier the room, the more messages share
 * each write, instead of every message costing every member an entry, a header and a write.
 *
 * What stays exact (docs/backend-contract.md §3, PROTOCOL.md §8):
 * - per stream, commands still apply in order: a Deliver arriving while Publishes are held is held
 *   behind them; a Deliver, close, subscribe or unsubscribe first brings the sessions it names up to
 *   date ({@link settle}), and so does a session leaving the open state (ProxySession.beginClose), so
 *   everything published before reaches them first;
 * - a member that cannot take a run whole (credit, queue bound, closing) gets its messages one by one,
 *   through the same path as any single frame: waiting for credit, dropped and counted, or closed as a
 *   slow consumer;
 * - low messages always go one by one, through the connection's low-priority cap;
 * - members that got a held Deliver, that a Publish excludes, or that are in several topics get the
 *   turn's messages one by one in command order, so nothing is reordered for them.
 */
export class TopicFanOut {
  private readonly held = new TickBatcher<Held>((held) => this.fanOut(held), Infinity);
  private readonly topics = new Map<string, Topic>();

  /**
   * @param sessionByRef finds the session a Publish excludes
   * @param delay receives each Publish's fan-out delay: from its arrival to the end of the walk that
   *   brought it to every member (one clock read per Publish, one per walk)
   * @param scheduler runs the topics' walks: the proxy's write scheduler, whose first slice starts at
   *   the end of each fan-out
   */
  constructor(
    private readonly sessionByRef: (ref: number) => ProxySession | undefined,
    private readonly delay?: HistogramSeries,
    private readonly scheduler: Pick<SliceScheduler, 'schedule' | 'run'> = writeScheduler,
  ) {}

  /** The topic `name` (for tests); undefined without members. */
  topic(name: string): Topic | undefined {
    return this.topics.get(name);
  }

  /** Number of local subscribers of a topic. */
  subscribers(topic: string): number {
    return this.topics.get(topic)?.members.size ?? 0;
  }

  publish(topic: string, payload: Buffer, priority: Priority, excludeRef: number): void {
    if (!this.topics.has(topic)) return;
    this.held.push({ topic, target: null, exclude: excludeRef, payload, priority, at: this.delay ? performance.now() : 0 }, 0);
  }

  /** True while this turn's Publishes (and deliveries queued behind them) are held, payloads included. */
  get holding(): boolean {
    return this.held.pending > 0;
  }

  /** Delivers to one session behind everything published to it before: this turn's held Publishes, the turns it has not been walked to. */
  deliver(session: ProxySession, payload: Buffer, priority: Priority): void {
    if (this.held.pending > 0) this.held.push({ topic: null, target: session, exclude: 0, payload, priority, at: 0 }, 0);
    else {
      session.walkedTopic?.catchUp(session);
      session.deliver(payload, priority);
    }
  }

  /** Brings `session` up to date with everything published so far. Called before any command that names it. */
  settle(session: ProxySession): void {
    this.held.flush();
    session.walkedTopic?.catchUp(session);
  }

  subscribe(s: ProxySession, name: string): void {
    this.settle(s);
    const topics = (s.topics ??= new Set());
    if (topics.has(name)) return;
    let topic = this.topics.get(name);
    if (!topic) this.topics.set(name, (topic = new Topic(this.scheduler, this.delay)));
    const first = s.walkedTopic;
    if (first) {
      // Into a second topic: from now on served as published, so the two topics' messages interleave.
      s.walkedTopic = null;
      first.multi.add(s);
    }
    topics.add(name);
    topic.members.add(s);
    if (topics.size > 1) topic.multi.add(s);
    else {
      s.walkedTopic = topic;
      s.topicSeq = topic.head;
    }
  }

  unsubscribe(s: ProxySession, name: string): void {
    this.settle(s);
    if (!s.topics?.delete(name)) return;
    this.leave(s, name);
    if (s.topics.size !== 1) return;
    // Back to one topic; served as published until now, it has everything.
    const [only] = s.topics;
    const topic = this.topics.get(only!)!;
    topic.multi.delete(s);
    s.walkedTopic = topic;
    s.topicSeq = topic.head;
  }

  /** Ends every membership of `s` (retired or moved), after bringing it up to date. */
  leaveAll(s: ProxySession): void {
    this.settle(s);
    for (const name of s.topics ?? []) this.leave(s, name);
    s.topics = null;
    s.walkedTopic = null;
  }

  /** Fans out what is held, now. */
  flush(): void {
    this.held.flush();
  }

  private leave(s: ProxySession, name: string): void {
    const topic = this.topics.get(name);
    if (!topic) return;
    topic.members.delete(s);
    topic.multi.delete(s);
    if (s.walkedTopic === topic) s.walkedTopic = null;
    if (topic.members.size === 0) this.topics.delete(name);
  }

  private fanOut(held: Held[]): void {
    const targets = new Set<ProxySession>();
    const excluded = new Set<number>();
    const turns = new Map<Topic, { lanes: [Buffer[], Buffer[], Buffer[]]; arrivals: number[] | null }>();
    for (const h of held) {
      if (h.target) {
        targets.add(h.target);
        continue;
      }
      const topic = this.topics.get(h.topic!);
      if (!topic) continue;
      if (h.exclude !== 0) excluded.add(h.exclude);
      let turn = turns.get(topic);
      if (!turn) turns.set(topic, (turn = { lanes: [[], [], []], arrivals: this.delay ? [] : null }));
      turn.lanes[h.priority].push(h.payload);
      turn.arrivals?.push(h.at);
    }
    // Who gets this turn one by one, in command order: per topic, its members in other topics too,
    // and those a Publish excludes or a Deliver names. They first catch up on earlier turns.
    const oneByOne = new Map<Topic, ProxySession[]>();
    const excludedSessions = [...excluded].map(this.sessionByRef).filter((s) => s !== undefined);
    for (const topic of turns.keys()) {
      const slow = [...topic.multi];
      for (const s of [...targets, ...excludedSessions]) if (s.walkedTopic === topic) slow.push(s);
      oneByOne.set(topic, slow);
    }
    for (const s of [...targets, ...excludedSessions]) s.walkedTopic?.catchUp(s);
    for (const [topic, turn] of turns) {
      topic.append(turn.lanes, turn.arrivals);
      for (const s of oneByOne.get(topic)!) if (s.walkedTopic === topic) s.topicSeq = topic.head;
    }
    for (const h of held) {
      if (h.target) h.target.deliver(h.payload, h.priority);
      else {
        const topic = this.topics.get(h.topic!);
        for (const s of (topic && oneByOne.get(topic)) ?? []) if (s.ref !== h.exclude && s.topics?.has(h.topic!)) s.deliver(h.payload, h.priority);
      }
    }
    // Walk now, in this check phase, rather than after the next poll phase.
    this.scheduler.run();
  }
}
