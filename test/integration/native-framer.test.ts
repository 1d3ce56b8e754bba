import { type Socket, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { MESSAGE_BYTES, clockMs, endMessage, lagGrowth, roomMessage } from '../../bench/broadcast-protocol.js';
import { buildNative } from '../../bench/native.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { spawnTied } from '../helpers/tied-spawn.js';
import { until } from '../helpers/until.js';

/**
 * The native bench clients' framer (bench/native/wire.h) completes a frame split between two reads from
 * the next read's first bytes and parses the rest where it lies. A relay's writes end inside frames
 * whenever a receiver is behind; here every write does, at offsets from 1 byte to past a frame, and
 * the receivers must still count every message of the phase. And the lag growth they report, which
 * decides every peak-search step, is the one bench/broadcast-protocol.ts computes.
 */
const MESSAGES = 400;
/** Piece sizes cycled through: inside a header (12 B), at its end, inside a payload, across frames. */
const PIECES = [1, 2, 5, 11, 12, 13, 40, 75, 76, 77, 153, 1000];

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

interface PhaseLine {
  phase: number;
  missing: number;
  closed: number;
  lagGrowthMs: number[];
}

/** A plain-mode native receiver process with two receivers (both sampled), connected to a server of this test. */
async function twoReceivers(): Promise<{ sockets: Socket[]; phases: PhaseLine[]; stderr: () => string; exited: () => boolean }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    s.setNoDelay(true);
    // A receiver that dies on a bad frame resets its connections: the assertions say why.
    s.on('error', () => {});
    sockets.push(s);
  });
  cleanup.push(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const receiver = spawnTied(buildNative('broadcast-receiver'), ['--mode', 'plain', '--port', String(port), '--count', '2', '--sample', '1', '--nap-us', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanup.push(() => receiver.kill('SIGKILL'));
  let stderr = '';
  receiver.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  let exited = false;
  receiver.on('exit', () => (exited = true));
  const phases: PhaseLine[] = [];
  createInterface({ input: receiver.stdout! }).on('line', (line) => {
    const event = JSON.parse(line) as PhaseLine & { event: string };
    if (event.event === 'phase') phases.push(event);
  });
  await until(() => sockets.length === 2, 'both receivers connected');
  return { sockets, phases, stderr: () => stderr, exited: () => exited };
}

const frame = (message: string): Buffer => encodeFrame(FrameType.DATA, 0, 1, Buffer.from(message));

describe('native framer', () => {
  it('counts every message when each write ends inside a frame', async () => {
    const { sockets, phases, stderr, exited } = await twoReceivers();
    const stream = Buffer.concat([...Array.from({ length: MESSAGES }, () => roomMessage(1)), endMessage(1, MESSAGES)].map(frame));
    for (const s of sockets) {
      for (let at = 0, i = 0; at < stream.length; i++) {
        const piece = stream.subarray(at, at + PIECES[i % PIECES.length]!);
        at += piece.length;
        s.write(piece);
        // A turn between writes, so that most of them arrive, and are read, on their own.
        await new Promise((r) => setImmediate(r));
      }
    }
    await until(() => phases.length > 0 || exited(), 'the phase report');
    expect(stderr()).toBe('');
    expect(phases).toEqual([expect.objectContaining({ phase: 1, missing: 0, closed: 0 })]);
  });

  it('reports the lag growth bench/broadcast-protocol.ts computes from the same samples', async () => {
    const { sockets, phases, exited } = await twoReceivers();
    // Stamped 20 ms apart over 10 s, all of it written at once: each message's latency 20 ms less than the
    // one before, a slope of -1, so latency "grew" by minus the phase's 10 s less two.
    const sentAt = Array.from({ length: 500 }, (_, i) => clockMs() - 20_000 + i * 20);
    const end = sentAt[0]! + 10_000;
    const pad = (text: string): string => text.padEnd(MESSAGE_BYTES, '.');
    const stream = Buffer.concat([...sentAt.map((t) => pad(`M 1 ${t.toFixed(3)} `)), pad(`E 1 ${sentAt.length} ${end.toFixed(3)} `)].map(frame));
    for (const s of sockets) s.write(stream);
    await until(() => phases.length > 0 || exited(), 'the phase report');
    const expected = lagGrowth(sentAt, sentAt.map((t) => 30_000 - t), end);
    expect(expected).toBeCloseTo(-8000, 6);
    expect(phases[0]!.lagGrowthMs).toHaveLength(2);
    // The receivers read the stream in a few reads, a few milliseconds apart at most.
    for (const growth of phases[0]!.lagGrowthMs) expect(Math.abs(growth - expected)).toBeLessThan(100);
  });
});
