/**
 * Applies one decoded BackendCommand to the proxy's sink, after checking the fields the decoder cannot
 * check (a oneof member is set, session ids are non-zero, the priority is known, the topic is named).
 *
 * Dispatch goes through a table indexed by the oneof case, so adding a command is adding one entry.
 * A command may only name sessions opened on its own stream; whether such a session still exists on
 * the proxy is then the sink's business.
 */
import type { BackendCommandSink } from './link.js';
import {
  isPriority,
  type BackendCommand,
  type BackendCommandCase,
  type CloseSession,
  type Deliver,
  type Publish,
  type Subscribe,
  type Unsubscribe,
} from '../../contract/backend-contract.js';

/**
 * Outcome of one command: null when applied, STALE_SESSION when it names a session not open on this
 * stream (dropped), otherwise a problem description (`field: what is wrong (got …)`).
 */
export type CommandProblem = string | null;

/**
 * Returned (compare by identity) for a command naming a session that is not open on the stream it came
 * on. Usually a race (the proxy closed the session while the command was in flight); it also keeps one
 * backend from reaching sessions bound to another backend, as the sink's ids are proxy-wide.
 */
export const STALE_SESSION = 'session: not open on this stream';

type CommandHandler = (sink: BackendCommandSink, command: BackendCommand, open: Set<number>) => CommandProblem;

function badSession(field: string, session: number, open: ReadonlySet<number>): CommandProblem {
  if (!(session > 0 && Number.isSafeInteger(session))) return `${field}: expected a non-zero session id, got ${session}`;
  return open.has(session) ? null : STALE_SESSION;
}

function badPriority(field: string, priority: number): CommandProblem {
  return isPriority(priority) ? null : `${field}: expected 0 (SYSTEM), 1 (HIGH) or 2 (LOW), got ${priority}`;
}

function badTopic(field: string, topic: string): CommandProblem {
  return topic.length > 0 ? null : `${field}: expected a non-empty topic, got ""`;
}

// Each handler reads the member its case names: the decoder sets `command` only together with it.
const HANDLERS: Readonly<Record<BackendCommandCase, CommandHandler>> = {
  deliver(sink, command, open) {
    const c = command.deliver as Deliver;
    const problem = badSession('deliver.session', c.session, open) ?? badPriority('deliver.priority', c.priority);
    if (problem === null) sink.deliver(c.session, c.payload, c.priority);
    return problem;
  },
  close(sink, command, open) {
    const c = command.close as CloseSession;
    const problem = badSession('close.session', c.session, open);
    if (problem === null) {
      // The proxy does not report back a close the backend asked for, so the session leaves `open` here.
      open.delete(c.session);
      sink.close(c.session, c.code, c.reason);
    }
    return problem;
  },
  subscribe(sink, command, open) {
    const c = command.subscribe as Subscribe;
    const problem = badSession('subscribe.session', c.session, open) ?? badTopic('subscribe.topic', c.topic);
    if (problem === null) sink.subscribe(c.session, c.topic);
    return problem;
  },
  unsubscribe(sink, command, open) {
    const c = command.unsubscribe as Unsubscribe;
    const problem = badSession('unsubscribe.session', c.session, open) ?? badTopic('unsubscribe.topic', c.topic);
    if (problem === null) sink.unsubscribe(c.session, c.topic);
    return problem;
  },
  publish(sink, command) {
    const c = command.publish as Publish;
    const problem = badTopic('publish.topic', c.topic) ?? badPriority('publish.priority', c.priority);
    if (problem === null) sink.publish(c.topic, c.payload, c.priority, c.excludeSession);
    return problem;
  },
};

/**
 * Validates `command` and, if it is well formed and names a session in `open` (the sessions opened on
 * the stream it came on and not yet closed), makes exactly one call on `sink`. A CloseSession removes
 * its session from `open`. Never throws for a bad command (it returns the problem instead); exceptions
 * thrown by the sink propagate. Publish names no session: it is applied whatever `open` holds.
 */
export function dispatchCommand(sink: BackendCommandSink, command: BackendCommand, open: Set<number>): CommandProblem {
  const kind = command.command;
  const handler = kind === undefined ? undefined : HANDLERS[kind];
  if (handler === undefined) return 'command: no known member of the oneof is set (empty, or from a newer contract)';
  return handler(sink, command, open);
}
