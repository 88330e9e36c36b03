-- gen's load shapes: several gen processes publishing one run (`gen --instance k/n`), and messages
-- a paced run dropped rather than sent late (`gen --drop-late`). Idempotent like every schema file.

-- One row per instance of a run split over several gen processes. The `runs` row holds their sums;
-- verify accounts for the run only once all `instance_count` instances have a row here.
CREATE TABLE IF NOT EXISTS run_instances (
  run_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  instance_no    INT         NOT NULL,
  instance_count INT         NOT NULL,
  -- Ids of the run that are this instance's: index i belongs to instance (i mod count) + 1.
  count_share    INT         NOT NULL,
  published      INT         NOT NULL DEFAULT 0,
  confirmed      INT         NOT NULL DEFAULT 0,
  returned       INT         NOT NULL DEFAULT 0,
  nacked         INT         NOT NULL DEFAULT 0,
  invalid        INT         NOT NULL DEFAULT 0,
  late           INT         NOT NULL DEFAULT 0,
  dropped        INT         NOT NULL DEFAULT 0,
  status         ENUM('running', 'completed', 'incomplete') NOT NULL DEFAULT 'running',
  started_at     DATETIME(3) NOT NULL,
  finished_at    DATETIME(3) NULL,
  PRIMARY KEY (run_id, instance_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Ids a paced run dropped because they were already later than --drop-late: never sent, so verify
-- counts them as dropped, not lost.
CREATE TABLE IF NOT EXISTS run_drops (
  run_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  transaction_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (run_id, transaction_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
