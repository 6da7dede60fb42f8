-- Timeline rows of kind diff: the task's work changed (DiffUpdated). The row
-- keeps the diff's digest, its size and the files it covers; the text itself
-- is shown where a sink shows it (Slack's code channel tab), not stored here.
ALTER TABLE agent_checkpoints DROP CONSTRAINT IF EXISTS agent_checkpoints_kind_check;
ALTER TABLE agent_checkpoints ADD CONSTRAINT agent_checkpoints_kind_check
    CHECK (kind IN ('checkpoint', 'context_warning', 'context_forecast', 'budget_warning', 'stalled', 'resumed',
                    'corrected', 'diff'))
    NOT VALID;
