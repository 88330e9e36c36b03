/**
 * The first checks of every event body txsim reads off a queue or an exchange anyone may publish to: not
 * larger than its limit, valid JSON, a JSON object. The decoders check the fields after this.
 */
export function jsonObjectOf(
  body: Buffer,
  bytesMax: number,
): { readonly ok: true; readonly o: Record<string, unknown> } | { readonly ok: false; readonly detail: string } {
  if (body.length > bytesMax) return { ok: false, detail: `body is ${body.length} bytes, more than ${bytesMax}` };
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, detail: 'body is not valid JSON' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, detail: 'body is not a JSON object' };
  return { ok: true, o: raw as Record<string, unknown> };
}
