-- Timeline rows of kind context_forecast and budget_warning (issue 12): 0005
-- added their columns, but the kind check of 0001 still refused such rows
-- (the writer quarantined every forecast and budget warning).
ALTER TABLE agent_checkpoints DROP CONSTRAINT IF EXISTS agent_checkpoints_kind_check;
-- NOT VALID: every existing row passed the narrower check of 0001, so there is
-- nothing to scan (and no long lock on a large audit table); new rows are checked.
ALTER TABLE agent_checkpoints ADD CONSTRAINT agent_checkpoints_kind_check
    CHECK (kind IN ('checkpoint', 'context_warning', 'context_forecast', 'budget_warning')) NOT VALID;
