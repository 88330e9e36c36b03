-- The secret behind the ids `txsim serve` derives from an `Idempotency-Key` or a webhook's
-- `transaction_id`: HMAC-SHA256 under it, so nobody can compute another account's id ahead of that
-- account and take it (a name-based UUID of public text could be). One row per namespace, written by
-- the first server that needs it (INSERT IGNORE, then read: every server of the namespace uses the
-- same one). `legacy_ids` is 1 when the API had accepted transactions before the row existed: an id
-- derived the earlier way (a UUIDv5 of the text) is then still used when its submission belongs to
-- the same account, so a request repeated across the upgrade is not accepted twice. Applied by
-- `txsim setup` after 013; idempotent.
CREATE TABLE IF NOT EXISTS serve_id_keys (
  namespace  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  secret     BINARY(32)  NOT NULL,
  legacy_ids TINYINT(1)  NOT NULL,
  created_at DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
