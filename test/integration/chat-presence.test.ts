/**
 * Presence after failures, real processes over loopback: one redis-server, two Chat backends in Redis
 * mode behind `consistent_hash` on `room_id`, two proxies. The room's owner is frozen, one proxy is
 * SIGKILLed, then the owner is SIGKILLed: nobody ever reports the closes of that proxy's sessions, and
 * the surviving proxy moves its own sessions to the other backend. The dead proxy's members must drop
 * out of the online count and the member list within about the presence TTL; the moved ones must stay.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsistentHashPicker } from '../../src/routing/policies/consistent-hash.js';
import { ChatCluster, type ChatMember } from '../helpers/chat-member.js';
import { metricValue } from '../helpers/metrics.js';

// Renewed every third of it; with 1.5 s, a Chat backend stalled past one second on a busy machine let a
// live presence lapse and the room briefly counted 4 of its 5 members.
const PRESENCE_TTL_MS = 4000;

let cluster: ChatCluster;

beforeAll(async () => {
  cluster = await ChatCluster.start(['--presence-ttl-ms', String(PRESENCE_TTL_MS), '--admin-port', '0']);
});

afterAll(() => cluster?.stop());

const left = (m: ChatMember): { userId: string; onlineCount: number }[] => m.events.flatMap((e) => (e.memberLeft ? [e.memberLeft] : []));

describe('presence when a proxy and the room\'s owner die', () => {
  it('drops the dead proxy\'s members within about the TTL and keeps the moved ones', async () => {
    const room = `presence-${Date.now()}`;
    const owner = new ConsistentHashPicker(cluster.backends.map((b) => ({ address: b.address, weight: 1 }))).pick(room, () => true);
    const victim = cluster.backends.find((b) => b.address === owner)!;
    const survivor = cluster.backends.find((b) => b !== victim)!;

    const kept = [await cluster.join(0, 'ann', room), await cluster.join(0, 'ben', room)];
    const doomed = [await cluster.join(1, 'cat', room), await cluster.join(1, 'dan', room), await cluster.join(1, 'eve', room)];
    const before = await kept[0]!.request({ listMembers: { cursor: '', limit: 100 } });
    expect(before.members?.onlineCount).toBe(5);

    // Frozen, the owner cannot hear the proxy die; killed, it never will.
    victim.child.kill('SIGSTOP');
    await cluster.proxies[1]!.stop('SIGKILL');
    await victim.stop('SIGKILL');
    const killedAt = Date.now();

    // The sweep on the new owner tells the survivors, one MemberLeft per dead member.
    for (const m of kept) {
      await m.until(() => left(m).length >= doomed.length, PRESENCE_TTL_MS * 4, 'a MemberLeft per member of the dead proxy');
    }
    const elapsed = Date.now() - killedAt;
    for (const m of kept) {
      expect(left(m).map((e) => e.userId).sort()).toEqual(['cat', 'dan', 'eve']);
      expect(left(m).at(-1)!.onlineCount).toBe(2);
    }
    const after = await kept[0]!.request({ listMembers: { cursor: '', limit: 100 } });
    expect(after.ok).toBe(true);
    expect(after.members!.onlineCount).toBe(2);
    expect(after.members!.members.map((m) => m.userId).sort()).toEqual(['ann', 'ben']);

    // The members of the surviving proxy were moved, not dropped: open, and still in the room.
    for (const m of kept) expect(m.closed).toBeNull();
    expect((await kept[1]!.say('still here')).ok).toBe(true);
    await kept[0]!.until(() => kept[0]!.messages.some((x) => Buffer.from(x.body).toString() === 'still here'), 5_000, 'ben\'s message');
    expect(await metricValue(survivor.adminPort!, 'livemux_chat_presence_expired_total')).toBe(3);
    console.log(`dead proxy's 3 members dropped ${elapsed} ms after the kills (presence TTL ${PRESENCE_TTL_MS} ms)`);
  }, 60_000);
});
