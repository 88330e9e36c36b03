/**
 * JSON numbers read from their text. A JSON reader turns `1999.9999999999999` into the float 2000:
 * money must not go through that, so these look at the digits as written.
 */

/**
 * The first number in a JSON text written with a fraction or an exponent (`12.5`, `2000.0`, `2e3`),
 * with the key it is the value of (the last string before it, for a flat object), or null when every
 * number is written as a plain integer. Strings are skipped, escapes included.
 */
export function firstNonIntegerLiteral(text: string): { readonly key: string | null; readonly literal: string } | null {
  let keyStart = -1;
  let keyEnd = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      keyStart = i;
      i++;
      while (i < text.length && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c /* \ */ ? 2 : 1;
      keyEnd = i + 1;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      let integer = true;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x2e /* . */ || d === 0x65 /* e */ || d === 0x45 /* E */) integer = false;
        else if (!(d === 0x2b /* + */ || d === 0x2d || (d >= 0x30 && d <= 0x39))) break;
      }
      if (!integer) return { key: keyStart < 0 ? null : stringLiteralValue(text.slice(keyStart, keyEnd)), literal: text.slice(i, j) };
      i = j - 1;
    }
  }
  return null;
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
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      // Copy a string literal verbatim, escapes included.
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      const literal = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i))?.[0];
      if (literal === undefined) {
        out += c; // not a number: JSON.parse reports it
        i++;
        continue;
      }
      out += JSON.stringify(NUMBER_MARK + literal);
      i += literal.length;
    } else {
      out += c;
      i++;
    }
  }
  return restoreNumbers(JSON.parse(out), null, keepText);
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
