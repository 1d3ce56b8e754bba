import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { beforeEach, describe, expect, it } from 'vitest';
import { HistogramSeries } from '../../src/observability/histogram.js';
import { FrameStats } from '../../src/observability/metrics.js';
import { FrameType, HEADER_SIZE, Priority } from '../../src/protocol/constants.js';
import { SendCredit } from '../../src/protocol/flow-control.js';
import { OutboundQueue } from '../../src/proxy/outbound-queue.js';
import type { BackendLink } from '../../src/proxy/upstream/link.js';
import { ProxySession, type SessionHost } from '../../src/session/proxy-session.js';
import { TopicFanOut } from '../../src/session/topic-fanout.js';
import type { SlicedTask } from '../../src/util/slice-scheduler.js';

/**
 * The topic log and its walks (src/session/topic-fanout.ts), stepped by hand: a walk given a deadline
 * already past stops after one clock check (64 members), which leaves a room half walked, the state in
 * which commands must still see every member's messages in publish order. Each member is a real
 * ProxySession on a real OutboundQueue whose socket records what is written.
 */
const MEMBERS = 200;
/** Members a walk gets through before its first look at the clock. */
const BEFORE_CLOCK = 64;

/** A socket that takes every write and keeps it. */
class RecordingSocket extends EventEmitter {
  destroyed = false;
  writableNeedDrain = false;
  writes: Buffer[] = [];
  write(b: Buffer): boolean {
    this.writes.push(b);
    return true;
  }
  end(): void {}
}

/** One connection holding one session: what it was sent, frame by frame. */
class Member implements SessionHost {
  readonly socket = new RecordingSocket();
  readonly out = new OutboundQueue(this.socket as unknown as Socket, 1 << 20, { onDrop: () => {}, onOverflow: () => {} }, new FrameStats());
  readonly lowPacer = null;
  /** The client's max_payload (WELCOME): fixed for the connection, as its sessions take it when opened. */
  readonly maxPayload: number;
  readonly userId = 'u';
  readonly clientAddress = '';
  readonly connectionId = '';
  readonly claims = {};
  readonly sendCredit = new SendCredit(1 << 30);
  readonly session: ProxySession;

  constructor(ref: number, sessionId = 1, maxPayload = 1 << 20) {
    this.maxPayload = maxPayload;
    this.session = new ProxySession(this, sessionId, ref, 'b', {}, link, 1 << 30, 1 << 30);
  }

  /** The session id in each frame's header, in the order written. */
  get frameIds(): number[] {
    const out: number[] = [];
    const all = Buffer.concat(this.socket.writes);
    for (let at = 0; at < all.length; at += HEADER_SIZE + all.readUInt32BE(at + 8)) out.push(all.readUInt32BE(at + 4));
    return out;
  }

  /** DATA payloads as text, CLOSE as 'CLOSE', in the order written. */
  get frames(): string[] {
    const out: string[] = [];
    const all = Buffer.concat(this.socket.writes);
    for (let at = 0; at < all.length; ) {
      const length = all.readUInt32BE(at + 8);
      out.push(all[at + 2] === FrameType.CLOSE ? 'CLOSE' : all.subarray(at + HEADER_SIZE, at + HEADER_SIZE + length).toString());
      at += HEADER_SIZE + length;
    }
    return out;
  }

  awaitConnectionCredit(): void {}
  releaseConnectionCredit(): void {}
  sendSessionFrame(type: FrameType, sessionId: number, body: Buffer): void {
    const frame = Buffer.alloc(HEADER_SIZE + body.length);
    frame[0] = 0x4c;
    frame[1] = 1;
    frame[2] = type;
    frame.writeUInt32BE(sessionId, 4);
    frame.writeUInt32BE(body.length, 8);
    body.copy(frame, HEADER_SIZE);
    this.out.control(frame);
  }
  sendWindowUpdate(): void {}
  drop(): void {}
  slowConsumer(): void {}
  halfClosed(): void {}
  retired(): void {}
}

const link: BackendLink = {
  endpoint: 'test',
  state: 'ready' as BackendLink['state'],
  isWritable: () => true,
  open: () => {},
  data: () => {},
  closed: () => {},
  onDrain: (_s, fn) => fn(),
  halfClosed: () => {},
  close: () => {},
  messageCounts: () => ({ out: 0, in: 0 }),
};

