import { invalid } from './api-error.js';

/**
 * Opaque page cursors: the keyset of the last row of a page, as base64url JSON. Opaque so clients do
 * not build them; checked on the way in so a forged one is a 400, not a SQL error.
 */
export function encodeCursor(key: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeCursor(cursor: string, check: (key: Record<string, unknown>) => boolean): Record<string, unknown> {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    key = null;
  }
  if (typeof key !== 'object' || key === null || !check(key as Record<string, unknown>))
    throw invalid('cursor is not one this server issued', [{ path: '/cursor', message: 'is invalid' }]);
  return key as Record<string, unknown>;
}

/** A page: its items and the cursor of the next one (null on the last page). */
export function pageOf<T>(
  items: T[],
  limit: number,
  keyOf: (last: T) => Record<string, string | number>,
): { items: T[]; nextCursor: string | null } {
  const last = items.at(-1);
  return { items, nextCursor: items.length === limit && last !== undefined ? encodeCursor(keyOf(last)) : null };
}
