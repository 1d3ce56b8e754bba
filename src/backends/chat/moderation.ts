/**
 * The moderation actions of the Chat backend (docs/chat.md §5): mute, kick, ban, whitelist and their
 * reverses, run in the room's chain like every other request.
 */
import { Code } from '../../protocol/codes.js';
import { ModerateAction, type ChatEvent, type ModerateRequest } from './chat-codec.js';
import type { ChatEngine, ChatEngineConfig, ReplyResult } from './chat-engine.js';
import { ChatError, ChatErrorCode } from './chat-errors.js';
import type { ChatSession, Room } from './room.js';
import type { ChatStore, Role } from './store.js';

/** The expiry of a mute or ban without duration. */
export const FOREVER = Number.MAX_SAFE_INTEGER;

/** Host and admin may moderate and set attributes. */
export const isModerator = (role: Role): boolean => role === 'host' || role === 'admin';

/**
 * Moderation (the caller checked the actor is a joined host/admin): a target that is host or admin needs
 * an admin; mute and ban take `duration_ms` (0 = until lifted) and live in the store; kick and ban close
 * the target's sessions in this room after telling them why. Only the holder of the room's lease
 * moderates (NOT_OWNER otherwise). The whitelist lives in the store, so a
 * room's next owner keeps it; `room.whitelist` is this owner's copy, written through here and refreshed
 * from the store for each joining user (syncWhitelist).
 */
export async function moderate(
  engine: ChatEngine,
  config: Pick<ChatEngineConfig, 'store' | 'leases' | 'now'>,
  room: Room,
  s: ChatSession,
  req: ModerateRequest,
  onRemoved: (target: ChatSession) => void,
): Promise<ReplyResult> {
  const { store } = config;
  const target = req.targetUser;
  if (target === '') throw new ChatError(ChatErrorCode.BAD_REQUEST, 'moderate.target_user: empty');
  // Mutes, bans and the whitelist are per-user states the store writes without a token, but only the
  // lease holder moderates, so two backends never race on them.
  await config.leases.token(room);
  const targetMember = await store.member(room.id, target);
  if (targetMember !== null && isModerator(targetMember.role) && s.role !== 'admin') {
    throw new ChatError(ChatErrorCode.PERMISSION_DENIED, `moderate: ${target} is ${targetMember.role}; only an admin may moderate them`);
  }
  const now = config.now();
  const until = req.durationMs === 0 ? FOREVER : now + req.durationMs;
  switch (req.action) {
    case ModerateAction.MUTE:
      await store.setMute(room.id, target, until);
      return {};
    case ModerateAction.UNMUTE:
      await store.setMute(room.id, target, 0);
      return {};
    case ModerateAction.KICK: {
      const sessions = room.sessionsOf(target);
      if (sessions.length === 0) throw new ChatError(ChatErrorCode.NOT_FOUND, `moderate: ${target} is not in room ${room.id}`);
      await remove(engine, room, sessions, { kicked: { reason: req.reason, by: s.userId } }, 'kicked', onRemoved);
      return {};
    }
    case ModerateAction.BAN:
      await store.setBan(room.id, target, until);
      await remove(engine, room, room.sessionsOf(target), { banned: { reason: req.reason, by: s.userId, untilMs: until === FOREVER ? 0 : until } }, 'banned', onRemoved);
      return {};
    case ModerateAction.UNBAN:
      await store.setBan(room.id, target, 0);
      return {};
    case ModerateAction.WHITELIST:
      await store.setWhitelisted(room.id, target, true);
      room.whitelist.add(target);
      return {};
    case ModerateAction.UNWHITELIST:
      await store.setWhitelisted(room.id, target, false);
      room.whitelist.delete(target);
      return {};
    default:
      throw new ChatError(ChatErrorCode.BAD_REQUEST, `moderate.action: unknown action ${req.action}`);
  }
}

/**
 * Refreshes this owner's copy of one user's whitelist entry from the store. Run in the room's chain
 * before the user's join (or silent rejoin), so the role the join grants and the privileges of the
 * user's later sends follow the store, whichever owner wrote it.
 */
export async function syncWhitelist(store: ChatStore, room: Room, userId: string): Promise<void> {
  if (await store.isWhitelisted(room.id, userId)) room.whitelist.add(userId);
  else room.whitelist.delete(userId);
}

/** Tells each session why (`event`), closes it with BACKEND_CLOSED (205) and takes it out of the room. */
async function remove(
  engine: ChatEngine,
  room: Room,
  sessions: ChatSession[],
  event: ChatEvent,
  reason: string,
  onRemoved: (target: ChatSession) => void,
): Promise<void> {
  for (const target of sessions) {
    engine.deliver(target, event);
    target.ctx.close(target.session, Code.BACKEND_CLOSED, reason);
    target.ended = true;
    onRemoved(target);
    await engine.leave(room, target, true);
  }
}
