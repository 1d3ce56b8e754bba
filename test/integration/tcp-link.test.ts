import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpPassthroughLink, type TcpPassthroughLinkOptions } from '../../src/proxy/upstream/tcp-link.js';
import { LinkState, type BackendCommandSink, type BackendLink } from '../../src/proxy/upstream/link.js';
import type { SessionOpenInfo } from '../../src/contract/backend-contract.js';
import { Code } from '../../src/protocol/codes.js';
import { Priority } from '../../src/protocol/constants.js';
import { freePort } from '../helpers/free-port.js';

/** TCP passthrough against real plain TCP services on 127.0.0.1. */

class RecordingSink implements BackendCommandSink {
  readonly received = new Map<number, Buffer[]>();
  readonly priorities = new Set<Priority>();
  readonly closes: { session: number; code: number; reason: string }[] = [];
  readonly unreachables: { session: number; reason: string; unsent: string }[] = [];
  readonly linkDowns: string[] = [];

  deliver(session: number, payload: Buffer, priority: Priority): void {
    this.priorities.add(priority);
    const chunks = this.received.get(session) ?? [];
    chunks.push(Buffer.from(payload));
    this.received.set(session, chunks);
  }
  close(session: number, code: number, reason: string): void {
    this.closes.push({ session, code, reason });
  }
  unreachable(session: number, reason: string, unsent: readonly Buffer[]): void {
    this.unreachables.push({ session, reason, unsent: Buffer.concat(unsent).toString() });
  }
  subscribe(): void {
    throw new Error('tcp passthrough never subscribes');
  }
  unsubscribe(): void {
    throw new Error('tcp passthrough never unsubscribes');
  }
  publish(): void {
    throw new Error('tcp passthrough never publishes');
  }
  linkDown(_link: BackendLink, reason: string): void {
    this.linkDowns.push(reason);
  }
  /** Sessions whose client is not taking DATA (as a slow phone's session would be). */
  readonly backedUp = new Set<number>();
  private readonly deliverable = new Map<number, () => void>();
  canDeliver(session: number): boolean {
    return !this.backedUp.has(session);
  }
  onDeliverable(session: number, fn: () => void): void {
    if (!this.backedUp.has(session)) return fn();
    if (this.deliverable.has(session)) throw new Error(`session ${session}: a second onDeliverable while the first waits`);
    this.deliverable.set(session, fn);
  }
  /** The client caught up: the link's waiter runs. */
  caughtUp(session: number): void {
    this.backedUp.delete(session);
    const fn = this.deliverable.get(session);
    this.deliverable.delete(session);
    fn?.();
  }
  bytes(session: number): number {
    return (this.received.get(session) ?? []).reduce((n, b) => n + b.length, 0);
  }
  text(session: number): string {
    return Buffer.concat(this.received.get(session) ?? []).toString();
  }
}

/** A plain TCP service; `onConnection` decides what it does with each accepted socket. */
class TcpService {
  readonly sockets: net.Socket[] = [];
  readonly server: net.Server;
  connections = 0;

