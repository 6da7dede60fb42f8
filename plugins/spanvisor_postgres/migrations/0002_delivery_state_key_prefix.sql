-- Pruning a task deletes its state-store keys: the task id itself (Slack
-- parent, Grafana annotation) and every key "<task id>/..." (Slack thread
-- replies and status alerts). A text_pattern_ops index compares bytes, so
-- "starts with <id>/" is the index range [<id>/, <id>0) whatever the
-- database's collation; it serves the equality lookups too, so it replaces
-- the plain index on key.
DROP INDEX IF EXISTS delivery_state_key;
CREATE INDEX delivery_state_key_pattern ON delivery_state (key text_pattern_ops);
