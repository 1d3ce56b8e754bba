import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ReceiveCredit, SendCredit } from '../../src/protocol/flow-control.js';

describe('ReceiveCredit (PROTOCOL.md §7)', () => {
  it('returns credit in one WINDOW_UPDATE once half the initial window is owed', () => {
    const credit = new ReceiveCredit(1_000);
    expect(credit.receive(400)).toBe(true);
    expect(credit.release(400)).toBe(0);
    expect(credit.receive(100)).toBe(true);
    expect(credit.release(100)).toBe(500);
  });

  it('refuses what overruns the window', () => {
    const credit = new ReceiveCredit(100);
    expect(credit.receive(60)).toBe(true);
    expect(credit.receive(41)).toBe(false);
  });

  it('property: with max_payload at most half the window, a sender with nothing in flight can always send a max_payload message', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 1 << 20 }),
        fc.integer({ min: 1, max: 1 << 20 }),
        fc.array(fc.integer({ min: 0, max: 1 << 20 }), { maxLength: 40 }),
        (window, maxRaw, sizes) => {
          const maxPayload = Math.min(maxRaw, Math.floor(window / 2));
          const receiver = new ReceiveCredit(window);
          const sender = new SendCredit(window);
          for (const raw of sizes) {
            const n = Math.min(raw, maxPayload);
            // Everything sent before was consumed (and its credit returned as the receiver decided).
            expect(sender.bytes).toBeGreaterThanOrEqual(n);
            sender.consume(n);
            expect(receiver.receive(n)).toBe(true);
            const increment = receiver.release(n);
            if (increment > 0) sender.grant(increment);
          }
          expect(sender.bytes).toBeGreaterThanOrEqual(maxPayload);
        },
      ),
    );
  });
});
