-- TaskView.seq: the per-task sequence the tracker gives every event. The task
-- row follows the view with the highest seq (time_ns can tie, and clocks can
-- skew), and the timeline orders rows of equal time by it.
ALTER TABLE agent_tasks ADD COLUMN seq bigint NOT NULL DEFAULT 0;
ALTER TABLE agent_checkpoints ADD COLUMN seq bigint NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS agent_checkpoints_task_time;
CREATE INDEX agent_checkpoints_task_time ON agent_checkpoints (task_id, time_ns, seq);
