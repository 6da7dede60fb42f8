-- Checkpoints of the decision log's chain head (migration 0013).
--
-- Now and then (SPANVISOR_AUDIT_CHECKPOINT_INTERVAL) the postgres sink reads
-- the chain's head, its newest link's number and hash, and, when it moved,
-- records it here, logs it and publishes it to the shared state store (and
-- from there, if asked, to the webhook). `spanvisor audit verify` checks that
-- every link recorded here still has its hash: a rewrite of the newest links
-- that the chain alone cannot show (every link from some row on rewritten
-- with its hash) shows as a checkpoint the chain no longer passes through.
-- Someone who can write this table too can remove that evidence; the copies
-- outside the database (the log line, the webhook) are what they cannot.
--
-- Keyed by the link's number: replicas sharing the database record each
-- head once (ON CONFLICT DO NOTHING); writer is the replica that did.

CREATE TABLE IF NOT EXISTS decision_chain_checkpoints (
    seq      bigint PRIMARY KEY,
    row_hash text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    writer   text NOT NULL DEFAULT ''
);