/** Runs the walks only when told to, with the deadline the test chooses. */
class Stepper {
  private tasks: SlicedTask[] = [];
  schedule(task: SlicedTask): void {
    this.tasks.push(task);
  }
  run(): void {}
  /** One slice with a deadline already past: each walk stops at its first look at the clock. */
  slice(): void {
    for (const t of this.tasks.splice(0)) if (t.runUntil(-Infinity)) this.tasks.push(t);
  }
  /** Everything, to the end. */
  finish(): void {
    for (const t of this.tasks.splice(0)) expect(t.runUntil(Infinity)).toBe(false);
  }
}

let stepper: Stepper;
let fanOut: TopicFanOut;
let members: Member[];

beforeEach(() => {
  stepper = new Stepper();
  members = Array.from({ length: MEMBERS }, (_, i) => new Member(i + 1));
  fanOut = new TopicFanOut((ref) => members[ref - 1]?.session, undefined, stepper);
  for (const m of members) fanOut.subscribe(m.session, 'room');
});

/** Publishes `texts` to `topic` as one turn (the backend batch of one event-loop turn). */
function turn(...messages: [string, string][]): void {
  for (const [topic, text] of messages) fanOut.publish(topic, Buffer.from(text), Priority.HIGH, 0);
  fanOut.flush();
}

const LATE = 150;
const late = (): Member => members[LATE]!;

/** Messages delivered one by one wait in their connection's queue until the write scheduler's next turn. */
const queuesWritten = (): Promise<void> => nextTurn();

