-- Contract v1.1, the rest of #14's money movement: refunds by capture, and hold expiry by the
-- workers. Applied by `txsim setup` after 007, statement by statement; idempotent.

-- A card_refund that names one capture (`captureId`) instead of the authorization: that capture's id.
-- NULL otherwise. No index: only verify reads it, in a full scan.
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS capture_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER authorization_id;

-- What was refunded against each capture by refunds that name it (`captureId`); a row appears with the
-- first such refund. Changed only by a worker holding the account's row lock, like the hold itself.
CREATE TABLE IF NOT EXISTS capture_refunds (
  capture_id       CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  authorization_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  captured_minor   BIGINT      NOT NULL,
  refunded_minor   BIGINT      NOT NULL,
  updated_at       DATETIME(3) NOT NULL,
  CONSTRAINT ck_capture_refunds_amounts CHECK (refunded_minor >= 0 AND refunded_minor <= captured_minor)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The follow-ups of a gen run's card flows (captures, voids, refunds sent after their authorization):
-- their ids are not index-derived like the run's other messages, so gen records each one it
-- published and `verify --run` accounts for them too.
CREATE TABLE IF NOT EXISTS run_followups (
  run_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  transaction_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (run_id, transaction_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- What gen planned for a run's card flows (how many holds to end captured, voided, expired; the
-- follow-ups), as JSON; NULL for a run without flows. verify --run shows it beside the holds the run left.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS flows_planned_json VARCHAR(2000) NULL;
