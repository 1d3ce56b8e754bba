import type { OnReadOpts } from 'node:net';

/**
 * `onread` options for `net.connect` that feed a {@link FrameDecoder}: each read lands right after the
 * previous one in a large buffer (a slab) instead of a fresh 64 KiB buffer of its own, so a frame whose
 * bytes came in several reads is still contiguous in memory, and the decoder (which joins adjacent
 * chunks) hands its payload on as a view instead of copying it. With Node's own reads a DATA frame of
 * 64 KiB or more always spans reads, so a receiver copied every payload byte once more than it had to.
 *
 * Each read takes at most `readBytes` (64 KiB, as Node's own reads): reading more at once lets the
 * kernel reopen the sender's window later, and a loopback sender then stalls (measured: a 1 MiB read
 * cost a direct stream a quarter of its rate). A new slab starts when less than that is left; a frame
 * that straddles two slabs is still copied (once, by the decoder). A payload view keeps its
 * slab alive: a receiver that keeps payloads for long copies them.
 *
 * @param onChunk gets each read's bytes, a view into the slab.
 */
export function slabReads(onChunk: (chunk: Buffer) => void, slabBytes = 1024 * 1024, readBytes = 64 * 1024): OnReadOpts {
  let slab = Buffer.allocUnsafeSlow(slabBytes);
  let used = 0;
  return {
    buffer: () => {
      if (slab.length - used < readBytes) {
        slab = Buffer.allocUnsafeSlow(slabBytes);
        used = 0;
      }
      return slab.subarray(used, used + readBytes);
    },
    callback: (n, buf) => {
      used += n;
      onChunk((buf as Buffer).subarray(0, n));
      return true;
    },
  };
}
