/**
 * Replaces the password in a URL with `***`, so endpoints can be printed and logged safely. A list of
 * URLs (the nodes of a cluster, comma-separated, each with its scheme) has each one redacted.
 */
export function redactUrl(url: string): string {
  const parts = url.split(',').map((part) => part.trim());
  if (parts.length > 1 && parts.every((part) => URL_START.test(part))) return parts.map(redactOneUrl).join(',');
  return redactOneUrl(url);
}

/** `scheme://` at the start of a string. */
const URL_START = /^[a-z][a-z0-9+.-]*:\/\//i;

function redactOneUrl(url: string): string {
  // No scheme, or a mistyped one (`guest:secret@host`, `amqp:/guest:secret@host`): URL would read the
  // first word as the scheme and keep the rest. Everything from the first colon to the last @ goes.
  if (!URL_START.test(url.trim())) return url.replace(/([^\s:/@]+):\S*@/, '$1:***@');
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    // Not a URL we can parse: strip anything that looks like user:pass@ rather than risk leaking it.
    return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}

/** `scheme://user:password@` (password optional) inside free text. */
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^\s:/@]+)(?::([^\s/@]*))?@/gi;

/**
 * Removes every occurrence of the given secrets from a message (error texts can echo a URL). URLs
 * in the text come out in the one redacted form, `amqp://guest:***@host`: the user stays readable
 * and only the password is replaced. Replacing secrets blindly would also hit a user name equal to
 * its password (guest:guest) and print `amqp://***:***@`, a second form for the same thing.
 */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  const scrub = (part: string) => {
    let out = part;
    for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join('***');
    return out;
  };
  let out = '';
  let last = 0;
  for (const match of text.matchAll(URL_USERINFO)) {
    const [whole, scheme, user, password] = match as unknown as [string, string, string, string | undefined];
    out += scrub(text.slice(last, match.index)) + `${scheme}${user}${password === undefined ? '' : ':***'}@`;
    last = match.index + whole.length;
  }
  return out + scrub(text.slice(last));
}
