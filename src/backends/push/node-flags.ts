/**
 * The V8 flags a Push node is started with by `livemux up` (and by the push bench, which runs the node as
 * `npm start` does). A process cannot change them once it runs, so a node started another way takes them
 * on its own command line (docs/push.md §4).
 *
 * `--max-semi-space-size=64`: every HTTP call leaves ~20 KB of short-lived objects behind (node:http's
 * request and response, fastify's, the parsed body, the gRPC frames of the delivery and of the device's
 * ack), and V8's default young generation (16 MB semi-spaces) is then scavenged every ~150 ms at
 * 5,000 calls/s, each scavenge holding the event loop while it copies what is still alive (the calls in
 * flight). With 64 MB semi-spaces a scavenge comes about four times less often and copies about as much,
 * so the node spends a quarter of the time collecting and its calls meet a quarter of the pauses; the
 * price is up to ~190 MB more memory for the young generation (three semi-spaces) at full rate.
 */
export const PUSH_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

/** The flags of PUSH_NODE_FLAGS this process was not started with (by name, whatever value it was given). */
export function missingPushNodeFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map((arg) => arg.split('=', 1)[0]!));
  return PUSH_NODE_FLAGS.filter((flag) => !given.has(flag.split('=', 1)[0]!));
}
