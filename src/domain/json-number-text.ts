/**
 * JSON numbers read from their text. A JSON reader turns `1999.9999999999999` into the float 2000:
 * money must not go through that, so these look at the digits as written.
 */

/** A JSON number literal, matched where the scan stands (sticky). */
const NUMBER_LITERAL = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * Walks the number literals of a JSON text, outside strings (escapes included), calling `visit` with
 * each literal's span and the span of the last string before it (its key, in a flat object; -1 when
 * there is none) until `visit` returns true. What is not a number or a string is stepped over, so
 * text that is not JSON is walked too (JSON.parse reports it, not this).
 */
function scanNumberLiterals(text: string, visit: (start: number, end: number, keyStart: number, keyEnd: number) => boolean): void {
  let keyStart = -1;
  let keyEnd = -1;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      keyStart = i;
      keyEnd = j + 1;
      i = j + 1;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      NUMBER_LITERAL.lastIndex = i;
      const literal = NUMBER_LITERAL.exec(text)?.[0];
      if (literal === undefined) {
        i++; // a lone minus: not a number
        continue;
      }
      if (visit(i, i + literal.length, keyStart, keyEnd)) return;
      i += literal.length;
    } else {
      i++;
    }
  }
}

/**
 * The first number in a JSON text written with a fraction or an exponent (`12.5`, `2000.0`, `2e3`),
 * with the key it is the value of (the last string before it, for a flat object), or null when every
 * number is written as a plain integer. Strings are skipped, escapes included.
 */
export function firstNonIntegerLiteral(text: string): { readonly key: string | null; readonly literal: string } | null {
  let found: { key: string | null; literal: string } | null = null;
  scanNumberLiterals(text, (start, end, keyStart, keyEnd) => {
    const literal = text.slice(start, end);
    if (!/[.eE]/.test(literal)) return false;
    found = { key: keyStart < 0 ? null : stringLiteralValue(text.slice(keyStart, keyEnd)), literal };
    return true;
  });
  return found;
}

function stringLiteralValue(literal: string): string | null {
  try {
    return JSON.parse(literal) as string;
  } catch {
    return null;
  }
}

/**
 * JSON.parse, except that the numbers of the fields named in `keepText` arrive as their source text
 * (a string), so a decimal amount is never rounded by a float on its way in. Other numbers are
 * parsed as JSON.parse would; strings are left alone — whatever they hold, no string of the text is
 * ever read as a number.
 */
export function parseJsonKeepingNumberText(text: string, keepText: ReadonlySet<string>): unknown {
  // Each number literal is rewritten as a string that starts with a mark, then turned back. The mark
  // must not start any string value of the text itself: a JSON string may hold U+0000 (escaped as
  // \u0000), so a fixed mark could be forged and a string read as a number. The mark is therefore
  // chosen from the text: NUL, n, the first k that no string value's start claims, and a colon.
  const mark = unusedMark(JSON.parse(text));
  let out = '';
  let copied = 0;
  scanNumberLiterals(text, (start, end) => {
    out += text.slice(copied, start) + JSON.stringify(mark + text.slice(start, end));
    copied = end;
    return false;
  });
  return restoreNumbers(JSON.parse(out + text.slice(copied)), null, keepText, mark);
}

/**
 * `\u0000n<k>:` with the smallest k that no string value of `parsed` starts with. A string starts
 * with at most one such prefix (the digits end at the colon), so k is at most the number of string
 * values that start with NUL — nearly always 0.
 */
function unusedMark(parsed: unknown): string {
  const claimed = new Set<string>();
  const visit = (value: unknown): void => {
    if (typeof value === 'string') {
      if (!value.startsWith('\u0000n')) return;
      const colon = value.indexOf(':', 2);
      if (colon > 2 && /^\d+$/.test(value.slice(2, colon))) claimed.add(value.slice(0, colon + 1));
    } else if (Array.isArray(value)) value.forEach(visit);
    else if (value !== null && typeof value === 'object') Object.values(value).forEach(visit);
  };
  visit(parsed);
  for (let k = 0; ; k++) if (!claimed.has(`\u0000n${k}:`)) return `\u0000n${k}:`;
}

function restoreNumbers(value: unknown, key: string | null, keepText: ReadonlySet<string>, mark: string): unknown {
  if (typeof value === 'string') {
    if (!value.startsWith(mark)) return value;
    const literal = value.slice(mark.length);
    return key !== null && keepText.has(key) ? literal : Number(literal);
  }
  if (Array.isArray(value)) return value.map((v) => restoreNumbers(v, null, keepText, mark));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, restoreNumbers(v, k, keepText, mark)]));
  }
  return value;
}
