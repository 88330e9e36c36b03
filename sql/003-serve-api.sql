-- The HTTP API's own tables (`txsim serve`, `txsim tokens`). Applied by `txsim setup` after the core
-- and accounting schemas, statement by statement; every statement is idempotent. MariaDB >= 10.6 and
-- MySQL 8. The API never writes outcomes: the workers do, exactly as for messages from `txsim gen`.

-- Bearer tokens. A token is `txsim_<id>_<secret>`; only the sha256 of the secret is stored (the secret
-- has 256 random bits, so a slow hash adds nothing), and the token is printed once, when created.
-- An admin token may do everything; an account token acts for one customer account only.
CREATE TABLE IF NOT EXISTS api_tokens (
  id          CHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  secret_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  is_admin    TINYINT(1)   NOT NULL DEFAULT 0,
  account_id  BIGINT       NULL,
  label       VARCHAR(100) NULL,
  created_at  DATETIME(3)  NOT NULL,
  expires_at  DATETIME(3)  NULL,
  revoked_at  DATETIME(3)  NULL,
  KEY ix_api_tokens_account (account_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Registered users (POST /v1/users): one customer account each. The password is stored as an scrypt
-- hash with its own salt and parameters (`scrypt$N$r$p$salt$hash`, base64), never in clear.
CREATE TABLE IF NOT EXISTS api_users (
  username      VARCHAR(64)  NOT NULL PRIMARY KEY,
  password_hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  account_id    BIGINT       NOT NULL,
  created_at    DATETIME(3)  NOT NULL,
  UNIQUE KEY uq_api_users_account (account_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Every transaction the API accepted, keyed by its id: the API's idempotency record (same id and
-- body → the current status; same id, other body → 409) and the first entries of its timeline.
-- `published_at` is set only once the broker confirmed the message; a row without it was accepted
-- but its publish failed (the client got a 503) and is published again when the request is repeated.
CREATE TABLE IF NOT EXISTS api_submissions (
  id                  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  body_hash           CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  account_id          BIGINT       NOT NULL,
  type                VARCHAR(16)  NOT NULL,
  amount_minor        BIGINT       NOT NULL,
  currency            CHAR(3)      NOT NULL,
  -- The webhook-ingest contract's destination, kept for the record until transfers move money to it.
  destination_account BIGINT       NULL,
  source              ENUM('api', 'webhook') NOT NULL,
  token_id            CHAR(16) CHARACTER SET ascii COLLATE ascii_bin NULL,
  accepted_at         DATETIME(3)  NOT NULL,
  published_at        DATETIME(3)  NULL,
  KEY ix_api_submissions_account (account_id, accepted_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
