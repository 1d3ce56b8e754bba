import { type Socket, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { endMessage, roomMessage } from '../../bench/broadcast-protocol.js';
import { buildNative } from '../../bench/native.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { spawnTied } from '../helpers/tied-spawn.js';
import { until } from '../helpers/until.js';

/**
 * The native bench clients' framer (bench/native/wire.h) completes a frame split between two reads from
 * the next read's first bytes and parses the rest where it lies. A relay's writes end inside frames
 * whenever a receiver is behind; here every write does, at offsets from 1 byte to past a frame, and
 * the receivers must still count every message of the phase.
 */
const MESSAGES = 400;
/** Piece sizes cycled through: inside a header (12 B), at its end, inside a payload, across frames. */
const PIECES = [1, 2, 5, 11, 12, 13, 40, 75, 76, 77, 153, 1000];

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

describe('native framer', () => {
  it('counts every message when each write ends inside a frame', async () => {
    const sockets: Socket[] = [];
    const server = createServer((s) => {
      s.setNoDelay(true);
      // A receiver that dies on a bad frame resets its connections: the assertions below say why.
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
    let exited: number | null = null;
    receiver.on('exit', (code) => (exited = code));
    const phases: { phase: number; missing: number; closed: number }[] = [];
    createInterface({ input: receiver.stdout! }).on('line', (line) => {
      const event = JSON.parse(line) as { event: string; phase: number; missing: number; closed: number };
      if (event.event === 'phase') phases.push(event);
    });
    await until(() => sockets.length === 2, 'both receivers connected');

    const frames = [...Array.from({ length: MESSAGES }, () => roomMessage(1)), endMessage(1, MESSAGES)].map((m) => encodeFrame(FrameType.DATA, 0, 1, Buffer.from(m)));
    const stream = Buffer.concat(frames);
    for (const s of sockets) {
      for (let at = 0, i = 0; at < stream.length; i++) {
        const piece = stream.subarray(at, at + PIECES[i % PIECES.length]!);
        at += piece.length;
        s.write(piece);
        // A turn between writes, so that most of them arrive, and are read, on their own.
        await new Promise((r) => setImmediate(r));
      }
    }
    await until(() => phases.length > 0 || exited !== null, 'the phase report');
    expect(stderr).toBe('');
    expect(phases).toEqual([expect.objectContaining({ phase: 1, missing: 0, closed: 0 })]);
  });
});
