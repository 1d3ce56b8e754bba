import { expect } from 'vitest';

/**
 * Rows (cells trimmed) of the first Markdown table under `heading` whose header row is exactly
 * `header`. Fails the test if the heading or the table is missing, so a renamed section cannot make
 * a docs-vs-code check pass vacuously.
 */
export function tableRows(markdown: string, heading: string, header: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.indexOf(heading);
  expect(start, `heading ${heading}`).toBeGreaterThanOrEqual(0);
  const at = lines.indexOf(header, start);
  expect(at, `table ${header}`).toBeGreaterThan(start);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(1, -1).split('|').map((cell) => cell.trim()));
  }
  return rows;
}
