/**
 * Prometheus metrics of one IM backend, in their own registry, prefix `livemux_im_`. As with Chat's,
 * one source of truth per number: counters are the backend's `ImStats`, copied when scraped; gauges
 * read the live state when scraped. Label values are bounded (refusal reasons, request kinds).
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../../observability/process-metrics.js';

/** Why a send did not become a message. */
export const RefuseReason = {
  BAD_REQUEST: 'bad_request',
  TOO_LARGE: 'too_large',
  RATE_LIMITED: 'rate_limited',
  BLOCKED: 'blocked',
  FAILED: 'failed',
} as const;
export type RefuseReason = (typeof RefuseReason)[keyof typeof RefuseReason];

/** The backend's counters since start. */
export interface ImStats {
  /** Messages stored (a resend of one stored already counts under `duplicates`). */
  messagesStored: number;
  /** Sends answered with a message stored before (same sender and client_msg_id). */
  duplicates: number;
  /** Sends refused, by reason; `failed` = the store failed (answered INTERNAL). */
  refused: Record<RefuseReason, number>;
  /** Read receipts sent (each to both users' inboxes). */
  receipts: number;
  /** Messages recalled. */
  recalls: number;
  /** Typing events passed on. */
  typing: number;
  /** Inbox entries sent to devices (redeliveries included). */
  entriesDelivered: number;
  /** Gaps reported to devices (retention removed entries they had not acknowledged). */
  gaps: number;
}

export function newImStats(): ImStats {
  return {
    messagesStored: 0,
    duplicates: 0,
    refused: { bad_request: 0, too_large: 0, rate_limited: 0, blocked: 0, failed: 0 },
    receipts: 0,
    recalls: 0,
    typing: 0,
    entriesDelivered: 0,
    gaps: 0,
  };
}

/** What the gauges read when scraped. */
export interface ImMetricsSource {
  readonly stats: Readonly<ImStats>;
  /** IM sessions open on this process. */
  sessions(): number;
  /** Sessions receiving their inbox (synced, or moved here). */
  feeds(): number;
  /** Distinct users watched for presence by this process's sessions. */
  watchedUsers(): number;
}

export interface ImMetrics {
  readonly registry: Registry;
  /** livemux_im_request_failures_total{kind}: requests answered INTERNAL (store unreachable, a bug). */
  readonly requestFailures: Counter<'kind'>;
}

export function createImMetrics(source: ImMetricsSource, options: { processMetrics?: boolean } = {}): ImMetrics {
  const registry = new Registry();
  if (options.processMetrics === true) collectProcessMetrics(registry, 'livemux_im_');
  const registers = [registry];
  /** A counter whose value is read from the stats at scrape time. */
  const view = (name: string, help: string, read: (s: Readonly<ImStats>) => number): void => {
    const counter: Counter = new Counter({
      name,
      help,
      registers,
      collect() {
        counter.reset();
        counter.inc(read(source.stats));
      },
    });
  };
  view('livemux_im_messages_stored_total', 'Messages stored (in the conversation and both inboxes) and acknowledged to their sender.', (s) => s.messagesStored);
  view('livemux_im_duplicate_sends_total', 'Sends answered with the message a previous send with the same client_msg_id stored.', (s) => s.duplicates);
  view('livemux_im_receipts_total', 'Read receipts delivered to both users of a conversation.', (s) => s.receipts);
  view('livemux_im_recalls_total', 'Messages recalled.', (s) => s.recalls);
  view('livemux_im_typing_total', 'Typing events passed on (never stored).', (s) => s.typing);
  view('livemux_im_entries_delivered_total', 'Inbox entries sent to devices, redeliveries included.', (s) => s.entriesDelivered);
  view('livemux_im_gaps_total', 'Gaps reported to devices: inbox entries retention removed before they were acknowledged.', (s) => s.gaps);
  const refused: Counter<'reason'> = new Counter({
    name: 'livemux_im_sends_refused_total',
    help: 'Sends that did not become messages, by reason (bad_request, too_large, rate_limited, blocked, failed).',
    labelNames: ['reason'],
    registers,
    collect() {
      refused.reset();
      for (const [reason, n] of Object.entries(source.stats.refused)) refused.inc({ reason }, n);
    },
  });
  const gauge = (name: string, help: string, read: () => number): void => {
    const g: Gauge = new Gauge({
      name,
      help,
      registers,
      collect() {
        g.set(read());
      },
    });
  };
  gauge('livemux_im_sessions', 'IM sessions open on this process.', () => source.sessions());
  gauge('livemux_im_feeds', 'Sessions receiving their inbox (after a Sync, or moved here after a failure).', () => source.feeds());
  gauge('livemux_im_presence_watched_users', 'Distinct users watched for presence by sessions of this process.', () => source.watchedUsers());
  const requestFailures = new Counter({
    name: 'livemux_im_request_failures_total',
    help: 'Requests answered INTERNAL (the store unreachable, or a bug), by request kind.',
    labelNames: ['kind'] as const,
    registers,
  });
  return { registry, requestFailures };
}
