import { Deque } from '../util/deque.js';

/**
 * Events waiting for an application that reads them with `for await`: pushed by the SDK, yielded in
 * order, each once. `end` lets the reader finish what is queued, then ends the iteration (or throws).
 */
export class EventQueue<T> {
  private readonly items = new Deque<T>();
  private readonly readers: { resolve: (r: IteratorResult<T>) => void; reject: (err: Error) => void }[] = [];
  private ended = false;
  private endError: Error | null = null;

  get length(): number {
    return this.items.length;
  }

  push(item: T): void {
    if (this.ended) return;
    const reader = this.readers.shift();
    if (reader) reader.resolve({ value: item, done: false });
    else this.items.push(item);
  }

  /** The next item, waiting for one; done (or the end error) once ended and drained. */
  next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.ended) return this.endError ? Promise.reject(this.endError) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.readers.push({ resolve, reject }));
  }

  end(error: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.endError = error;
    for (const reader of this.readers.splice(0)) {
      if (error) reader.reject(error);
      else reader.resolve({ value: undefined, done: true });
    }
  }
}
