import type { PriorityName } from '../protocol/constants.js';
import type { SessionBinding } from './connection.js';
import type { SessionClosedError } from './errors.js';

/** One DATA message received on a session. */
export interface IncomingMessage {
  payload: Buffer;
  priority: PriorityName;
}

/** Where the inbox hands messages when the application listens with events. */
export interface DataListeners {
  /** Number of `'data'` listeners right now. */
  count(): number;
  emit(message: IncomingMessage): void;
}

interface Inbound extends IncomingMessage {
  /** Where the credit for this message goes back to (the session may have been reopened since). */
  readonly binding: SessionBinding;
  /** Window bytes this message cost: its length, plus its length prefix when it came in a batch. */
  readonly creditBytes: number;
  /** Credit already returned (the session ended with the message still buffered). */
  credited: boolean;
}

interface Reader {
  readonly resolve: (result: IteratorResult<IncomingMessage>) => void;
  readonly reject: (err: Error) => void;
}

/**
 * The receive side of one session: hands each DATA message to `'data'` listeners, to a waiting
 * iterator, or buffers it, and returns its credit to the server when it is consumed.
 *
 * Guarantees:
 * - Messages are consumed exactly once and in arrival order, whichever way the application reads.
 * - Credit goes back (through the message's binding) when a listener received the message or an
 *   iterator yielded it; buffered messages hold their credit, so an application that does not read
 *   stops the server (PROTOCOL.md §7). Once the session has ended, buffered messages give their credit
 *   back at once: no more DATA can come for the id, and the connection window must not shrink for good.
 * - After {@link end}, readers get the remaining buffered messages, then `done` or the end error.
 */
export class SessionInbox {
  private readonly items: Inbound[] = [];
  private readonly readers: Reader[] = [];
  private ended = false;
  private endError: SessionClosedError | null = null;

  constructor(private readonly listeners: DataListeners) {}

  /**
   * Delivers or buffers one message. `payload` must already be the application's own copy;
   * `creditBytes` is what it cost of the window (more than its length when it came in a batch).
   */
  push(payload: Buffer, priority: PriorityName, binding: SessionBinding, creditBytes: number): void {
    const item: Inbound = { payload, priority, binding, creditBytes, credited: false };
    if (this.listeners.count() > 0) {
      this.listeners.emit(this.consume(item));
      return;
    }
    const reader = this.readers.shift();
    if (reader) reader.resolve({ done: false, value: this.consume(item) });
    else this.items.push(item);
  }

  /** The next message for an iterator: at once if buffered, else when one arrives or the session ends. */
  read(): Promise<IteratorResult<IncomingMessage>> {
    const item = this.items.shift();
    if (item) return Promise.resolve({ done: false, value: this.consume(item) });
    if (this.ended) {
      return this.endError ? Promise.reject(this.endError) : Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolve, reject) => this.readers.push({ resolve, reject }));
  }

  /** Hands buffered messages to `'data'` listeners, if there are any now. */
  flushToListeners(): void {
    while (this.items.length > 0 && this.listeners.count() > 0) {
      this.listeners.emit(this.consume(this.items.shift()!));
    }
    this.settleReaders();
  }

  /** The session ended: iteration finishes after the buffered messages, with `error` if not null. */
  end(error: SessionClosedError | null): void {
    this.ended = true;
    this.endError = error;
    for (const item of this.items) this.credit(item);
    this.settleReaders();
  }

  /** Drops buffered messages (an abortive reset); call after {@link end}, which returned their credit. */
  clear(): void {
    this.items.length = 0;
  }

  private consume(item: Inbound): IncomingMessage {
    this.credit(item);
    return { payload: item.payload, priority: item.priority };
  }

  private credit(item: Inbound): void {
    if (item.credited) return;
    item.credited = true;
    item.binding.consumed(item.creditBytes);
  }

  private settleReaders(): void {
    if (!this.ended || this.items.length > 0) return;
    for (const reader of this.readers.splice(0)) {
      if (this.endError) reader.reject(this.endError);
      else reader.resolve({ done: true, value: undefined });
    }
  }
}
