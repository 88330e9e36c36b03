import { DEFAULT_RELAY_OPTIONS } from '../accounting/outbox-relay.js';
import { parseIntFlag } from '../config/parse.js';
import { ACCOUNTING_EVENTS_PER_MESSAGE_MAX } from '../domain/accounting-event.js';

/** `--relay-events-per-message` of the commands that run a relay (worker, bench): `.option(...RELAY_EVENTS_OPTION)`. */
export const RELAY_EVENTS_OPTION = [
  '--relay-events-per-message <n>',
  `most accounting events in one message the relay publishes (1 to ${ACCOUNTING_EVENTS_PER_MESSAGE_MAX}); 1 = one message per event, routed <outcome>.<accountId>`,
  String(DEFAULT_RELAY_OPTIONS.eventsPerMessageMax),
] as const;

/** The relay's events per message the flag asks for (the relay's default without it). */
export function relayEventsPerMessageFrom(opts: Record<string, unknown>): number {
  const value = opts.relayEventsPerMessage;
  return parseIntFlag(
    '--relay-events-per-message',
    typeof value === 'string' ? value : undefined,
    DEFAULT_RELAY_OPTIONS.eventsPerMessageMax,
    1,
    ACCOUNTING_EVENTS_PER_MESSAGE_MAX,
  );
}
