-- Timeline rows of kind corrected: a span that ended after its task's root
-- corrected the finished task's totals (TaskCorrected, the late-span rule).
ALTER TABLE agent_checkpoints DROP CONSTRAINT IF EXISTS agent_checkpoints_kind_check;
ALTER TABLE agent_checkpoints ADD CONSTRAINT agent_checkpoints_kind_check
    CHECK (kind IN ('checkpoint', 'context_warning', 'context_forecast', 'budget_warning', 'stalled', 'resumed',
                    'corrected'))
    NOT VALID;
