-- The user-facing accounting system's own tables (`txsim accounting`). Applied by `txsim setup` after
-- 001-core.sql, statement by statement; every statement is idempotent. MariaDB >= 10.6 and MySQL 8.
-- The accounting side never writes to the core tables: it only learns about outcomes from the
-- events the outbox relay publishes, exactly as a separate system would.

-- One statement line per accounting event. Events arrive at least once (the relay may publish an
-- event again after a crash), so the unique key on event_id is what makes each line appear once;
-- `deliveries` counts how often the event arrived. Lines are ordered by the per-account sequence
-- number the worker gave the event, not by arrival: replicas may publish out of order.
CREATE TABLE IF NOT EXISTS accounting_statements (
  id                  BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
  event_id            CHAR(36) CHARACTER SET ascii COLLATE ascii_bin    NOT NULL,
  transaction_id      CHAR(36) CHARACTER SET ascii COLLATE ascii_bin    NOT NULL,
  -- NULL when the outcome concerns no known account (unknown account, unreadable message).
  account_id          BIGINT      NULL,
  account_seq         BIGINT      NULL,
  type                VARCHAR(16) NULL,
  outcome             ENUM('applied', 'rejected') NOT NULL,
  reason              VARCHAR(32) NULL,
  amount_minor        BIGINT      NULL,
  currency            CHAR(3)     NULL,
  balance_after_minor BIGINT      NULL,
  occurred_at         DATETIME(3) NOT NULL,
  received_at         DATETIME(3) NOT NULL,
  deliveries          INT         NOT NULL DEFAULT 1,
  UNIQUE KEY uq_statement_event (event_id),
  KEY ix_statement_account (account_id, account_seq),
  KEY ix_statement_transaction (transaction_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The outcome of forwarding each event to the webhook (`txsim accounting --webhook <url>`). A row is
-- written 'pending' in the same transaction as the statement line, and set to 'delivered' or
-- 'failed' before the event is acknowledged, so a crash in between re-sends rather than forgets.
-- `updated_at` of a pending row is refreshed while a consumer works on it; one not updated for
-- `--webhook-orphan-after` is taken over by another consumer with --webhook.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  event_id        CHAR(36) CHARACTER SET ascii COLLATE ascii_bin      NOT NULL PRIMARY KEY,
  -- Target URL without credentials.
  url             VARCHAR(1024) NOT NULL,
  status          ENUM('pending', 'delivered', 'failed') NOT NULL,
  attempts        INT           NOT NULL DEFAULT 0,
  response_status INT           NULL,
  -- The start of the last response body, for a person reading why a delivery failed.
  response_body   VARCHAR(1024) NULL,
  last_error      VARCHAR(500)  NULL,
  created_at      DATETIME(3)   NOT NULL,
  updated_at      DATETIME(3)   NOT NULL,
  finished_at     DATETIME(3)   NULL,
  KEY ix_webhook_status (status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Deliveries on the accounting queue that are not accounting events (a bug or a foreign publisher).
-- They are kept here and acknowledged: neither silently dropped nor redelivered in a hot loop.
CREATE TABLE IF NOT EXISTS accounting_invalid_events (
  id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
  message_id  VARCHAR(255)  NULL,
  routing_key VARCHAR(255)  NOT NULL,
  detail      VARCHAR(255)  NOT NULL,
  body        VARCHAR(4096) NOT NULL,
  received_at DATETIME(3)   NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
