/**
 * Drives an IM backend's handlers the way a proxy would (SessionOpened with a device_id, DATA with an
 * ImRequest) over FakeProxyStreams, and reads back what each session received as decoded ImEvents.
 */
import { Priority } from '../../src/protocol/constants.js';
import type { ImBackend } from '../../src/backends/im/im-backend.js';
import { decodeImEvent, encodeImRequest, type ImEvent, type ImRequest, type InboxItem, type Reply } from '../../src/backends/im/im-codec.js';
import { FakeProxyStream } from './fake-proxy-stream.js';

/** One device session of the harness. */
export interface Device {
  readonly stream: FakeProxyStream;
  readonly session: number;
  readonly user: string;
  readonly device: string;
}

export class ImHarness {
  private nextRequestId = 1;
  private nextSession = 1;

  constructor(readonly im: ImBackend) {}

  open(stream: FakeProxyStream, user: string, device: string, reattach = false, maxPayload = 128 * 1024): Device {
    const session = this.nextSession++;
    stream.open(session);
    this.im.handlers.onOpen(stream, session, {
      userId: user,
      business: 'im',
      metadata: { device_id: device },
      clientAddress: '127.0.0.1:1',
      connectionId: `c-${session}`,
      clientSessionId: session,
      reattach,
      claims: {},
      maxPayload,
    });
    return { stream, session, user, device };
  }

  /** The proxy ends the session (client gone). */
  close(d: Device): void {
    d.stream.drop(d.session);
    this.im.handlers.onClose(d.stream, d.session, 0, '');
  }

  /** Sends a request without waiting; returns its request id (0 when `noReply`). */
  request(d: Device, req: Omit<ImRequest, 'requestId'>, noReply = false): number {
    const requestId = noReply ? 0 : this.nextRequestId++;
    this.im.handlers.onData(d.stream, d.session, encodeImRequest({ requestId, ...req }), Priority.HIGH);
    return requestId;
  }

  async call(d: Device, req: Omit<ImRequest, 'requestId'>): Promise<Reply> {
    const id = this.request(d, req);
    await this.until(() => this.replyTo(d, id) !== undefined, `a reply to ${Object.keys(req)[0]}`);
    return this.replyTo(d, id)!;
  }

  /** Sends a message and expects it to be accepted. */
  async say(d: Device, to: string, text: string, clientMsgId = `${d.user}-${this.nextRequestId}`): Promise<Reply> {
    const r = await this.call(d, { send: { to, body: Buffer.from(text), clientMsgId } });
    if (!r.ok) throw new Error(`send ${text}: ${r.errorCode} ${r.errorMessage}`);
    return r;
  }

  events(d: Device): ImEvent[] {
    return (d.stream.inbox.get(d.session) ?? []).map((r) => decodeImEvent(r.payload));
  }

  replyTo(d: Device, requestId: number): Reply | undefined {
    return this.events(d).find((e) => e.reply?.requestId === requestId)?.reply;
  }

  /** Inbox items received, in arrival order. */
  items(d: Device): InboxItem[] {
    return this.events(d).flatMap((e) => e.entries?.items ?? []);
  }

  /** "sender>recipient:body" of each message item received. */
  texts(d: Device): string[] {
    return this.items(d).flatMap((i) => (i.message ? [`${i.message.sender}>${i.message.recipient}:${Buffer.from(i.message.body).toString()}`] : []));
  }

  /** Syncs after `afterSeq` and waits for the Synced event. */
  async sync(d: Device, afterSeq = 0): Promise<Reply> {
    const before = this.events(d).filter((e) => e.synced).length;
    const r = await this.call(d, { sync: { afterSeq } });
    await this.until(() => this.events(d).filter((e) => e.synced).length > before, 'synced');
    return r;
  }

  async until(done: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
