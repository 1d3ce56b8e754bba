/**
 * The backend kit's inbox: per-user entries kept for offline devices and delivered to online ones on
 * any process (docs/inbox.md). Backends import from here.
 */
export { InboxHub, HUB_DEFAULTS, type AttachOptions, type InboxHubOptions } from './inbox-hub.js';
export { DeviceFeed, type FeedSink } from './device-feed.js';
export {
  INBOX_DEFAULTS,
  MAX_INBOX_ID_BYTES,
  MAX_INBOX_READ,
  type AppendRequest,
  type AppendResult,
  type DeviceCursor,
  type InboxEntry,
  type InboxListener,
  type InboxNotice,
  type InboxPage,
  type InboxStore,
  type InboxStoreOptions,
  type InboxWatch,
  type RetentionLimits,
} from './inbox-store.js';
export { MemoryInboxStore } from './memory-inbox-store.js';
export { RedisInboxStore, type RedisInboxStoreOptions } from './redis-inbox-store.js';
export { DEFAULT_STATS_TTL_MS, MemoryDeliveryLedger, type DeliveryLedger, type DeliveryLedgerOptions, type RefStats } from './delivery-ledger.js';
export { RedisDeliveryLedger, type RedisDeliveryLedgerOptions } from './redis-delivery-ledger.js';
