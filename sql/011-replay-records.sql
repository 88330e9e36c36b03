-- `txsim replay-dead` records each message it put back (state `replayed`), so the status reads show a
-- replayed message as queued again at once, not as parked until its next attempt is recorded. The
-- record is written after the republish was confirmed and before the parked message is removed
-- (src/dead-letters/replay-dead.ts says why in that order); one that cannot be written leaves the
-- message parked. Applied by
-- `txsim setup` after 010; idempotent (a value appended to an ENUM changes no stored row).
ALTER TABLE transaction_failures MODIFY state ENUM('retrying', 'parked', 'replayed') NOT NULL;
