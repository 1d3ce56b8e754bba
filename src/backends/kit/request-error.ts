/**
 * A request a reference backend refuses with one of its protocol's error codes: turned into a Reply
 * with `ok: false`, `error_code` = `code`. Each backend names its own subclass and code registry.
 */
export class RequestError<C extends string> extends Error {
  constructor(
    readonly code: C,
    message: string,
    /** When a retry may succeed (rate limits, a room changing owner); 0 when it is not a matter of time. */
    readonly retryAfterMs = 0,
  ) {
    super(message);
    this.name = new.target.name;
  }
}
