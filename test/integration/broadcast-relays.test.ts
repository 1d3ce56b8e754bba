import { type Socket, connect } from 'node:net';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildNative } from '../../bench/native.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { spawnTied } from '../helpers/tied-spawn.js';
import { until } from '../helpers/until.js';

/**
 * The broadcast bench's relays (bench/broadcast-plain-server.ts, bench/native/broadcast-relay.c) close a
 * receiver with more than `--max-backlog` bytes waiting for it, as livemux closes a member that far
 * behind: an overloaded step of the peak search must not leave gigabytes queued in the relay, drained
 * into the steps after it.
 */
const MAX_BACKLOG = 64 * 1024;
const CHUNK_BYTES = 64 * 1024;
/** The n-th chunk published is filled with n mod 251, so a byte lost, repeated or out of order shows. */
const chunk = (n: number): Buffer => Buffer.alloc(CHUNK_BYTES, n % 251);
/** Far more than loopback's socket buffers hold (a few MB each way) plus the bound. */
const PUBLISHED = 64 * 1024 * 1024;

const relays: [string, () => [string, string[]]][] = [
  ['Node relay', () => [process.execPath, [join(PACKAGE_ROOT, 'dist', 'bench', 'broadcast-plain-server.js')]]],
  ['C relay', () => [buildNative('broadcast-relay'), []]],
];

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

async function startRelay(command: string, args: string[], maxBacklog = MAX_BACKLOG): Promise<number> {
  const child = spawnTied(command, [...args, '--max-backlog', String(maxBacklog)], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanup.push(() => child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) return (JSON.parse(line) as { port: number }).port;
  throw new Error('relay exited before listening');
}

/** Counts what a receiver reads and notes the first byte that is not the one published at its place. */
function checkedReader(socket: Socket): { read: number; outOfOrder: number } {
  const reader = { read: 0, outOfOrder: -1 };
  socket.on('data', (bytes: Buffer) => {
    for (let i = 0; i < bytes.length && reader.outOfOrder < 0; i++) {
      if (bytes[i] !== Math.floor((reader.read + i) / CHUNK_BYTES) % 251) reader.outOfOrder = reader.read + i;
    }
    reader.read += bytes.length;
  });
  return reader;
}

function connected(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
    cleanup.push(() => socket.destroy());
  });
}

describe.each(relays)('%s', (_name, command) => {
  it('closes a receiver that stops reading once its backlog passes --max-backlog, and goes on serving one that reads every byte in order', async () => {
    const port = await startRelay(...command());
    const stalled = await connected(port);
    stalled.pause();
    let stalledClosed = false;
    stalled.on('close', () => (stalledClosed = true));
    stalled.on('error', () => {});
    let stalledRead = 0;
    stalled.on('data', (chunk: Buffer) => (stalledRead += chunk.length));
    const reading = await connected(port);
    const reader = checkedReader(reading);
    // Both receivers are in the room once the relay has accepted them; the publisher is whoever sends.
    const publisher = await connected(port);
    let sent = 0;
    while (sent < PUBLISHED && !stalledClosed) {
      if (!publisher.write(chunk(sent / CHUNK_BYTES))) await new Promise((r) => publisher.once('drain', r));
      sent += CHUNK_BYTES;
      // The reading receiver keeps up: the relay is never more than a few chunks ahead of it.
      await until(() => reader.read >= sent - 8 * CHUNK_BYTES, 'the reading receiver to keep up', 30_000);
    }
    await until(() => stalledClosed || reader.read >= PUBLISHED, 'the relay to close the stalled receiver or deliver everything', 30_000);
    // Unbounded, the relay would hold everything for the stalled receiver and keep its connection open.
    stalled.resume();
    await until(() => stalledClosed, 'the stalled receiver to be closed', 30_000);
    await until(() => reader.read >= sent, 'the reading receiver to get everything published', 30_000);
    expect(stalledRead).toBeLessThan(sent);
    expect(reader.read).toBe(sent);
    expect(reader.outOfOrder).toBe(-1);
    expect(reading.destroyed).toBe(false);
  });

  it('keeps what a receiver behind has not taken, within the bound, and writes it in order once it reads again', async () => {
    // Well past what loopback's socket buffers hold, so most of it waits in the relay, under its bound.
    const published = 32 * 1024 * 1024;
    const port = await startRelay(...command(), 2 * published);
    const late = await connected(port);
    late.pause();
    const lateReader = checkedReader(late);
    const reading = await connected(port);
    const reader = checkedReader(reading);
    const publisher = await connected(port);
    for (let sent = 0; sent < published; sent += CHUNK_BYTES) {
      if (!publisher.write(chunk(sent / CHUNK_BYTES))) await new Promise((r) => publisher.once('drain', r));
    }
    await until(() => reader.read >= published, 'the reading receiver to get everything published', 30_000);
    late.resume();
    await until(() => lateReader.read >= published, 'the late receiver to get everything published', 30_000);
    expect([reader.read, reader.outOfOrder]).toEqual([published, -1]);
    expect([lateReader.read, lateReader.outOfOrder]).toEqual([published, -1]);
    expect(late.destroyed).toBe(false);
  });
});
