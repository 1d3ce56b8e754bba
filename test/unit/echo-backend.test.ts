import { describe, expect, it } from 'vitest';
import type { ProxyStreamContext, ProxyStreamStats } from '../../src/backends/kit/backend-server.js';
import { createEchoHandlers } from '../../src/backends/echo/echo-backend.js';
import { Priority } from '../../src/protocol/constants.js';

/** A ProxyStreamContext that records the commands the echo backend issues on it. */
function fakeContext(proxyId: string) {
  const commands: unknown[][] = [];
  const ctx: ProxyStreamContext & { gone: boolean } = {
    proxyId,
    peer: 'test',
    gone: false,
    sessions: new Set<number>(),
    writable: true,
    stats: {} as ProxyStreamStats,
    deliver: (session, payload, priority) => commands.push(['deliver', session, payload.toString(), priority]),
    close: (session, code, reason) => commands.push(['close', session, code, reason]),
    subscribe: (session, topic) => commands.push(['subscribe', session, topic]),
    unsubscribe: (session, topic) => commands.push(['unsubscribe', session, topic]),
    publish: (topic, payload, priority, exclude = 0) => commands.push(['publish', topic, payload.toString(), priority, exclude]),
    onDrain: (fn) => fn(),
  };
  return { ctx, commands };
}

const text = (s: string) => Buffer.from(s);

describe('echo backend', () => {
  it('echoes DATA to the same session with the same priority, bytes untouched', () => {
    const echo = createEchoHandlers();
    const { ctx, commands } = fakeContext('p');
    echo.onData(ctx, 3, text('hello'), Priority.LOW);
    echo.onData(ctx, 3, Buffer.alloc(0), Priority.SYSTEM);
    echo.onData(ctx, 3, text('/not-a-command x'), Priority.HIGH);
    echo.onData(ctx, 3, text('/sub'), Priority.HIGH); // no topic: not a command, echoed
    expect(commands).toEqual([
      ['deliver', 3, 'hello', Priority.LOW],
      ['deliver', 3, '', Priority.SYSTEM],
      ['deliver', 3, '/not-a-command x', Priority.HIGH],
      ['deliver', 3, '/sub', Priority.HIGH],
    ]);
  });

  it('/sub and /unsub are forwarded to the proxy and not echoed', () => {
    const echo = createEchoHandlers();
    const { ctx, commands } = fakeContext('p');
    echo.onData(ctx, 1, text('/sub room 7'), Priority.HIGH);
    echo.onData(ctx, 1, text('/unsub room 7'), Priority.HIGH);
    expect(commands).toEqual([
      ['subscribe', 1, 'room 7'],
      ['unsubscribe', 1, 'room 7'],
    ]);
  });

  it('/pub publishes once per proxy having subscribers, with the command priority', () => {
    const echo = createEchoHandlers();
    const a = fakeContext('proxy-a');
    const b = fakeContext('proxy-b');
    const c = fakeContext('proxy-c');
    echo.onData(a.ctx, 1, text('/sub room'), Priority.HIGH);
    echo.onData(a.ctx, 2, text('/sub room'), Priority.HIGH);
    echo.onData(b.ctx, 1, text('/sub room'), Priority.HIGH);
    echo.onData(c.ctx, 1, text('/sub other'), Priority.HIGH);
    echo.onData(c.ctx, 1, text('/pub room hello there'), Priority.LOW);

    const publishes = (cmds: unknown[][]) => cmds.filter((x) => x[0] === 'publish');
    expect(publishes(a.commands)).toEqual([['publish', 'room', 'hello there', Priority.LOW, 0]]);
    expect(publishes(b.commands)).toEqual([['publish', 'room', 'hello there', Priority.LOW, 0]]);
    expect(publishes(c.commands)).toEqual([]);
  });

  it('a proxy holding two streams (reconnect overlap) gets one publish, on its newest stream', () => {
    const echo = createEchoHandlers();
    const old = fakeContext('proxy-a');
    const fresh = fakeContext('proxy-a');
    echo.onData(old.ctx, 1, text('/sub room'), Priority.HIGH);
    echo.onData(fresh.ctx, 9, text('/sub room'), Priority.HIGH);
    echo.onData(fresh.ctx, 9, text('/pub room x'), Priority.HIGH);
    expect(old.commands.filter((x) => x[0] === 'publish')).toEqual([]);
    expect(fresh.commands.filter((x) => x[0] === 'publish')).toHaveLength(1);
  });

  it('forgets memberships of closed sessions and of gone proxies', () => {
    const echo = createEchoHandlers();
    const a = fakeContext('proxy-a');
    const b = fakeContext('proxy-b');
    echo.onData(a.ctx, 1, text('/sub room'), Priority.HIGH);
    echo.onData(b.ctx, 1, text('/sub room'), Priority.HIGH);
    echo.onClose(a.ctx, 1, 0, '');
    echo.onProxyGone?.(b.ctx, 'test');
    const publisher = fakeContext('proxy-c');
    echo.onData(publisher.ctx, 1, text('/pub room x'), Priority.HIGH);
    expect(a.commands.filter((x) => x[0] === 'publish')).toEqual([]);
    expect(b.commands.filter((x) => x[0] === 'publish')).toEqual([]);
  });

  it("/close also forgets the session's topics (the proxy reports no close back for it)", () => {
    const echo = createEchoHandlers();
    const a = fakeContext('proxy-a');
    echo.onData(a.ctx, 1, text('/sub room'), Priority.HIGH);
    echo.onData(a.ctx, 1, text('/close 205 bye'), Priority.HIGH);
    echo.onData(fakeContext('proxy-b').ctx, 1, text('/pub room x'), Priority.HIGH);
    expect(a.commands.filter((x) => x[0] === 'publish')).toEqual([]);
  });

  it('/close closes the session with a §6 code given by name or number, and the reason', () => {
    const echo = createEchoHandlers();
    const { ctx, commands } = fakeContext('p');
    echo.onData(ctx, 4, text('/close 0 done for today'), Priority.HIGH);
    echo.onData(ctx, 5, text('/close 205'), Priority.HIGH);
    echo.onData(ctx, 6, text('/close BACKEND_CLOSED bye'), Priority.HIGH);
    expect(commands).toEqual([
      ['close', 4, 0, 'done for today'],
      ['close', 5, 205, ''],
      ['close', 6, 205, 'bye'],
    ]);
  });

  it('/close with a code §6 does not have answers with an error line and keeps the session open', () => {
    const echo = createEchoHandlers();
    const { ctx, commands } = fakeContext('p');
    echo.onData(ctx, 7, text('/close 1000 bye'), Priority.HIGH);
    echo.onData(ctx, 8, text('/close nope'), Priority.HIGH);
    expect(commands.filter((c) => c[0] === 'close')).toEqual([]);
    expect(commands.map((c) => (c[0] === 'deliver' ? c[2] : c[0]))).toEqual([
      'echo: /close: "1000" is not a code of PROTOCOL.md §6; e.g. /close BACKEND_CLOSED bye, or /close 0',
      'echo: /close: "nope" is not a code of PROTOCOL.md §6; e.g. /close BACKEND_CLOSED bye, or /close 0',
    ]);
  });
});
