-- Issue #17: one outbox relay claims at a time. Every worker runs a relay (any one can die), but three
-- relays claiming the same table at once cost about an eighth of the throughput in skipped locks and
-- small claims. The relay holding this lease claims; the others stand by and take it over when it
-- lapses (its holder died or hung) or is released (its holder stopped). Correctness never rests on
-- it: claims are still SELECT … FOR UPDATE SKIP LOCKED, so two relays at once (a lapsed holder waking
-- up) only cost what they cost before. Applied by `txsim setup` after 009; idempotent.
CREATE TABLE IF NOT EXISTS outbox_relay_lease (
  id         TINYINT      NOT NULL PRIMARY KEY,
  holder     VARCHAR(128) NOT NULL,
  expires_at DATETIME(3)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

INSERT IGNORE INTO outbox_relay_lease (id, holder, expires_at) VALUES (1, '', '1970-01-02 00:00:00');