  constructor(onConnection: (socket: net.Socket, service: TcpService) => void) {
    this.server = net.createServer((socket) => {
      this.connections++;
      this.sockets.push(socket);
      socket.on('error', () => {});
      onConnection(socket, this);
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

const INFO: SessionOpenInfo = {
  userId: 'user-1',
  business: 'legacy',
  metadata: {},
  clientAddress: '127.0.0.1:50000',
  connectionId: 'c1',
  clientSessionId: 1,
  reattach: false,
  claims: {},
  maxPayload: 65_536,
};

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A listener whose accept queue is full: a child process listens with backlog 1 and then blocks its
 * event loop, so it never accepts; once the kernel's queue holds its few connections, further SYNs are
 * dropped and connects hang (until the SYN retries give up, far beyond any connect timeout here).
 */
async function unresponsiveListener(): Promise<{ address: string; child: ChildProcess }> {
  const script = `const s = require('node:net').createServer();
    s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      console.log(s.address().port);
      const t = Date.now();
      while (Date.now() - t < 15000) {}
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`listener exited (${code})`)));
  });
  return { address: `127.0.0.1:${port}`, child };
}

const children: ChildProcess[] = [];
const services: TcpService[] = [];
const links: TcpPassthroughLink[] = [];

async function service(onConnection: (socket: net.Socket, service: TcpService) => void): Promise<[TcpService, string]> {
  const s = new TcpService(onConnection);
  services.push(s);
  return [s, await s.listen()];
}

function link(address: string, sink: BackendCommandSink, opts: Partial<TcpPassthroughLinkOptions> = {}): TcpPassthroughLink {
  const l = new TcpPassthroughLink(address, sink, { connectMs: 2_000, ...opts });
  links.push(l);
  return l;
}

const echo = (socket: net.Socket): void => {
  socket.pipe(socket);
};

/** Writes `total` bytes to `socket` as fast as it takes them, byte i being i % 251, then ends it. */
function streamPattern(socket: net.Socket, total: number): void {
  let written = 0;
  const pump = (): void => {
    while (written < total) {
      const chunk = Buffer.allocUnsafe(64 * 1024);
      for (let j = 0; j < chunk.length; j++) chunk[j] = (written + j) % 251;
      written += chunk.length;
      if (!socket.write(chunk)) return void socket.once('drain', pump);
    }
    socket.end();
  };
  pump();
}

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const l of links.splice(0)) l.close();
  await Promise.all(services.splice(0).map((s) => s.close()));
});

describe('TcpPassthroughLink', () => {
  it('tunnels bytes both ways in order, one upstream connection per session', async () => {
    const [svc, address] = await service(echo);
    const sink = new RecordingSink();
    const connected: string[] = [];
    const l = link(address, sink, { onSuccess: (ep) => connected.push(ep) });
    expect(l.state).toBe(LinkState.READY);

    const SESSIONS = [1, 2, 3, 4, 5, 6];
    const expected = new Map<number, string>();
    for (const session of SESSIONS) {
      l.open(session, { ...INFO, clientSessionId: session });
      expected.set(session, '');
    }
    // Interleaved writes across sessions, the first ones before any connect completed.
    for (let i = 0; i < 50; i++) {
      for (const session of SESSIONS) {
        const chunk = `s${session}:${i};`;
        l.data(session, Buffer.from(chunk), Priority.LOW);
        expected.set(session, expected.get(session)! + chunk);
      }
    }
    await waitFor('every echo', () => SESSIONS.every((s) => sink.text(s) === expected.get(s)));
    expect(svc.connections).toBe(SESSIONS.length);
    expect(connected).toEqual(SESSIONS.map(() => address));
    expect([...sink.priorities]).toEqual([Priority.HIGH]);
    expect(sink.closes).toEqual([]);
    expect(l.stats.bytesToUpstream).toBe([...expected.values()].join('').length);
    expect(l.stats.bytesFromUpstream).toBe(l.stats.bytesToUpstream);
  });

  it('closes the session NORMAL when the upstream ends it, after delivering its last bytes', async () => {
    const [, address] = await service((socket) => socket.end('goodbye'));
    const sink = new RecordingSink();
    const l = link(address, sink);
    l.open(7, INFO);
    await waitFor('the close', () => sink.closes.length === 1);
    expect(sink.text(7)).toBe('goodbye');
    expect(sink.closes).toEqual([{ session: 7, code: Code.NORMAL, reason: 'upstream closed' }]);
    // The session is gone: later events are ignored, not written anywhere.
    l.data(7, Buffer.from('late'), Priority.HIGH);
    l.closed(7, 0, 'late');
    expect(l.stats.staleEvents).toBe(2);
  });

  it('ends the upstream when the proxy closes the session, after its pending bytes', async () => {
    const seen: { data: string; ended: boolean } = { data: '', ended: false };
    const [, address] = await service((socket) => {
      socket.on('data', (d) => (seen.data += d.toString()));
      socket.on('end', () => {
        seen.ended = true;
        socket.end();
      });
    });
    const sink = new RecordingSink();
    const l = link(address, sink);
    l.open(1, INFO);
    l.data(1, Buffer.from('last words'), Priority.HIGH);
    l.closed(1, 0, 'client closed');
    await waitFor('the upstream to see FIN', () => seen.ended);
    expect(seen.data).toBe('last words');
    // The proxy ended it: nothing is reported back.
    await new Promise((r) => setTimeout(r, 30));
    expect(sink.closes).toEqual([]);
  });

  it('half-close: FIN upstream after the pending bytes, the answer still flows back, its FIN ends the session', async () => {
    // A service that answers only once the request is complete (its end of input), then closes.
    const [, address] = await service((socket) => {
      let request = '';
      socket.on('data', (d) => (request += d.toString()));
      socket.on('end', () => socket.end(`answer to ${request}`));
    });
    const sink = new RecordingSink();
    const l = link(address, sink);
    l.open(1, INFO);
    // Written while still connecting: the FIN must wait for these bytes.
    l.data(1, Buffer.from('the question'), Priority.HIGH);
    l.halfClosed(1, 0, '');
    await waitFor('the session to end', () => sink.closes.length === 1);
    expect(sink.text(1)).toBe('answer to the question');
    expect(sink.closes).toEqual([{ session: 1, code: Code.NORMAL, reason: 'upstream closed' }]);
  });

  it('hands the session back as unreachable, with its unsent bytes in order, when the connect is refused', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const sink = new RecordingSink();
    const failures: [string, string][] = [];
    const l = link(address, sink, { onFailure: (ep, reason) => failures.push([ep, reason]) });
    l.open(3, INFO);
    l.data(3, Buffer.from('never '), Priority.HIGH);
    l.data(3, Buffer.from('delivered'), Priority.HIGH);
    await waitFor('the unreachable report', () => sink.unreachables.length === 1);
    expect(sink.unreachables).toEqual([{ session: 3, reason: 'upstream connect failed (ECONNREFUSED)', unsent: 'never delivered' }]);
    expect(sink.closes).toEqual([]);
    expect(failures).toEqual([[address, 'upstream connect failed (ECONNREFUSED)']]);
    expect(l.stats.connectFailures).toBe(1);
    expect(l.state).toBe(LinkState.READY);
  });

  it('hands sessions back as unreachable and reports a failure when the connect times out', async () => {
    const { address } = await unresponsiveListener();
    const sink = new RecordingSink();
    const failures: string[] = [];
    const l = link(address, sink, { connectMs: 300, onFailure: (_ep, reason) => failures.push(reason) });
    // The first connects fill the accept queue (and succeed at the TCP level); the later ones hang.
    const SESSIONS = [1, 2, 3, 4, 5, 6];
    const started = Date.now();
    for (const session of SESSIONS) l.open(session, INFO);
    await waitFor('timeouts', () => sink.unreachables.length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    const timedOut = sink.unreachables.filter((c) => c.reason === 'upstream connect timed out after 300 ms');
    expect(timedOut.length).toBeGreaterThanOrEqual(3);
    expect(sink.closes).toEqual([]);
    expect(failures.filter((r) => r === 'upstream connect timed out after 300 ms')).toHaveLength(timedOut.length);
    expect(Date.now() - started).toBeGreaterThanOrEqual(295);
    expect(l.stats.connectFailures).toBe(timedOut.length);
  });

  it('closes the session BACKEND_UNAVAILABLE and reports a failure when a connected upstream resets', async () => {
    const [, address] = await service((socket) => socket.once('data', () => socket.resetAndDestroy()));
    const sink = new RecordingSink();
    const failures: string[] = [];
    const l = link(address, sink, { onFailure: (_ep, reason) => failures.push(reason) });
    l.open(4, INFO);
    l.data(4, Buffer.from('boom'), Priority.HIGH);
    await waitFor('the close', () => sink.closes.length === 1);
    expect(sink.closes[0]).toMatchObject({ session: 4, code: Code.BACKEND_UNAVAILABLE });
    expect(sink.closes[0]!.reason).toMatch(/^upstream failed \(ECONNRESET\)$/);
    expect(failures).toHaveLength(1);
    expect(l.stats.upstreamErrors).toBe(1);
  });

  it('applies backpressure per session: not writable while the upstream does not read, drain after it does', async () => {
    const paused: net.Socket[] = [];
    let receivedBytes = 0;
    const [, address] = await service((socket) => {
      socket.pause();
      paused.push(socket);
      socket.on('data', (d) => (receivedBytes += d.length));
    });
    const sink = new RecordingSink();
    const connected: string[] = [];
    const l = link(address, sink, { onSuccess: (ep) => connected.push(ep) });
    l.open(1, INFO);
    l.open(2, INFO);
    await waitFor('both connected', () => connected.length === 2 && paused.length === 2);

    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    // The kernel's socket buffers absorb some megabytes first; bounded so a bug cannot loop forever.
    while (l.isWritable(1) && sent < 256 * 1024 * 1024) {
      l.data(1, chunk, Priority.HIGH);
      sent += chunk.length;
    }
    expect(l.isWritable(1)).toBe(false);
    // Only session 1's socket is backed up.
    expect(l.isWritable(2)).toBe(true);
    let drainedTwo = false;
    l.onDrain(2, () => (drainedTwo = true));
    expect(drainedTwo).toBe(true);

    let drained = false;
    l.onDrain(1, () => (drained = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(drained).toBe(false);
    paused[0]!.resume();
    await waitFor('drain', () => drained);
    expect(l.isWritable(1)).toBe(true);
    await waitFor('every byte upstream', () => receivedBytes === sent);
  });

  it('pauses an upstream while its client is not taking DATA, and resumes it once the client caught up', async () => {
    const TOTAL = 64 * 1024 * 1024;
    let written = 0;
    const writers: net.Socket[] = [];
    // A service that writes as fast as its socket takes it: 64 MiB in 64 KiB chunks.
    const [, address] = await service((socket) => {
      writers.push(socket);
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      const pump = (): void => {
        while (written < TOTAL) {
          written += chunk.length;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
        socket.end();
      };
      pump();
    });
    const sink = new RecordingSink();
    sink.backedUp.add(1);
    const l = link(address, sink);
    l.open(1, INFO);
    await waitFor('the first bytes', () => sink.bytes(1) > 0);
    expect(l.stats.upstreamPauses).toBe(1);
    // Paused after the first read: what the service could write is what the kernel buffers hold.
    await waitFor('the service to block', () => writers[0]!.writableNeedDrain);
    const heldByKernel = written;
    await new Promise((r) => setTimeout(r, 100));
    expect(sink.bytes(1)).toBeLessThanOrEqual(64 * 1024);
    expect(written).toBe(heldByKernel);
    expect(written).toBeLessThan(TOTAL / 4);

    sink.caughtUp(1);
    await waitFor('every byte, then the close', () => sink.closes.length === 1, 20_000);
    expect(sink.bytes(1)).toBe(TOTAL);
    expect(sink.closes[0]).toMatchObject({ session: 1, code: Code.NORMAL });
  });

  it("reads a streaming upstream in reads of its client's max_payload, never larger, and hands out no bytes a later read overwrites", async () => {
    const TOTAL = 8 * 1024 * 1024;
    // Byte i of every stream is i % 251, so a chunk overwritten by a later read (of any session) shows.
    const [, address] = await service((socket) => streamPattern(socket, TOTAL));
    // Keeps what it is handed as it is (the proxy's queue does not copy either).
    const sink = new (class extends RecordingSink {
      override deliver(session: number, payload: Buffer): void {
        const chunks = this.received.get(session) ?? [];
        chunks.push(payload);
        this.received.set(session, chunks);
      }
    })();
    const l = link(address, sink);
    // A client with a large max_payload, one with a small one (small windows), one with Node's 64 KiB.
    const maxPayloads = new Map([
      [1, 200_000],
      [2, 16_384],
      [3, 65_536],
    ]);
    for (const [session, maxPayload] of maxPayloads) l.open(session, { ...INFO, clientSessionId: session, maxPayload });
    await waitFor('every stream to end', () => sink.closes.length === 3, 20_000);
    for (const [session, maxPayload] of maxPayloads) {
      const chunks = sink.received.get(session)!;
      const all = Buffer.concat(chunks);
      expect(all.length).toBe(TOTAL);
      let broken = -1;
      for (let i = 0; i < all.length && broken < 0; i++) if (all[i] !== i % 251) broken = i;
      expect(broken, `session ${session}: first byte out of pattern`).toBe(-1);
      const largest = Math.max(...chunks.map((c) => c.length));
      expect(largest).toBeLessThanOrEqual(maxPayload);
      // A stream fills its reads: they grow to the client's max_payload, past Node's 64 KiB.
      if (maxPayload > 65_536) expect(largest).toBeGreaterThan(65_536);
    }
    expect(sink.closes.every((c) => c.code === Code.NORMAL)).toBe(true);
  });

  it('reuses a bulk read buffer once the sink says its bytes were released, and only then', async () => {
    const TOTAL = 8 * 1024 * 1024;
    const [, address] = await service((socket) => streamPattern(socket, TOTAL));
    // Session 1's sink copies each payload and then says it is released; session 2's keeps them as they are.
    const buffers = new Map<number, Set<ArrayBufferLike>>([
      [1, new Set()],
      [2, new Set()],
    ]);
    const sink = new (class extends RecordingSink {
      override deliver(session: number, payload: Buffer): void {
        if (payload.length > 64 * 1024) buffers.get(session)!.add(payload.buffer);
        const chunks = this.received.get(session) ?? [];
        chunks.push(session === 1 ? Buffer.from(payload) : payload);
        this.received.set(session, chunks);
      }
      released(session: number): boolean {
        return session === 1;
      }
    })();
    const l = link(address, sink);
    for (const session of [1, 2]) l.open(session, { ...INFO, clientSessionId: session, maxPayload: 128 * 1024 });
    await waitFor('both streams to end', () => sink.closes.length === 2, 20_000);
    for (const session of [1, 2]) {
      const all = Buffer.concat(sink.received.get(session)!);
      expect(all.length).toBe(TOTAL);
      let broken = -1;
      for (let i = 0; i < all.length && broken < 0; i++) if (all[i] !== i % 251) broken = i;
      expect(broken, `session ${session}: first byte out of pattern`).toBe(-1);
    }
    // Released: a few buffers serve the whole stream. Not released: a buffer of its own per bulk read.
    expect(buffers.get(1)!.size).toBeLessThan(8);
    expect(buffers.get(2)!.size).toBeGreaterThan(16);
  });

  it('close() ends every upstream, reports the link down once, and closes sessions opened afterwards', async () => {
    const [svc, address] = await service(() => {});
    const sink = new RecordingSink();
    const l = link(address, sink);
    l.open(1, INFO);
    l.open(2, INFO);
    await waitFor('both connected', () => svc.connections === 2);
    const upstreamClosed = svc.sockets.map((s) => new Promise((r) => s.once('close', r)));
    l.close();
    l.close();
    expect(l.state).toBe(LinkState.CLOSED);
    expect(sink.linkDowns).toEqual(['closed by the proxy']);
    await Promise.all(upstreamClosed);
    // linkDown covers the bound sessions: no per-session close.
    expect(sink.closes).toEqual([]);

    l.open(9, INFO);
    expect(sink.closes).toEqual([]);
    await waitFor('the refused open to close', () => sink.closes.length === 1);
    expect(sink.closes).toEqual([{ session: 9, code: Code.BACKEND_UNAVAILABLE, reason: 'backend link closed' }]);
    expect(svc.connections).toBe(2);
  });

  it('never throws out of a sink or callback that throws', async () => {
    const [, address] = await service((socket) => socket.end('x'));
    const sink = new RecordingSink();
    sink.deliver = () => {
      throw new Error('sink bug (test)');
    };
    const l = link(address, sink, {
      onSuccess: () => {
        throw new Error('callback bug (test)');
      },
    });
    l.open(1, INFO);
    await waitFor('the close', () => sink.closes.length === 1);
    expect(sink.closes[0]!.code).toBe(Code.NORMAL);
  });

  it('refuses an address that is not host:port', () => {
    expect(() => new TcpPassthroughLink('localhost', new RecordingSink(), { connectMs: 100 })).toThrow(
      'tcp link: expected host:port, got "localhost"',
    );
  });
});
