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

/** Marks a JSON number's text while parsing; JSON text cannot contain a raw NUL, so nothing collides. */
const NUMBER_MARK = '\u0000n:';

/**
 * JSON.parse, except that the numbers of the fields named in `keepText` arrive as their source text
 * (a string), so a decimal amount is never rounded by a float on its way in. Other numbers are
 * parsed as JSON.parse would; strings are left alone.
 */
export function parseJsonKeepingNumberText(text: string, keepText: ReadonlySet<string>): unknown {
  let out = '';
  let copied = 0;
  scanNumberLiterals(text, (start, end) => {
    out += text.slice(copied, start) + JSON.stringify(NUMBER_MARK + text.slice(start, end));
    copied = end;
    return false;
  });
  return restoreNumbers(JSON.parse(out + text.slice(copied)), null, keepText);
}

function restoreNumbers(value: unknown, key: string | null, keepText: ReadonlySet<string>): unknown {
  if (typeof value === 'string') {
    if (!value.startsWith(NUMBER_MARK)) return value;
    const literal = value.slice(NUMBER_MARK.length);
    return key !== null && keepText.has(key) ? literal : Number(literal);
  }
  if (Array.isArray(value)) return value.map((v) => restoreNumbers(v, null, keepText));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, restoreNumbers(v, k, keepText)]));
  }
  return value;
}
