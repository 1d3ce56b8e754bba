import net from 'node:net';
import { FrameType } from '../src/protocol/constants.js';
import { codeName } from '../src/protocol/codes.js';
import { FrameDecoder } from '../src/protocol/decoder.js';
import { encodeFrame } from '../src/protocol/encoder.js';
import { decodeGoAway, decodeStatus, encodeHello, encodeOpen, type Hello } from '../src/protocol/messages.js';

/** How the proxy ended a connection, as an attacker sees it. */
export type Ending = `ERROR ${string}` | `GOAWAY ${string}` | 'closed without a word' | 'still open';

/**
 * The hostile bench's client: raw frames in and out, no SDK logic, so each attack sends exactly what it
 * means to. Records how the proxy ended the connection; `onFrame` sees every frame (DATA payloads are
 * views: copy to keep).
 */
export class AttackClient {
  ending: Ending = 'still open';
  readonly closed: Promise<void>;
  onFrame: (type: FrameType, sessionId: number, payload: Buffer) => void = () => {};
  private welcomed: ((ok: boolean) => void) | null = null;

  private constructor(readonly socket: net.Socket) {
    const decoder = new FrameDecoder(
      {
        onFrame: (type, _flags, sessionId, payload) => {
          if (type === FrameType.WELCOME) this.welcomed?.(true);
          if (type === FrameType.ERROR && this.ending === 'still open') {
            this.ending = `ERROR ${codeName(decodeStatus('ERROR', payload).code)}`;
            this.welcomed?.(false);
          }
          if (type === FrameType.GOAWAY && this.ending === 'still open') this.ending = `GOAWAY ${codeName(decodeGoAway(payload).code)}`;
          this.onFrame(type, sessionId, payload);
        },
      },
      { maxPayload: 16 * 1024 * 1024 },
    );
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        if (this.ending === 'still open') this.ending = 'closed without a word';
        this.welcomed?.(false);
        resolve();
      }),
    );
  }

  static connect(port: number, localAddress?: string): Promise<AttackClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(new AttackClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Connects and sends HELLO; resolves with the client once WELCOME came, or null with `ending` set. */
  static async handshake(port: number, token: string, hello: Partial<Hello> = {}, localAddress?: string): Promise<AttackClient | null> {
    const c = await AttackClient.connect(port, localAddress);
    return (await c.hello(token, hello)) ? c : null;
  }

  hello(token: string, hello: Partial<Hello> = {}): Promise<boolean> {
    return new Promise((resolve) => {
      this.welcomed = (ok) => {
        this.welcomed = null;
        resolve(ok);
      };
      this.socket.write(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token, ...hello })));
    });
  }

  open(sessionId: number, business = 'echo'): void {
    this.socket.write(encodeFrame(FrameType.OPEN, 0, sessionId, encodeOpen({ business, metadata: {} })));
  }

  /** Writes `bytes`; resolves once the socket takes more (or is gone). */
  async write(bytes: Buffer): Promise<void> {
    if (this.socket.write(bytes) || this.socket.destroyed) return;
    await Promise.race([new Promise((r) => this.socket.once('drain', r)), this.closed]);
  }

  get gone(): boolean {
    return this.socket.destroyed;
  }

  close(): void {
    this.socket.destroy();
  }
}
