-- txsim core schema. Applied by `txsim setup` (and the tests), statement by statement; every
-- statement is idempotent. Works on MariaDB >= 10.6 and MySQL 8. Money is BIGINT minor units.
-- UUIDs and hashes are ascii with a binary collation: a third of the utf8mb4 index size, and
-- byte comparisons, on the columns every write touches.

-- Customer accounts (positive ids) and system accounts (negative ids, one per code and currency).
-- balance_minor is maintained for customer accounts only: a system account's balance is the sum of
-- its entries. Updating a system row on every posting would serialize every worker on that one row.
CREATE TABLE IF NOT EXISTS accounts (
  id            BIGINT       NOT NULL PRIMARY KEY,
  kind          ENUM('customer', 'system') NOT NULL,
  code          VARCHAR(32)  NULL,
  name          VARCHAR(100) NOT NULL,
  currency      CHAR(3)      NOT NULL,
  balance_minor BIGINT       NOT NULL DEFAULT 0,
  -- Last per-account sequence number given to an accounting event (outbox ordering).
  event_seq     BIGINT       NOT NULL DEFAULT 0,
  created_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  UNIQUE KEY uq_accounts_system (code, currency),
  CONSTRAINT ck_accounts_no_overdraft CHECK (kind = 'system' OR balance_minor >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per transaction id, ever: the idempotency record and the outcome.
CREATE TABLE IF NOT EXISTS transactions (
  id                  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin     NOT NULL PRIMARY KEY,
  run_id              CHAR(36) CHARACTER SET ascii COLLATE ascii_bin     NULL,
  type                VARCHAR(16)  NULL,
  account_id          BIGINT       NULL,
  amount_minor        BIGINT       NULL,
  currency            CHAR(3)      NULL,
  merchant            VARCHAR(100) NULL,
  -- sha256 of the business fields (or of the raw body when it could not be parsed).
  body_hash           CHAR(64) CHARACTER SET ascii COLLATE ascii_bin     NOT NULL,
  status              ENUM('applied', 'rejected') NOT NULL,
  reason              VARCHAR(32)  NULL,
  detail              VARCHAR(255) NULL,
  balance_after_minor BIGINT       NULL,
  worker_id           VARCHAR(64)  NOT NULL,
  attempts            INT          NOT NULL DEFAULT 1,
  created_at          DATETIME(3)  NULL,
  processed_at        DATETIME(3)  NOT NULL,
  KEY ix_transactions_account (account_id, processed_at),
  KEY ix_transactions_run (run_id, status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The double-entry ledger: each applied transaction posts entries that sum to zero.
CREATE TABLE IF NOT EXISTS ledger_entries (
  id             BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
  transaction_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin    NOT NULL,
  account_id     BIGINT      NOT NULL,
  amount_minor   BIGINT      NOT NULL,
  created_at     DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY ix_ledger_account (account_id),
  KEY ix_ledger_transaction (transaction_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Every gen run, so that verify can account for each id it published.
CREATE TABLE IF NOT EXISTS runs (
  id              CHAR(36) CHARACTER SET ascii COLLATE ascii_bin    NOT NULL PRIMARY KEY,
  seed            VARCHAR(64) NOT NULL,
  count_requested INT         NOT NULL,
  options_json    TEXT        NOT NULL,
  published       INT         NOT NULL DEFAULT 0,
  confirmed       INT         NOT NULL DEFAULT 0,
  returned        INT         NOT NULL DEFAULT 0,
  nacked          INT         NOT NULL DEFAULT 0,
  invalid         INT         NOT NULL DEFAULT 0,
  status          ENUM('running', 'completed', 'incomplete') NOT NULL DEFAULT 'running',
  started_at      DATETIME(3) NOT NULL,
  finished_at     DATETIME(3) NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Ids of a run that the broker returned as unroutable (they never reached a queue).
CREATE TABLE IF NOT EXISTS run_returns (
  run_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  transaction_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (run_id, transaction_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Ids of a run sent through the HTTP API (`gen --via`) that the API did not accept: answered with a
-- non-2xx status (http_status), or never answered (NULL). Nothing was queued for them as far as gen
-- knows, so `verify --run` expects no outcome (one that appears anyway counts as applied/rejected).
CREATE TABLE IF NOT EXISTS run_refusals (
  run_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  transaction_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  http_status    SMALLINT NULL,
  PRIMARY KEY (run_id, transaction_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Transactional outbox: written in the same DB transaction as the outcome, relayed afterwards.
CREATE TABLE IF NOT EXISTS outbox_events (
  id                  BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
  event_id            CHAR(36) CHARACTER SET ascii COLLATE ascii_bin    NOT NULL,
  transaction_id      CHAR(36) CHARACTER SET ascii COLLATE ascii_bin    NOT NULL,
  account_id          BIGINT      NULL,
  account_seq         BIGINT      NULL,
  type                VARCHAR(16) NULL,
  amount_minor        BIGINT      NULL,
  currency            CHAR(3)     NULL,
  outcome             ENUM('applied', 'rejected') NOT NULL,
  reason              VARCHAR(32) NULL,
  balance_after_minor BIGINT      NULL,
  created_at          DATETIME(3) NOT NULL,
  sent_at             DATETIME(3) NULL,
  -- No unique key on event_id: it is derived from the transaction id, which is already unique in
  -- `transactions` (written in the same DB transaction); a random-key unique index would cost every commit.
  KEY ix_outbox_pending (sent_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
