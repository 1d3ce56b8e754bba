import { describe, expect, it } from 'vitest';
import { Code } from '../../src/protocol/codes.js';
import type { LimitError } from '../../src/protocol/errors.js';
import { ConnectionGate, type HandshakingConnection, addressKey } from '../../src/proxy/connection-gate.js';

const limits = { max: 5, maxPerAddress: 3, maxPerUser: 2, maxHandshakes: 2, handshakeBudgetBytes: 100 };

class Conn implements HandshakingConnection {
  shutOutWith: LimitError | null = null;
  shutOut(err: LimitError): void {
    this.shutOutWith = err;
  }
}

describe('ConnectionGate', () => {
  it('admits up to max_per_address from one address and max in all, and counts releases', () => {
    const g = new ConnectionGate(limits);
    for (let i = 0; i < 3; i++) expect(g.admit('10.0.0.1')).toBeNull();
    expect(g.admit('10.0.0.1')).toMatchObject({ wireCode: Code.ADDRESS_LIMIT, limit: 'connections.max_per_address' });
    expect(g.admit('10.0.0.2')).toBeNull();
    expect(g.admit('10.0.0.3')).toBeNull();
    expect(g.admit('10.0.0.4')).toMatchObject({ wireCode: Code.SERVER_FULL, limit: 'connections.max' });
    expect(g.connections).toBe(5);
    g.released('10.0.0.1');
    expect(g.admit('10.0.0.1')).toBeNull();
  });

  it('counts an IPv6 client by its /64, an IPv4-mapped one by its IPv4 address', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(addressKey('fe80:1:2:3::1.2.3.4')).toBe('fe80:1:2:3::/64');
    expect(addressKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(addressKey('10.0.0.1')).toBe('10.0.0.1');
    const g = new ConnectionGate(limits);
    for (let i = 1; i <= 3; i++) expect(g.admit(`2001:db8:1:2::${i}`)).toBeNull();
    expect(g.admit('2001:db8:1:2:ffff::9')).toMatchObject({ wireCode: Code.ADDRESS_LIMIT });
    expect(g.admit('2001:db8:1:3::1')).toBeNull();
    g.released('2001:db8:1:2::2');
    expect(g.admit('2001:db8:1:2::7')).toBeNull();
  });

  it('makes the oldest handshake give way when one too many starts', () => {
    const g = new ConnectionGate(limits);
    const [a, b, c] = [new Conn(), new Conn(), new Conn()];
    g.handshakeStarted(a);
    g.handshakeStarted(b);
    expect(g.handshakes).toBe(2);
    g.handshakeStarted(c);
    expect(a.shutOutWith).toMatchObject({ wireCode: Code.SERVER_FULL, limit: 'connections.max_handshakes' });
    expect(b.shutOutWith).toBeNull();
    expect(g.handshakes).toBe(2);
    g.handshakeEnded(b);
    g.handshakeEnded(b);
    expect(g.handshakes).toBe(1);
  });

  it('shares handshake_budget_bytes between handshakes; the one passing it is refused and uncounted', () => {
    const g = new ConnectionGate({ ...limits, maxHandshakes: 10 });
    const [a, b] = [new Conn(), new Conn()];
    g.handshakeStarted(a);
    g.handshakeStarted(b);
    expect(g.handshakeHolds(a, 60)).toBeNull();
    expect(g.handshakeHolds(b, 41)).toMatchObject({ wireCode: Code.SERVER_FULL, limit: 'connections.handshake_budget_bytes' });
    expect(g.handshakeBytesHeld).toBe(60);
    expect(g.handshakeHolds(a, 10)).toBeNull();
    expect(g.handshakeBytesHeld).toBe(10);
    g.handshakeEnded(a);
    expect(g.handshakeBytesHeld).toBe(0);
  });

  it('counts connections per user up to max_per_user', () => {
    const g = new ConnectionGate(limits);
    expect(g.userJoined('u')).toBeNull();
    expect(g.userJoined('u')).toBeNull();
    expect(g.userJoined('u')).toMatchObject({ wireCode: Code.USER_LIMIT, limit: 'connections.max_per_user' });
    expect(g.userJoined('v')).toBeNull();
    g.userLeft('u');
    expect(g.userJoined('u')).toBeNull();
  });
});
