import { redactUrl } from './redact.js';

/**
 * `AMQP_URL` (and `--amqp-url`) may list several nodes of one cluster, comma-separated
 * (`amqp://guest:guest@127.0.0.1:5681,amqp://guest:guest@127.0.0.1:5682`); a comma inside a user name
 * or password must be percent-encoded (`%2C`). A single URL is a list of one.
 */
export function splitUrlList(text: string): string[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}

/** Each URL of a list with its password replaced, comma-separated again (for logs and errors). */
export function redactUrlList(text: string): string {
  return splitUrlList(text).map(redactUrl).join(',');
}
