-- Per-account ordering (`txsim setup --partitions N`). Applied by `txsim setup` after 007, statement
-- by statement; idempotent (MariaDB >= 10.6).

-- The ordered mode of a namespace: how many partition queues `setup --partitions` declared. No row
-- (or 0) is the default, unordered topology. Workers, gen and verify read it at start.
CREATE TABLE IF NOT EXISTS ordering_setup (
  namespace   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  partitions  INT         NOT NULL,
  updated_at  DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Workers of an ordered namespace that are alive: each renews its row every heartbeat. The live
-- count decides each worker's fair share of the partitions. Times are the database's (NOW(3)), so
-- workers on hosts with skewed clocks agree on who expired.
CREATE TABLE IF NOT EXISTS worker_heartbeats (
  namespace   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  worker_id   VARCHAR(64) NOT NULL,
  expires_at  DATETIME(3) NOT NULL,
  PRIMARY KEY (namespace, worker_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Who consumes each partition queue: one row per partition, free when worker_id is NULL or the
-- lease expired. A worker subscribes only to the partitions it holds here.
CREATE TABLE IF NOT EXISTS partition_leases (
  namespace    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  partition_no INT         NOT NULL,
  worker_id    VARCHAR(64) NULL,
  expires_at   DATETIME(3) NULL,
  PRIMARY KEY (namespace, partition_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- gen's per-account sequence number (per debit account, run and gen instance: seq_stream), as the
-- worker received it; NULL for messages without one (serve's POST, older gens). apply_order is the
-- order outcomes were written in: one account's outcomes are written under its row lock, so for
-- one account it is the commit order. verify's ordering check compares the two.
ALTER TABLE transactions
  ADD COLUMN IF NOT EXISTS account_seq BIGINT NULL,
  ADD COLUMN IF NOT EXISTS seq_stream SMALLINT NULL,
  ADD COLUMN IF NOT EXISTS apply_order BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  ADD UNIQUE KEY IF NOT EXISTS uq_transactions_apply_order (apply_order)
