-- A delivery on the accounting queue is acked only once every one of its elements is handled, so one
-- that comes back (its consumer stopped part-way) would record its bad elements a second time. Each
-- record now names where it came from: the message id and the element's position (0: the message as
-- a whole, 1…n: its nth event), unique together, so a repeated delivery records nothing new. A
-- message without an id cannot be told from a second copy and is recorded each time (MariaDB's unique
-- keys allow any number of NULLs); rows recorded before this file have no position. Applied by
-- `txsim setup` after 011; idempotent.
ALTER TABLE accounting_invalid_events
  ADD COLUMN IF NOT EXISTS element_position SMALLINT UNSIGNED NULL AFTER message_id,
  ADD UNIQUE KEY IF NOT EXISTS ux_invalid_message_position (message_id, element_position);
