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
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
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

async function startRelay(command: string, args: string[]): Promise<number> {
  const child = spawnTied(command, [...args, '--max-backlog', String(MAX_BACKLOG)], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanup.push(() => child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) return (JSON.parse(line) as { port: number }).port;
  throw new Error('relay exited before listening');
}

function connected(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
    cleanup.push(() => socket.destroy());
  });
}

describe.each(relays)('%s', (_name, command) => {
  it('closes a receiver that stops reading once its backlog passes --max-backlog, and goes on serving one that reads', async () => {
    const port = await startRelay(...command());
    const stalled = await connected(port);
    stalled.pause();
    let stalledClosed = false;
    stalled.on('close', () => (stalledClosed = true));
    stalled.on('error', () => {});
    let stalledRead = 0;
    stalled.on('data', (chunk: Buffer) => (stalledRead += chunk.length));
    const reading = await connected(port);
    let read = 0;
    reading.on('data', (chunk: Buffer) => (read += chunk.length));
    // Both receivers are in the room once the relay has accepted them; the publisher is whoever sends.
    const publisher = await connected(port);
    let sent = 0;
    while (sent < PUBLISHED && !stalledClosed) {
      if (!publisher.write(CHUNK)) await new Promise((r) => publisher.once('drain', r));
      sent += CHUNK.length;
      // The reading receiver keeps up: the relay is never more than a few chunks ahead of it.
      await until(() => read >= sent - 8 * CHUNK.length, 'the reading receiver to keep up', 30_000);
    }
    await until(() => stalledClosed || read >= PUBLISHED, 'the relay to close the stalled receiver or deliver everything', 30_000);
    // Unbounded, the relay would hold everything for the stalled receiver and keep its connection open.
    stalled.resume();
    await until(() => stalledClosed, 'the stalled receiver to be closed', 30_000);
    await until(() => read >= sent, 'the reading receiver to get everything published', 30_000);
    expect(stalledRead).toBeLessThan(sent);
    expect(read).toBe(sent);
    expect(reading.destroyed).toBe(false);
  });
});
