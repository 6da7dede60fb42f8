-- A span that ended before its task's root but arrived after the task had
-- finished (another replica, a retried batch): its events are written as the
-- timeline and artifact rows they would have been, marked arrived_late (the
-- late-span rule: TaskCorrected's facts). Every earlier row arrived on time.
ALTER TABLE agent_checkpoints ADD COLUMN IF NOT EXISTS arrived_late boolean NOT NULL DEFAULT false;
ALTER TABLE task_artifacts ADD COLUMN IF NOT EXISTS arrived_late boolean NOT NULL DEFAULT false;
