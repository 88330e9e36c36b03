-- Failed attempts of transactions: what `GET /v1/transactions/{id}`, the live feed's subscribe-time
-- read and `txsim tx show` know about a message that is being retried or was parked. Applied by
-- `txsim setup` after the other schemas, statement by statement; idempotent. MariaDB >= 10.6 and MySQL 8.
--
-- One row per failed attempt, appended by the worker after the retry (or park) publish was confirmed.
-- It is a record, not a lock or a source of truth for money: it is written best-effort, outside the
-- apply transaction and only when an attempt failed, so the hot path never pays for it and a database
-- that is down costs the record, never the message. Attempt numbers restart at 1 after `replay-dead`,
-- so rows are ordered by `seq`, not by attempt; a worker that crashed between its confirm and its ack
-- may record the same attempt twice (the message is redelivered with the same attempt count).
CREATE TABLE IF NOT EXISTS transaction_failures (
  seq            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  transaction_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  state          ENUM('retrying', 'parked') NOT NULL,
  -- The message's account (NULL when it could not be read): who may see the status.
  account_id     BIGINT       NULL,
  -- The attempt that failed (1 = first delivery).
  attempt        INT          NOT NULL,
  -- errno name, error code or class name, and the error's first line (URL passwords masked, bounded).
  error_code     VARCHAR(64)  NOT NULL,
  error_message  VARCHAR(300) NOT NULL,
  worker_id      VARCHAR(64)  NOT NULL,
  failed_at      DATETIME(3)  NOT NULL,
  KEY ix_transaction_failures_transaction (transaction_id, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
