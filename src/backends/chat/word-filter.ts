/**
 * The sensitive-word filter of a Chat room: case-insensitive matching of a configurable word list in
 * UTF-8 message bodies, either rejecting the message or masking each match with `*` (one per character).
 */
export const WordFilterMode = { REJECT: 'reject', MASK: 'mask' } as const;
export type WordFilterMode = (typeof WordFilterMode)[keyof typeof WordFilterMode];

/** What the filter made of a body. */
export type FilterResult =
  | { readonly kind: 'clean'; readonly body: Buffer }
  | { readonly kind: 'masked'; readonly body: Buffer }
  | { readonly kind: 'rejected'; readonly word: string };

const escape = (word: string): string => word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class WordFilter {
  private readonly pattern: RegExp | null;

  /** `words`: empty strings are ignored; longer words win over their prefixes when masking. */
  constructor(
    words: readonly string[],
    readonly mode: WordFilterMode = WordFilterMode.REJECT,
  ) {
    const list = [...new Set(words.filter((w) => w.length > 0))].sort((a, b) => b.length - a.length);
    this.pattern = list.length === 0 ? null : new RegExp(list.map(escape).join('|'), 'giu');
  }

  /** Checks `body` (decoded as UTF-8); a body without any listed word is returned as it is. */
  apply(body: Buffer): FilterResult {
    if (this.pattern === null) return { kind: 'clean', body };
    const text = body.toString('utf8');
    this.pattern.lastIndex = 0;
    const found = this.pattern.exec(text);
    if (found === null) return { kind: 'clean', body };
    if (this.mode === WordFilterMode.REJECT) return { kind: 'rejected', word: found[0] };
    const masked = text.replace(this.pattern, (m) => '*'.repeat([...m].length));
    return { kind: 'masked', body: Buffer.from(masked, 'utf8') };
  }
}
