import { describe, expect, it } from 'vitest';
import { lostSegments } from '../../bench/broadcast.js';

describe('the broadcast bench counts lost segments, not tail-loss probes', () => {
  it('takes the probes out of the retransmissions', () => {
    // C relay at 6,934/s, 2026-12-04 12:45: every retransmission a probe, a DSACK back for each.
    expect(lostSegments({ tcpRetransmits: 66_614, tcpLossProbes: 66_629 })).toBe(0);
    expect(lostSegments({ tcpRetransmits: 30_000, tcpLossProbes: 12_000 })).toBe(18_000);
  });
});
