-- Contract v1.1 two-phase card payments (authorize → capture / void, refunds). Applied by `txsim
-- setup` after 004, statement by statement; idempotent (IF NOT EXISTS: MariaDB >= 10.6).

-- What open card authorizations reserve on a customer account. available = balance_minor - held_minor,
-- and no customer's available may ever be negative: the CHECK is the last guard behind authorize().
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS held_minor BIGINT NOT NULL DEFAULT 0 AFTER balance_minor;
ALTER TABLE accounts ADD CONSTRAINT IF NOT EXISTS ck_accounts_available CHECK (kind = 'system' OR (held_minor >= 0 AND balance_minor >= held_minor));

-- card_authorization is 18 characters: the type columns grow (in place: still under 256 bytes).
ALTER TABLE transactions MODIFY COLUMN type VARCHAR(32) NULL;
ALTER TABLE outbox_events MODIFY COLUMN type VARCHAR(32) NULL;
ALTER TABLE accounting_statements MODIFY COLUMN type VARCHAR(32) NULL;
ALTER TABLE api_submissions MODIFY COLUMN type VARCHAR(32) NOT NULL;

-- The authorization a capture, void or refund refers to (its id, the hold's id). NULL otherwise.
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS authorization_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER to_balance_after_minor;

-- One hold per applied card_authorization (id = the authorization's transaction id). Changed only by
-- a worker holding the account's row lock, so the account lock serializes every change of a hold.
-- open: nothing captured yet; partially_captured: some captured, the rest still held; captured,
-- voided, expired: closed, nothing held any more. Refunds credit back at most what was captured.
CREATE TABLE IF NOT EXISTS holds (
  id               CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  account_id       BIGINT       NOT NULL,
  currency         CHAR(3)      NOT NULL,
  merchant         VARCHAR(100) NOT NULL,
  state            ENUM('open', 'partially_captured', 'captured', 'voided', 'expired') NOT NULL,
  authorized_minor BIGINT       NOT NULL,
  captured_minor   BIGINT       NOT NULL DEFAULT 0,
  refunded_minor   BIGINT       NOT NULL DEFAULT 0,
  expires_at       DATETIME(3)  NOT NULL,
  created_at       DATETIME(3)  NOT NULL,
  updated_at       DATETIME(3)  NOT NULL,
  KEY ix_holds_account (account_id, state),
  KEY ix_holds_expiry (state, expires_at),
  CONSTRAINT ck_holds_amounts CHECK (captured_minor >= 0 AND captured_minor <= authorized_minor AND refunded_minor >= 0 AND refunded_minor <= captured_minor)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
