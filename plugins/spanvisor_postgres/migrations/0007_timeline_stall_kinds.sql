-- Timeline rows of kind stalled and resumed (issue 12: a task with no span
-- activity for its agent's stall time, and its return).
ALTER TABLE agent_checkpoints DROP CONSTRAINT IF EXISTS agent_checkpoints_kind_check;
ALTER TABLE agent_checkpoints ADD CONSTRAINT agent_checkpoints_kind_check
    CHECK (kind IN ('checkpoint', 'context_warning', 'context_forecast', 'budget_warning', 'stalled', 'resumed'))
    NOT VALID;
