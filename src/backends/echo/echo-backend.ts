/**
 * The reference backend: echoes every DATA back to its session with the same priority, and understands
 * a few text commands that exercise the rest of the contract by hand and in tests:
 *
 *   /sub <topic>             subscribe this session to <topic> on its proxy
 *   /unsub <topic>           unsubscribe it
 *   /pub <topic> <text>      publish <text> to <topic>: ONE Publish per proxy that has subscribers
 *   /close <code> [reason]   close this session from the backend; <code> is a name or number of
 *                            PROTOCOL.md §6 (e.g. BACKEND_CLOSED or 205); any other is answered with
 *                            an error line and the session stays open
 *   /linger                  do not end this session when the client sends CLOSE (the proxy's
 *                            half-close timeout then ends it): a backend that ignores half-close
 *   /whoami                  reply with JSON: this backend's name, the proxy id and what SessionOpened
 *                            said (user, business, metadata, client address, reattach) — tests use it
 *                            to see which endpoint serves a session and whether it was moved there
 *
 * A command is consumed, not echoed. A payload starting with "/" that is not one of these is echoed.
 */
import type { Priority } from '../../protocol/constants.js';
import { Code, CODES } from '../../protocol/codes.js';
import type { BackendHandlers, ProxyStreamContext } from '../kit/backend-server.js';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';

const SLASH = 0x2f; // '/'

/** Topic membership on one proxy stream: topic → subscribed sessions, and session → its topics. */
class ProxyTopics {
  readonly members = new Map<string, Set<number>>();
  private readonly topicsOf = new Map<number, Set<string>>();

  subscribe(session: number, topic: string): void {
    let members = this.members.get(topic);
    if (members === undefined) this.members.set(topic, (members = new Set()));
    members.add(session);
    let topics = this.topicsOf.get(session);
    if (topics === undefined) this.topicsOf.set(session, (topics = new Set()));
    topics.add(topic);
  }

  unsubscribe(session: number, topic: string): void {
    const members = this.members.get(topic);
    if (members !== undefined && members.delete(session) && members.size === 0) this.members.delete(topic);
    this.topicsOf.get(session)?.delete(topic);
  }

  /** Forgets the session (it closed); the proxy drops its memberships by itself. */
  drop(session: number): void {
    const topics = this.topicsOf.get(session);
    if (topics === undefined) return;
    this.topicsOf.delete(session);
    for (const topic of topics) {
      const members = this.members.get(topic);
      if (members !== undefined && members.delete(session) && members.size === 0) this.members.delete(topic);
    }
  }
}

/**
 * Builds the echo backend's handlers. Each call makes an independent backend (its own topic state), so
 * tests can run several in one process.
 */
export function createEchoHandlers(options: { name?: () => string } = {}): BackendHandlers {
  const proxies = new Map<ProxyStreamContext, ProxyTopics>();
  const opened = new Map<ProxyStreamContext, Map<number, SessionOpenInfo>>();
  const lingering = new Map<ProxyStreamContext, Set<number>>();

  const topicsOf = (ctx: ProxyStreamContext): ProxyTopics => {
    let topics = proxies.get(ctx);
    if (topics === undefined) proxies.set(ctx, (topics = new ProxyTopics()));
    return topics;
  };

  /**
   * Edge fan-out: one Publish per proxy having subscribers, whatever their number. Keyed by proxy id,
   * so a proxy holding two streams (a reconnect overlapping an old stream not yet detected dead) still
   * gets it once, on its newest stream.
   */
  const publish = (topic: string, payload: Buffer, priority: Priority): void => {
    const targets = new Map<string, ProxyStreamContext>();
    for (const [ctx, topics] of proxies) {
      if (!ctx.gone && topics.members.has(topic)) targets.set(ctx.proxyId, ctx);
    }
    for (const ctx of targets.values()) ctx.publish(topic, payload, priority);
  };

  const runCommand = (ctx: ProxyStreamContext, session: number, text: string, priority: Priority): boolean => {
    const space = text.indexOf(' ');
    const verb = space < 0 ? text : text.slice(0, space);
    const rest = space < 0 ? '' : text.slice(space + 1);
    switch (verb) {
      case '/sub':
        if (rest === '') return false;
        topicsOf(ctx).subscribe(session, rest);
        ctx.subscribe(session, rest);
        return true;
      case '/unsub':
        if (rest === '') return false;
        topicsOf(ctx).unsubscribe(session, rest);
        ctx.unsubscribe(session, rest);
        return true;
      case '/pub': {
        const gap = rest.indexOf(' ');
        if (gap <= 0) return false;
        publish(rest.slice(0, gap), Buffer.from(rest.slice(gap + 1)), priority);
        return true;
      }
      case '/close': {
        const gap = rest.indexOf(' ');
        const word = gap < 0 ? rest : rest.slice(0, gap);
        const code = closeCode(word);
        if (code === undefined) {
          const error = `echo: /close: "${word}" is not a code of PROTOCOL.md §6; e.g. /close BACKEND_CLOSED bye, or /close 0`;
          ctx.deliver(session, Buffer.from(error), priority);
          return true;
        }
        // The proxy does not report a backend-initiated close back (no onClose): forget the session now.
        proxies.get(ctx)?.drop(session);
        lingering.get(ctx)?.delete(session);
        opened.get(ctx)?.delete(session);
        ctx.close(session, code, gap < 0 ? '' : rest.slice(gap + 1));
        return true;
      }
      case '/linger': {
        let sessions = lingering.get(ctx);
        if (sessions === undefined) lingering.set(ctx, (sessions = new Set()));
        sessions.add(session);
        return true;
      }
      case '/whoami': {
        const info = opened.get(ctx)?.get(session);
        const reply = { backend: options.name?.() ?? '', proxy: ctx.proxyId, ...info };
        ctx.deliver(session, Buffer.from(JSON.stringify(reply)), priority);
        return true;
      }
      default:
        return false;
    }
  };

  return {
    onOpen(ctx, session, info) {
      // Topic state is created on the first /sub; the open info is kept for /whoami.
      let sessions = opened.get(ctx);
      if (sessions === undefined) opened.set(ctx, (sessions = new Map()));
      sessions.set(session, info);
    },
    onData(ctx, session, payload, priority) {
      // Only payloads starting with '/' are decoded as text; plain traffic is echoed untouched.
      if (payload.length > 0 && payload[0] === SLASH && runCommand(ctx, session, payload.toString('utf8'), priority)) return;
      ctx.deliver(session, payload, priority);
    },
    onHalfClose(ctx, session) {
      if (lingering.get(ctx)?.has(session)) return;
      // Every echo was issued as its DATA arrived, so the session can end now, behind them.
      proxies.get(ctx)?.drop(session);
      opened.get(ctx)?.delete(session);
      ctx.close(session, Code.NORMAL, '');
    },
    onClose(ctx, session) {
      proxies.get(ctx)?.drop(session);
      opened.get(ctx)?.delete(session);
      lingering.get(ctx)?.delete(session);
    },
    onProxyGone(ctx) {
      proxies.delete(ctx);
      opened.delete(ctx);
      lingering.delete(ctx);
    },
  };
}

/** The §6 code a `/close` names, by name (BACKEND_CLOSED) or number (205); undefined for any other word. */
function closeCode(word: string): number | undefined {
  return CODES.find((c) => c.name === word || String(c.code) === word)?.code;
}
