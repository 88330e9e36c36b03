/**
 * `AMQP_URL` and `DATABASE_URL` (and their flags) may list several nodes of one cluster, comma-separated
 * (`amqp://guest:guest@127.0.0.1:5681,amqp://guest:guest@127.0.0.1:5682`); a comma inside a user name
 * or password must be percent-encoded (`%2C`). A single URL is a list of one.
 */
export function splitUrlList(text: string): string[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}