describe('topic walks', () => {
  it('a turn published mid-walk reaches the members not walked yet in the same write, and the others in the next walk', () => {
    turn(['room', 'm1']);
    stepper.slice();
    expect(members.filter((m) => m.socket.writes.length === 1)).toHaveLength(BEFORE_CLOCK);
    turn(['room', 'm2']);
    stepper.finish();
    for (const [i, m] of members.entries()) {
      expect(m.frames).toEqual(['m1', 'm2']);
      expect(m.socket.writes).toHaveLength(i < BEFORE_CLOCK ? 2 : 1);
    }
    expect(fanOut.topic('room')!.pending).toBe(0);
  });

  it('a Deliver to a member not walked yet goes after the turns it lacks, which the walk then does not repeat', async () => {
    turn(['room', 'm1']);
    stepper.slice();
    fanOut.deliver(late().session, Buffer.from('direct'), Priority.HIGH);
    turn(['room', 'm2']);
    stepper.finish();
    await queuesWritten();
    expect(late().frames).toEqual(['m1', 'direct', 'm2']);
    expect(members[0]!.frames).toEqual(['m1', 'm2']);
  });

  it('a member whose session closes before it is walked gets what was published first, then CLOSE', async () => {
    turn(['room', 'm1']);
    stepper.slice();
    late().session.closedByBackend(0, 'bye');
    stepper.finish();
    await queuesWritten();
    expect(late().frames).toEqual(['m1', 'CLOSE']);
  });

  it('who joins mid-walk gets only what is published after; who leaves mid-walk still gets what was published before', () => {
    const newcomer = new Member(MEMBERS + 1);
    turn(['room', 'm1']);
    stepper.slice();
    fanOut.subscribe(newcomer.session, 'room');
    fanOut.unsubscribe(late().session, 'room');
    turn(['room', 'm2']);
    stepper.finish();
    expect(newcomer.frames).toEqual(['m2']);
    expect(late().frames).toEqual(['m1']);
  });

  it('a member joining a second topic mid-walk first gets what it lacks, then both topics interleaved as published', async () => {
    turn(['room', 'm1']);
    stepper.slice();
    fanOut.subscribe(late().session, 'side');
    expect(late().frames).toEqual(['m1']);
    turn(['room', 'm2'], ['side', 's1'], ['room', 'm3']);
    stepper.finish();
    await queuesWritten();
    expect(late().frames).toEqual(['m1', 'm2', 's1', 'm3']);
    expect(members[0]!.frames).toEqual(['m1', 'm2', 'm3']);
    // Back to one topic: walked again, with nothing lost or repeated.
    fanOut.unsubscribe(late().session, 'side');
    turn(['room', 'm4']);
    stepper.finish();
    await queuesWritten();
    expect(late().frames).toEqual(['m1', 'm2', 's1', 'm3', 'm4']);
  });

  it('a member the Publish excludes gets the rest of the turn in order, after what it lacked', async () => {
    turn(['room', 'm1']);
    stepper.slice();
    fanOut.publish('room', Buffer.from('m2'), Priority.HIGH, late().session.ref);
    fanOut.publish('room', Buffer.from('m3'), Priority.HIGH, 0);
    fanOut.flush();
    stepper.finish();
    await queuesWritten();
    expect(late().frames).toEqual(['m1', 'm3']);
    expect(members[0]!.frames).toEqual(['m1', 'm2', 'm3']);
  });

  it("a member whose client takes less than a message of the turns it lacks is not written at once: that message closes it MESSAGE_TOO_LARGE, as a single frame would", async () => {
    members = Array.from({ length: MEMBERS }, (_, i) => new Member(i + 1, 1, i === LATE ? 4 : 1 << 20));
    fanOut = new TopicFanOut((ref) => members[ref - 1]?.session, undefined, stepper);
    for (const m of members) fanOut.subscribe(m.session, 'room');
    turn(['room', 'm1']);
    turn(['room', 'large']);
    stepper.finish();
    await queuesWritten();
    expect(late().frames).toEqual(['m1', 'CLOSE']);
    expect(late().session.state).not.toBe('open');
    expect(members[0]!.frames).toEqual(['m1', 'large']);
  });

  it('members of one walk lacking different turns, under different session ids, each get theirs in one write under their own id', () => {
    // Ids 1, 2, 1, 2, …: a walk shares one write between the members that lack the same turns and have the same id.
    members = Array.from({ length: MEMBERS }, (_, i) => new Member(i + 1, 1 + (i % 2)));
    fanOut = new TopicFanOut((ref) => members[ref - 1]?.session, undefined, stepper);
    for (const m of members) fanOut.subscribe(m.session, 'room');
    turn(['room', 'm1']);
    stepper.slice();
    turn(['room', 'm2'], ['room', 'm3']);
    fanOut.publish('room', Buffer.from('s1'), Priority.SYSTEM, 0);
    fanOut.flush();
    stepper.finish();
    for (const [i, m] of members.entries()) {
      // System before high within one write: the first 64 got m1 alone, then the rest.
      expect(m.frames).toEqual(i < BEFORE_CLOCK ? ['m1', 's1', 'm2', 'm3'] : ['s1', 'm1', 'm2', 'm3']);
      expect(m.frameIds).toEqual([1, 1, 1, 1].map(() => 1 + (i % 2)));
      expect(m.socket.writes).toHaveLength(i < BEFORE_CLOCK ? 2 : 1);
    }
  });

  it('several turns: members sharing an id get them as one buffer once a second member asks, a member alone with its id as a writev', () => {
    // Ids: 100 members with id 1, then each other member an id of its own.
    members = Array.from({ length: MEMBERS }, (_, i) => new Member(i + 1, i < 100 ? 1 : i + 1));
    fanOut = new TopicFanOut((ref) => members[ref - 1]?.session, undefined, stepper);
    for (const m of members) fanOut.subscribe(m.session, 'room');
    // How each member's queue handed its write to the writer: 'writev' (parts) or 'write' (one buffer).
    const calls = members.map((m) => {
      const seen: string[] = [];
      const writer = (m.out as unknown as { writer: { write(b: Buffer): void; writev(p: readonly Buffer[]): void } }).writer;
      const { write, writev } = writer;
      writer.write = (b) => (seen.push('write'), write.call(writer, b));
      writer.writev = (p) => (seen.push('writev'), writev.call(writer, p));
      return seen;
    });
    turn(['room', 'm1']);
    turn(['room', 'm2']);
    turn(['room', 'm3']);
    stepper.finish();
    for (const [i, m] of members.entries()) {
      expect(m.frames).toEqual(['m1', 'm2', 'm3']);
      expect(m.frameIds).toEqual([1, 1, 1].map(() => (i < 100 ? 1 : i + 1)));
      expect(calls[i]).toEqual([i === 0 || i >= 100 ? 'writev' : 'write']);
    }
  });

  it('counts each Publish in the fan-out delay once the walk that brought it to every member has ended', () => {
    const delay = new HistogramSeries([0.001, 1]);
    members = Array.from({ length: MEMBERS }, (_, i) => new Member(i + 1));
    fanOut = new TopicFanOut((ref) => members[ref - 1]?.session, delay, stepper);
    for (const m of members) fanOut.subscribe(m.session, 'room');
    turn(['room', 'm1'], ['room', 'm2']);
    stepper.slice();
    expect(delay.count).toBe(0);
    stepper.finish();
    expect(delay.count).toBe(2);
  });
});
