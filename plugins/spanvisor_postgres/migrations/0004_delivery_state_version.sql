-- put_if_newer: a state-store key that holds a value getting better over time
-- (the newest view of a task, which replicas render) keeps its version here,
-- and a write lands only when it is newer (docs/deploy.md#replicas). Claimed
-- keys leave it NULL.
ALTER TABLE delivery_state ADD COLUMN version bigint;
