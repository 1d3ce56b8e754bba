import { type Socket, connect } from 'node:net';

/**
 * A keep-alive HTTP/1.1 connection for load generators that pipelines its requests: every request
 * queued in one event-loop turn leaves in ONE socket write, and responses are matched to requests in
 * order (RFC 9112 §9.3.2). On this 2-core machine a socket write costs tens of µs; node:http and undici
 * both write each request on its own, so at thousands of calls/s a bench client built on them spends
 * more CPU than the server it measures. This one spends a few µs per call, so the server gets the cores.
 *
 * Responses must carry a Content-Length (fastify's do); a chunked or unframed response, or anything
 * unparseable, fails every call in flight and the connection. One connection is not reused after
 * `close` or a failure.
 */
export type ResponseCallback = (status: number, err?: Error) => void;

const HEAD_END = Buffer.from('\r\n\r\n');
/** A response head larger than this is not what a JSON API answers: fail rather than buffer forever. */
const MAX_HEAD_BYTES = 16 * 1024;

export class PipelinedConnection {
  private readonly socket: Socket;
  /** Callbacks of requests written, in order: the next response answers the first. */
  private readonly waiting: ResponseCallback[] = [];
  private readonly parser = new ResponseParser();
  private out: string[] = [];
  private flushQueued = false;
  private failed: Error | null = null;
  private socketWrites = 0;
  readonly ready: Promise<void>;

  constructor(host: string, port: number) {
    this.socket = connect({ host, port, noDelay: true });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(new Error('http pipeline: connection closed by the server')));
  }

  /** Socket writes made so far (one per turn with requests). */
  get writes(): number {
    return this.socketWrites;
  }

  /** Requests written and not yet answered. */
  get inFlight(): number {
    return this.waiting.length;
  }

  /**
   * Queues one request (`head`: request line and headers without the blank line, e.g. built once by
   * `requestHead`); it is written with the others of this turn. `done` gets the status, or an error.
   */
  send(head: string, body: string, done: ResponseCallback): void {
    if (this.failed !== null) {
      done(0, this.failed);
      return;
    }
    this.waiting.push(done);
    this.out.push(`${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n`, body);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      const text = this.out.join('');
      this.out = [];
      if (this.failed !== null) return;
      this.socketWrites++;
      this.socket.write(text);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    try {
      for (const status of this.parser.push(chunk)) {
        const done = this.waiting.shift();
        if (done === undefined) throw new Error('http pipeline: a response no request asked for');
        done(status);
      }
    } catch (err) {
      this.fail(err as Error);
      this.socket.destroy();
    }
  }

  private fail(err: Error): void {
    if (this.failed !== null) return;
    this.failed = err;
    for (const done of this.waiting.splice(0)) done(0, err);
  }
}

/** `METHOD path HTTP/1.1` and the given headers, each line ended, without content-length. */
export function requestHead(method: string, path: string, host: string, headers: Readonly<Record<string, string>>): string {
  return `${method} ${path} HTTP/1.1\r\nhost: ${host}\r\n${Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')}`;
}

/**
 * Incremental parser of HTTP/1.1 responses framed by Content-Length: bytes in, status codes out, in
 * order. Chunks may split a response anywhere.
 */
export class ResponseParser {
  private buffered: Buffer = Buffer.alloc(0);

  /** Feeds `chunk`; returns the status of every response it completed. Throws on what it cannot frame. */
  push(chunk: Buffer): number[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const statuses: number[] = [];
    for (;;) {
      const headEnd = this.buffered.indexOf(HEAD_END);
      if (headEnd < 0) {
        if (this.buffered.length > MAX_HEAD_BYTES) throw new Error(`http pipeline: response head over ${MAX_HEAD_BYTES} bytes`);
        break;
      }
      const head = this.buffered.toString('latin1', 0, headEnd);
      const bodyLength = contentLength(head);
      const end = headEnd + HEAD_END.length + bodyLength;
      if (this.buffered.length < end) break;
      statuses.push(statusOf(head));
      this.buffered = this.buffered.subarray(end);
    }
    return statuses;
  }
}

function statusOf(head: string): number {
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (match === null) throw new Error(`http pipeline: not an HTTP/1.1 status line (${JSON.stringify(head.slice(0, 40))})`);
  return Number(match[1]);
}

function contentLength(head: string): number {
  if (/\r\ntransfer-encoding:/i.test(head)) throw new Error('http pipeline: chunked responses are not supported');
  const match = /\r\ncontent-length:[ \t]*(\d+)[ \t]*(?:\r\n|$)/i.exec(head);
  if (match === null) throw new Error('http pipeline: response without content-length');
  return Number(match[1]);
}
