/**
 * The livemux package: the client SDK (what apps and tests use), the library for writing backends in
 * Node, and the proxy itself for embedding. The `livemux` command wraps the same pieces.
 */
export * from './client/index.js';

export { createBackendServer } from './backends/kit/backend-server.js';
export type {
  BackendHandlers,
  BackendServer,
  BackendServerOptions,
  ListeningBackend,
  ProxyStreamContext,
} from './backends/kit/backend-server.js';
export type { SessionOpenInfo } from './contract/backend-contract.js';

// The Chat protocol (docs/chat.md) for client apps, and the Chat backend for embedding.
export {
  ModerateAction,
  WireRole as ChatRole,
  decodeChatEvent,
  decodeChatRequest,
  encodeChatEvent,
  encodeChatRequest,
  type ChatEvent,
  type ChatRequest,
  type Reply as ChatReply,
  type RoomMessage,
} from './backends/chat/chat-codec.js';
export { ChatErrorCode } from './backends/chat/chat-errors.js';
export { createChatBackend, type ChatBackend, type ChatBackendOptions } from './backends/chat/chat-backend.js';
export { MemoryChatStore } from './backends/chat/memory-store.js';
export { RedisChatStore } from './backends/chat/redis-store.js';
export type { ChatStore } from './backends/chat/store.js';

// The Push protocol (docs/push.md) for client apps, and the Push backend for embedding.
export { decodePushEvent, decodePushRequest, encodePushEvent, encodePushRequest, type PushEvent, type PushRequest } from './backends/push/push-codec.js';
export { createPushBackend, type PushBackend, type PushBackendOptions } from './backends/push/push-backend.js';
export { MemoryPushStore } from './backends/push/memory-store.js';
export { RedisPushStore } from './backends/push/redis-store.js';
export type { PushStore } from './backends/push/store.js';

export { ProxyServer, type ProxyServerOptions } from './proxy/server.js';
export { createJwtVerifier, mintToken, type TokenVerifier } from './proxy/auth.js';
export { loadProxyConfig, type ProxyConfig } from './config/proxy-config.js';
export { loadRoutesConfig, type RoutesConfig } from './config/routes-config.js';

export { FRAME_VERSION, FrameType, HEADER_SIZE, MAGIC, Priority } from './protocol/constants.js';
export { FrameDecoder, type FrameSink } from './protocol/decoder.js';
export { encodeFrame } from './protocol/encoder.js';
