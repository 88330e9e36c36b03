/** Plain-text table: columns padded to their widest cell, numbers right-aligned. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number | bigint | null | undefined)[])[]): string {
  const cells = rows.map((row) => row.map((c) => (c === null || c === undefined ? '' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => cells.length > 0 && cells.every((r) => /^-?[\d,.]*$/.test(r[i] ?? '')));
  const line = (row: readonly string[]) =>
    row
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** JSON with bigint support (money is bigint in memory). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

/** `1 message`, `2 messages`: the count and the word, plural unless the count is exactly 1 (`pluralWord` for irregular plurals). */
export function plural(count: number | bigint, word: string, pluralWord = `${word}s`): string {
  return `${count} ${count === 1 || count === 1n ? word : pluralWord}`;
}
