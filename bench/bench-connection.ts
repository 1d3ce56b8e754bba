import net, { type OnReadOpts } from 'node:net';
import { FrameType } from '../src/protocol/constants.js';
import { FrameDecoder } from '../src/protocol/decoder.js';
import { encodeFrame } from '../src/protocol/encoder.js';
import { encodeHello, encodeOpen } from '../src/protocol/messages.js';
import { slabReads } from '../src/protocol/slab-reads.js';

/** The next source port to try per source address (see {@link connectFrom}). */
const nextPort = new Map<string, number>();
/** Source ports a bench client binds: below Linux's ephemeral range, so the kernel's own picks never collide. */
const FIRST_SOURCE_PORT = 10_000;
const LAST_SOURCE_PORT = 32_000;

/**
 * Connects to 127.0.0.1:`port`. From `localAddress` (another 127.0.0.x: each has its own ports, which
 * one process needs beyond ~28,000 connections to one server port) the source port is chosen here, in
 * order, skipping ports in use: binding a source address with port 0 makes the kernel scan for a port
 * no connection uses, which costs milliseconds per connect once thousands are open, and would make
 * the client the bottleneck of an accept-rate bench.
 */
export async function connectFrom(port: number, localAddress?: string, onread?: OnReadOpts): Promise<net.Socket> {
  for (;;) {
    const localPort = localAddress === undefined ? undefined : (nextPort.get(localAddress) ?? FIRST_SOURCE_PORT);
    if (localAddress !== undefined) {
      if (localPort! > LAST_SOURCE_PORT) throw new Error(`bench: no source port left on ${localAddress}`);
      nextPort.set(localAddress, localPort! + 1);
    }
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect({ port, host: '127.0.0.1', localAddress, localPort, onread }, () => {
          socket.off('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || localAddress === undefined) throw err;
    }
  }
}

/** How the proxy answered a batch of OPENs. */
export interface OpenResult {
  opened: number;
  refused: number;
}

/**
 * The protocol as the bench's load generators speak it, with no SDK logic in the way: HELLO/WELCOME,
 * batches of OPEN answered by OPEN_OK or OPEN_FAIL, and a PONG for every PING so connections held open
 * for a whole run are not closed as dead. DATA goes to `onData`; flow control is the caller's.
 */
export class BenchConnection {
  private readonly decoder: FrameDecoder;
  private welcomed: (() => void) | null = null;
  private batch: { pending: number; result: OpenResult; done: (r: OpenResult) => void } | null = null;
  private closed: (() => void)[] = [];

  private constructor(
    readonly socket: net.Socket,
    onData: (sessionId: number, payload: Buffer) => void,
  ) {
    this.decoder = new FrameDecoder(
      {
        onFrame: (type, _flags, sessionId, payload) => {
          if (type === FrameType.DATA) onData(sessionId, payload);
          else if (type === FrameType.WELCOME) this.welcomed?.();
          else if (type === FrameType.PING) socket.write(encodeFrame(FrameType.PONG, 0, 0, payload));
          else if (type === FrameType.OPEN_OK || type === FrameType.OPEN_FAIL) this.answered(type === FrameType.OPEN_OK);
        },
      },
      { maxPayload: 1 << 20 },
    );
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('error', () => {});
    socket.once('close', () => this.closed.forEach((fail) => fail()));
  }

  /**
   * Connects to 127.0.0.1:`port`, from `localAddress` when given (see {@link connectFrom}). `slab`: read
   * into slabs (slabReads: large DATA frames are not copied), at the cost of a 1 MiB slab per connection.
   * The SDK does not read this way: payloads it keeps for the application would pin whole slabs.
   */
  static async connect(port: number, onData: (sessionId: number, payload: Buffer) => void = () => {}, localAddress?: string, slab = false): Promise<BenchConnection> {
    let conn: BenchConnection | null = null;
    // The connection exists before any read: reads start in a later turn than the connect's resolution.
    const onread = slab ? slabReads((chunk) => conn!.decoder.push(chunk)) : undefined;
    conn = new BenchConnection(await connectFrom(port, localAddress, onread), onData);
    return conn;
  }

  /** HELLO with `token`; resolves on WELCOME. */
  hello(token: string): Promise<void> {
    return this.until<void>((resolve) => {
      this.welcomed = resolve;
      this.socket.write(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token })));
    });
  }

  /** Opens sessions `firstId` … `firstId + count - 1` of `business`; resolves once every one is answered. */
  open(business: string, count: number, firstId = 1, metadata: Record<string, string> = {}): Promise<OpenResult> {
    return this.until<OpenResult>((resolve) => {
      this.batch = { pending: count, result: { opened: 0, refused: 0 }, done: resolve };
      for (let id = firstId; id < firstId + count; id++) {
        this.socket.write(encodeFrame(FrameType.OPEN, 0, id, encodeOpen({ business, metadata })));
      }
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private answered(ok: boolean): void {
    const batch = this.batch;
    if (!batch) return;
    if (ok) batch.result.opened++;
    else batch.result.refused++;
    if (--batch.pending === 0) {
      this.batch = null;
      batch.done(batch.result);
    }
  }

  /** A promise settled by `start`'s resolve, or rejected if the proxy closes the connection first. */
  private until<T>(start: (resolve: (value: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.socket.closed) return reject(new Error('connection closed by the proxy'));
      const fail = (): void => reject(new Error('connection closed by the proxy'));
      this.closed.push(fail);
      start((value) => {
        this.closed = this.closed.filter((f) => f !== fail);
        resolve(value);
      });
    });
  }
}
