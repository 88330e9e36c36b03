-- Contract v1.1 transfers. Applied by `txsim setup` after 003, statement by statement; idempotent
-- (ADD COLUMN IF NOT EXISTS: MariaDB >= 10.6).

-- A transfer's destination and, once applied, the destination's balance after the credit (the
-- source's is balance_after_minor, as for every type). NULL for the one-account types. No index:
-- every insert would pay for it, and nothing looks transactions up by destination on the hot path.
ALTER TABLE transactions
  ADD COLUMN IF NOT EXISTS to_account_id BIGINT NULL AFTER merchant,
  ADD COLUMN IF NOT EXISTS to_balance_after_minor BIGINT NULL AFTER to_account_id;
