/**
 * Chat moderation end to end (docs/chat.md §5), real processes: a Chat backend behind a proxy, SDK
 * clients with role claims in their tokens. Kick and ban close the target's session with 205 after
 * telling it why, a ban blocks rejoining until lifted, and everything a member is not allowed to do is
 * a PERMISSION_DENIED reply, never a silent no-op. (Mute and a member's mute attempt are covered by
 * chat-backend.test.ts.)
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModerateAction, WireRole } from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { type ChatMember, chatRoutes, joinMember, openMember } from '../helpers/chat-member.js';
import { type RunningProcess, startChatBackend, startProxy } from '../helpers/processes.js';

const processes: RunningProcess[] = [];
const members: ChatMember[] = [];
let proxyPort: number;

beforeAll(async () => {
  const backend = await startChatBackend(['--words', 'forbidden']);
  processes.push(backend);
  const proxy = await startProxy({ backends: [], routes: chatRoutes([backend.address]) });
  processes.push(proxy);
  proxyPort = proxy.port;
});

afterEach(async () => {
  await Promise.all(members.splice(0).map((m) => m.client.close()));
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop('SIGTERM')));
});

async function join(user: string, room: string, role?: string, sinceSeq = 0): Promise<ChatMember> {
  const m = await joinMember(proxyPort, user, room, { role, sinceSeq });
  members.push(m);
  return m;
}

const moderate = (by: ChatMember, action: number, targetUser: string, durationMs = 0, reason = '') =>
  by.request({ moderate: { action, targetUser, durationMs, reason } });

describe('chat moderation through a proxy', () => {
  it('kick: Kicked then CLOSE 205 "kicked", MemberLeft for the others, and the target may rejoin', async () => {
    const room = `kick-${Date.now()}`;
    const host = await join('host-k', room, 'host');
    const bob = await join('bob', room);
    const carol = await join('carol', room);

    expect(await moderate(host, ModerateAction.KICK, 'bob', 0, 'off topic')).toMatchObject({ ok: true });
    await bob.until(() => bob.closed !== null, 5_000, 'the kick to close the session');
    expect(bob.events.find((e) => e.kicked)?.kicked).toEqual({ reason: 'off topic', by: 'host-k' });
    expect(bob.closed).toEqual({ code: 205, reason: 'kicked' });
    await carol.until(() => carol.events.some((e) => e.memberLeft?.userId === 'bob'), 5_000, 'MemberLeft bob');
    expect(carol.closed).toBeNull();

    // Kicking someone who is not in the room is NOT_FOUND.
    expect(await moderate(host, ModerateAction.KICK, 'bob')).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_FOUND });
    // A kick is not a ban: bob joins again and is back in the member list.
    const again = await join('bob', room);
    expect(again.events[0]?.joined?.onlineCount).toBe(3);
    const page = await host.request({ listMembers: { cursor: '', limit: 0 } });
    expect(page.members?.members.map((m) => m.userId).sort()).toEqual(['bob', 'carol', 'host-k']);
  });

  it('ban: Banned then CLOSE 205 "banned"; joining again fails with BANNED until unbanned', async () => {
    const room = `ban-${Date.now()}`;
    const host = await join('host-b', room, 'host');
    const bob = await join('bob', room);
    const dave = await join('dave', room);

    expect(await moderate(host, ModerateAction.BAN, 'bob', 0, 'spam')).toMatchObject({ ok: true });
    await bob.until(() => bob.closed !== null, 5_000, 'the ban to close the session');
    expect(bob.events.find((e) => e.banned)?.banned).toEqual({ reason: 'spam', by: 'host-b', untilMs: 0 });
    expect(bob.closed).toEqual({ code: 205, reason: 'banned' });

    // A ban without duration: BANNED, retry_after 0 (until unbanned).
    const back = await openMember(proxyPort, 'bob', room);
    members.push(back);
    expect(await back.request({ join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } })).toMatchObject({ ok: false, errorCode: ChatErrorCode.BANNED, retryAfterMs: 0 });
    // Not joined: sending is NOT_JOINED, and the room never saw it.
    expect(await back.say('let me in')).toMatchObject({ ok: false, errorCode: ChatErrorCode.NOT_JOINED });

    // A timed ban: retry_after is the time left.
    expect(await moderate(host, ModerateAction.BAN, 'dave', 60_000, 'cool down')).toMatchObject({ ok: true });
    await dave.until(() => dave.closed !== null, 5_000, 'dave to be closed');
    expect(dave.events.find((e) => e.banned)?.banned?.untilMs).toBeGreaterThan(Date.now());
    const daveBack = await openMember(proxyPort, 'dave', room);
    members.push(daveBack);
    const refused = await daveBack.request({ join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } });
    expect(refused).toMatchObject({ ok: false, errorCode: ChatErrorCode.BANNED });
    expect(refused.retryAfterMs).toBeGreaterThan(50_000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);

    // Unban: the same session may now join.
    expect(await moderate(host, ModerateAction.UNBAN, 'bob')).toMatchObject({ ok: true });
    expect(await back.request({ join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } })).toMatchObject({ ok: true });
    expect(back.closed).toBeNull();
  });

  it('members get PERMISSION_DENIED for moderation, attributes, system priority and roles not granted', async () => {
    const room = `perm-${Date.now()}`;
    const host = await join('host-p', room, 'host');
    const cohost = await join('cohost', room, 'host');
    const admin = await join('admin-p', room, 'admin');
    const bob = await join('bob', room);
    const denied = { ok: false, errorCode: ChatErrorCode.PERMISSION_DENIED };

    for (const action of [ModerateAction.MUTE, ModerateAction.KICK, ModerateAction.BAN, ModerateAction.UNBAN, ModerateAction.WHITELIST]) {
      expect(await moderate(bob, action, 'host-p')).toMatchObject(denied);
    }
    expect(await bob.request({ setAttributes: { set: { stage: '1' }, delete: [] } })).toMatchObject(denied);
    expect(await bob.say('pinned?', 'system')).toMatchObject(denied);
    // A host may not moderate another host or an admin; an admin may.
    expect(await moderate(host, ModerateAction.KICK, 'cohost')).toMatchObject(denied);
    expect(await moderate(host, ModerateAction.MUTE, 'admin-p')).toMatchObject(denied);
    expect(await moderate(admin, ModerateAction.MUTE, 'cohost', 60_000)).toMatchObject({ ok: true });
    expect(await cohost.say('hello')).toMatchObject({ ok: false, errorCode: ChatErrorCode.MUTED });
    // Asking for a role the token does not grant.
    const climber = await openMember(proxyPort, 'climber', room);
    members.push(climber);
    expect(await climber.request({ join: { sinceSeq: 0, role: WireRole.HOST } })).toMatchObject(denied);

    // Nothing denied reached the room: its only messages are the ones allowed below.
    expect(await moderate(host, ModerateAction.WHITELIST, 'bob')).toMatchObject({ ok: true });
    expect(await bob.say('now pinned', 'system')).toMatchObject({ ok: true, sent: { seq: 1 } });
    await host.until(() => host.messages.length === 1, 5_000, 'the system message');
    expect(host.messages[0]).toMatchObject({ seq: 1, senderId: 'bob', priority: 0 });
    expect(await bob.say('a forbidden word')).toMatchObject({ ok: false, errorCode: ChatErrorCode.REJECTED_WORD });
    expect(host.messages).toHaveLength(1);
  });
});
